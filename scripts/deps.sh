#!/usr/bin/env bash
# Install what tessera needs on Debian 12 (bookworm), only what is missing.
#   scripts/deps.sh            build + runtime packages (GStreamer 1.22, libnice)
#   scripts/deps.sh --rtmp     also nginx with its RTMP module and redis-server (the
#                              bench's live streams and cluster)
#   scripts/deps.sh --browser  also what the tests need: Chromium, Firefox ESR and
#                              PulseAudio, iproute2, nftables, coturn, nginx-rtmp,
#                              redis-server, and a
#                              Python virtualenv with aiortc (target/interop-venv)
# The package list is mirrored in the Dockerfile; keep them in step.
set -euo pipefail

PACKAGES=(
  pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-x gstreamer1.0-tools
  libnice-dev
  # libopus: the mixer's Opus encoders and the str0m transport's decoders
  # call it directly (src/media/opus.rs).
  libopus-dev
  fonts-dejavu-core
  # libsrtp2 on OpenSSL (scripts/build-libsrtp.sh): its source, compiler, crypto.
  curl gcc make libssl-dev
)
if [[ "${1:-}" == "--browser" ]]; then
  # Tests: Chromium for the browser tests; ip/tc for the shaped-link test
  # (network namespaces, veth, tbf); nft for the lossy-link test (random
  # drops in the router namespace: this kernel has no netem).
  # python3-venv: the virtualenv of the aiortc interop tests.
  # coturn: the TURN server of the relay tests (Debian's, as users run it).
  # firefox-esr: the browser tests run in Firefox too; pulseaudio (with
  # pactl from pulseaudio-utils) is the audio server headless Firefox needs.
  PACKAGES+=(chromium firefox-esr pulseaudio pulseaudio-utils iproute2 nftables python3 python3-venv coturn)
  # Node.js runs the browser tests; the machine's own node is used if present.
  command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)
fi

if [[ "${1:-}" == "--browser" || "${1:-}" == "--rtmp" ]]; then
  # nginx with its RTMP module: the RTMP server live streams publish to in
  # the tests and the bench; redis-server: the directory of the cluster
  # tests and bench (both started by them on a loopback port; the system
  # services are not started).
  PACKAGES+=(nginx libnginx-mod-rtmp redis-server)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
      echo "deps: need root (or sudo) to install: $*" >&2; exit 1
    fi
  fi
}

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  need_root "${missing[*]}"
  $SUDO apt-get update -qq
  # Installing a server (nginx, coturn) must not start it as a system
  # service: the tests start their own. policy-rc.d says no to that, for
  # this install only (and only where there is no policy of the machine's).
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && own_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  if [[ -n $own_policy ]]; then $SUDO rm -f "$policy"; fi
  if ((rc)); then exit "$rc"; fi
fi

# libsrtp2 built on OpenSSL, which tessera loads before GStreamer's SRTP
# elements (src/media/srtp.rs): Debian's is built on NSS, at four times the
# CPU per packet. Rebuilt when the system's libsrtp2 changes; a release the
# build script does not know leaves the system's in use (the server warns,
# tests/srtp_runs_on_the_openssl_build.rs fails).
srtp_dir=/usr/local/lib/tessera
srtp_sys=$(dpkg-query -W -f='${Version}' libsrtp2-1 2>/dev/null || true)
if [[ "$(cat "$srtp_dir/libsrtp2.version" 2>/dev/null)" != "$srtp_sys openssl" ]]; then
  if [[ $srtp_sys == 2.5.0-* ]]; then
    echo "deps: building libsrtp2 $srtp_sys on OpenSSL into $srtp_dir"
    need_root "$srtp_dir/libsrtp2.so.1"
    srtp_tmp=$(mktemp -d)
    "$(dirname "$0")/build-libsrtp.sh" "$srtp_tmp"
    $SUDO install -D -m 644 "$srtp_tmp/libsrtp2.so.1" "$srtp_dir/libsrtp2.so.1"
    echo "$srtp_sys openssl" | $SUDO tee "$srtp_dir/libsrtp2.version" >/dev/null
    rm -rf "$srtp_tmp"
  else
    echo "deps: the system's libsrtp2 is '$srtp_sys'; scripts/build-libsrtp.sh builds 2.5.0: SRTP stays on the system's (NSS) until it is updated" >&2
  fi
fi

if ! command -v cargo >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    echo "deps: cargo is in ~/.cargo/bin; add it to PATH" >&2
  else
    echo "deps: Rust is missing; install it with rustup (https://rustup.rs), then run this again" >&2
  fi
  exit 1
fi

if [[ "${1:-}" == "--browser" ]]; then
  # aiortc, an independent WebRTC stack, for the interop tests: pinned in
  # tests/interop/requirements.txt, (re)installed when that file changes.
  cd "$(dirname "$0")/.."
  venv=target/interop-venv
  req=tests/interop/requirements.txt
  stamp="$venv/.requirements"
  if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    echo "deps: installing the aiortc virtualenv ($venv)"
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
fi
