#!/usr/bin/env bash
# Build libsrtp2 on OpenSSL's crypto into OUT_DIR/libsrtp2.so.1.
#   scripts/build-libsrtp.sh OUT_DIR
# Debian builds libsrtp2 on NSS, which sets up a cipher context for every
# packet: four times the CPU per packet of the same release on OpenSSL
# (AES-NI). This is Debian 12's release, from Debian's own source archive
# (checksum pinned); Debian's patches to it (2.5.0-3) touch only its tests
# and docs. tessera loads the result before GStreamer's SRTP elements
# (src/media/srtp.rs, [media] srtp_library). Needs curl, gcc, make and
# libssl-dev (scripts/deps.sh installs them).
set -euo pipefail
VERSION=2.5.0
SHA256=8a43ef8e9ae2b665292591af62aa1a4ae41e468b6d98d8258f91478735da4e09
URL=http://deb.debian.org/debian/pool/main/libs/libsrtp2/libsrtp2_$VERSION.orig.tar.gz
out=${1:?usage: scripts/build-libsrtp.sh OUT_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/src.tar.gz" "$URL"
echo "$SHA256  $tmp/src.tar.gz" | sha256sum -c --quiet -
tar xzf "$tmp/src.tar.gz" -C "$tmp"
cd "$tmp/libsrtp-$VERSION"
./configure --enable-openssl --quiet > "$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }
make -s -j"$(nproc)" shared_library > "$tmp/make.log" 2>&1 || { tail -30 "$tmp/make.log" >&2; exit 1; }
mkdir -p "$out"
install -m 644 libsrtp2.so.1 "$out/libsrtp2.so.1"
