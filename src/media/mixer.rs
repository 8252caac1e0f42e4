//! The room mixer: one pipeline per room.
//!
//! ```text
//! videotestsrc(colour, live) ┐ (none for a black background)
//! appsrc(participant 1) ─────┤ compositor ─ capsfilter(canvas) ─ tee ─► encoder ladder (see delivery.rs) ─► receivers
//! appsrc(participant N) ─────┘
//! appsrc(whole audio mix) ─ opusenc ─ appsink ─► every viewer (encoded once)
//! ```
//!
//! Inputs arrive already scaled to their tile (the participant pipeline
//! scales with letterboxing), so composition is a blend without scaling.
//! The canvas caps never change, so joins and leaves never renegotiate the
//! encoder. Audio is mixed by [`AudioMixer`](super::audio::AudioMixer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use anyhow::{Context, Result};
use gst::prelude::*;

use super::audio::{AudioMixer, AudioPort, MixListener};
use super::delivery::{Delivery, Receiver};
use crate::ladder::Choice;
use crate::room::EventSender;
use crate::layouts::Fit;
use crate::room::Placement;
use super::{raw, shutdown_pipeline, MediaConfig};
use crate::layout::Rect;

/// The participant pipeline's elements that shape its tile.
pub struct TileElements {
    /// Size, crop and label changes wait here for the next frame.
    pending: Arc<Mutex<TileChange>>,
}

/// A change of a tile's size or crop, applied in the streaming thread,
/// and what the crop is computed from.
#[derive(Default)]
struct TileChange {
    caps: Option<gst::Caps>,
    crop: Option<gst::Fraction>,
    /// The aspect ratio cropped to (0/1 or none: no crop).
    aspect: Option<gst::Fraction>,
    /// The size of the frames coming in (from their caps).
    input: Option<(u32, u32)>,
    /// The cut the videocrop has now (left, right, top, bottom).
    cut: (u32, u32, u32, u32),
    /// The label's next markup and font description.
    label: Option<(String, String)>,
}

impl TileChange {
    /// The cut of the input size to the aspect ratio (none until both are known).
    fn wanted_cut(&self, input: Option<(u32, u32)>) -> (u32, u32, u32, u32) {
        match (input, self.aspect) {
            (Some((w, h)), Some(a)) => crop_to_aspect(w, h, a.numer(), a.denom()),
            _ => (0, 0, 0, 0),
        }
    }

    /// Give the videocrop `cut` unless it has it already.
    fn set_cut(&mut self, el: &gst::Element, cut: (u32, u32, u32, u32)) {
        if self.cut == cut {
            return;
        }
        let (l, r, t, b) = cut;
        for (name, v) in [("left", l), ("right", r), ("top", t), ("bottom", b)] {
            el.set_property(name, v as i32);
        }
        self.cut = cut;
    }
}

/// Pixels to cut (left, right, top, bottom) from a `width`x`height`
/// picture so that it has the aspect ratio `num`/`den`, centred; nothing
/// for a ratio of 0 or a picture too small to cut.
pub fn crop_to_aspect(width: u32, height: u32, num: i32, den: i32) -> (u32, u32, u32, u32) {
    if num <= 0 || den <= 0 || width < 2 || height < 2 {
        return (0, 0, 0, 0);
    }
    let (w, h, a) = (width as f64, height as f64, num as f64 / den as f64);
    if w / h > a {
        let keep = ((h * a).round() as u32).clamp(2, width);
        let cut = width - keep;
        (cut / 2, cut - cut / 2, 0, 0)
    } else {
        let keep = ((w / a).round() as u32).clamp(2, height);
        let cut = height - keep;
        (0, 0, cut / 2, cut - cut / 2)
    }
}

impl TileElements {
    /// The elements of a participant's tile chain: `caps` the capsfilter of
    /// the tile size, `crop` the videocrop that cuts the picture to the
    /// slot's aspect ratio (`fit = "crop"`), `label` the name card. The
    /// chain starts at `entry` (a sink pad upstream of the crop and the
    /// scaler, in the same streaming thread). Size and crop changes are
    /// applied from a probe on `entry`, just before a frame goes through:
    /// changed from another thread while a frame is between the scaler and
    /// the capsfilter, the capsfilter refuses that frame (`not-negotiated`)
    /// and the participant's video stops. The label's text and font change
    /// there too. Regression: set from the room's thread while the
    /// streaming thread drew the label, textoverlay freed the Pango layout's
    /// lines under the drawing (`pango_layout_set_font_description` against
    /// `pango_cairo_show_layout`) and the server died of SIGSEGV when a
    /// leave changed the layout (caught by the soak bench, with a core).
    ///
    /// The crop is recomputed from each new input size before its caps
    /// event passes `entry`. Regression: with `aspectratiocrop`, a sender
    /// that changed resolution mid-call (a browser adapting to CPU or
    /// bandwidth, a camera switched) was refused (`not-negotiated`: the
    /// caps query still used the cut of the old size) and removed.
    /// The tile chain of a member's pipeline described with [`TILE_CHAIN`],
    /// at a first size of 320x180 until the layout places it.
    pub fn in_pipeline(pipeline: &gst::Pipeline) -> Result<TileElements> {
        let by = |n: &str| pipeline.by_name(n).with_context(|| format!("{n} missing"));
        let caps = by("tilecaps")?;
        caps.set_property("caps", tile_caps(320, 180));
        let entry = by("vconv")?.static_pad("sink").context("vconv has no sink pad")?;
        Ok(TileElements::new(caps, by("crop")?, by("label")?, &entry))
    }

    pub fn new(caps: gst::Element, crop: gst::Element, label: gst::Element, entry: &gst::Pad) -> TileElements {
        let pending = Arc::new(Mutex::new(TileChange::default()));
        let (p, c, r, l) = (Arc::downgrade(&pending), caps.downgrade(), crop.downgrade(), label.downgrade());
        let size_of = |caps: &gst::CapsRef| caps.structure(0).and_then(|s| Some((s.get::<i32>("width").ok()? as u32, s.get::<i32>("height").ok()? as u32)));
        let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::QUERY_DOWNSTREAM;
        entry.add_probe(types, move |_, info| {
            let Some(p) = p.upgrade() else { return gst::PadProbeReturn::Remove };
            match &mut info.data {
                // A new input size is asked about (caps query, accept-caps)
                // before it comes (caps event): the crop of the old size
                // would refuse it. Open it to any size for the question,
                // and cut for the size when it is known.
                Some(gst::PadProbeData::Query(q)) => {
                    let (Some(el), mut p) = (r.upgrade(), p.lock()) else { return gst::PadProbeReturn::Ok };
                    let cut = match q.view() {
                        gst::QueryView::Caps(_) => (0, 0, 0, 0),
                        gst::QueryView::AcceptCaps(a) => p.wanted_cut(size_of(a.caps()).or(p.input)),
                        _ => return gst::PadProbeReturn::Ok,
                    };
                    p.set_cut(&el, cut);
                    return gst::PadProbeReturn::Ok;
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let (gst::EventView::Caps(c), Some(el)) = (ev.view(), r.upgrade()) {
                        let mut p = p.lock();
                        p.input = size_of(c.caps());
                        let cut = p.wanted_cut(p.input);
                        p.set_cut(&el, cut);
                    }
                    return gst::PadProbeReturn::Ok;
                }
                _ => {}
            }
            let mut p = p.lock();
            if let (Some(caps), Some(el)) = (p.caps.take(), c.upgrade()) {
                el.set_property("caps", caps);
            }
            if let Some(ratio) = p.crop.take() {
                p.aspect = Some(ratio);
            }
            if let (Some((text, font)), Some(el)) = (p.label.take(), l.upgrade()) {
                el.set_property("text", text.as_str());
                el.set_property("font-desc", font.as_str());
            }
            // The cut of this size and aspect (a query may have opened it).
            if let Some(el) = r.upgrade() {
                let cut = p.wanted_cut(p.input);
                p.set_cut(&el, cut);
            }
            gst::PadProbeReturn::Ok
        });
        TileElements { pending }
    }

    fn set_size(&self, width: u32, height: u32) {
        self.pending.lock().caps = Some(tile_caps(width, height));
    }

    fn set_crop(&self, ratio: gst::Fraction) {
        self.pending.lock().crop = Some(ratio);
    }

    /// The label's markup and font description, from the next frame on.
    fn set_label(&self, markup: &str, font_desc: String) {
        self.pending.lock().label = Some((markup.to_string(), font_desc));
    }
}

/// A compositor input fed by an appsrc.
struct Input {
    appsrc: gst_app::AppSrc,
    pad: gst::Pad,
}

/// A participant's input to the compositor, and its border frame.
struct VideoInput {
    video: Input,
    /// A solid frame under the tile that shows as its border.
    frame: Input,
    frame_drawn: Option<(u32, u32, u32)>,
    tile_el: TileElements,
    /// The video area (slot minus border) and what was applied for it.
    inner: Option<Rect>,
    crop: Option<(i32, i32)>,
    /// The label's markup and font size as last set: a tile that shrinks
    /// keeps a short name's text but needs the smaller font.
    label_text: Option<(String, u32)>,
    flags: Arc<InputFlags>,
    /// What the name card on show was rendered for (name, muted, size).
    card: Option<(String, bool, u32, u32)>,
    /// None for a shared screen (video only).
    audio: Option<Arc<AudioPort>>,
}

/// Shared between the mixer and the participant's decoded-video callback.
#[derive(Default)]
pub struct InputFlags {
    /// A decoded frame has arrived.
    pub has_video: AtomicBool,
    /// When decoded frames arrived: gaps that froze the tile.
    pub frames: Mutex<FrameGaps>,
    /// The participant's incoming video jitterbuffers (loss repair stats).
    pub jitterbuffers: Mutex<Option<super::webrtc::Jitterbuffers>>,
    /// Its webrtcbin (the keyframes we asked of it).
    pub peer: Mutex<Option<gst::glib::WeakRef<gst::Element>>>,
    /// Or, on str0m, its peer's counts of the same.
    pub counters: Mutex<Option<Arc<super::rtc::PeerCounters>>>,
    /// The camera is off: decoded frames are dropped, the name card shows.
    pub video_off: AtomicBool,
    /// Bumped on every card request; a render that is no longer current is dropped.
    card_generation: AtomicU64,
}

/// A gap between two decoded frames of an input longer than this froze
/// its tile (as the bot counts freezes).
pub const INPUT_FREEZE: std::time::Duration = std::time::Duration::from_millis(150);
/// Freezes of an input remembered.
const INPUT_FREEZES_KEPT: usize = 64;

/// Decoded frames of one input and the gaps between them over
/// [`INPUT_FREEZE`]: `(ended, how long)`, newest last, bounded.
#[derive(Default)]
pub struct FrameGaps {
    pub frames: u64,
    last: Option<std::time::Instant>,
    pub freezes: std::collections::VecDeque<(std::time::Instant, std::time::Duration)>,
}

impl FrameGaps {
    pub fn arrived(&mut self, now: std::time::Instant) {
        self.frames += 1;
        if let Some(gap) = self.last.map(|l| now.saturating_duration_since(l)).filter(|g| *g > INPUT_FREEZE) {
            self.freezes.push_back((now, gap));
            while self.freezes.len() > INPUT_FREEZES_KEPT {
                self.freezes.pop_front();
            }
        }
        self.last = Some(now);
    }
}

/// What `add_participant` hands back to the participant pipeline.
pub struct InputHandles {
    pub room_in: gst_app::AppSrc,
    pub flags: Arc<InputFlags>,
    pub audio: Arc<AudioPort>,
    pub receiver: Arc<Receiver>,
}

pub struct RoomMixer {
    room: String,
    cfg: Arc<MediaConfig>,
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    inputs: Mutex<HashMap<String, VideoInput>>,
    delivery: Delivery,
    /// Every participant's, viewer's and recording's audio.
    audio: AudioMixer,
    /// When the room's media started (the clock of its stats).
    started: std::time::Instant,
}

impl RoomMixer {
    pub fn new(room: &str, cfg: Arc<MediaConfig>) -> Result<RoomMixer> {
        let (w, h, fps) = (cfg.canvas_width, cfg.canvas_height, cfg.fps);
        // force-live: the compositor must aggregate on its deadline from the
        // first frame. Without it, its first latency query can fail
        // (videotestsrc answers only once its caps are negotiated), the
        // aggregator falls back to waiting for data on every pad, and an
        // input that never gets any (a border frame, a receive-only
        // participant) freezes the room before its first frame: the "no
        // mixed video at all" flake of the end-to-end tests.
        // A black background is the compositor's own (it fills the canvas
        // before blending); any other colour is a live solid-colour source
        // under the tiles, whose frame the source copies and the compositor
        // copies again at every output frame (at 720p, 0.7 % of a core
        // for the source alone, measured in a 25-person room).
        let background = if cfg.background & 0xff_ffff == 0 {
            String::new()
        } else {
            format!(
                "videotestsrc is-live=true pattern=solid-color foreground-color={bg} ! capsfilter name=bgcaps caps=video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,colorimetry={cm} ! ",
                cm = super::CANVAS_COLORIMETRY,
                bg = 0xff00_0000u32 | cfg.background,
            )
        };
        let desc = format!(
            "{background}compositor name=comp background=black force-live=true ignore-inactive-pads=true latency={lat} \
             ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,colorimetry={cm} ! tee name=vtee allow-not-linked=true",
            lat = cfg.mixer_latency_ms as u64 * 1_000_000,
            cm = super::CANVAS_COLORIMETRY,
        );
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("room mixer pipeline does not parse: {desc}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("room mixer is not a pipeline"))?;
        pipeline.set_property("name", format!("room-{room}"));
        let compositor = pipeline.by_name("comp").context("compositor missing")?;
        // The background never changes, so its live source's one frame of
        // capture latency (33 ms at 30 fps) need not be waited for: report
        // zero. Otherwise the compositor adds it to every input's delay
        // (measured: server-added latency p50 77 → 46 ms without it).
        if let Some(pad) = pipeline.by_name("bgcaps").and_then(|c| c.static_pad("src")) {
            pad.add_probe(gst::PadProbeType::QUERY_UPSTREAM | gst::PadProbeType::PULL, |_, info| {
                if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut() {
                    if let gst::QueryViewMut::Latency(l) = q.view_mut() {
                        let (live, _, max) = l.result();
                        l.set(live, gst::ClockTime::ZERO, max);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        let tee = pipeline.by_name("vtee").context("tee missing")?;
        let delivery = Delivery::new(&pipeline, &tee, &cfg)?;

        if let Some(bus) = pipeline.bus() {
            let room_name = room.to_string();
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::error!(room = %room_name, "mixer error from {:?}: {} ({:?})", e.src().map(|s| s.path_string()), e.error(), e.debug());
                }
                gst::BusSyncReply::Drop
            });
        }
        let audio = AudioMixer::new(room, &cfg.mix_settings())?;
        pipeline.set_state(gst::State::Playing).context("room mixer refused to play")?;
        tracing::info!(room, "mixer started: {w}x{h}@{fps}, rungs {:?}", delivery.ladder().iter().map(|r| r.name.as_str()).collect::<Vec<_>>());
        Ok(RoomMixer {
            room: room.to_string(),
            cfg,
            pipeline,
            compositor,
            inputs: Mutex::new(HashMap::new()),
            delivery,
            audio,
            started: std::time::Instant::now(),
        })
    }

    pub fn canvas(&self) -> (u32, u32) {
        (self.cfg.canvas_width, self.cfg.canvas_height)
    }

    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// Receiver `id` needs a keyframe of its rung (throttled per rung).
    pub fn request_keyframe(&self, id: &str) {
        self.delivery.request_keyframe(id);
    }

    /// Each participant's incoming video as decoded here: frames, the
    /// gaps that froze its tile (`[ended at_ms, ms]` on the room's clock,
    /// newest last), what the jitterbuffer did about loss (packets asked
    /// for again, recovered, given up) and the keyframes asked of the
    /// sender (PLI and FIR).
    pub fn input_stats(&self) -> serde_json::Value {
        let at = |t: std::time::Instant| t.saturating_duration_since(self.started).as_millis() as u64;
        // Our lock is let go before the jitterbuffers are asked.
        let inputs: Vec<(String, Arc<InputFlags>)> = self.inputs.lock().iter().map(|(id, i)| (id.clone(), i.flags.clone())).collect();
        let mut list: Vec<serde_json::Value> = inputs
            .iter()
            .map(|(id, f)| {
                let (frames, freezes): (u64, Vec<[u64; 2]>) = {
                    let g = f.frames.lock();
                    (g.frames, g.freezes.iter().map(|(t, d)| [at(*t), d.as_millis() as u64]).collect())
                };
                let counters = f.counters.lock().clone();
                // (asked, recovered, lost, keyframes asked); str0m does not
                // say what it gave up on.
                let (asked, recovered, lost, keyframes): (u64, u64, Option<u64>, u64) = match counters {
                    Some(c) => {
                        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                        (n(&c.nacked_by_us), n(&c.rtx_received), None, n(&c.plis_sent))
                    }
                    None => {
                        let jbs = f.jitterbuffers.lock().clone();
                        let r = jbs.as_ref().map(super::webrtc::repair_of).unwrap_or_default();
                        let peer = f.peer.lock().as_ref().and_then(|w| w.upgrade());
                        let keyframes = peer.as_ref().map(super::webrtc::keyframes_asked).unwrap_or(0);
                        (r.requested, r.recovered, Some(r.lost), keyframes)
                    }
                };
                serde_json::json!({
                    "id": id,
                    "frames": frames,
                    "freezes": freezes,
                    "nack_requests": asked,
                    "recovered": recovered,
                    "lost": lost,
                    "keyframe_requests": keyframes,
                })
            })
            .collect();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        serde_json::json!({ "at_ms": at(std::time::Instant::now()), "list": list })
    }

    /// The audio mix: Opus encoders running and talkers mixed now.
    pub fn audio_stats(&self) -> serde_json::Value {
        let c = self.audio.counters();
        serde_json::json!({
            "opus_encoders": c.encoders.load(Ordering::Relaxed),
            "talkers": c.talkers.load(Ordering::Relaxed),
            "opus_decoding": c.decoding.load(Ordering::Relaxed),
        })
    }

    pub fn keyframes_forced(&self) -> u64 {
        self.delivery.keyframes_forced()
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// A receive-only viewer: the composed video from the ladder and the
    /// whole audio mix (encoded once for all viewers), no tile, no input.
    pub fn add_viewer(
        &self,
        id: &str,
        vp8_out: gst_app::AppSrc,
        opus_out: gst_app::AppSrc,
        ready: Arc<AtomicBool>,
        events: EventSender,
        choice: Choice,
    ) -> Arc<Receiver> {
        self.audio.add_listener(MixListener { id: id.to_string(), output: opus_out, ready: ready.clone(), recording: false });
        self.delivery.add(id, vp8_out.into(), ready, events, choice)
    }

    /// A recording: received like a viewer (the top rung's frames and the
    /// whole mix), not counted as one.
    pub fn add_recorder(&self, id: &str, vp8_out: gst_app::AppSrc, opus_out: gst_app::AppSrc, ready: Arc<AtomicBool>, events: EventSender, choice: Choice) -> Arc<Receiver> {
        self.audio.add_listener(MixListener { id: id.to_string(), output: opus_out, ready: ready.clone(), recording: true });
        self.delivery.add(id, vp8_out.into(), ready, events, choice)
    }

    pub fn viewer_count(&self) -> usize {
        self.audio.listeners().iter().filter(|v| !v.recording).count()
    }

    pub fn viewer_ids(&self) -> Vec<String> {
        self.audio.listeners().iter().filter(|v| !v.recording).map(|v| v.id.clone()).collect()
    }

    /// A new live appsrc linked to a new compositor pad (hidden).
    fn new_input(&self, name: &str) -> Result<Input> {
        let appsrc = gst_app::AppSrc::builder()
            .name(name)
            .is_live(true)
            .do_timestamp(true)
            .format(gst::Format::Time)
            .max_bytes(4 * self.cfg.canvas_width as u64 * self.cfg.canvas_height as u64)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        // A live source must report a usable latency range: appsrc's default
        // maximum (0) is below the background source's minimum (one frame),
        // which leaves the compositor unable to configure latency, so it
        // stops timing out and waits for every input, a stalled one too.
        appsrc.set_property("min-latency", 0i64);
        appsrc.set_property("max-latency", 1_000_000_000i64);
        self.pipeline.add(&appsrc).context("adding compositor input")?;
        let pad = self.compositor.request_pad_simple("sink_%u").context("compositor gave no sink pad")?;
        pad.set_property("zorder", 1u32);
        // Invisible until placed by set_layout.
        pad.set_property("alpha", 0.0f64);
        let src = appsrc.static_pad("src").context("appsrc has no src pad")?;
        src.link(&pad).context("linking input to compositor")?;
        appsrc.sync_state_with_parent().context("starting compositor input")?;
        Ok(Input { appsrc, pad })
    }

    /// Stop the input's source first, then unlink it: unlinked first, its
    /// streaming task would push into nothing (`not-linked`) and post an
    /// error on the room's bus at every leave.
    fn drop_input(&self, input: &Input) {
        let _ = input.appsrc.set_state(gst::State::Null);
        if let Some(src) = input.appsrc.static_pad("src") {
            let _ = src.unlink(&input.pad);
        }
        self.compositor.release_request_pad(&input.pad);
        let _ = self.pipeline.remove(&input.appsrc);
    }

    /// Connect a participant: its decoded, tile-sized video goes into a new
    /// compositor input; `vp8_out` receives the shared encoded grid once
    /// `ready` is set; its audio joins the mix-minus and `audio_out` gets
    /// its mix. Returns the compositor appsrc, the audio port and the
    /// receiver.
    pub fn add_participant(
        &self,
        id: &str,
        tile_el: TileElements,
        vp8_out: super::Outlet,
        audio_out: super::Outlet,
        ready: Arc<AtomicBool>,
        events: EventSender,
        choice: Choice,
    ) -> Result<InputHandles> {
        let (room_in, flags) = self.add_input(id, tile_el)?;
        let audio = self.audio.add(id, audio_out, ready.clone());
        if let Some(input) = self.inputs.lock().get_mut(id) {
            input.audio = Some(audio.clone());
        }
        let receiver = self.delivery.add(id, vp8_out, ready, events, choice);
        Ok(InputHandles { room_in, flags, audio, receiver })
    }

    /// Connect a shared screen: its decoded, tile-sized video goes into a
    /// new compositor input (hidden until placed). No audio, no receiver.
    /// Returns the compositor appsrc and the input's flags.
    pub fn add_share(&self, id: &str, tile_el: TileElements) -> Result<(gst_app::AppSrc, Arc<InputFlags>)> {
        self.add_input(id, tile_el)
    }

    /// A compositor input and its border frame for member `id`, hidden
    /// until placed, without audio.
    fn add_input(&self, id: &str, tile_el: TileElements) -> Result<(gst_app::AppSrc, Arc<InputFlags>)> {
        let video = self.new_input(&format!("in-{id}"))?;
        let frame = match self.new_input(&format!("frame-{id}")) {
            Ok(f) => f,
            Err(e) => {
                self.drop_input(&video);
                return Err(e);
            }
        };
        let room_in = video.appsrc.clone();
        let flags = Arc::new(InputFlags::default());
        self.inputs.lock().insert(
            id.to_string(),
            VideoInput { video, frame, frame_drawn: None, tile_el, inner: None, crop: None, label_text: None, flags: flags.clone(), card: None, audio: None },
        );
        Ok((room_in, flags))
    }

    /// Report audio levels (id, dBFS) about every 100 ms.
    pub fn on_levels(&self, listener: super::audio::Levels) {
        self.audio.set_level_listener(listener);
    }

    /// Disconnect a participant. Safe to call twice.
    pub fn remove_participant(&self, id: &str) {
        self.audio.remove(id);
        self.delivery.remove(id);
        let input = self.inputs.lock().remove(id);
        if let Some(input) = input {
            self.drop_input(&input.video);
            self.drop_input(&input.frame);
        }
    }

    /// Place every participant's tile and apply its look (z-order, fit,
    /// border, label, mute state). Participants without a placement are
    /// hidden. Never blocks: property changes only; name cards and border
    /// frames are rendered on another thread or are cheap solid fills.
    pub fn set_layout(&self, tiles: &[Placement]) {
        let share = tiles.iter().find(|t| t.share_of.is_some()).map(|t| t.rect);
        let f = &self.cfg.share_focus;
        self.delivery.set_focus(share, self.canvas(), (f.width, f.height), f.fps);
        let mut inputs = self.inputs.lock();
        for (id, input) in inputs.iter_mut() {
            if !tiles.iter().any(|t| &t.id == id) {
                input.video.pad.set_property("alpha", 0.0f64);
                input.frame.pad.set_property("alpha", 0.0f64);
            }
        }
        for t in tiles {
            let Some(input) = inputs.get_mut(&t.id) else { continue };
            let rect = t.rect;
            let (inner, b) = inner_rect(rect, t.border);
            let z = zorder(t.z);
            place(&input.video.pad, inner, z, 1.0);
            if b > 0 {
                place(&input.frame.pad, rect, z - 1, 1.0);
                let want = (t.border_color, rect.width, rect.height);
                if input.frame_drawn != Some(want) {
                    match raw::solid_i420(rect.width, rect.height, t.border_color) {
                        Ok(s) => {
                            push_still(&input.frame.appsrc, &s);
                            input.frame_drawn = Some(want);
                        }
                        Err(e) => tracing::warn!(room = %self.room, "border frame: {e:#}"),
                    }
                }
            } else {
                input.frame.pad.set_property("alpha", 0.0f64);
            }
            if let Some(audio) = &input.audio {
                audio.muted.store(t.audio_muted, Ordering::SeqCst);
            }
            if input.inner.map(|r| (r.width, r.height)) != Some((inner.width, inner.height)) {
                input.tile_el.set_size(inner.width, inner.height);
            }
            let crop = match t.fit {
                Fit::Crop => (inner.width as i32, inner.height as i32),
                Fit::Letterbox => (0, 1),
            };
            if input.crop != Some(crop) {
                input.tile_el.set_crop(gst::Fraction::new(crop.0, crop.1));
                input.crop = Some(crop);
            }
            let px = label_font_px(inner.height);
            let label = label_markup(&t.name, t.label, t.audio_muted, inner.width, px);
            if input.label_text.as_ref().map(|(l, p)| (l.as_str(), *p)) != Some((label.as_str(), px)) {
                input.tile_el.set_label(&label, format!("{} {px}px", t.font));
                input.label_text = Some((label, px));
            }
            input.inner = Some(inner);
            let was_off = input.flags.video_off.swap(t.video_muted, Ordering::SeqCst);
            let showing_card = t.video_muted || !input.flags.has_video.load(Ordering::SeqCst);
            let card = (t.name.clone(), t.audio_muted, inner.width, inner.height);
            if showing_card && (input.card.as_ref() != Some(&card) || was_off != t.video_muted) {
                input.card = Some(card);
                self.show_card(input, &t.name, t.audio_muted);
            } else if !showing_card {
                input.card = None;
            }
        }
    }

    /// Render the name card for `input` at its tile size on a helper
    /// thread and push it; a newer request makes an older render moot.
    fn show_card(&self, input: &VideoInput, name: &str, muted: bool) {
        let Some(rect) = input.inner else { return };
        let generation = input.flags.card_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let flags = input.flags.clone();
        let appsrc = input.video.appsrc.clone();
        let name = name.to_string();
        let room = self.room.clone();
        let spawned = std::thread::Builder::new().name("name-card".into()).spawn(move || {
            let sample = raw::name_card_i420(&name, muted, rect.width, rect.height)
                .or_else(|e| {
                    tracing::warn!(room = %room, "name card for {name:?} not rendered ({e:#}); plain card instead");
                    raw::placeholder_i420(rect.width, rect.height)
                });
            let current = flags.card_generation.load(Ordering::SeqCst) == generation;
            let wanted = flags.video_off.load(Ordering::SeqCst) || !flags.has_video.load(Ordering::SeqCst);
            tracing::debug!(room = %room, "name card for {name:?} {}x{}: current={current} wanted={wanted}", rect.width, rect.height);
            match sample {
                Ok(s) if current && wanted => push_still(&appsrc, &s),
                Ok(_) => {}
                Err(e) => tracing::warn!(room = %room, "placeholder: {e:#}"),
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(room = %self.room, "cannot start the name card thread: {e}");
        }
    }
}

/// Whether raw video caps `a` and `b` describe the same frame memory layout
/// (format and size); a frame for one can then be pushed under the other
/// without a caps change in the running compositor.
fn same_frame_layout(a: Option<&gst::Caps>, b: &gst::CapsRef) -> bool {
    let (Some(a), Some(sb)) = (a.and_then(|c| c.structure(0).map(|s| s.to_owned())), b.structure(0)) else { return false };
    ["format", "width", "height"].into_iter().all(|f| a.value(f).ok().map(|v| v.serialize().ok()) == sb.value(f).ok().map(|v| v.serialize().ok()))
}

/// The video area of a slot with a border of `border` pixels (drawn inside
/// the slot), and the even border actually used.
pub fn inner_rect(rect: Rect, border: u32) -> (Rect, u32) {
    let b = ((border + 1) & !1).min((rect.width.min(rect.height).saturating_sub(2) / 2) & !1);
    (Rect { x: rect.x + b, y: rect.y + b, width: rect.width - 2 * b, height: rect.height - 2 * b }, b)
}

/// Compositor z-order of a slot's video (its border frame is one below);
/// the background is at 0.
pub fn zorder(z: i32) -> u32 {
    2 * (z.clamp(-100, 100) + 100) as u32 + 11
}

/// Position a compositor pad.
fn place(pad: &gst::Pad, r: Rect, zorder: u32, alpha: f64) {
    pad.set_property("xpos", r.x as i32);
    pad.set_property("ypos", r.y as i32);
    pad.set_property("width", r.width as i32);
    pad.set_property("height", r.height as i32);
    pad.set_property("zorder", zorder);
    pad.set_property("alpha", alpha);
}

/// The label overlay of a tile (bottom left, on a shaded band), as the
/// participant pipeline and the layout preview both build it.
/// The decoded video's way into its tile, in a member's pipeline
/// (gst-launch syntax): crop or letterbox to the tile, label, hand over at
/// `vsink`. [`TileElements::in_pipeline`] finds its elements.
pub fn tile_chain() -> String {
    format!(
        "videoconvert name=vconv ! videocrop name=crop ! videoscale add-borders=true ! capsfilter name=tilecaps \
         ! {LABEL_OVERLAY} name=label ! appsink name=vsink sync=false async=false max-buffers=2 drop=true"
    )
}

pub const LABEL_OVERLAY: &str = "textoverlay valignment=bottom halignment=left wrap-mode=wordchar shaded-background=true auto-resize=false xpad=8 ypad=6";

/// Font size of a tile's label: a twelfth of the tile's height.
pub fn label_font_px(tile_height: u32) -> u32 {
    (tile_height / 12).clamp(10, 28)
}

/// Pango markup for a tile's label: the name (cut with an ellipsis to
/// the tile's width, leaving room for the mark), and a muted mark.
pub fn label_markup(name: &str, names: bool, muted: bool, tile_width: u32, font_px: u32) -> String {
    // Left to right whatever the name's script (a left-to-right mark first:
    // Pango takes the direction from the first strong character, isolate
    // or not), so the mark follows the name.
    let mut s = String::from("\u{200E}");
    // The pads (2 × 8 px) and, when muted, "  ● muted" (under 6 ems).
    let mark = if muted { 6 * font_px } else { 0 };
    let room = tile_width.saturating_sub(16 + mark);
    if names && room > 2 * font_px {
        s.push_str(&raw::shown_name(name, font_px, room));
    }
    let named = s.len() > '\u{200E}'.len_utf8();
    if muted {
        if named {
            s.push_str("  ");
        }
        s.push_str(raw::MUTED_MARK);
    } else if !named {
        s.clear();
    }
    s
}

/// Push a still frame (a card, a border) into a compositor input: it keeps
/// the input's caps except the size (other caps changes can stall a
/// compositor pad), is stamped on arrival, and has no duration so the
/// compositor shows it until the next one.
fn push_still(appsrc: &gst_app::AppSrc, s: &gst::Sample) {
    if let (Some(caps), Some(buf)) = (s.caps(), s.buffer_owned()) {
        if !same_frame_layout(appsrc.caps().as_ref(), caps) {
            appsrc.set_caps(Some(&resized_caps(appsrc.caps(), caps)));
        }
        let mut still = super::unstamped(&buf);
        still.make_mut().set_duration(gst::ClockTime::NONE);
        let _ = appsrc.push_buffer(still);
    }
}

/// `current` with the size of `card`, or `card` itself if there is no current caps.
fn resized_caps(current: Option<gst::Caps>, card: &gst::CapsRef) -> gst::Caps {
    let size = card.structure(0).and_then(|s| Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?)));
    match (current, size) {
        (Some(mut c), Some((w, h))) => {
            if let Some(s) = c.make_mut().structure_mut(0) {
                s.set("width", w);
                s.set("height", h);
            }
            c
        }
        _ => card.to_owned(),
    }
}

/// Caps of a participant's decoded video once scaled into its tile.
pub fn tile_caps(width: u32, height: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("colorimetry", super::CANVAS_COLORIMETRY)
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

impl Drop for RoomMixer {
    fn drop(&mut self) {
        shutdown_pipeline(&self.pipeline);
        tracing::info!(room = %self.room, "mixer stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::{crop_to_aspect, TileElements};
    use gst::prelude::*;

    /// Regression: a participant whose browser lowered its resolution
    /// mid-call (CPU or bandwidth adaptation, a camera switched) while its
    /// tile was cropped was refused (`not-negotiated`) and removed.
    #[test]
    fn a_sender_that_changes_resolution_keeps_its_cropped_tile() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "videotestsrc pattern=solid-color foreground-color=0xffffffff ! capsfilter name=srccaps caps=video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
             ! videoconvert name=vconv ! videocrop name=crop ! videoscale add-borders=true ! capsfilter name=tilecaps ! textoverlay name=label \
             ! appsink name=out sync=false max-buffers=4",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let by = |n: &str| pipeline.by_name(n).unwrap();
        let tile = TileElements::new(by("tilecaps"), by("crop"), by("label"), &by("vconv").static_pad("sink").unwrap());
        // A tall tile (a 2-person room): the 16:9 picture is cut at the sides.
        tile.set_size(320, 360);
        tile.set_crop(gst::Fraction::new(320, 360));
        let sink = by("out").downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let frames = |n: usize| -> Vec<(i32, i32, usize)> {
            (0..n)
                .map(|_| {
                    let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
                        let error = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
                        panic!("no frame: {error:?}");
                    };
                    let st = s.caps().unwrap().structure(0).unwrap();
                    let (w, h) = (st.get::<i32>("width").unwrap(), st.get::<i32>("height").unwrap());
                    let map = s.buffer().unwrap().map_readable().unwrap();
                    // Dark luma rows would be letterbox bars.
                    let dark = (0..h as usize).filter(|y| map[y * w as usize + w as usize / 2] < 100).count();
                    (w, h, dark)
                })
                .collect()
        };
        for (w, h, dark) in frames(10).into_iter().skip(2) {
            assert_eq!((w, h, dark), (320, 360, 0), "filled tile before the change");
        }
        // The sender halves its resolution, then goes back.
        for size in [(320, 180), (640, 360), (480, 270)] {
            by("srccaps").set_property("caps", gst::Caps::builder("video/x-raw").field("format", "I420").field("width", size.0).field("height", size.1).field("framerate", gst::Fraction::new(30, 1)).build());
            for (w, h, dark) in frames(10).into_iter().skip(3) {
                assert_eq!((w, h, dark), (320, 360, 0), "after the sender went to {size:?}");
            }
        }
        let bus = pipeline.bus().unwrap();
        let error = bus.pop_filtered(&[gst::MessageType::Error]);
        assert!(error.is_none(), "{error:?}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn label_changes_land_with_the_next_frame_and_never_under_the_drawing() {
        // Regression: the room's thread set the label's font while the
        // streaming thread drew it, and the server died of SIGSEGV in
        // pango_cairo_show_layout when a leave changed the layout.
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "videotestsrc ! capsfilter caps=video/x-raw,format=I420,width=320,height=180,framerate=30/1 \
             ! videoconvert name=vconv ! videocrop name=crop ! videoscale add-borders=true ! capsfilter name=tilecaps ! textoverlay name=label \
             ! appsink name=out sync=false max-buffers=1 drop=true",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let by = |n: &str| pipeline.by_name(n).unwrap();
        let tile = TileElements::new(by("tilecaps"), by("crop"), by("label"), &by("vconv").static_pad("sink").unwrap());
        tile.set_size(320, 180);
        let sink = by("out").downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        // Frames drawn as fast as the machine goes, labels changed under them.
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < std::time::Duration::from_secs(3) {
            tile.set_label(&format!("name {n} with a few words to wrap"), format!("Sans {}px", 10 + n % 20));
            n += 1;
            if n % 50 == 0 {
                assert!(sink.try_pull_sample(gst::ClockTime::from_seconds(5)).is_some(), "frames stopped");
            }
        }
        tile.set_label("the last one", "Sans 14px".into());
        for _ in 0..3 {
            assert!(sink.try_pull_sample(gst::ClockTime::from_seconds(5)).is_some(), "frames stopped");
        }
        assert_eq!(by("label").property::<String>("text"), "the last one", "applied by the frames after it");
        let error = pipeline.bus().unwrap().pop_filtered(&[gst::MessageType::Error]);
        assert!(error.is_none(), "{error:?}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn crops_cut_the_overflow_centred_to_the_tile_shape() {
        // 16:9 into a tall half-screen tile (640x720): the sides go.
        assert_eq!(crop_to_aspect(640, 360, 640, 720), (160, 160, 0, 0));
        // A resolution change keeps the same shape: half the size, half the cut.
        assert_eq!(crop_to_aspect(320, 180, 640, 720), (80, 80, 0, 0));
        // 4:3 into 16:9: top and bottom go.
        assert_eq!(crop_to_aspect(640, 480, 16, 9), (0, 0, 60, 60));
        // An odd cut: one more pixel on the right (or bottom).
        assert_eq!(crop_to_aspect(641, 360, 1, 1), (140, 141, 0, 0));
        // Same shape, letterbox (0/1) or a degenerate picture: no cut.
        assert_eq!(crop_to_aspect(640, 360, 16, 9), (0, 0, 0, 0));
        assert_eq!(crop_to_aspect(640, 360, 0, 1), (0, 0, 0, 0));
        assert_eq!(crop_to_aspect(1, 1, 16, 9), (0, 0, 0, 0));
        // A thin tile never cuts the picture to nothing.
        let (l, r, _, _) = crop_to_aspect(640, 360, 1, 1000);
        assert!(640 - l - r >= 2);
    }
}
