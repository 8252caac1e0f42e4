//! Streaming a room live: to an RTMP server (H.264 + AAC in FLV) or as HLS
//! (MPEG-TS segments and a playlist tessera serves), with no video encoder
//! of its own.
//!
//! ```text
//! top rung's H.264 (shared) ─► appsrc ─ queue ─ h264parse ───────────────────────┐
//!                                                                                ├─ flvmux ─ rtmp2sink  (RTMP)
//! full mix Opus (shared) ───► appsrc ─ queue ─ opusdec ─ resample ─ AAC ─ aacparse ┘  hlssink2          (HLS)
//! ```
//!
//! A stream is a receiver of the top rung in H.264 (the encoder H.264
//! participants share; it runs while anyone receives it) and of the full-mix
//! Opus stream viewers and recordings share: its own work is an Opus
//! decode, an AAC encode and the muxing. Each stream has a thread that runs
//! its pipeline; when the RTMP server refuses, cannot be reached or drops
//! the connection, the attempt is `failed`, its pipeline goes, and the next
//! attempt starts after 1, 2, 4 … 30 s. The room never waits for a stream:
//! the appsrcs drop their oldest data when full.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gst::prelude::*;
use parking_lot::Mutex;

use super::mixer::RoomMixer;
use crate::ladder::Choice;
use crate::protocol::Codec;
use crate::room::{OutputStatus, StreamInfo, StreamTarget};

/// The wait before attempt `n + 1` after `n` failed attempts: 1, 2, 4, 8,
/// 16, then 30 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(5)).min(30))
}

pub struct LiveStream {
    id: String,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LiveStream {
    /// Start streaming `mixer`'s room as `info` says (its target); `info`
    /// is kept up to date by the stream's thread.
    pub fn start(mixer: &Arc<RoomMixer>, info: Arc<Mutex<StreamInfo>>) -> Result<LiveStream> {
        let id = info.lock().id.clone();
        let aac = &mixer.config().stream.aac_encoder;
        super::check_fragment(aac).map_err(|e| anyhow::anyhow!("the AAC encoder `{aac}` does not work: {e}"))?;
        if matches!(info.lock().target, StreamTarget::Rtmp(_)) && gst::ElementFactory::find("rtmp2sink").is_none() {
            anyhow::bail!("rtmp2sink (gstreamer1.0-plugins-bad) is not installed");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mixer, stop, id) = (mixer.clone(), stop.clone(), id.clone());
            std::thread::Builder::new().name(format!("stream-{id}")).spawn(move || run(&mixer, &id, &info, &stop)).context("no thread for the stream")?
        };
        Ok(LiveStream { id, stop, thread: Mutex::new(Some(thread)) })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// End the stream: the muxer finishes (HLS writes its last segment and
    /// ends the playlist) and the connection closes. Blocking, 5 s at most
    /// plus a retry wait's last 100 ms. Once; later calls do nothing.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How one attempt ended.
enum Ended {
    Stopped,
    Failed(String),
}

/// The stream's thread: attempts until stopped.
fn run(mixer: &Arc<RoomMixer>, id: &str, info: &Arc<Mutex<StreamInfo>>, stop: &AtomicBool) {
    let mut failures = 0u32;
    loop {
        {
            let mut i = info.lock();
            i.attempts += 1;
            i.status = OutputStatus::Starting;
            i.retry_in_s = None;
        }
        let ended = match attempt(mixer, id, info, stop) {
            Ok(e) => e,
            Err(e) => Ended::Failed(format!("{e:#}")),
        };
        match ended {
            Ended::Stopped => {
                info.lock().status = OutputStatus::Complete;
                tracing::info!("stream {id} stopped");
                return;
            }
            Ended::Failed(e) => {
                failures += 1;
                let wait = retry_delay(failures);
                tracing::warn!("stream {id} failed (attempt {}): {e}; next attempt in {} s", info.lock().attempts, wait.as_secs());
                let until = Instant::now() + wait;
                {
                    let mut i = info.lock();
                    i.status = OutputStatus::Failed;
                    i.error = Some(e);
                }
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        info.lock().status = OutputStatus::Complete;
                        return;
                    }
                    info.lock().retry_in_s = Some(until.saturating_duration_since(Instant::now()).as_secs_f64());
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// The pipeline of one attempt: the H.264 and Opus appsrcs, the AAC
/// encoder and the target's muxer and sink.
fn describe(target: &StreamTarget, aac: &str, segment_s: u32, playlist: u32) -> String {
    let inputs = format!(
        "appsrc name=v is-live=true do-timestamp=true format=time leaky-type=downstream max-bytes=4000000 ! queue max-size-time=2000000000 max-size-bytes=0 max-size-buffers=0 leaky=downstream ! h264parse config-interval=-1 name=vparse \
         appsrc name=a is-live=true do-timestamp=false format=time leaky-type=downstream max-bytes=200000 ! queue max-size-time=2000000000 max-size-bytes=0 max-size-buffers=0 leaky=downstream \
         ! opusdec plc=true ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! {aac} ! aacparse name=aparse"
    );
    match target {
        StreamTarget::Rtmp(_) => format!(
            "{inputs} flvmux name=mux streamable=true latency=200000000 ! rtmp2sink name=sink async-connect=true \
             vparse. ! video/x-h264,stream-format=avc,alignment=au ! mux.video aparse. ! mux.audio"
        ),
        StreamTarget::Hls(_) => format!(
            "{inputs} hlssink2 name=sink target-duration={segment_s} playlist-length={playlist} max-files={} \
             vparse. ! sink.video aparse. ! sink.audio",
            playlist + 2
        ),
    }
}

fn attempt(mixer: &Arc<RoomMixer>, id: &str, info: &Arc<Mutex<StreamInfo>>, stop: &AtomicBool) -> Result<Ended> {
    let (target, dir) = {
        let i = info.lock();
        (i.target.clone(), i.dir.clone())
    };
    let s = &mixer.config().stream;
    let pipeline = gst::parse::launch(&describe(&target, &s.aac_encoder, s.hls_segment_s, s.hls_playlist_length))
        .context("the stream's pipeline does not parse")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("the stream is not a pipeline"))?;
    pipeline.set_property("name", format!("stream-{id}"));
    let sink = pipeline.by_name("sink").context("sink missing")?;
    // Set as properties, never parsed: a URL or folder can hold anything.
    match (&target, &dir) {
        (StreamTarget::Rtmp(url), _) => sink.set_property("location", url),
        (StreamTarget::Hls(_), Some(dir)) => {
            sink.set_property("location", dir.join("segment%05d.ts").to_string_lossy().to_string());
            sink.set_property("playlist-location", dir.join("index.m3u8").to_string_lossy().to_string());
        }
        (StreamTarget::Hls(name), None) => anyhow::bail!("no folder for the HLS stream {name}"),
    }
    let src = |n: &str| -> Result<gst_app::AppSrc> {
        pipeline.by_name(n).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).with_context(|| format!("appsrc {n} missing"))
    };
    let (v, a) = (src("v")?, src("a")?);
    v.set_caps(Some(&gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build()));
    // Active once the sink has taken data: rtmp2sink holds its first
    // buffer until the server accepted the stream, so a second buffer at
    // its pad means the server is there. hlssink2 writes from the first.
    let needed = if matches!(target, StreamTarget::Rtmp(_)) { 2 } else { 1 };
    let seen = Arc::new(AtomicU32::new(0));
    let sink_pad = match &target {
        StreamTarget::Rtmp(_) => sink.static_pad("sink"),
        StreamTarget::Hls(_) => sink.static_pad("video"),
    };
    if let Some(pad) = sink_pad {
        let (info, seen) = (info.clone(), seen.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if seen.fetch_add(1, Ordering::Relaxed) + 1 >= needed {
                let mut i = info.lock();
                if i.status == OutputStatus::Starting {
                    i.status = OutputStatus::Active;
                }
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        });
    }
    // hlssink2 asks upstream for a keyframe at the running time it wants
    // to cut the next segment: the stream's thread asks the rung's encoder
    // then (throttled there).
    let keyframe_due: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    if let Some(pad) = v.static_pad("src") {
        let (due, v_el) = (keyframe_due.clone(), v.clone().upcast::<gst::Element>().downgrade());
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, probe| {
            if let Some(gst::PadProbeData::Event(e)) = &probe.data {
                if let Ok(k) = gst_video::UpstreamForceKeyUnitEvent::parse(e) {
                    // The stream asked for its first keyframe itself; a
                    // request for the start would cut a sliver of a segment.
                    if k.running_time.is_some_and(|t| t < gst::ClockTime::from_mseconds(500)) {
                        return gst::PadProbeReturn::Ok;
                    }
                    let now = v_el.upgrade().and_then(|el| el.current_running_time());
                    let wait = match (k.running_time, now) {
                        (Some(at), Some(now)) if at > now => Duration::from_nanos((at - now).nseconds()),
                        _ => Duration::ZERO,
                    };
                    *due.lock() = Some(Instant::now() + wait);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().context("the stream has no bus")?;
    let started = Instant::now();
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        super::shutdown_pipeline(&pipeline);
        return Ok(Ended::Failed(format!("the stream refused to start: {e}")));
    }
    // Media flows from here: H.264 from the top rung (a keyframe first).
    let ready = Arc::new(AtomicBool::new(false));
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    mixer.add_recorder(id, v.clone(), a.clone(), ready.clone(), tx, Choice::Fixed(0));
    // Asks the rung for a keyframe too.
    mixer.delivery().set_codec(id, Codec::H264);
    ready.store(true, Ordering::SeqCst);
    let ended = loop {
        if stop.load(Ordering::SeqCst) {
            mixer.remove_participant(id);
            info.lock().status = OutputStatus::Ending;
            let _ = v.end_of_stream();
            let _ = a.end_of_stream();
            let _ = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Eos, gst::MessageType::Error]);
            break Ended::Stopped;
        }
        info.lock().duration_s = started.elapsed().as_secs_f64();
        let mut poll = Duration::from_millis(100);
        {
            let mut due = keyframe_due.lock();
            if let Some(at) = *due {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    *due = None;
                    mixer.request_keyframe(id);
                } else {
                    poll = poll.min(left);
                }
            }
        }
        if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_nseconds(poll.as_nanos() as u64), &[gst::MessageType::Error, gst::MessageType::Eos]) {
            mixer.remove_participant(id);
            break Ended::Failed(match msg.view() {
                gst::MessageView::Error(e) => format!("{}", e.error()),
                _ => "the stream ended".to_string(),
            });
        }
    };
    super::shutdown_pipeline(&pipeline);
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_wait_longer_up_to_30_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn each_target_gets_its_muxer() {
        let rtmp = describe(&StreamTarget::Rtmp("rtmp://h/app/key".into()), "voaacenc", 4, 6);
        assert!(rtmp.contains("flvmux") && rtmp.contains("rtmp2sink") && !rtmp.contains("hlssink2"), "{rtmp}");
        assert!(!rtmp.contains("rtmp://"), "the URL (and its key) is set as a property, never parsed: {rtmp}");
        let hls = describe(&StreamTarget::Hls("n".into()), "voaacenc", 4, 6);
        assert!(hls.contains("hlssink2 name=sink target-duration=4 playlist-length=6 max-files=8") && !hls.contains("flvmux"), "{hls}");
    }
}
