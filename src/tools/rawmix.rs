//! The lower bound for `tessera bench --scenario raw`: the same decode →
//! compose → encode work as a room of N, as one plain GStreamer pipeline
//! with no WebRTC (no ICE, DTLS/SRTP, RTP sessions, jitterbuffers,
//! congestion control or per-participant pipelines).
//!
//! N inputs, each the load bots' pre-encoded VP8 clip at its tile size and
//! an Opus tone, fed live at 30 fps and in the packets a room asks senders
//! for (`[audio] ptime_ms`, by default 20 ms: 50 a second):
//! VP8 → vp8dec → compositor (canvas, grid) → the room's rung encoder;
//! Opus → opusdec → audiomixer → the room's Opus encoders: one shared mix
//! and one per talker slot (`[audio] talkers` + 1, whatever the room's size;
//! every input is decoded, as a room decodes everyone to find who talks).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use super::bot_media::{clip, clip_source, opus_clip};

/// What the raw pipeline produced while it ran.
#[derive(Debug, Clone, Copy)]
pub struct RawRun {
    /// Encoded video frames out of the encoder.
    pub frames: u64,
    /// Encoded video bytes out of the encoder.
    pub bytes: u64,
    pub seconds: f64,
}

/// Grid tile size for `n` inputs on a `w`x`h` canvas (even, like the
/// server's `send_size` for the default grid).
pub fn grid_tile(n: usize, w: u32, h: u32) -> (u32, u32, u32) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (n as u32).div_ceil(cols).max(1);
    (cols, (w / cols) & !1, (h / rows) & !1)
}

/// Run the pipeline for `warm + window`; `measure` is called at the start
/// and the end of `window` (the caller reads CPU time there). `audio` is the
/// Opus encoders and their complexity.
pub fn run(n: usize, width: u32, height: u32, fps: u32, encoder: &str, audio: AudioEncoders, warm: Duration, window: Duration, mut measure: impl FnMut()) -> Result<RawRun> {
    crate::media::init()?;
    let (cols, tw, th) = grid_tile(n, width, height);
    // Inputs come in the packets a room asks senders for.
    let ptime_ms = crate::layouts::MixerSettings::default().audio_ptime_ms;
    let mut desc = format!(
        "compositor name=comp background=black force-live=true latency=20000000 ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
         ! {encoder} ! fakesink name=vout sync=false \
         audiomixer name=amix force-live=true latency=20000000 ! audio/x-raw,rate=48000,channels=1 ! tee name=atee "
    );
    for i in 0..n {
        desc += &format!(
            "appsrc name=v{i} is-live=true do-timestamp=true format=time ! queue max-size-buffers=4 ! vp8dec ! videoconvert ! comp.sink_{i} \
             appsrc name=a{i} is-live=true do-timestamp=true format=time ! opusdec ! audioconvert ! audioresample ! amix.sink_{i} "
        );
    }
    for _ in 0..audio.count {
        desc += &format!(
            "atee. ! queue max-size-buffers=4 leaky=downstream ! opusenc bitrate=32000 complexity={} frame-size=20 inband-fec=true dtx=true ! fakesink sync=false ",
            audio.complexity
        );
    }
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("raw pipeline: {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("raw pipeline is not a pipeline"))?;
    let comp = pipeline.by_name("comp").context("compositor")?;
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for i in 0..n {
        let pad = comp.static_pad(&format!("sink_{i}")).context("compositor pad")?;
        pad.set_property("xpos", ((i as u32 % cols) * tw) as i32);
        pad.set_property("ypos", ((i as u32 / cols) * th) as i32);
        let v = clip(crate::protocol::Codec::Vp8, &clip_source(Some(0x00ff00 + i as u32 * 0x101010), ""), tw, th, super::bot_media::CLIP_BITRATE.min(crate::layout::send_bitrate(tw, th, fps)), fps)?;
        let a = opus_clip(300.0 + 40.0 * i as f64, 0.05, ptime_ms)?;
        let vs = appsrc(&pipeline, &format!("v{i}"))?;
        let as_ = appsrc(&pipeline, &format!("a{i}"))?;
        vs.set_caps(Some(&v.0));
        as_.set_caps(Some(&a.0));
        video.push((vs, v));
        audio.push((as_, a));
    }
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    if let Some(pad) = pipeline.by_name("vout").and_then(|s| s.static_pad("sink")) {
        let (f, b) = (frames.clone(), bytes.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            f.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(info.buffer().map(|x| x.size() as u64).unwrap_or(0), Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_state(gst::State::Playing).context("raw pipeline refused to play")?;
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::Builder::new().name("raw-feeder".into()).spawn(move || {
            let start = Instant::now();
            let frame = Duration::from_secs_f64(1.0 / fps.max(1) as f64);
            let (mut vnext, mut anext, mut k, mut j) = (Duration::ZERO, Duration::ZERO, 0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let now = start.elapsed();
                if now >= vnext {
                    for (src, c) in &video {
                        if let Some(b) = c.1.get(k % c.1.len().max(1)) {
                            let _ = src.push_buffer(crate::media::unstamped(b));
                        }
                    }
                    k += 1;
                    vnext += frame;
                }
                if now >= anext {
                    for (src, c) in &audio {
                        if let Some(b) = c.1.get(j % c.1.len().max(1)) {
                            let _ = src.push_buffer(crate::media::unstamped(b));
                        }
                    }
                    j += 1;
                    anext += Duration::from_millis(ptime_ms as u64);
                }
                if let Some(wait) = vnext.min(anext).checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })?
    };
    std::thread::sleep(warm);
    let (f0, b0, t0) = (frames.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed), Instant::now());
    measure();
    std::thread::sleep(window);
    measure();
    let run = RawRun {
        frames: frames.load(Ordering::Relaxed) - f0,
        bytes: bytes.load(Ordering::Relaxed) - b0,
        seconds: t0.elapsed().as_secs_f64(),
    };
    stop.store(true, Ordering::SeqCst);
    let _ = feeder.join();
    let error = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(gst::MessageView::Error(e)) = error.as_ref().map(|m| m.view()) {
        bail!("raw pipeline failed: {} ({:?})", e.error(), e.debug());
    }
    Ok(run)
}

/// The Opus encoders a room runs: one for the shared mix and one per
/// talker slot.
#[derive(Debug, Clone, Copy)]
pub struct AudioEncoders {
    pub count: usize,
    pub complexity: u32,
}

impl AudioEncoders {
    /// What a room runs with the default `[audio]` settings.
    pub fn of_a_room() -> Self {
        let m = crate::layouts::MixerSettings::default();
        AudioEncoders { count: m.audio_talkers as usize + 1, complexity: m.audio_complexity }
    }
}

fn appsrc(p: &gst::Pipeline, name: &str) -> Result<gst_app::AppSrc> {
    p.by_name(name)
        .with_context(|| format!("{name} missing"))?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| anyhow::anyhow!("{name} is not an appsrc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_tiles_match_the_default_grid() {
        assert_eq!(grid_tile(4, 1280, 720), (2, 640, 360));
        assert_eq!(grid_tile(9, 1280, 720), (3, 426, 240));
        assert_eq!(grid_tile(16, 1280, 720), (4, 320, 180));
    }
}
