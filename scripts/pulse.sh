#!/usr/bin/env bash
# Start a PulseAudio server with a null sink for headless Firefox (Web Audio
# and WebRTC audio need one), if none answers yet, and print the line that
# points the browser at it:   eval "$(scripts/pulse.sh)"
set -euo pipefail
sock_of() { pactl info 2>/dev/null | sed -n 's/^Server String: //p'; }
if ! pactl info >/dev/null 2>&1; then
  pulseaudio --daemonize=yes --exit-idle-time=-1 -n \
    --load=module-null-sink --load=module-native-protocol-unix >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
fi
server=$(sock_of)
if [[ -z "$server" ]]; then
  echo "pulse.sh: PulseAudio did not start (is the pulseaudio package installed? scripts/deps.sh --browser installs it)" >&2
  exit 1
fi
case "$server" in unix:*) ;; *) server="unix:$server" ;; esac
echo "export PULSE_SERVER=$server"
