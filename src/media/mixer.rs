//! The room mixer: one pipeline per room.
//!
//! ```text
//! videotestsrc(black, live) ─┐
//! appsrc(participant 1) ─────┤ compositor ─ capsfilter(canvas) ─ queue ─ ENCODER ─ appsink ─► every participant's VP8 appsrc
//! appsrc(participant N) ─────┘
//! ```
//!
//! Inputs arrive already scaled to their tile (the participant pipeline
//! scales with letterboxing), so composition is a blend without scaling.
//! The canvas caps never change, so joins and leaves never renegotiate the
//! encoder. Audio is mixed by [`AudioMixer`](super::audio::AudioMixer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::{Context, Result};
use gst::prelude::*;

use super::audio::{AudioMixer, AudioPort};
use super::{raw, shutdown_pipeline, MediaConfig};
use crate::layout::Rect;

/// Minimum spacing of forced keyframes on the shared encoder.
const KEYFRAME_MIN_INTERVAL_MS: u64 = 500;

/// A receiver of the shared encoded video.
struct VideoOutput {
    id: String,
    appsrc: gst_app::AppSrc,
    ready: Arc<AtomicBool>,
}

/// A participant's input to the compositor.
struct VideoInput {
    appsrc: gst_app::AppSrc,
    pad: gst::Pad,
    /// The participant pipeline's capsfilter that sets the tile size.
    tile_caps: gst::Element,
    tile: Option<Rect>,
    has_video: Arc<AtomicBool>,
}

/// Throttled keyframe requests: a request inside the 500 ms window is kept
/// pending and served by the first encoded frame after the window.
struct KeyframeThrottle {
    epoch: Instant,
    last_ms: AtomicU64,
    pending: AtomicBool,
    forced: AtomicU64,
}

impl KeyframeThrottle {
    fn request(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Called per encoded frame; returns true when a keyframe must be forced now.
    fn due(&self) -> bool {
        if !self.pending.load(Ordering::SeqCst) {
            return false;
        }
        let now = self.epoch.elapsed().as_millis() as u64 + KEYFRAME_MIN_INTERVAL_MS;
        let last = self.last_ms.load(Ordering::SeqCst);
        if now < last + KEYFRAME_MIN_INTERVAL_MS {
            return false;
        }
        self.pending.store(false, Ordering::SeqCst);
        self.last_ms.store(now, Ordering::SeqCst);
        self.forced.fetch_add(1, Ordering::SeqCst);
        true
    }
}

pub struct RoomMixer {
    room: String,
    cfg: Arc<MediaConfig>,
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    outputs: Arc<RwLock<Arc<Vec<VideoOutput>>>>,
    inputs: Mutex<HashMap<String, VideoInput>>,
    keyframes: Arc<KeyframeThrottle>,
    audio: AudioMixer,
}

impl RoomMixer {
    pub fn new(room: &str, cfg: Arc<MediaConfig>) -> Result<RoomMixer> {
        let (w, h, fps) = (cfg.canvas_width, cfg.canvas_height, cfg.fps);
        let desc = format!(
            "videotestsrc is-live=true pattern=black ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
             ! compositor name=comp background=black ignore-inactive-pads=true latency={lat} \
             ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
             ! queue max-size-buffers=3 max-size-bytes=0 max-size-time=0 leaky=downstream \
             ! {enc} ! appsink name=vout sync=false max-buffers=5 drop=true",
            lat = cfg.mixer_latency_ms as u64 * 1_000_000,
            enc = cfg.video_encoder,
        );
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("room mixer pipeline does not parse: {desc}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("room mixer is not a pipeline"))?;
        pipeline.set_property("name", format!("room-{room}"));
        let compositor = pipeline.by_name("comp").context("compositor missing")?;
        let appsink = pipeline
            .by_name("vout")
            .context("appsink missing")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| anyhow::anyhow!("vout is not an appsink"))?;

        let outputs: Arc<RwLock<Arc<Vec<VideoOutput>>>> = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let keyframes = Arc::new(KeyframeThrottle {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            forced: AtomicU64::new(0),
        });
        {
            let outputs = outputs.clone();
            let keyframes = keyframes.clone();
            appsink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if keyframes.due() {
                            if let Some(pad) = sink.static_pad("sink") {
                                let ev = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
                                pad.push_event(ev);
                            }
                        }
                        let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                        let list = outputs.read().unwrap_or_else(|p| p.into_inner()).clone();
                        for out in list.iter() {
                            if out.ready.load(Ordering::Relaxed) {
                                // A receiver that is flushing or gone just misses frames.
                                let _ = out.appsrc.push_buffer(super::unstamped(&buffer));
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        if let Some(bus) = pipeline.bus() {
            let room_name = room.to_string();
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::error!(room = %room_name, "mixer error from {:?}: {} ({:?})", e.src().map(|s| s.path_string()), e.error(), e.debug());
                }
                gst::BusSyncReply::Drop
            });
        }
        let audio = AudioMixer::new(room).context("cannot start the audio mixer thread")?;
        pipeline.set_state(gst::State::Playing).context("room mixer refused to play")?;
        tracing::info!(room, "mixer started: {w}x{h}@{fps}");
        Ok(RoomMixer {
            room: room.to_string(),
            cfg,
            pipeline,
            compositor,
            outputs,
            inputs: Mutex::new(HashMap::new()),
            keyframes,
            audio,
        })
    }

    pub fn canvas(&self) -> (u32, u32) {
        (self.cfg.canvas_width, self.cfg.canvas_height)
    }

    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// Ask for a keyframe on the shared encoder (throttled).
    pub fn request_keyframe(&self) {
        self.keyframes.request();
    }

    pub fn keyframes_forced(&self) -> u64 {
        self.keyframes.forced.load(Ordering::SeqCst)
    }

    /// Connect a participant: its decoded, tile-sized video goes into a new
    /// compositor input; `vp8_out` receives the shared encoded grid once
    /// `ready` is set; its audio joins the mix-minus.
    /// Returns the compositor appsrc and the audio port.
    pub fn add_participant(
        &self,
        id: &str,
        tile_caps: gst::Element,
        vp8_out: gst_app::AppSrc,
        audio_out: gst_app::AppSrc,
        ready: Arc<AtomicBool>,
    ) -> Result<(gst_app::AppSrc, Arc<AtomicBool>, Arc<AudioPort>)> {
        let appsrc = gst_app::AppSrc::builder()
            .name(format!("in-{id}"))
            .is_live(true)
            .do_timestamp(true)
            .format(gst::Format::Time)
            .max_bytes(4 * self.cfg.canvas_width as u64 * self.cfg.canvas_height as u64)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        self.pipeline.add(&appsrc).context("adding compositor input")?;
        let pad = self.compositor.request_pad_simple("sink_%u").context("compositor gave no sink pad")?;
        pad.set_property("zorder", 1u32);
        // Invisible until placed by set_layout.
        pad.set_property("alpha", 0.0f64);
        let src = appsrc.static_pad("src").context("appsrc has no src pad")?;
        src.link(&pad).context("linking input to compositor")?;
        appsrc.sync_state_with_parent().context("starting compositor input")?;
        let has_video = Arc::new(AtomicBool::new(false));
        self.inputs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id.to_string(),
            VideoInput { appsrc: appsrc.clone(), pad, tile_caps, tile: None, has_video: has_video.clone() },
        );
        {
            let mut w = self.outputs.write().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<VideoOutput> =
                w.iter().map(|o| VideoOutput { id: o.id.clone(), appsrc: o.appsrc.clone(), ready: o.ready.clone() }).collect();
            v.push(VideoOutput { id: id.to_string(), appsrc: vp8_out, ready: ready.clone() });
            *w = Arc::new(v);
        }
        let port = self.audio.add(id, audio_out, ready);
        Ok((appsrc, has_video, port))
    }

    /// Disconnect a participant. Safe to call twice.
    pub fn remove_participant(&self, id: &str) {
        self.audio.remove(id);
        {
            let mut w = self.outputs.write().unwrap_or_else(|p| p.into_inner());
            let v: Vec<VideoOutput> = w
                .iter()
                .filter(|o| o.id != id)
                .map(|o| VideoOutput { id: o.id.clone(), appsrc: o.appsrc.clone(), ready: o.ready.clone() })
                .collect();
            *w = Arc::new(v);
        }
        let input = self.inputs.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(input) = input {
            if let Some(src) = input.appsrc.static_pad("src") {
                let _ = src.unlink(&input.pad);
            }
            self.compositor.release_request_pad(&input.pad);
            let _ = input.appsrc.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&input.appsrc);
        }
    }

    /// Place every participant's tile (pure property changes, never blocks).
    pub fn set_layout(&self, tiles: &[(String, Rect)]) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        for (id, rect) in tiles {
            let Some(input) = inputs.get_mut(id) else { continue };
            input.pad.set_property("xpos", rect.x as i32);
            input.pad.set_property("ypos", rect.y as i32);
            input.pad.set_property("width", rect.width as i32);
            input.pad.set_property("height", rect.height as i32);
            input.pad.set_property("alpha", 1.0f64);
            if input.tile.map(|t| (t.width, t.height)) != Some((rect.width, rect.height)) {
                input.tile_caps.set_property("caps", tile_caps(rect.width, rect.height));
                if !input.has_video.load(Ordering::SeqCst) {
                    match raw::placeholder_i420(rect.width, rect.height) {
                        Ok(s) => {
                            let _ = input.appsrc.push_sample(&s);
                        }
                        Err(e) => tracing::warn!(room = %self.room, "placeholder: {e:#}"),
                    }
                }
            }
            input.tile = Some(*rect);
        }
    }
}

/// Caps of a participant's decoded video once scaled into its tile.
pub fn tile_caps(width: u32, height: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
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
