//! Delivery of the composed room to its receivers: the encoder ladder,
//! each receiver's rung, keyframes, and the rung controller.
//!
//! ```text
//!                  ┌ queue ─ valve ─ videoscale ─ videorate ─ caps(high)   ─ vp8enc  ─ appsink ┐
//!                  ├ queue ─ valve ─ videoscale ─ videorate ─ caps(medium) ─ vp8enc  ─ appsink │
//! compositor ─ tee ┼ queue ─ valve ─ videoscale ─ videorate ─ caps(low)    ─ vp8enc  ─ appsink ┼─► receivers on that rung
//!                  ├ queue ─ valve ─ videoscale ─ videorate ─ caps(high)   ─ h264 enc ─ appsink│   and codec
//!                  └ ...                                                     (one rung per codec and ladder step)
//! ```
//!
//! The ladder is the same for every codec; each codec has its own encoder
//! per rung. A receiver gets the codec its answer chose (VP8 unless it
//! chose H.264) and moves only between that codec's rungs.
//!
//! A rung's valve is open only while at least one receiver is on it (or
//! moving to it), so an unused rung encodes nothing: the cost grows with
//! the rungs in use, not with the receivers. A receiver moves to another
//! rung at that rung's next keyframe (requested on the move, throttled per
//! rung), and until then keeps the frames of the rung it is on, so a switch
//! never shows a broken picture. A new receiver gets nothing until a
//! keyframe of its rung.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gst::glib;
use gst::prelude::*;

use super::MediaConfig;
use crate::ladder::{Choice, LinkSample, Rung, RungController, Target};
use crate::link::{Estimator, FrameFor, KeyframeThrottle, LinkWindow, PacketReport, Pointed, RungSwitch};
use crate::protocol::Codec;
use crate::room::{EventSender, MediaEvent, ParticipantEvent, RungInfo};

/// Controller period.
const TICK: Duration = Duration::from_millis(100);
/// The congestion estimate never goes under this (audio and a trickle of video).
const MIN_ESTIMATE_BPS: u32 = 30_000;


/// What a receiver's transport tells about its link, written by the
/// participant pipeline (TWCC feedback) from its streaming threads; the
/// rules and the congestion estimate are [`LinkWindow`]'s, with the time
/// taken here. The estimate is computed as feedback arrives: no thread.
pub struct LinkStats {
    /// The estimate after the last feedback (or set by the controller).
    pub estimate_bps: AtomicU32,
    epoch: Instant,
    window: Mutex<LinkWindow>,
}

impl LinkStats {
    /// Starting at `start_bps`, never under `min_bps` or over `max_bps`.
    pub fn new(start_bps: u32, min_bps: u32, max_bps: u32) -> LinkStats {
        LinkStats {
            estimate_bps: AtomicU32::new(start_bps),
            epoch: Instant::now(),
            window: Mutex::new(LinkWindow::new(Estimator::new(start_bps, min_bps, max_bps))),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Record the packet reports of one TWCC feedback. One lock per
    /// feedback, not per packet: this runs on a streaming thread.
    pub fn feedback(&self, packets: &[PacketReport]) {
        let now = self.now_ms();
        let estimate = self.window.lock().feedback(now, packets);
        self.estimate_bps.store(estimate, Ordering::Relaxed);
    }

    /// A rate the rung controller proved.
    pub fn set_estimate(&self, bps: u32) {
        let mut w = self.window.lock();
        w.estimator.set(bps);
        self.estimate_bps.store(w.estimator.estimate(), Ordering::Relaxed);
    }

    pub fn sample(&self) -> LinkSample {
        let now = self.now_ms();
        self.window.lock().sample(now)
    }
}

/// What a room's delivery counts for the metrics (`GET /metrics`).
#[derive(Default)]
pub struct DeliveryCounters {
    /// PLI/FIR (and connects) asking a rung for a keyframe.
    pub keyframe_requests: AtomicU64,
    /// Receivers moving from one rung to another (first frames not counted).
    pub rung_switches: AtomicU64,
    /// Milliseconds from a receiver's start to its first frame, not yet
    /// taken by a scrape (the oldest dropped beyond [`FIRST_FRAMES_KEPT`]).
    first_frames: Mutex<std::collections::VecDeque<u64>>,
}

/// First-frame times kept between two scrapes.
const FIRST_FRAMES_KEPT: usize = 1024;

impl DeliveryCounters {
    fn first_frame(&self, ms: u64) {
        let mut q = self.first_frames.lock();
        if q.len() >= FIRST_FRAMES_KEPT {
            q.pop_front();
        }
        q.push_back(ms);
    }

    /// The first-frame times since the last call.
    pub fn take_first_frames(&self) -> Vec<u64> {
        self.first_frames.lock().drain(..).collect()
    }
}

/// One receiver of the composed video (a participant or a viewer).
pub struct Receiver {
    pub id: String,
    /// When it was added (its join), and the room's counters.
    added: Instant,
    counters: Arc<DeliveryCounters>,
    out: super::Outlet,
    ready: Arc<AtomicBool>,
    events: EventSender,
    pub link: Arc<LinkStats>,
    /// RTP padding the receiver's pipeline adds while probing (bits/s).
    pub padding_bps: Arc<AtomicU32>,
    /// The rate the running probe is after (bits/s), 0 without one.
    pub probe_bps: Arc<AtomicU32>,
    /// The last rate a probe proved (bits/s), until the transport takes
    /// it (str0m's estimator is told).
    pub proven_bps: Arc<AtomicU32>,
    /// Its webrtcbin, whose RTCP receiver reports give the round trip.
    peer: Mutex<Option<glib::WeakRef<gst::Element>>>,
    /// Or its str0m peer's counts of the same.
    peer_counters: Mutex<Option<Arc<super::rtc::PeerCounters>>>,
    st: Mutex<RecvState>,
    /// Frames handed to this receiver.
    frames_sent: AtomicU64,
    /// The codec it receives: an index into [`Codec::ALL`] (set from the
    /// answer, before media flows).
    codec: std::sync::atomic::AtomicUsize,
    /// When `ready` was first seen by the controller, and whether the
    /// "no video yet" warning was logged.
    ready_at: Mutex<Option<Instant>>,
    warned: AtomicBool,
}

struct RecvState {
    choice: Choice,
    /// Where it is going and where its frames come from (the rule).
    switch: RungSwitch,
    controller: Option<RungController>,
}

impl Receiver {
    pub fn set_peer(&self, webrtcbin: &gst::Element) {
        *self.peer.lock() = Some(webrtcbin.downgrade());
    }

    /// A receiver on str0m: its peer counts retransmissions and the round
    /// trip.
    pub fn set_counters(&self, counters: Arc<super::rtc::PeerCounters>) {
        *self.peer_counters.lock() = Some(counters);
    }

    /// The round trip to this receiver, from the last RTCP receiver report
    /// about what we send it (None before one arrived, or for a recorder).
    pub fn rtt(&self) -> Option<Duration> {
        if let Some(c) = self.peer_counters.lock().as_ref() {
            return c.rtt();
        }
        let peer = self.peer.lock().as_ref().and_then(|w| w.upgrade())?;
        // rtpsession keeps a report block on the source that sent it: the
        // receiver's, about our stream.
        super::webrtc::remote_sources(&peer)
            .iter()
            .filter(|s| s.get::<bool>("have-rb").unwrap_or(false))
            .filter_map(|s| s.get::<u32>("rb-round-trip").ok())
            .filter(|rt| *rt > 0)
            // In 1/65536 s (NTP short format).
            .map(|rt| Duration::from_secs_f64(rt as f64 / 65536.0))
            .max()
    }

    /// Retransmission requests (NACKed packets) that reached us from this
    /// receiver, and packets resent (RTX): from webrtcbin's `rtprtxsend`,
    /// or str0m's peer.
    pub fn retransmissions(&self) -> (u64, u64) {
        if let Some(c) = self.peer_counters.lock().as_ref() {
            return (c.nacked_to_us.load(Ordering::Relaxed), c.rtx_sent.load(Ordering::Relaxed));
        }
        let Some(peer) = self.peer.lock().as_ref().and_then(|w| w.upgrade()) else { return (0, 0) };
        let Some(bin) = peer.downcast_ref::<gst::Bin>() else { return (0, 0) };
        bin.iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "rtprtxsend"))
            .map(|e| (e.property::<u32>("num-rtx-requests") as u64, e.property::<u32>("num-rtx-packets") as u64))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    fn codec_index(&self) -> usize {
        self.codec.load(Ordering::Relaxed)
    }

    pub fn codec(&self) -> Codec {
        Codec::ALL[self.codec_index()]
    }
}

struct RungEncoder {
    spec: Rung,
    codec: Codec,
    valve: gst::Element,
    /// The share focus rung's crop and size filter (see [`Delivery::set_focus`]).
    focus: Option<(gst::Element, gst::Element)>,
    /// The size and frame rate it encodes now, when focused on a share.
    focused: Mutex<Option<(u32, u32, u32)>>,
    /// Frames that passed the valve (into scaling and encoding).
    admitted: Arc<AtomicU64>,
    /// Keyframe requests (the rule is [`KeyframeThrottle`]'s); times from `epoch`.
    keyframes: Mutex<KeyframeThrottle>,
    epoch: Instant,
    running: AtomicBool,
    bytes: AtomicU64,
    frames: AtomicU64,
}

type Receivers = Arc<RwLock<Arc<Vec<Arc<Receiver>>>>>;

/// Rung usage for the stats API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RungStats {
    #[serde(flatten)]
    pub rung: Rung,
    pub codec: Codec,
    pub running: bool,
    pub receivers: usize,
    /// Measured output of the rung's encoder over the last 2 s.
    pub kbps: u32,
    pub keyframes_forced: u64,
    /// While it shows a share alone: [width, height, fps].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_focus: Option<[u32; 3]>,
}

/// One receiver, for the stats API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceiverStats {
    pub id: String,
    pub codec: Codec,
    pub frames_sent: u64,
    /// The rung it gets frames from now (`none` before its first keyframe).
    pub rung: String,
    /// Where it is going (`audio`: video paused).
    pub target: String,
    pub auto: bool,
    pub estimate_kbps: u32,
    pub delivered_kbps: u32,
    pub loss: f64,
    /// Round trip from RTCP receiver reports (None before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Transport-wide congestion-control feedback arrives.
    pub feedback: bool,
    /// Lost packets the receiver asked for again (NACK), and packets resent (RTX).
    pub nack_requests: u64,
    pub rtx_packets: u64,
    pub padding_kbps: u32,
}

pub struct Delivery {
    /// Every codec's rungs: codec `c`'s ladder step `i` is `rungs[enc(c, i, ladder length)]`.
    rungs: Arc<Vec<RungEncoder>>,
    /// Composed frames (the tee's input).
    composed: Arc<AtomicU64>,
    receivers: Receivers,
    epoch: Instant,
    pub counters: Arc<DeliveryCounters>,
    kbps: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The encoder of codec index `c`'s ladder step `i`, with `steps` steps per codec.
fn enc(c: usize, i: usize, steps: usize) -> usize {
    c * steps + i
}

/// Ladder steps per codec.
fn steps(rungs: &[RungEncoder]) -> usize {
    rungs.len() / Codec::ALL.len()
}

fn rung_info(rungs: &[RungEncoder], t: Target, auto: bool, estimate: u32, codec: Codec) -> RungInfo {
    let estimate_kbps = (estimate > 0).then_some(estimate / 1000);
    match t {
        Target::Rung(i) => {
            let r = &rungs[i].spec;
            // A rung focused on a share says what it sends now.
            let (width, height, fps) = rungs[i].focused.lock().unwrap_or((r.width, r.height, r.fps));
            RungInfo { rung: r.name.clone(), width, height, fps, kbps: r.bitrate / 1000, auto, estimate_kbps, codec }
        }
        Target::AudioOnly => RungInfo { rung: "audio".into(), width: 0, height: 0, fps: 0, kbps: 0, auto, estimate_kbps, codec },
    }
}

/// Set an encoder's bitrate to `bps`, in the unit its property takes.
fn set_bitrate(e: &gst::Element, bps: u32) {
    let factory = e.factory().map(|f| f.name().to_string()).unwrap_or_default();
    match factory.as_str() {
        // kbit/s
        "x264enc" => e.set_property_from_str("bitrate", &(bps / 1000).max(1).to_string()),
        "openh264enc" => e.set_property_from_str("bitrate", &bps.to_string()),
        _ if e.find_property("target-bitrate").is_some() => e.set_property_from_str("target-bitrate", &bps.to_string()),
        _ => {}
    }
}

impl Delivery {
    /// Build one encoder branch per rung behind `tee` in `pipeline`.
    pub fn new(pipeline: &gst::Pipeline, tee: &gst::Element, cfg: &MediaConfig) -> Result<Delivery> {
        let ladder = cfg.rungs();
        let focus_rung = cfg.focus_rung();
        let receivers: Receivers = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let mut rungs = Vec::new();
        let mut sinks = Vec::new();
        let every = Codec::ALL.iter().flat_map(|c| ladder.iter().enumerate().map(move |(i, r)| (*c, i, r)));
        for (e, (codec, i, r)) in every.enumerate() {
            let encoder = match codec {
                Codec::Vp8 => &cfg.video_encoder,
                Codec::H264 => &cfg.h264_encoder,
            };
            // The share focus rung can cut the share slot out of the canvas.
            let crop = if focus_rung == Some(i) { "videocrop name=focus ! " } else { "" };
            let desc = format!(
                "queue name=q-{codec}-{rung} max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! valve name=valve drop=true \
                 ! {crop}videoscale ! videorate drop-only=true \
                 ! capsfilter name=size caps=video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1,framerate={fps}/1 \
                 ! {enc} ! appsink name=vout sync=false async=false max-buffers=5 drop=true",
                w = r.width,
                h = r.height,
                fps = r.fps,
                enc = encoder,
                // The queue's streaming thread is `q-<codec>-<rung>:src`
                // (/proc's comm keeps 15 bytes): a rung's CPU is its thread's.
                codec = codec.name(),
                rung = r.name,
            );
            let bin = gst::parse::bin_from_description(&desc, true)
                .with_context(|| format!("rung `{}` ({}) does not parse: {desc}", r.name, codec.name()))?;
            bin.set_property("name", format!("rung-{}-{}", codec.name(), r.name));
            // The rung's bitrate overrides the fragment's.
            for el in bin.iterate_recurse().into_iter().flatten() {
                set_bitrate(&el, r.bitrate);
            }
            pipeline.add(&bin).context("adding a rung")?;
            let src = tee.request_pad_simple("src_%u").context("tee gave no pad")?;
            let sink = bin.static_pad("sink").context("rung has no sink pad")?;
            src.link(&sink).context("linking a rung")?;
            let valve = bin.by_name("valve").context("rung valve missing")?;
            let appsink = bin
                .by_name("vout")
                .context("rung appsink missing")?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| anyhow::anyhow!("vout is not an appsink"))?;
            sinks.push((e, i, codec, appsink));
            let admitted = count_buffers(&valve, "src");
            let focus = match (bin.by_name("focus"), bin.by_name("size")) {
                (Some(crop), Some(size)) => Some((crop, size)),
                _ => None,
            };
            rungs.push(RungEncoder {
                spec: r.clone(),
                codec,
                valve,
                focus,
                focused: Mutex::new(None),
                admitted,
                keyframes: Mutex::new(KeyframeThrottle::default()),
                epoch: Instant::now(),
                running: AtomicBool::new(false),
                bytes: AtomicU64::new(0),
                frames: AtomicU64::new(0),
            });
        }
        let rungs = Arc::new(rungs);
        for (e, i, codec, appsink) in sinks {
            let c = codec.index();
            let rungs_cb = rungs.clone();
            let receivers = receivers.clone();
            appsink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let rung = &rungs_cb[e];
                        let due = rung.keyframes.lock().due(rung.epoch.elapsed().as_millis() as u64);
                        if due {
                            if let Some(pad) = sink.static_pad("sink") {
                                pad.push_event(gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build());
                            }
                        }
                        let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                        rung.bytes.fetch_add(buffer.size() as u64, Ordering::Relaxed);
                        rung.frames.fetch_add(1, Ordering::Relaxed);
                        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        let list = receivers.read().clone();
                        for r in list.iter() {
                            if r.ready.load(Ordering::Relaxed) && r.codec_index() == c {
                                deliver(&rungs_cb, r, i, key, &buffer);
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let kbps = Arc::new(Mutex::new(vec![0; rungs.len()]));
        let composed = count_buffers(tee, "sink");
        let d = Delivery { rungs, composed, receivers, epoch: Instant::now(), counters: Arc::default(), kbps, stop, thread: Mutex::new(None) };
        d.start_controller()?;
        Ok(d)
    }

    /// Focus the share focus rung (of every codec) on `share`, a rect of
    /// the `canvas`, or give it the whole canvas again (None). Focused, it
    /// encodes the rect scaled to fit `size` (never up) at `fps`; its
    /// encoder restarts at the new size, so its receivers get a keyframe.
    /// Property changes only: never blocks.
    pub fn set_focus(&self, share: Option<crate::layout::Rect>, canvas: (u32, u32), size: (u32, u32), fps: u32) {
        let n = steps(&self.rungs);
        let mut changed = Vec::new();
        for (e, r) in self.rungs.iter().enumerate() {
            let Some((crop, caps)) = &r.focus else { continue };
            let want = share.map(|s| {
                let k = (size.0 as f64 / s.width as f64).min(size.1 as f64 / s.height as f64).min(1.0);
                let even = |v: f64| ((v.round() as u32) & !1).max(16);
                (even(s.width as f64 * k), even(s.height as f64 * k), fps)
            });
            let mut focused = r.focused.lock();
            if *focused == want {
                continue;
            }
            *focused = want;
            drop(focused);
            changed.push(e % n);
            let (l, t, rt, b) = match share {
                Some(s) => (s.x, s.y, canvas.0.saturating_sub(s.x + s.width), canvas.1.saturating_sub(s.y + s.height)),
                None => (0, 0, 0, 0),
            };
            for (p, v) in [("left", l), ("top", t), ("right", rt), ("bottom", b)] {
                crop.set_property(p, v as i32);
            }
            let (w, h, f) = want.unwrap_or((r.spec.width, r.spec.height, r.spec.fps));
            let c = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", w as i32)
                .field("height", h as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .field("framerate", gst::Fraction::new(f as i32, 1))
                .build();
            caps.set_property("caps", &c);
            r.keyframes.lock().request();
            tracing::info!("rung {} ({}) {}", r.spec.name, r.codec.name(), if share.is_some() { format!("shows the share alone: {w}x{h} at {f} fps") } else { "shows the canvas again".into() });
        }
        // Its receivers learn what they get now (`quality`).
        let list = self.receivers.read().clone();
        for r in list.iter() {
            let (current, auto) = {
                let st = r.st.lock();
                (st.switch.current, st.controller.is_some())
            };
            if let Some(i) = current.filter(|i| changed.contains(i)) {
                send_quality(&self.rungs, r, Target::Rung(i), auto);
            }
        }
    }

    /// Frames the compositor produced so far.
    pub fn frames_composed(&self) -> u64 {
        self.composed.load(Ordering::Relaxed)
    }

    /// Frames each rung encoded so far, in [`Delivery::stats`] order.
    pub fn rung_frames(&self) -> Vec<u64> {
        self.rungs.iter().map(|r| r.frames.load(Ordering::Relaxed)).collect()
    }

    /// The ladder (the same for every codec).
    pub fn ladder(&self) -> Vec<Rung> {
        self.rungs[..steps(&self.rungs)].iter().map(|r| r.spec.clone()).collect()
    }

    /// The index of rung `name` in the ladder.
    pub fn rung_index(&self, name: &str) -> Option<usize> {
        self.rungs[..steps(&self.rungs)].iter().position(|r| r.spec.name == name)
    }

    /// The codec receiver `id` gets (from its answer, before its media
    /// flows): its rungs are that codec's from now on.
    pub fn set_codec(&self, id: &str, codec: Codec) {
        let Some(r) = self.find(id) else { return };
        let c = codec.index();
        if r.codec.swap(c, Ordering::SeqCst) != c {
            update_valves(&self.rungs, &self.receivers);
            self.request_keyframe(id);
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Add a receiver. It gets frames once `ready` is set and a keyframe
    /// of its rung arrives.
    pub fn add(&self, id: &str, out: super::Outlet, ready: Arc<AtomicBool>, events: EventSender, choice: Choice) -> Arc<Receiver> {
        let start = match choice {
            Choice::Fixed(i) => Target::Rung(i.min(steps(&self.rungs).saturating_sub(1))),
            Choice::Auto => Target::Rung(0),
        };
        let controller = matches!(choice, Choice::Auto).then(|| RungController::new(&self.ladder(), start, self.now_ms()));
        // The estimate starts where the top rung fits.
        let top = self.rungs.first().map(|r| r.spec.link_bps()).unwrap_or(1_500_000);
        let r = Arc::new(Receiver {
            id: id.to_string(),
            added: Instant::now(),
            counters: self.counters.clone(),
            out,
            ready,
            events,
            link: Arc::new(LinkStats::new(top, MIN_ESTIMATE_BPS, top.saturating_mul(2))),
            padding_bps: Arc::new(AtomicU32::new(0)),
            probe_bps: Arc::new(AtomicU32::new(0)),
            proven_bps: Arc::new(AtomicU32::new(0)),
            peer: Mutex::new(None),
            peer_counters: Mutex::new(None),
            st: Mutex::new(RecvState { choice, switch: RungSwitch::new(start), controller }),
            frames_sent: AtomicU64::new(0),
            codec: std::sync::atomic::AtomicUsize::new(0),
            ready_at: Mutex::new(None),
            warned: AtomicBool::new(false),
        });
        {
            let mut w = self.receivers.write();
            let mut v: Vec<_> = w.iter().cloned().collect();
            v.push(r.clone());
            *w = Arc::new(v);
        }
        update_valves(&self.rungs, &self.receivers);
        r
    }

    pub fn remove(&self, id: &str) {
        {
            let mut w = self.receivers.write();
            let v: Vec<_> = w.iter().filter(|r| r.id != id).cloned().collect();
            *w = Arc::new(v);
        }
        update_valves(&self.rungs, &self.receivers);
    }

    fn find(&self, id: &str) -> Option<Arc<Receiver>> {
        self.receivers.read().iter().find(|r| r.id == id).cloned()
    }

    /// A receiver needs a keyframe (it just connected, or sent PLI/FIR).
    pub fn request_keyframe(&self, id: &str) {
        let Some(r) = self.find(id) else { return };
        tracing::debug!(receiver = %id, "keyframe asked for");
        self.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        let n = steps(&self.rungs);
        let mut used = vec![false; n];
        r.st.lock().switch.mark_used(&mut used);
        for i in (0..n).filter(|i| used[*i]) {
            self.rungs[enc(r.codec_index(), i, n)].keyframes.lock().request();
        }
    }

    /// `auto`, or a rung of the ladder by name; None for a name it lacks.
    pub fn choice_of(&self, quality: &str) -> Option<Choice> {
        match quality {
            "auto" => Some(Choice::Auto),
            q => self.rung_index(q).map(Choice::Fixed),
        }
    }

    /// The receiver asks for a rung by name, or `auto`.
    pub fn set_choice(&self, id: &str, choice: Choice) {
        let Some(r) = self.find(id) else { return };
        let now = self.now_ms();
        let target = {
            let mut st = r.st.lock();
            st.choice = choice.clone();
            match choice {
                Choice::Fixed(i) => {
                    st.controller = None;
                    Target::Rung(i.min(steps(&self.rungs) - 1))
                }
                Choice::Auto => {
                    let start = match st.switch.target {
                        Target::Rung(i) => Target::Rung(i),
                        Target::AudioOnly => Target::Rung(steps(&self.rungs) - 1),
                    };
                    st.controller = Some(RungController::new(&self.ladder(), start, now));
                    start
                }
            }
        };
        r.padding_bps.store(0, Ordering::Relaxed);
        r.probe_bps.store(0, Ordering::Relaxed);
        set_target(&self.rungs, &self.receivers, &r, target, true);
    }

    pub fn running_encoders(&self) -> usize {
        self.rungs.iter().filter(|r| r.running.load(Ordering::SeqCst)).count()
    }

    pub fn stats(&self) -> Vec<RungStats> {
        let list = self.receivers.read().clone();
        let kbps = self.kbps.lock().clone();
        let n = steps(&self.rungs);
        self.rungs
            .iter()
            .enumerate()
            .map(|(e, r)| RungStats {
                rung: r.spec.clone(),
                codec: r.codec,
                running: r.running.load(Ordering::SeqCst),
                receivers: list.iter().filter(|x| x.st.lock().switch.current.map(|i| enc(x.codec_index(), i, n)) == Some(e)).count(),
                kbps: kbps.get(e).copied().unwrap_or(0),
                keyframes_forced: r.keyframes.lock().forced(),
                share_focus: r.focused.lock().map(|(w, h, f)| [w, h, f]),
            })
            .collect()
    }

    /// Every receiver's rung and link, for the stats API.
    pub fn receivers(&self) -> Vec<ReceiverStats> {
        let list = self.receivers.read().clone();
        list.iter()
            .map(|r| {
                let link = r.link.sample();
                // Asked before taking the receiver's lock (it emits a signal).
                let rtt_ms = r.rtt().map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
                let (nack_requests, rtx_packets) = r.retransmissions();
                let st = r.st.lock();
                let name = |i: Option<usize>| i.and_then(|i| self.rungs.get(i)).map(|x| x.spec.name.clone()).unwrap_or_else(|| "none".into());
                ReceiverStats {
                    id: r.id.clone(),
                    codec: r.codec(),
                    frames_sent: r.frames_sent.load(Ordering::Relaxed),
                    rung: name(st.switch.current),
                    target: match st.switch.target {
                        Target::Rung(i) => name(Some(i)),
                        Target::AudioOnly => "audio".into(),
                    },
                    auto: st.controller.is_some(),
                    estimate_kbps: link.estimate_bps / 1000,
                    delivered_kbps: link.delivered_bps / 1000,
                    loss: (link.loss * 1000.0).round() / 1000.0,
                    rtt_ms,
                    feedback: link.has_feedback,
                    nack_requests,
                    rtx_packets,
                    padding_kbps: r.padding_bps.load(Ordering::Relaxed) / 1000,
                }
            })
            .collect()
    }

    pub fn keyframes_forced(&self) -> u64 {
        self.rungs.iter().map(|r| r.keyframes.lock().forced()).sum()
    }

    fn start_controller(&self) -> Result<()> {
        let rungs = self.rungs.clone();
        let receivers = self.receivers.clone();
        let composed = self.composed.clone();
        let stop = self.stop.clone();
        let kbps = self.kbps.clone();
        let epoch = self.epoch;
        let t = std::thread::Builder::new().name("rungs".into()).spawn(move || {
            let mut last_bytes: Vec<u64> = vec![0; rungs.len()];
            let mut last_measure = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(TICK);
                let now = epoch.elapsed().as_millis() as u64;
                let list = receivers.read().clone();
                let rung_kbps = kbps.lock().clone();
                for r in list.iter() {
                    if r.ready.load(Ordering::Relaxed) {
                        control(&rungs, &receivers, r, now, &rung_kbps);
                        watch(&rungs, r, composed.load(Ordering::Relaxed));
                    }
                }
                update_valves(&rungs, &receivers);
                if last_measure.elapsed() >= Duration::from_secs(2) {
                    let secs = last_measure.elapsed().as_secs_f64();
                    last_measure = Instant::now();
                    let mut k = kbps.lock();
                    for (i, r) in rungs.iter().enumerate() {
                        let b = r.bytes.load(Ordering::Relaxed);
                        k[i] = ((b - last_bytes[i]) as f64 * 8.0 / secs / 1000.0) as u32;
                        last_bytes[i] = b;
                    }
                }
            }
        })?;
        *self.thread.lock() = Some(t);
        Ok(())
    }
}

/// A counter of the buffers passing `element`'s pad `pad`.
fn count_buffers(element: &gst::Element, pad: &str) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    if let Some(pad) = element.static_pad(pad) {
        let n = n.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            n.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    n
}

/// Warn (once) about a connected receiver that got no frame in 3 s.
fn watch(rungs: &[RungEncoder], r: &Receiver, composed: u64) {
    let since = *r.ready_at.lock().get_or_insert_with(Instant::now);
    if r.frames_sent.load(Ordering::Relaxed) > 0 || since.elapsed() < Duration::from_secs(3) || r.warned.swap(true, Ordering::Relaxed) {
        return;
    }
    let st = r.st.lock();
    let state: Vec<String> = rungs
        .iter()
        .map(|x| {
            format!(
                "{} ({}): running {} admitted {} encoded {} keyframes forced {}",
                x.spec.name,
                x.codec.name(),
                x.running.load(Ordering::Relaxed),
                x.admitted.load(Ordering::Relaxed),
                x.frames.load(Ordering::Relaxed),
                x.keyframes.lock().forced()
            )
        })
        .collect();
    tracing::warn!(
        receiver = %r.id,
        "connected 3 s ago but no video frame delivered yet: target {:?}, current {:?}; {composed} frames composed; rungs: {}",
        st.switch.target,
        st.switch.current,
        state.join("; ")
    );
}

/// One controller step for an `auto` receiver.
fn control(rungs: &[RungEncoder], receivers: &Receivers, r: &Arc<Receiver>, now: u64, rung_kbps: &[u32]) {
    let mut sample = r.link.sample();
    let n = steps(rungs);
    let decision = {
        let mut st = r.st.lock();
        sample.rung_bps = st.switch.current.and_then(|i| rung_kbps.get(enc(r.codec_index(), i, n))).copied().unwrap_or(0) * 1000;
        match st.controller.as_mut() {
            Some(c) => c.tick(now, sample),
            None => return,
        }
    };
    if let Some(bps) = decision.set_estimate {
        // Before the probe's end is seen: the transport takes both at once.
        r.proven_bps.store(bps, Ordering::Relaxed);
    }
    r.padding_bps.store(decision.padding_bps, Ordering::Relaxed);
    r.probe_bps.store(decision.probe_bps, Ordering::Relaxed);
    if let Some(note) = &decision.note {
        tracing::info!(receiver = %r.id, "{note}");
    }
    if let Some(bps) = decision.set_estimate {
        r.link.set_estimate(bps);
    }
    if let Some(t) = decision.switch_to {
        tracing::info!(receiver = %r.id, "rung {:?} (estimate {} kbps, delivered {} kbps, loss {:.1} %)", t, sample.estimate_bps / 1000, sample.delivered_bps / 1000, sample.loss * 100.0);
        set_target(rungs, receivers, r, t, false);
    }
}

/// Point a receiver at `t`: request a keyframe there and open its valve;
/// the switch itself happens at that keyframe.
fn set_target(rungs: &[RungEncoder], receivers: &Receivers, r: &Arc<Receiver>, t: Target, announce_now: bool) {
    let (pointed, auto) = {
        let mut st = r.st.lock();
        (st.switch.point(t), st.controller.is_some())
    };
    match pointed {
        Pointed::AlreadyThere if announce_now => send_quality(rungs, r, t, auto),
        Pointed::AlreadyThere => {}
        Pointed::Moving(i) => {
            rungs[enc(r.codec_index(), i, steps(rungs))].keyframes.lock().request();
            update_valves(rungs, receivers);
        }
        Pointed::Paused => {
            update_valves(rungs, receivers);
            send_quality(rungs, r, t, auto);
        }
    }
}

fn send_quality(rungs: &[RungEncoder], r: &Receiver, t: Target, auto: bool) {
    let info = rung_info(rungs, t, auto, r.link.estimate_bps.load(Ordering::Relaxed), r.codec());
    if r.events.try_send(ParticipantEvent::Media(MediaEvent::Rung(info))).is_err() {
        tracing::debug!(receiver = %r.id, "quality event dropped (queue full)");
    }
}

/// Hand one encoded frame of ladder step `i` (of the receiver's codec) to
/// receiver `r` if it is on that rung, or moving to it and this is a keyframe.
fn deliver(rungs: &[RungEncoder], r: &Receiver, i: usize, key: bool, buffer: &gst::Buffer) {
    let mut st = r.st.lock();
    let FrameFor::Deliver { switched } = st.switch.frame(i, key) else { return };
    match &r.out {
        // Pushing only queues the buffer; flushing (leaving) receivers miss it.
        super::Outlet::AppSrc(appsrc) => {
            if let Err(e) = appsrc.push_buffer(super::unstamped(buffer)) {
                tracing::debug!(receiver = %r.id, "frame not queued: {e:?}");
            }
        }
        super::Outlet::Direct(send) => send(buffer, gst::SystemClock::obtain().time()),
    }
    let auto = st.controller.is_some();
    drop(st);
    if r.frames_sent.fetch_add(1, Ordering::Relaxed) == 0 {
        r.counters.first_frame(r.added.elapsed().as_millis() as u64);
    } else if switched {
        r.counters.rung_switches.fetch_add(1, Ordering::Relaxed);
    }
    if switched {
        send_quality(rungs, r, Target::Rung(i), auto);
    }
}

/// Open the valves of rungs in use, close the others.
fn update_valves(rungs: &[RungEncoder], receivers: &Receivers) {
    let list = receivers.read().clone();
    let n = steps(rungs);
    let mut used = vec![false; rungs.len()];
    for r in list.iter() {
        let c = r.codec_index();
        r.st.lock().switch.mark_used(&mut used[enc(c, 0, n)..enc(c + 1, 0, n)]);
    }
    for (rung, u) in rungs.iter().zip(used) {
        if rung.running.swap(u, Ordering::SeqCst) != u {
            rung.valve.set_property("drop", !u);
            if u {
                // A restarted encoder's first frames must be decodable.
                rung.keyframes.lock().request();
            }
            tracing::debug!("rung {} ({}) {}", rung.spec.name, rung.codec.name(), if u { "started" } else { "stopped" });
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}
