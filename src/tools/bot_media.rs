//! The media side of `tessera bot`: a headless participant on `webrtcbin`
//! that sends test sources and analyses what it receives (frame rate,
//! resolution, colours at tile centres, audio spectrum, bitrate).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gst::prelude::*;
use gst_rtp::prelude::RTPHeaderExtensionExt;
use gst_video::prelude::*;
use tokio::sync::mpsc;

use crate::media::webrtc::{self, Peer, PeerEvent, Stream};
use crate::media::{opus_rtp_caps, shutdown_pipeline, video_rtp_caps};
use crate::protocol::Codec;
use crate::tools::bot::BotOptions;

/// Audio kept for analysis: the last second.
const AUDIO_KEEP: usize = 48_000;
const FFT_LEN: usize = 16_384;

/// A gap between two frames longer than this is a freeze (three frames
/// at 30 fps, two at 15).
pub const FREEZE: Duration = Duration::from_millis(150);
/// Freezes remembered.
const FREEZES_KEPT: usize = 256;
/// Decoded audio buffers whose level is remembered (a minute of 20 ms).
const AUDIO_LEVELS_KEPT: usize = 3000;
/// Holes in the decoded audio remembered.
const AUDIO_GAPS_KEPT: usize = 256;

#[derive(Default)]
struct Received {
    first_frame: Option<Instant>,
    frames: u64,
    frame_times: VecDeque<Instant>,
    max_gap: Duration,
    /// Gaps between frames longer than [`FREEZE`]: (when it ended, how long). Bounded.
    freezes: VecDeque<(Instant, Duration)>,
    last_frame_at: Option<Instant>,
    width: u32,
    height: u32,
    last_sample: Option<gst::Sample>,
    audio: VecDeque<f32>,
    audio_samples: u64,
    /// Each decoded audio buffer: when it arrived and its RMS. Bounded.
    audio_levels: VecDeque<(Instant, f32)>,
    /// The last audio RTP packet: (sequence number, timestamp).
    last_audio: Option<(u16, u32)>,
    /// Holes in the audio stream (a stretch of RTP time no packet carried:
    /// lost packets, or a sender that skipped): (when seen, how long). Bounded.
    audio_gaps: VecDeque<(Instant, Duration)>,
    /// A pixel watched on every decoded frame (for latency measurements),
    /// and what it showed when (bounded).
    probe: Option<(u32, u32)>,
    probe_log: VecDeque<ProbeSample>,
    /// Arrival (at the jitterbuffer's input, before any buffering) of the
    /// newest packet of each RTP frame, by (SSRC, RTP timestamp); and the
    /// RTP frame of each PTS the jitterbuffer put out. Bounded.
    rtp_arrivals: VecDeque<((u32, u32), Instant)>,
    pts_frames: VecDeque<(u64, (u32, u32))>,
    /// Video RTP after the jitterbuffer: packets seen, sequence gaps, bytes.
    video_packets: u64,
    video_lost: u64,
    video_bytes: u64,
    rtp_frames: u64,
    /// Stream time the frames counted in `rtp_frames` cover: 90 kHz ticks
    /// summed between consecutive frames' RTP timestamps.
    rtp_ticks: u64,
    last_frame_ts: Option<u32>,
    last_video_seq: Option<u16>,
    /// Source pads webrtcbin added, by caps (media/encoding).
    pads: Vec<String>,
}

impl Received {
    fn frame_arrived(&mut self, now: Instant) {
        if let Some(last) = self.last_frame_at {
            self.max_gap = self.max_gap.max(now - last);
            if now - last > FREEZE {
                if self.freezes.len() >= FREEZES_KEPT {
                    self.freezes.pop_front();
                }
                self.freezes.push_back((now, now - last));
            }
        }
        self.last_frame_at = Some(now);
        self.first_frame.get_or_insert(now);
        self.frames += 1;
        self.frame_times.push_back(now);
        while self.frame_times.len() > 300 {
            self.frame_times.pop_front();
        }
    }
}

/// Width and height from a VP8 keyframe's header (RFC 6386 9.1), or None
/// for an interframe.
pub fn vp8_keyframe_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 10 || data[0] & 1 != 0 || data[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([data[6], data[7]]) & 0x3fff;
    let h = u16::from_le_bytes([data[8], data[9]]) & 0x3fff;
    Some((w as u32, h as u32))
}

/// Frames of probe history kept (about 100 s at 30 fps).
const PROBE_KEEP: usize = 3000;
/// RTP frames remembered for arrival lookups (a few seconds of audio and video).
const RTP_KEEP: usize = 1000;

/// One decoded frame at the watched pixel: when it was decoded, its
/// colour, and when the last RTP packet of that frame reached this bot.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSample {
    pub decoded: Instant,
    pub rgb: [u8; 3],
    pub arrived: Option<Instant>,
}

/// What a sending bot recorded about its colour changes.
#[derive(Debug, Default)]
struct SentChanges {
    /// Y value the next colour change will have, once asked for.
    pending_y: Option<u8>,
    /// PTS of the first frame with the new colour, until it is sent.
    frame_pts: Option<u64>,
    /// When the last RTP packet of each changed frame left the payloader.
    sent: Vec<Instant>,
    /// Capture time (PTS, the pipeline's running time in ns) of each
    /// changed frame at the encoder's input.
    video_pts: Vec<u64>,
    /// A tone was switched on: the first loud buffer at the Opus
    /// encoder's input gives its capture time (PTS, ns) to `audio_pts`.
    audio_pending: bool,
    audio_pts: Vec<u64>,
}

impl Received {
    /// When the RTP frame decoded with presentation time `pts` arrived.
    fn arrival_of(&self, pts: Option<gst::ClockTime>) -> Option<Instant> {
        let pts = pts?.nseconds();
        let frame = self.pts_frames.iter().rev().find(|(p, _)| *p == pts)?.1;
        self.rtp_arrivals.iter().rev().find(|(f, _)| *f == frame).map(|(_, t)| *t)
    }
}


/// An RGB frame copied out of the pipeline.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    /// Tightly packed RGB, `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbFrame {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y.min(self.height - 1) * self.width + x.min(self.width - 1)) * 3) as usize;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Mean colour of the (2r+1)² square around (x, y).
    pub fn mean_around(&self, x: u32, y: u32, r: u32) -> [u8; 3] {
        let mut acc = [0u64; 3];
        let mut n = 0u64;
        for yy in y.saturating_sub(r)..=(y + r).min(self.height - 1) {
            for xx in x.saturating_sub(r)..=(x + r).min(self.width - 1) {
                let p = self.pixel(xx, yy);
                for c in 0..3 {
                    acc[c] += p[c] as u64;
                }
                n += 1;
            }
        }
        let n = n.max(1);
        [(acc[0] / n) as u8, (acc[1] / n) as u8, (acc[2] / n) as u8]
    }
}

/// Statistics of what the bot received so far.
#[derive(Debug, Clone, Default)]
pub struct ReceivedStats {
    pub frames: u64,
    /// Frames per second since the first frame.
    pub fps: f64,
    /// Frames per second over the last 3 seconds.
    pub fps_recent: f64,
    /// Longest interval between two received frames.
    pub max_frame_gap_ms: u64,
    /// Gaps longer than [`FREEZE`]: (when it ended, how long), the newest last.
    pub freezes: Vec<(Instant, Duration)>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub kbps: f64,
    pub audio_seconds: f64,
    /// When the first mixed frame was decoded.
    pub first_frame_at: Option<Instant>,
    /// Video RTP packets received and missing (sequence gaps after the
    /// jitterbuffer), and video bytes.
    pub video_packets: u64,
    pub video_lost: u64,
    pub video_bytes: u64,
    /// Video frames received as RTP (marker bits), decoded or not.
    pub rtp_frames: u64,
    /// The stream time (90 kHz RTP clock ticks) those frames cover: their
    /// frame rate as sent is `Δrtp_frames / (Δrtp_ticks / 90000)`,
    /// whatever delays or bursts the network and decoder add.
    pub rtp_ticks: u64,
    /// Streams webrtcbin handed over (media/encoding).
    pub pads: Vec<String>,
    /// What the video jitterbuffer did about loss (NACK/RTX).
    pub repair: crate::media::webrtc::Repair,
}

pub struct BotMedia {
    /// A send size waiting for the next frame.
    wanted_size: Arc<Mutex<Option<gst::Caps>>>,
    feeder: Option<Feeder>,
    size: (u32, u32),
    fixed_size: bool,
    pipeline: gst::Pipeline,
    peer: Peer,
    received: Arc<Mutex<Received>>,
    bytes: Arc<AtomicU64>,
    started: Instant,
    changes: Arc<Mutex<SentChanges>>,
    sent: Arc<AtomicU64>,
}

impl BotMedia {
    pub fn new(cfg: &BotOptions, events: mpsc::Sender<PeerEvent>) -> Result<BotMedia> {
        crate::media::init()?;
        // A share sends its screen only.
        let (send_video, send_audio) = (cfg.send_video && !cfg.viewer, !cfg.viewer && cfg.share_of.is_none());
        let video_src = match cfg.color {
            Some(rgb) => format!("videotestsrc name=vsrc is-live=true pattern=solid-color foreground-color={}", 0xff00_0000u32 | rgb),
            None => format!("videotestsrc name=vsrc is-live=true pattern={}", cfg.pattern),
        };
        let encoder = match cfg.codec {
            Codec::Vp8 => "vp8enc name=venc deadline=1 cpu-used=16 end-usage=cbr target-bitrate=300000 lag-in-frames=0 keyframe-max-dist=60 threads=1 \
                 ! rtpvp8pay pt=96 picture-id-mode=15-bit mtu=1200",
            Codec::H264 => "x264enc name=venc tune=zerolatency speed-preset=ultrafast bitrate=300 key-int-max=60 threads=1 sliced-threads=false bframes=0 \
                 ! video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency mtu=1200",
        };
        let preencoded = if cfg.load { Some(PreEncoded::new(cfg, send_video)?) } else { None };
        let video_branch = if cfg.load && send_video {
            let pay = match cfg.codec {
                Codec::Vp8 => "rtpvp8pay pt=96 picture-id-mode=15-bit mtu=1200",
                Codec::H264 => "rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency mtu=1200",
            };
            format!("appsrc name=lvsrc is-live=true do-timestamp=true format=time ! {pay} ! capsfilter name=vcaps ! webrtc.sink_1")
        } else if send_video {
            format!(
                "{video_src} ! video/x-raw,width={w},height={h},framerate={fps}/1 ! videoscale name=vscale ! capsfilter name=vsize ! videoconvert \
                 ! {encoder} ! capsfilter name=vcaps ! webrtc.sink_1",
                w = cfg.width,
                h = cfg.height,
                fps = cfg.fps,
            )
        } else {
            String::new()
        };
        let audio_branch = if !send_audio {
            String::new()
        } else if cfg.load {
            "appsrc name=lasrc is-live=true do-timestamp=true format=time ! rtpopuspay name=apay pt=111 ! capsfilter name=acaps ! webrtc.sink_0".to_string()
        } else {
            format!(
                "audiotestsrc name=tonesrc is-live=true wave=sine freq={tone} volume={vol} ! audioconvert ! audioresample \
                 ! audio/x-raw,rate=48000,channels=1 ! level audio-level-meta=true post-messages=false \
                 ! opusenc name=aenc bitrate=32000 frame-size=20 ! rtpopuspay name=apay pt=111 \
                 ! capsfilter name=acaps ! webrtc.sink_0",
                tone = cfg.tone_hz,
                vol = cfg.volume,
            )
        };
        let desc = format!("webrtcbin name=webrtc bundle-policy=max-bundle latency={} {audio_branch} {video_branch}", cfg.jitterbuffer_ms);
        // A viewer's description is webrtcbin alone, which parses to the element.
        let pipeline = match gst::parse::launch(&desc).context("bot pipeline does not parse")?.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(element) => {
                let p = gst::Pipeline::new();
                p.add(&element).context("adding webrtcbin")?;
                p
            }
        };
        let network = crate::config::Network { ice_addresses: cfg.ice_addresses.clone(), ..Default::default() };
        let peer = Peer::new(&pipeline, crate::media::dtls::DtlsCertificate::process()?, &network, {
            // Events are forwarded without waiting (GStreamer threads).
            let events = events.clone();
            Arc::new(move |ev| {
                let _ = events.try_send(ev);
            })
        })?;
        if let Some(acaps) = pipeline.by_name("acaps") {
            acaps.set_property("caps", opus_rtp_caps());
        }
        // Video asks for lost packets again (NACK) and resends them (RTX),
        // as browsers do: the sending bot's transceiver exists already (its
        // sink_1), a receiving bot's comes with the offer.
        let nack = cfg.nack;
        if !nack {
            peer.without_nack();
        }
        if let Some(pad) = peer.webrtcbin().static_pad("sink_1") {
            pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver").set_property("do-nack", nack);
        }
        peer.webrtcbin().connect("on-new-transceiver", false, move |values| {
            let trans = values.get(1).and_then(|v| v.get::<gst_webrtc::WebRTCRTPTransceiver>().ok())?;
            if trans.property::<gst_webrtc::WebRTCKind>("kind") != gst_webrtc::WebRTCKind::Audio {
                trans.set_property("do-nack", nack);
            }
            None
        });
        if let Some(vcaps) = pipeline.by_name("vcaps") {
            vcaps.set_property("caps", video_rtp_caps(cfg.codec));
        } else {
            // Nothing sent: the answer's video codec comes from the
            // transceiver webrtcbin makes for the offer; keep it to ours.
            let codec = cfg.codec;
            peer.webrtcbin().connect("on-new-transceiver", false, move |values| {
                let trans = values.get(1).and_then(|v| v.get::<gst_webrtc::WebRTCRTPTransceiver>().ok())?;
                if trans.property::<gst_webrtc::WebRTCKind>("kind") == gst_webrtc::WebRTCKind::Video {
                    trans.set_property("codec-preferences", video_rtp_caps(codec));
                }
                None
            });
        }

        let received = Arc::new(Mutex::new(Received::default()));
        let bytes = Arc::new(AtomicU64::new(0));
        {
            let received = received.clone();
            let bytes = bytes.clone();
            let (discard, decode) = (cfg.load, cfg.decode);
            peer.on_stream(move |pipeline, pad, stream| {
                received.lock().pads.push(stream.describe());
                count_rtp(pad, stream.is_video(), bytes.clone(), received.clone());
                // Load mode: count and drop.
                let linked = if discard { webrtc::discard(pipeline, pad) } else { link_receiver(pipeline, pad, stream, received.clone(), decode) };
                if let Err(e) = linked {
                    tracing::warn!("bot: incoming {} not analysed: {e:#}", stream.describe());
                }
            });
        }
        let changes = Arc::new(Mutex::new(SentChanges::default()));
        let sent = Arc::new(AtomicU64::new(0));
        let stop_at = cfg.media_for.map(|d| Instant::now() + d);
        for (i, name) in ["acaps", "vcaps"].into_iter().enumerate() {
            if let Some(pad) = pipeline.by_name(name).and_then(|e| e.static_pad("src")) {
                let sent = sent.clone();
                let corrupt = cfg.corrupt_media;
                let noise = Mutex::new(Noise(crate::tools::hostile::XorShift::new(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1))));
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if stop_at.is_some_and(|t| Instant::now() >= t) {
                        return gst::PadProbeReturn::Drop;
                    }
                    if corrupt {
                        if let Some(b) = info.buffer_mut() {
                            noise.lock().scramble_payload(b.make_mut());
                        }
                    }
                    if let Some(b) = info.buffer() {
                        sent.fetch_add(b.size() as u64, Ordering::Relaxed);
                    }
                    gst::PadProbeReturn::Ok
                });
            }
        }
        let wanted_size = Arc::new(Mutex::new(None));
        apply_size_changes(&pipeline, &wanted_size);
        watch_colour_changes(&pipeline, &changes);
        watch_tone_onsets(&pipeline, &changes);
        if cfg.decode && !cfg.load {
            // Only decoded frames are traced back to their packets; load
            // bots skip the per-packet bookkeeping.
            watch_rtp_arrivals(peer.webrtcbin(), &received);
        }
        // Negotiate (the offer arrives later) only once PLAYING.
        if cfg.relay_only {
            peer.webrtcbin().set_property_from_str("ice-transport-policy", "relay");
        }
        peer.play(Duration::from_secs(5))?;
        let feeder = match preencoded {
            Some(pre) => Some(pre.start(&pipeline, cfg.fps)?),
            None => None,
        };
        Ok(BotMedia { wanted_size, sent, changes, size: (cfg.width, cfg.height), fixed_size: cfg.fixed_size, pipeline, peer, received, bytes, started: Instant::now(), feeder })
    }

    /// Use the STUN and TURN servers the server gave in `joined` (before
    /// the offer: gathering starts with the answer).
    pub fn set_ice_servers(&self, servers: &[crate::protocol::IceServer]) {
        let wb = self.peer.webrtcbin();
        for s in servers {
            for url in &s.urls {
                match turn_uri(url, s.username.as_deref(), s.credential.as_deref()) {
                    Some(uri) if url.starts_with("turn") => {
                        if !wb.emit_by_name::<bool>("add-turn-server", &[&uri]) {
                            tracing::warn!("bot: webrtcbin refused the TURN server {url}");
                        }
                    }
                    Some(uri) => wb.set_property("stun-server", uri),
                    None => tracing::warn!("bot: ICE server `{url}` not understood"),
                }
            }
        }
    }

    /// The candidate types (`host`, `srflx`, `prflx`, `relay`) of the
    /// selected pair, local and remote, from webrtcbin's statistics; None
    /// before a pair is selected. Blocks until webrtcbin replies.
    pub fn selected_pair(&self) -> Option<(String, String)> {
        let promise = gst::Promise::new();
        self.peer.webrtcbin().emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
        let reply = promise.wait();
        let stats = (reply == gst::PromiseResult::Replied).then(|| promise.get_reply()).flatten()?;
        // Follow the pair's candidate ids: GStreamer 1.22 names the local
        // candidate's structure `remote-candidate` and the other way round.
        let pair = stats.iter().find_map(|(_, v)| v.get::<gst::Structure>().ok().filter(|s| s.name() == "candidate-pair"))?;
        let kind = |id_field: &str| {
            let id = pair.get::<String>(id_field).ok()?;
            stats.get::<gst::Structure>(id.as_str()).ok()?.get::<String>("candidate-type").ok()
        };
        Some((kind("local-candidate-id")?, kind("remote-candidate-id")?))
    }

    /// Apply the server's offer and produce an answer (reported as
    /// [`PeerEvent::LocalDescription`]).
    pub fn handle_offer(&self, sdp: &str) -> Result<()> {
        if let Some(ms) = crate::protocol::audio_ptime(sdp).filter(|ms| crate::media::audio::PTIMES_MS.contains(ms)) {
            self.send_ptime(ms);
        }
        if let Some(id) = crate::protocol::audio_extmap(sdp, AUDIO_LEVEL_URI) {
            self.tell_audio_level(id)?;
        }
        self.peer.answer(sdp)
    }

    /// Put each packet's level in its header (RFC 6464) under `id`, as
    /// browsers do when the offer has the extension: the level `level`
    /// measured before the encoder (or the clip's), carried on the buffers
    /// as a `GstAudioLevelMeta`.
    fn tell_audio_level(&self, id: u8) -> Result<()> {
        let Some(pay) = self.pipeline.by_name("apay") else { return Ok(()) };
        let ext = gst_rtp::RTPHeaderExtension::create_from_uri(AUDIO_LEVEL_URI).context("no RFC 6464 header extension in GStreamer (rtpmanager)")?;
        ext.set_id(id as u32);
        pay.emit_by_name::<()>("add-extension", &[&ext]);
        Ok(())
    }

    /// Send audio in packets of `ms` (what the offer's `a=ptime` asked
    /// for, as browsers do).
    fn send_ptime(&self, ms: u32) {
        if let Some(enc) = self.pipeline.by_name("aenc") {
            enc.set_property_from_str("frame-size", &ms.to_string());
        }
        if let Some(f) = &self.feeder {
            f.ptime.store(ms, Ordering::Relaxed);
        }
    }

    /// Make an offer (a bot that calls another bot directly, as in a
    /// peer-to-peer mesh); reported as [`PeerEvent::LocalDescription`].
    pub fn create_offer(&self) {
        self.peer.offer()
    }

    /// Apply the answer to an offer from [`BotMedia::create_offer`].
    pub fn apply_answer(&self, sdp: &str) {
        self.peer.apply_answer(sdp)
    }

    /// RTP bytes this bot has sent (payloader output, before SRTP).
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Honour the server's `send_size`: scale the sent video down (never
    /// up) to fit the tile, and cap the encoder's bitrate.
    /// A load bot switches to a clip pre-encoded at that size.
    pub fn fit_send_size(&self, width: u32, height: u32, max_bitrate: u32, fit: crate::protocol::Fit) {
        if self.fixed_size {
            return;
        }
        let (w, h) = self.size;
        let (sx, sy) = (w as f64 / width.max(1) as f64, h as f64 / height.max(1) as f64);
        // A cropped tile is covered (the server cuts the overflow), a
        // letterboxed one contained; never scaled up.
        let scale = match fit {
            crate::protocol::Fit::Crop => sx.min(sy),
            crate::protocol::Fit::Letterbox => sx.max(sy),
        }
        .max(1.0);
        let sw = ((w as f64 / scale) as u32 & !1).max(16);
        let sh = ((h as f64 / scale) as u32 & !1).max(16);
        if let Some(f) = &self.feeder {
            *f.wanted.lock() = Some((sw, sh, max_bitrate.min(CLIP_BITRATE)));
        }
        // Applied by the probe on the scaler's sink pad, between frames (see
        // `apply_size_changes`).
        *self.wanted_size.lock() = Some(gst::Caps::builder("video/x-raw").field("width", sw as i32).field("height", sh as i32).build());
        if let Some(enc) = self.pipeline.by_name("venc") {
            let bps = max_bitrate.min(300_000);
            if enc.find_property("target-bitrate").is_some() {
                enc.set_property("target-bitrate", bps as i32);
            } else if enc.find_property("bitrate").is_some() {
                // x264enc: kbit/s
                enc.set_property("bitrate", (bps / 1000).max(1));
            }
        }
    }

    pub fn add_ice(&self, mline: u32, candidate: &str) {
        self.peer.add_ice(mline, candidate);
    }

    pub fn stats(&self) -> ReceivedStats {
        let r = self.received.lock();
        let now = Instant::now();
        let fps = match r.first_frame {
            Some(t) if r.frames > 1 => (r.frames - 1) as f64 / (now - t).as_secs_f64().max(1e-3),
            _ => 0.0,
        };
        let window = Duration::from_secs(3);
        let recent = r.frame_times.iter().filter(|t| now.duration_since(**t) <= window).count();
        let span = r.first_frame.map(|t| (now - t).min(window)).unwrap_or(window);
        let bytes = self.bytes.load(Ordering::Relaxed);
        ReceivedStats {
            frames: r.frames,
            fps,
            fps_recent: recent as f64 / span.as_secs_f64().max(1e-3),
            // A stall still in progress counts too: the time since the last frame.
            max_frame_gap_ms: r.max_gap.max(r.last_frame_at.map(|t| now - t).unwrap_or_default()).as_millis() as u64,
            freezes: r.freezes.iter().copied().collect(),
            width: r.width,
            height: r.height,
            bytes,
            kbps: bytes as f64 * 8.0 / 1000.0 / self.started.elapsed().as_secs_f64().max(1e-3),
            audio_seconds: r.audio_samples as f64 / 48_000.0,
            first_frame_at: r.first_frame,
            video_packets: r.video_packets,
            video_lost: r.video_lost,
            video_bytes: r.video_bytes,
            rtp_frames: r.rtp_frames,
            rtp_ticks: r.rtp_ticks,
            pads: r.pads.clone(),
            repair: self.peer.repair(),
        }
    }

    /// Watch the pixel (x, y) of every decoded frame from now on.
    pub fn set_probe(&self, x: u32, y: u32) {
        let mut r = self.received.lock();
        r.probe = Some((x, y));
        r.probe_log.clear();
    }

    /// What the watched pixel showed, frame by frame, with decode and
    /// RTP arrival times.
    pub fn probe_log(&self) -> Vec<ProbeSample> {
        self.received.lock().probe_log.iter().copied().collect()
    }

    /// When the last RTP packet of each frame that changed colour (after
    /// [`BotMedia::set_color`]) left this bot, in order.
    pub fn sent_changes(&self) -> Vec<Instant> {
        self.changes.lock().sent.clone()
    }

    /// Set the tone's volume (0..1); `mark`: note the capture time of the
    /// first loud buffer that follows (lip-sync measurement).
    pub fn set_volume(&self, volume: f64, mark: bool) {
        if mark {
            self.changes.lock().audio_pending = true;
        }
        if let Some(src) = self.pipeline.by_name("tonesrc") {
            src.set_property("volume", volume.clamp(0.0, 1.0));
        }
    }

    /// Capture times (PTS, ns, one pipeline clock) of the frames with a new
    /// colour and of the tone onsets, in order.
    pub fn sent_av(&self) -> (Vec<u64>, Vec<u64>) {
        let c = self.changes.lock();
        (c.video_pts.clone(), c.audio_pts.clone())
    }

    /// When each decoded audio buffer arrived and its RMS, oldest first.
    pub fn audio_levels(&self) -> Vec<(Instant, f32)> {
        self.received.lock().audio_levels.iter().copied().collect()
    }

    /// Holes in the received audio (when seen, how long), oldest first:
    /// stretches of RTP time no packet carried (lost, or never sent).
    pub fn audio_gaps(&self) -> Vec<(Instant, Duration)> {
        self.received.lock().audio_gaps.iter().copied().collect()
    }

    /// Change the solid colour this bot sends (takes effect on the next frame).
    pub fn set_color(&self, rgb: u32) {
        let (y, _, _) = crate::media::raw::rgb_to_yuv((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8);
        self.changes.lock().pending_y = Some(y);
        if let Some(src) = self.pipeline.by_name("vsrc") {
            src.set_property("foreground-color", 0xff00_0000u32 | rgb);
        }
    }

    /// Reset the longest-gap measurement (e.g. after start-up).
    pub fn reset_max_gap(&self) {
        self.received.lock().max_gap = Duration::ZERO;
    }

    /// The last decoded mixed frame, as RGB.
    pub fn last_frame(&self) -> Option<RgbFrame> {
        let sample = self.received.lock().last_sample.clone()?;
        let caps = sample.caps()?;
        let info = gst_video::VideoInfo::from_caps(caps).ok()?;
        let buffer = sample.buffer()?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
        let (w, h) = (info.width(), info.height());
        let stride = frame.plane_stride()[0] as usize;
        let src = frame.plane_data(0).ok()?;
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h as usize {
            data.extend_from_slice(&src[y * stride..y * stride + w as usize * 3]);
        }
        Some(RgbFrame { width: w, height: h, data })
    }

    /// Magnitude spectrum of the last ~340 ms of received audio:
    /// (bin width in Hz, level in dBFS per bin). None before enough audio.
    pub fn spectrum(&self) -> Option<(f64, Vec<f64>)> {
        let samples: Vec<f32> = {
            let r = self.received.lock();
            if r.audio.len() < FFT_LEN {
                return None;
            }
            r.audio.iter().skip(r.audio.len() - FFT_LEN).copied().collect()
        };
        Some(spectrum_db(&samples, 48_000.0))
    }

    pub fn shutdown(&self) {
        shutdown_pipeline(&self.pipeline);
    }
}

impl Drop for BotMedia {
    fn drop(&mut self) {
        if let Some(f) = self.feeder.take() {
            f.stop();
        }
        shutdown_pipeline(&self.pipeline);
    }
}

/// Bitrate of the full-size load clip (bits/s).
pub(crate) const CLIP_BITRATE: u32 = 500_000;

/// A clip encoded once (VP8 or H.264): caps and frames, the first one a keyframe.
pub(crate) type Clip = Arc<(gst::Caps, Vec<gst::Buffer>)>;

/// What a load clip shows: a `videotestsrc` property list, e.g. a ball of
/// one colour (light, ~90 kbps at 640x360) or a moving zone plate (busy,
/// reaches any bitrate like a camera in a busy scene).
/// The corrupting sender's random bytes (repeatable).
struct Noise(crate::tools::hostile::XorShift);

impl Noise {
    /// Overwrite everything after the RTP header (and its extensions) with
    /// random bytes: the packet stays valid RTP, its payload is garbage.
    fn scramble_payload(&mut self, buf: &mut gst::BufferRef) {
        let Ok(mut map) = buf.map_writable() else { return };
        let data = map.as_mut_slice();
        let Some(start) = rtp_payload_offset(data) else { return };
        for b in &mut data[start..] {
            *b = self.0.next_u64() as u8;
        }
    }
}

/// Where an RTP packet's payload starts: after the fixed header, the CSRCs
/// and the header extension. None for what is not RTP.
pub fn rtp_payload_offset(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut off = 12 + 4 * (p[0] & 0x0f) as usize;
    if p[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]) as usize;
        off += 4 + 4 * len;
    }
    (off <= p.len()).then_some(off)
}

pub(crate) fn clip_source(color: Option<u32>, pattern: &str) -> String {
    match color {
        Some(rgb) => format!("pattern=ball foreground-color={}", 0xff00_0000u32 | rgb),
        None => format!("pattern={pattern}"),
    }
}

/// Clips shared by every load bot in the process, by (codec, source,
/// width, height, bitrate, fps): a room of 16 asking for the same tile size
/// encodes each clip once.
pub(crate) fn clip(codec: Codec, source: &str, width: u32, height: u32, bitrate: u32, fps: u32) -> Result<Clip> {
    type Key = (Codec, String, u32, u32, u32, u32);
    static CLIPS: std::sync::OnceLock<Mutex<std::collections::HashMap<Key, Clip>>> = std::sync::OnceLock::new();
    let mut clips = CLIPS.get_or_init(Default::default).lock();
    let key = (codec, source.to_string(), width, height, bitrate, fps);
    if let Some(c) = clips.get(&key) {
        return Ok(c.clone());
    }
    let n = 2 * fps;
    // One keyframe per loop, at its start, like a camera's periodic ones.
    let encoder = match codec {
        Codec::Vp8 => format!("vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bitrate} lag-in-frames=0 keyframe-max-dist={n}"),
        Codec::H264 => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={n} bframes=0 threads=1 \
             ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au",
            kbps = (bitrate / 1000).max(1)
        ),
    };
    let c = Arc::new(collect(&format!(
        "videotestsrc num-buffers={n} {source} ! video/x-raw,width={width},height={height},framerate={fps}/1 ! {encoder} ! appsink name=out sync=false"
    ))?);
    clips.insert(key, c.clone());
    Ok(c)
}

/// RFC 6464: the client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// One second of a tone as Opus packets of `ptime_ms` (20, 40 or 60), each
/// with its level (a `GstAudioLevelMeta`, which the payloader puts in the
/// header when the server asks for RFC 6464).
pub(crate) fn opus_clip(tone_hz: f64, volume: f64, ptime_ms: u32) -> Result<(gst::Caps, Vec<gst::Buffer>)> {
    let ptime_ms = ptime_ms.clamp(20, 60) / 20 * 20;
    collect(&format!(
        "audiotestsrc num-buffers={n} samplesperbuffer={samples} wave=sine freq={tone_hz} volume={volume} ! audio/x-raw,rate=48000,channels=1 \
         ! level audio-level-meta=true post-messages=false ! opusenc bitrate=32000 frame-size={ptime_ms} ! appsink name=out sync=false",
        n = 1000 / ptime_ms,
        samples = 48 * ptime_ms,
    ))
}

/// Media encoded once, looped by the load bots (so load costs no encoding).
struct PreEncoded {
    video: Option<Clip>,
    audio: (gst::Caps, Vec<gst::Buffer>),
    /// The clip's picture (see [`clip_source`]), re-encoded at other sizes.
    source: String,
    codec: Codec,
    /// The clip's tone (Hz, volume), re-encoded at other packet times.
    tone: (f64, f64),
}

/// The thread that paces pre-encoded buffers into a load bot's appsrcs.
struct Feeder {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// A clip size the server asked for (width, height, bitrate), taken
    /// up by the feeder thread (which encodes it if no bot has yet).
    wanted: Arc<Mutex<Option<(u32, u32, u32)>>>,
    /// The audio packet time to send (ms), taken up by the feeder thread.
    ptime: Arc<AtomicU32>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Run a finite pipeline and collect what its appsink `out` receives.
fn collect(desc: &str) -> Result<(gst::Caps, Vec<gst::Buffer>)> {
    let pipeline = gst::parse::launch(desc)?.downcast::<gst::Pipeline>().map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .context("out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("out is not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut caps = None;
    let mut buffers = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        if caps.is_none() {
            caps = s.caps_owned();
        }
        if let Some(b) = s.buffer_owned() {
            buffers.push(b);
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let caps = caps.context("pre-encoding produced nothing")?;
    Ok((caps, buffers))
}

impl PreEncoded {
    fn new(cfg: &BotOptions, send_video: bool) -> Result<PreEncoded> {
        let source = clip_source(cfg.color, &cfg.pattern);
        let video = if send_video { Some(clip(cfg.codec, &source, cfg.width, cfg.height, CLIP_BITRATE, cfg.fps)?) } else { None };
        let audio = opus_clip(cfg.tone_hz, cfg.volume, 20)?;
        Ok(PreEncoded { video, audio, source, codec: cfg.codec, tone: (cfg.tone_hz, cfg.volume) })
    }

    fn start(self, pipeline: &gst::Pipeline, fps: u32) -> Result<Feeder> {
        let appsrc = |name: &str| -> Option<gst_app::AppSrc> { pipeline.by_name(name).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) };
        let vsrc = appsrc("lvsrc");
        // A share sends no audio.
        let asrc = appsrc("lasrc");
        if asrc.is_none() && vsrc.is_none() {
            anyhow::bail!("a load bot with neither audio nor video to send");
        }
        if let Some(a) = &asrc {
            a.set_caps(Some(&self.audio.0));
        }
        if let (Some(v), Some(c)) = (&vsrc, &self.video) {
            v.set_caps(Some(&c.0));
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wanted: Arc<Mutex<Option<(u32, u32, u32)>>> = Arc::new(Mutex::new(None));
        let ptime = Arc::new(AtomicU32::new(20));
        let (stop2, wanted2, ptime2) = (stop.clone(), wanted.clone(), ptime.clone());
        let thread = std::thread::Builder::new().name("load-feeder".into()).spawn(move || {
            let PreEncoded { mut video, mut audio, source, codec, tone } = self;
            let start = Instant::now();
            let frame = Duration::from_secs_f64(1.0 / fps.max(1) as f64);
            let mut audio_ms = 20;
            let (mut vi, mut ai) = (0usize, 0usize);
            let (mut vnext, mut anext) = (Duration::ZERO, Duration::ZERO);
            while !stop2.load(Ordering::SeqCst) {
                // The packet time the server's offer asked for, as a browser does.
                let asked = ptime2.load(Ordering::Relaxed);
                if asked != audio_ms {
                    match opus_clip(tone.0, tone.1, asked) {
                        Ok(a) => {
                            audio = a;
                            audio_ms = asked;
                        }
                        Err(e) => {
                            // Keep sending what it has, paced as it is.
                            tracing::warn!("load bot: no {asked} ms audio clip: {e:#}");
                            ptime2.store(audio_ms, Ordering::Relaxed);
                        }
                    }
                }
                let size = wanted2.lock().take();
                if let (Some((w, h, bitrate)), Some(v)) = (size, &vsrc) {
                    match clip(codec, &source, w, h, bitrate, fps) {
                        Ok(c) => {
                            v.set_caps(Some(&c.0));
                            video = Some(c);
                            // Start the new clip at its keyframe.
                            vi = 0;
                        }
                        Err(e) => tracing::warn!("load bot: no {w}x{h} clip: {e:#}"),
                    }
                }
                let now = start.elapsed();
                if let Some(a) = asrc.as_ref().filter(|_| now >= anext) {
                    let b = &audio.1[ai % audio.1.len()];
                    let _ = a.push_buffer(crate::media::unstamped(b));
                    ai += 1;
                    anext += Duration::from_millis(audio_ms as u64);
                }
                if let (Some(v), Some(c)) = (&vsrc, &video) {
                    if now >= vnext && !c.1.is_empty() {
                        let _ = v.push_buffer(crate::media::unstamped(&c.1[vi % c.1.len()]));
                        vi += 1;
                        vnext += frame;
                    }
                }
                let next = match (&vsrc, &asrc) {
                    (Some(_), Some(_)) => vnext.min(anext),
                    (Some(_), None) => vnext,
                    _ => anext,
                };
                if let Some(wait) = next.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })?;
        Ok(Feeder { stop, wanted, ptime, thread })
    }
}

/// Sender side of the latency measurement: the first raw frame with the
/// colour asked for by `set_color` is found at the encoder's input (by its
/// luma), and the time its last RTP packet leaves the payloader is kept.
/// A new send size is set on the capsfilter from the streaming thread,
/// just before a frame reaches the scaler: set from another thread while a
/// frame is between the scaler and the capsfilter, the frame is refused
/// (`not-negotiated`) and the bot's video stops.
fn apply_size_changes(pipeline: &gst::Pipeline, wanted: &Arc<Mutex<Option<gst::Caps>>>) {
    let (Some(scale), Some(filter)) = (pipeline.by_name("vscale"), pipeline.by_name("vsize")) else { return };
    let Some(pad) = scale.static_pad("sink") else { return };
    let (wanted, filter) = (Arc::downgrade(wanted), filter.downgrade());
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let caps = wanted.upgrade().and_then(|w| w.lock().take());
        if let (Some(caps), Some(f)) = (caps, filter.upgrade()) {
            f.set_property("caps", caps);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Sender side of the lip-sync measurement: the capture time (PTS) of the
/// first buffer at the Opus encoder's input that is loud, after
/// [`BotMedia::set_volume`] switched the tone on.
fn watch_tone_onsets(pipeline: &gst::Pipeline, changes: &Arc<Mutex<SentChanges>>) {
    let Some(pad) = pipeline.by_name("aenc").and_then(|e| e.static_pad("sink")) else { return };
    let changes = changes.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let mut c = changes.lock();
        if let (true, Some(buf)) = (c.audio_pending, info.buffer()) {
            // S16LE, the format opusenc takes.
            let loud = buf.map_readable().ok().is_some_and(|m| rms_s16(&m) > TONE_ON_RMS);
            if loud {
                c.audio_pending = false;
                if let Some(p) = buf.pts() {
                    c.audio_pts.push(p.nseconds());
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// A tone is on above this RMS (of full scale).
pub const TONE_ON_RMS: f32 = 0.01;

fn rms_s16(bytes: &[u8]) -> f32 {
    let n = bytes.len() / 2;
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = bytes.chunks_exact(2).map(|b| (i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).powi(2)).sum();
    (sum / n as f64).sqrt() as f32
}

fn watch_colour_changes(pipeline: &gst::Pipeline, changes: &Arc<Mutex<SentChanges>>) {
    let (Some(enc), Some(caps)) = (pipeline.by_name("venc"), pipeline.by_name("vcaps")) else { return };
    if let Some(pad) = enc.static_pad("sink") {
        let changes = changes.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut c = changes.lock();
            if let (Some(want), Some(buf)) = (c.pending_y, info.buffer()) {
                // I420 (or any planar YUV): the first byte is a luma sample
                // of a solid-colour frame.
                let y = buf.map_readable().ok().and_then(|m| m.first().copied());
                if y.is_some_and(|y| (y as i32 - want as i32).abs() <= 12) {
                    c.pending_y = None;
                    c.frame_pts = buf.pts().map(|p| p.nseconds());
                    if let Some(p) = c.frame_pts {
                        c.video_pts.push(p);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    if let Some(pad) = caps.static_pad("src") {
        let changes = changes.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let mut c = changes.lock();
            if c.frame_pts.is_some() && buf.pts().map(|p| p.nseconds()) == c.frame_pts {
                let marker = gst_rtp::RTPBuffer::from_buffer_readable(buf).map(|r| r.is_marker()).unwrap_or(false);
                if marker {
                    c.frame_pts = None;
                    c.sent.push(Instant::now());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Receiver side: note when each RTP frame's packets reach the
/// jitterbuffer (before it buffers anything), and which RTP frame each PTS
/// it puts out belongs to, so a decoded frame can be traced back to the
/// arrival of its last packet.
fn watch_rtp_arrivals(webrtcbin: &gst::Element, received: &Arc<Mutex<Received>>) {
    let Some(rtpbin) = webrtcbin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("rtpbin")) else { return };
    let received = received.clone();
    rtpbin.connect("new-jitterbuffer", false, move |values| {
        let jb = values.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        let frame = |buf: &gst::BufferRef| gst_rtp::RTPBuffer::from_buffer_readable(buf).ok().map(|r| (r.ssrc(), r.timestamp()));
        if let Some(pad) = jb.static_pad("sink") {
            let received = received.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(f) = info.buffer().and_then(|b| frame(b)) {
                    let mut r = received.lock();
                    let now = Instant::now();
                    match r.rtp_arrivals.iter_mut().rev().take(8).find(|(k, _)| *k == f) {
                        Some(entry) => entry.1 = now,
                        None => r.rtp_arrivals.push_back((f, now)),
                    }
                    while r.rtp_arrivals.len() > RTP_KEEP {
                        r.rtp_arrivals.pop_front();
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        if let Some(pad) = jb.static_pad("src") {
            let received = received.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
                if let (Some(f), Some(pts)) = (frame(buf), buf.pts()) {
                    let mut r = received.lock();
                    if r.pts_frames.back().map(|(p, _)| *p) != Some(pts.nseconds()) {
                        r.pts_frames.push_back((pts.nseconds(), f));
                        while r.pts_frames.len() > RTP_KEEP {
                            r.pts_frames.pop_front();
                        }
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        None
    });
}

/// The RGB pixel (x, y) of an RGB sample.
fn pixel_of(sample: &gst::Sample, x: u32, y: u32) -> Option<[u8; 3]> {
    let info = gst_video::VideoInfo::from_caps(sample.caps()?).ok()?;
    if x >= info.width() || y >= info.height() {
        return None;
    }
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer()?, &info).ok()?;
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).ok()?;
    let i = y as usize * stride + x as usize * 3;
    Some([*data.get(i)?, *data.get(i + 1)?, *data.get(i + 2)?])
}

/// Hann-windowed magnitude spectrum in dBFS (a full-scale sine is ~0 dB).
pub fn spectrum_db(samples: &[f32], rate: f64) -> (f64, Vec<f64>) {
    use rustfft::num_complex::Complex;
    let n = samples.len();
    let mut buf: Vec<Complex<f32>> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (n as f32 - 1.0)).cos();
            Complex::new(s * w, 0.0)
        })
        .collect();
    let mut planner = rustfft::FftPlanner::<f32>::new();
    planner.plan_fft_forward(n).process(&mut buf);
    // Hann window coherent gain 0.5; a sine of amplitude A gives A*N/4.
    let scale = 4.0 / n as f64;
    let db = buf[..n / 2]
        .iter()
        .map(|c| 20.0 * ((c.norm() as f64 * scale).max(1e-12)).log10())
        .collect();
    (rate / n as f64, db)
}

/// Level (dBFS) of the strongest bin within ±`tol` Hz of `freq`.
pub fn level_at(bin_hz: f64, db: &[f64], freq: f64, tol: f64) -> f64 {
    let lo = ((freq - tol) / bin_hz).floor().max(0.0) as usize;
    let hi = (((freq + tol) / bin_hz).ceil() as usize).min(db.len().saturating_sub(1));
    db[lo..=hi.max(lo)].iter().copied().fold(f64::MIN, f64::max)
}

/// The strongest spectral peaks: (frequency Hz, level dBFS), at least
/// 30 Hz apart, above `floor_db`, strongest first.
pub fn dominant_frequencies(bin_hz: f64, db: &[f64], max: usize, floor_db: f64) -> Vec<(f64, f64)> {
    let mut peaks: Vec<(f64, f64)> = (1..db.len().saturating_sub(1))
        .filter(|&i| db[i] > floor_db && db[i] >= db[i - 1] && db[i] >= db[i + 1] && i as f64 * bin_hz > 40.0)
        .map(|i| (i as f64 * bin_hz, db[i]))
        .collect();
    peaks.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in peaks {
        if out.iter().all(|q| (q.0 - p.0).abs() >= 30.0) {
            out.push(p);
            if out.len() == max {
                break;
            }
        }
    }
    out
}

/// webrtcbin's form of an ICE server URL: `stun://HOST:PORT`, or
/// `turn(s)://USER:PASS@HOST:PORT[?transport=..]` with the user and password
/// percent-encoded (TURN REST usernames contain a `:`).
pub fn turn_uri(url: &str, username: Option<&str>, credential: Option<&str>) -> Option<String> {
    let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    let (scheme, rest) = url.split_once(':')?;
    match scheme {
        "stun" | "stuns" => Some(format!("{scheme}://{rest}")),
        "turn" | "turns" => Some(format!("{scheme}://{}:{}@{rest}", enc(username?), enc(credential?))),
        _ => None,
    }
}

/// Count what arrives on an incoming stream (before any buffering): bytes,
/// and for video packets, sequence gaps and frames (marker bits).
fn count_rtp(pad: &gst::Pad, is_video: bool, bytes: Arc<AtomicU64>, received: Arc<Mutex<Received>>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
        bytes.fetch_add(buf.size() as u64, Ordering::Relaxed);
        if !is_video {
            // Opus at 48 kHz, 20 ms a packet: a timestamp that moves more
            // than 20 ms from one packet to the next is a hole.
            if let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buf) {
                let mut r = received.lock();
                let (seq, ts) = (rtp.seq(), rtp.timestamp());
                if let Some((last_seq, last_ts)) = r.last_audio {
                    let (dseq, dts) = (seq.wrapping_sub(last_seq), ts.wrapping_sub(last_ts));
                    if (1..1000).contains(&dseq) && dts < 48_000 * 10 && dts > 960 + 48 {
                        r.audio_gaps.push_back((Instant::now(), Duration::from_micros((dts - 960) as u64 * 1000 / 48)));
                        while r.audio_gaps.len() > AUDIO_GAPS_KEPT {
                            r.audio_gaps.pop_front();
                        }
                    }
                }
                r.last_audio = Some((seq, ts));
            }
            return gst::PadProbeReturn::Ok;
        }
        if let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buf) {
            let mut r = received.lock();
            r.video_packets += 1;
            r.video_bytes += buf.size() as u64;
            let seq = rtp.seq();
            if let Some(last) = r.last_video_seq {
                let gap = seq.wrapping_sub(last);
                if gap > 1 && gap < 1000 {
                    r.video_lost += (gap - 1) as u64;
                }
            }
            r.last_video_seq = Some(seq);
            // The marker bit ends a frame: frames as sent, whether or not
            // this bot keeps up decoding them.
            if rtp.is_marker() {
                r.rtp_frames += 1;
                let ts = rtp.timestamp();
                if let Some(last) = r.last_frame_ts.replace(ts) {
                    // A step back or over a minute is a new stream (another
                    // SSRC's clock), not stream time.
                    let d = ts.wrapping_sub(last);
                    if d < 60 * 90_000 {
                        r.rtp_ticks += d as u64;
                    }
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Count-only reception: depayload and count frames, no decoding.
fn link_counter(pipeline: &gst::Pipeline, pad: &gst::Pad, received: Arc<Mutex<Received>>, stream: &Stream) -> Result<()> {
    let depay: &[&str] = match (stream.is_video(), stream.encoding.as_str()) {
        (true, "VP8") => &["rtpvp8depay"],
        // h264parse reads the size from the SPS into the caps.
        (true, "H264") => &["rtph264depay", "h264parse"],
        _ => &[],
    };
    let video = !depay.is_empty();
    let chain = webrtc::chain(depay, 1000)?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(8).drop(true).build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if video {
                    let from_caps = sample.caps().and_then(|c| c.structure(0)).and_then(|s| Some((s.get::<i32>("width").ok()? as u32, s.get::<i32>("height").ok()? as u32)));
                    let size = from_caps.or_else(|| sample.buffer().and_then(|b| b.map_readable().ok().and_then(|m| vp8_keyframe_size(&m))));
                    let mut r = received.lock();
                    r.frame_arrived(Instant::now());
                    if let Some((w, h)) = size {
                        r.width = w;
                        r.height = h;
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    webrtc::attach(pipeline, pad, &chain, sink.upcast_ref())
}

fn link_receiver(pipeline: &gst::Pipeline, pad: &gst::Pad, stream: &Stream, received: Arc<Mutex<Received>>, decode: bool) -> Result<()> {
    if !decode {
        return link_counter(pipeline, pad, received, stream);
    }
    let decoder = stream.decoder().with_context(|| format!("no decoder for {}", stream.describe()))?;
    let is_video = stream.is_video();
    let (convert, out_caps): (&[&str], gst::Caps) = if is_video {
        (&["videoconvert"], gst::Caps::builder("video/x-raw").field("format", "RGB").build())
    } else {
        (
            &["audioconvert", "audioresample"],
            gst::Caps::builder("audio/x-raw").field("format", "F32LE").field("rate", 48000i32).field("channels", 1i32).build(),
        )
    };
    let elements = webrtc::chain(&[decoder, convert].concat(), 1000)?;
    if is_video {
        // Ask for a keyframe (PLI) when the decoder cannot start.
        if let Some(dec) = elements.iter().find(|e| e.find_property("automatic-request-sync-points").is_some()) {
            dec.set_property("automatic-request-sync-points", true);
        }
        // A frame lost for good freezes the picture until a keyframe, as
        // in a browser (and on the server).
        webrtc::freeze_on_loss(&elements);
    }
    let sink = gst_app::AppSink::builder().caps(&out_caps).sync(false).max_buffers(4).drop(true).build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut r = received.lock();
                if is_video {
                    let now = Instant::now();
                    r.frame_arrived(now);
                    if let Some(s) = sample.caps().and_then(|c| c.structure(0)) {
                        r.width = s.get::<i32>("width").unwrap_or(0) as u32;
                        r.height = s.get::<i32>("height").unwrap_or(0) as u32;
                    }
                    if let Some((px, py)) = r.probe {
                        if let Some(rgb) = pixel_of(&sample, px, py) {
                            let arrived = r.arrival_of(sample.buffer().and_then(|b| b.pts()));
                            r.probe_log.push_back(ProbeSample { decoded: now, rgb, arrived });
                            while r.probe_log.len() > PROBE_KEEP {
                                r.probe_log.pop_front();
                            }
                        }
                    }
                    r.last_sample = Some(sample);
                } else if let Some(buf) = sample.buffer() {
                    if let Ok(map) = buf.map_readable() {
                        let n = map.len() / 4;
                        r.audio_samples += n as u64;
                        let sum: f32 = map.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).powi(2)).sum();
                        r.audio_levels.push_back((Instant::now(), (sum / n.max(1) as f32).sqrt()));
                        while r.audio_levels.len() > AUDIO_LEVELS_KEPT {
                            r.audio_levels.pop_front();
                        }
                        for c in map.chunks_exact(4) {
                            r.audio.push_back(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                        }
                        while r.audio.len() > AUDIO_KEEP {
                            r.audio.pop_front();
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    webrtc::attach(pipeline, pad, &elements, sink.upcast_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_server_urls_become_webrtcbin_uris() {
        assert_eq!(turn_uri("stun:s.example:3478", None, None).as_deref(), Some("stun://s.example:3478"));
        assert_eq!(
            turn_uri("turn:127.0.0.1:3478?transport=udp", Some("1700086400:p7"), Some("fe/J+k=")).as_deref(),
            Some("turn://1700086400%3Ap7:fe%2FJ%2Bk%3D@127.0.0.1:3478?transport=udp")
        );
        assert_eq!(turn_uri("turn:t:1", None, None), None, "TURN needs credentials");
        assert_eq!(turn_uri("http://x", None, None), None);
    }

    #[test]
    fn the_rtp_payload_starts_after_csrcs_and_extensions() {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xaa];
        assert_eq!(rtp_payload_offset(&p), Some(12));
        p[0] = 0x91; // one CSRC and an extension of one word
        p.splice(12..12, [0, 0, 0, 3, 0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        assert_eq!(rtp_payload_offset(&p), Some(24));
        assert_eq!(rtp_payload_offset(&[0x40; 20]), None, "not version 2");
        assert_eq!(rtp_payload_offset(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9]), None, "extension past the end");
    }

    #[test]
    fn keyframe_size_is_read_from_the_vp8_header() {
        // A keyframe header for 320x180 (scaling bits set, must be masked).
        let key = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x41, 0xb4, 0x80, 0x00];
        assert_eq!(vp8_keyframe_size(&key), Some((320, 180)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(vp8_keyframe_size(&inter), None);
        assert_eq!(vp8_keyframe_size(&key[..5]), None);
    }

    #[test]
    fn spectrum_finds_a_sine_and_its_level() {
        let n = FFT_LEN;
        let s: Vec<f32> = (0..n).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 660.0 * i as f32 / 48000.0).sin()).collect();
        let (bin, db) = spectrum_db(&s, 48000.0);
        let peaks = dominant_frequencies(bin, &db, 3, -60.0);
        assert!((peaks[0].0 - 660.0).abs() < 5.0, "{peaks:?}");
        let l = level_at(bin, &db, 660.0, 10.0);
        assert!((l - 20.0 * 0.5f64.log10()).abs() < 1.5, "level {l}");
        assert!(level_at(bin, &db, 440.0, 10.0) < l - 60.0);
    }
}
