//! Recording a room: the composed grid and the whole audio mix into a WebM
//! file, with no encoder of its own.
//!
//! ```text
//! rung 0's VP8 (shared) ──► appsrc ─ queue ─┐
//!                                           ├─ webmmux ─ filesink  room-20261127T051500Z-r1.webm
//! full mix Opus (shared) ─► appsrc ─ queue ─┘
//! ```
//!
//! The recorder is a receiver of the room's top rung and of the full-mix
//! Opus stream viewers get (both encoded once for everyone): it costs a
//! muxer and a file write. It starts at a keyframe (asked for when it
//! starts), and stopping it (or the room closing) sends EOS so the muxer
//! writes its index and the duration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gst::prelude::*;
use parking_lot::Mutex;

use super::mixer::RoomMixer;
use crate::ladder::Choice;
use crate::room::{RecordingInfo, OutputStatus};

pub struct Recording {
    id: String,
    pipeline: gst::Pipeline,
    sources: [gst_app::AppSrc; 2],
    info: Arc<Mutex<RecordingInfo>>,
    started: Instant,
    mixer: Arc<RoomMixer>,
    stopped: AtomicBool,
}

impl Recording {
    /// Start recording `mixer`'s room into `path` as recording `id`.
    pub fn start(mixer: &Arc<RoomMixer>, id: &str, path: PathBuf, info: Arc<Mutex<RecordingInfo>>) -> Result<Recording> {
        let top = mixer.delivery().ladder().into_iter().next().context("no rung to record")?;
        let pipeline = gst::parse::launch(
            "webmmux name=mux ! filesink name=file sync=false async=false \
             appsrc name=v is-live=true do-timestamp=true format=time max-bytes=4000000 ! queue max-size-time=2000000000 ! mux.video_%u \
             appsrc name=a is-live=true do-timestamp=false format=time max-bytes=200000 ! queue max-size-time=2000000000 ! mux.audio_%u",
        )
        .context("recording pipeline does not parse")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("the recording is not a pipeline"))?;
        pipeline.set_property("name", format!("recording-{id}"));
        pipeline.by_name("file").context("filesink missing")?.set_property("location", path.to_string_lossy().to_string());
        let src = |n: &str| -> Result<gst_app::AppSrc> {
            pipeline.by_name(n).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).with_context(|| format!("appsrc {n} missing"))
        };
        let (v, a) = (src("v")?, src("a")?);
        // webmmux needs the picture size in the caps; the rung's is fixed.
        v.set_caps(Some(
            &gst::Caps::builder("video/x-vp8")
                .field("width", top.width as i32)
                .field("height", top.height as i32)
                .field("framerate", gst::Fraction::new(top.fps as i32, 1))
                .build(),
        ));
        // Active once the first frame (a keyframe) is in.
        if let Some(pad) = v.static_pad("src") {
            let info = info.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let mut i = info.lock();
                if i.status == OutputStatus::Starting {
                    i.status = OutputStatus::Active;
                }
                gst::PadProbeReturn::Remove
            });
        }
        if let Some(bus) = pipeline.bus() {
            let info = info.clone();
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    let mut i = info.lock();
                    i.status = OutputStatus::Failed;
                    i.error = Some(format!("{}", e.error()));
                    tracing::error!("recording {}: {} ({:?})", i.id, e.error(), e.debug());
                    return gst::BusSyncReply::Drop;
                }
                gst::BusSyncReply::Pass
            });
        }
        pipeline.set_state(gst::State::Playing).context("the recording refused to start")?;
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        mixer.add_recorder(id, v.clone(), a.clone(), Arc::new(AtomicBool::new(true)), tx, Choice::Fixed(0));
        mixer.request_keyframe(id);
        tracing::info!("recording {id} started: {}", path.display());
        Ok(Recording { id: id.to_string(), pipeline, sources: [v, a], info, started: Instant::now(), mixer: mixer.clone(), stopped: AtomicBool::new(false) })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stop feeding it, end the streams and wait (5 s at most) for the muxer
    /// to finish the file. Blocking. Once; later calls do nothing.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.mixer.remove_participant(&self.id);
        {
            let mut i = self.info.lock();
            if i.status != OutputStatus::Failed {
                i.status = OutputStatus::Ending;
            }
        }
        for s in &self.sources {
            let _ = s.end_of_stream();
        }
        let eos = self.pipeline.bus().and_then(|b| b.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Eos]));
        let _ = self.pipeline.set_state(gst::State::Null);
        let mut i = self.info.lock();
        i.duration_s = self.started.elapsed().as_secs_f64();
        i.size_bytes = std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0);
        if i.status != OutputStatus::Failed {
            if eos.is_some() {
                i.status = OutputStatus::Complete;
            } else {
                i.status = OutputStatus::Failed;
                i.error = Some("the muxer did not finish within 5 s".into());
            }
        }
        tracing::info!("recording {} {:?}: {:.1} s, {} bytes", self.id, i.status, i.duration_s, i.size_bytes);
    }

    /// Refresh the duration and size of a running recording.
    pub fn refresh(&self) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut i = self.info.lock();
        i.duration_s = self.started.elapsed().as_secs_f64();
        i.size_bytes = std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long [`Recording::stop`] waits at most, for callers budgeting time.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
