#!/usr/bin/env python3
"""A tessera participant built on aiortc, an independent WebRTC stack.

It speaks only the documented signaling protocol (docs/protocol.md): join,
answer with every ICE candidate inside the SDP (aiortc does not trickle),
and takes the server's trickled candidates. It sends a solid colour and a
sine tone, and reports what it received as JSON: frames and frame rate of the
mixed video, its size, the colour at the centre of every tile of the last
`layout`, and the level of given frequencies in the received audio.

Used by tests/aiortc_clients_join_a_room.rs; runs with the interpreter of the
virtualenv that scripts/deps.sh creates (aiortc pinned in requirements.txt).
"""

import argparse
import asyncio
import fractions
import json
import math
import sys
import time

import numpy as np
import websockets
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame, VideoFrame

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.020


class ColorTrack(MediaStreamTrack):
    """A solid colour at `fps`, paced in real time."""

    kind = "video"

    def __init__(self, rgb, width, height, fps):
        super().__init__()
        img = np.zeros((height, width, 3), dtype=np.uint8)
        img[:, :] = rgb
        self._img = img
        self._fps = fps
        self._start = None
        self._n = 0

    async def recv(self):
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n / self._fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = VideoFrame.from_ndarray(self._img, format="rgb24")
        frame.pts = int(self._n * VIDEO_CLOCK / self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone, mono s16 at 48 kHz, 20 ms frames paced in real time."""

    kind = "audio"

    def __init__(self, hz, volume=0.25):
        super().__init__()
        self._hz = hz
        self._amp = volume * 32767
        self._start = None
        self._n = 0
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)

    async def recv(self):
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n * AUDIO_PTIME
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = self._n * self._samples
        t = (np.arange(self._samples) + t0) / AUDIO_RATE
        pcm = (self._amp * np.sin(2 * math.pi * self._hz * t)).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = t0
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._n += 1
        return frame


class Received:
    def __init__(self):
        self.frame_times = []
        self.last_frame = None
        self.width = 0
        self.height = 0
        self.audio = np.zeros(0, dtype=np.float32)
        self.audio_rate = AUDIO_RATE
        self.audio_frames = 0

    async def consume_video(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frame_times.append(time.monotonic())
            self.last_frame = frame
            self.width, self.height = frame.width, frame.height

    async def consume_audio(self, track):
        keep = AUDIO_RATE  # the last second
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.audio_frames += 1
            self.audio_rate = frame.sample_rate
            pcm = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                mono = pcm.astype(np.float32).mean(axis=0)
            else:
                mono = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1)
            self.audio = np.concatenate([self.audio, mono / 32768.0])[-keep:]

    def fps(self, window):
        now = time.monotonic()
        n = sum(1 for t in self.frame_times if t >= now - window)
        return n / window

    def level_db(self, hz):
        """Peak level of `hz` in the last second, dBFS (a full-scale sine is 0)."""
        x = self.audio
        if len(x) < 4096:
            return None
        win = np.hanning(len(x))
        spec = np.abs(np.fft.rfft(x * win)) / (win.sum() / 2)
        freqs = np.fft.rfftfreq(len(x), 1 / self.audio_rate)
        band = (freqs > hz - 15) & (freqs < hz + 15)
        peak = spec[band].max() if band.any() else 0.0
        return float(20 * math.log10(max(peak, 1e-9)))

    def tiles(self, layout):
        if self.last_frame is None or not layout:
            return []
        img = self.last_frame.to_ndarray(format="rgb24")
        # Tiles are in canvas pixels; a lower rung is the canvas scaled down.
        canvas = layout.get("canvas") or {}
        sx = img.shape[1] / canvas.get("width", img.shape[1])
        sy = img.shape[0] / canvas.get("height", img.shape[0])
        out = []
        for t in layout.get("tiles", []):
            cx = int((t["x"] + t["width"] / 2) * sx)
            cy = int((t["y"] + t["height"] / 2) * sy)
            patch = img[max(cy - 3, 0):cy + 4, max(cx - 3, 0):cx + 4].reshape(-1, 3)
            out.append({"id": t["id"], "name": t.get("name"), "center_rgb": [int(v) for v in patch.mean(axis=0)]})
        return out


def watch_dtls(pc, state):
    """Note when the DTLS handshake starts and ends (bundled: one transport)."""
    transports = {t.sender.transport for t in pc.getTransceivers() if t.sender.transport is not None}
    for dtls in transports:

        @dtls.on("statechange")
        def on_dtls_state(dtls=dtls):
            now = time.monotonic()
            if dtls.state == "connecting":
                state["dtls_start"] = now
            elif dtls.state == "connected" and "dtls_start" in state:
                state["dtls_handshake_ms"] = round((now - state["dtls_start"]) * 1000, 1)
                ssl = getattr(dtls, "_ssl", None)  # aiortc internals: for the report only
                if ssl is not None:
                    profile = ssl.get_selected_srtp_profile()
                    state["dtls"] = {
                        "version": ssl.get_protocol_version_name(),
                        "cipher": ssl.get_cipher_name(),
                        "srtp_profile": profile.decode() if isinstance(profile, bytes) else profile,
                    }
            elif dtls.state == "failed":
                state["dtls_failed"] = True


def parse_rgb(s):
    s = s.lstrip("#")
    return [int(s[i:i + 2], 16) for i in (0, 2, 4)]


async def run(args):
    received = Received()
    pc = RTCPeerConnection()
    state = {"id": None, "layout": None, "quality": [], "errors": [], "connection": "new", "ice_from_server": 0}
    consumers = []

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            consumers.append(asyncio.ensure_future(received.consume_video(track)))
        else:
            consumers.append(asyncio.ensure_future(received.consume_audio(track)))

    @pc.on("connectionstatechange")
    def on_state():
        state["connection"] = pc.connectionState

    join = {"type": "join", "room": args.room, "name": args.name}
    if args.role:
        join["role"] = args.role
    if args.quality:
        join["quality"] = args.quality

    started = time.monotonic()
    fps_window = None
    async with websockets.connect(args.server, max_size=2 ** 20) as ws:
        await ws.send(json.dumps(join))

        async def reader():
            async for raw in ws:
                msg = json.loads(raw)
                t = msg.get("type")
                if t == "joined":
                    state["id"] = msg["id"]
                elif t == "layout":
                    state["layout"] = msg
                elif t == "quality":
                    state["quality"].append(msg)
                elif t == "error":
                    state["errors"].append(msg)
                elif t == "offer":
                    offer_at = time.monotonic()
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
                    if args.role != "viewer":
                        pc.addTrack(ToneTrack(args.tone))
                        pc.addTrack(ColorTrack(parse_rgb(args.color), args.width, args.height, args.fps))
                    watch_dtls(pc, state)
                    answer = await pc.createAnswer()
                    # aiortc gathers every candidate here: the answer carries them all.
                    await pc.setLocalDescription(answer)
                    await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
                    state["answer_ms"] = round((time.monotonic() - offer_at) * 1000, 1)
                elif t == "ice":
                    cand = msg.get("candidate") or ""
                    if cand.startswith("candidate:"):
                        cand = cand[len("candidate:"):]
                    if cand:
                        c = candidate_from_sdp(cand)
                        c.sdpMLineIndex = msg.get("sdpMLineIndex", 0)
                        await pc.addIceCandidate(c)
                        state["ice_from_server"] += 1

        read_task = asyncio.ensure_future(reader())
        # The report is taken at --report-at (default: the end), while the
        # others are still in the room; the client stays until --duration.
        report_at = min(args.report_at or args.duration, args.duration)
        try:
            await asyncio.wait_for(asyncio.shield(read_task), timeout=report_at)
        except asyncio.TimeoutError:
            pass
        fps_window = min(args.fps_window, report_at)
        report = {
            "id": state["id"],
            "name": args.name,
            "connection": state["connection"],
            "frames": len(received.frame_times),
            "fps": received.fps(fps_window),
            "fps_window_s": fps_window,
            "first_frame_ms": round((received.frame_times[0] - started) * 1000) if received.frame_times else None,
            "width": received.width,
            "height": received.height,
            "tiles_seen": received.tiles(state["layout"]),
            "layout": state["layout"],
            "audio_frames": received.audio_frames,
            "levels_db": {hz: received.level_db(float(hz)) for hz in args.listen},
            "quality": state["quality"],
            "errors": state["errors"],
            "ice_from_server": state["ice_from_server"],
            "answer_ms": state.get("answer_ms"),
            "dtls_handshake_ms": state.get("dtls_handshake_ms"),
            "dtls_failed": state.get("dtls_failed", False),
            "dtls": state.get("dtls"),
        }
        try:
            await asyncio.wait_for(asyncio.shield(read_task), timeout=max(args.duration - report_at, 0))
        except asyncio.TimeoutError:
            pass
        read_task.cancel()
        try:
            await ws.send(json.dumps({"type": "leave"}))
        except Exception:
            pass
    for c in consumers:
        c.cancel()
    await pc.close()
    text = json.dumps(report, indent=1)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    else:
        print(text)


def restrict_host_addresses(addresses):
    """Gather host candidates only on `addresses`. aioice leaves loopback
    out of its candidates, and the tests run on loopback (as Firefox needs
    media.peerconnection.ice.loopback there)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="signaling URL, ws://host:port/ws")
    p.add_argument("--room", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--color", default="ff0000", help="rrggbb")
    p.add_argument("--tone", type=float, default=440.0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--role", choices=["participant", "viewer"])
    p.add_argument("--quality")
    p.add_argument("--duration", type=float, default=12.0, help="seconds in the room")
    p.add_argument("--report-at", type=float, help="seconds after start to take the report (default: --duration)")
    p.add_argument("--fps-window", type=float, default=4.0, help="frame rate over the last N seconds")
    p.add_argument("--listen", nargs="*", default=[], help="frequencies to report levels of")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--ice-address", action="append", default=[], help="local address for ICE (repeatable; default: aioice's choice, never loopback)")
    args = p.parse_args()
    if args.ice_address:
        restrict_host_addresses(args.ice_address)
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
