//! An Opus encoder the audio mixer drives on its own thread: GStreamer's
//! `opusenc` with no pipeline, no queue and no streaming thread of its
//! own. The mixer pushes one 20 ms frame of PCM into the element's sink
//! pad and gets the encoded packet back from its source pad before the
//! push returns, so the mixer knows which tick and which listener every
//! packet belongs to (see [`super::audio`]). And an Opus decoder driven
//! the same way, for the str0m transport's incoming audio
//! ([`OpusDecoder`]).

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, Result};
use gst::prelude::*;
use parking_lot::Mutex;

use super::audio::{audio_caps, FRAME, RATE};

/// Encoded packets waiting to be taken, and the caps they carry.
#[derive(Default)]
struct Output {
    packets: VecDeque<gst::Buffer>,
    caps: Option<gst::Caps>,
}

pub struct OpusEncoder {
    el: Driven,
    out: Arc<Mutex<Output>>,
    /// Frames pushed so far (their timestamps count from zero).
    frames: u64,
}

impl OpusEncoder {
    /// The settings every mix encoder has (they were the `opusenc` of each
    /// participant's pipeline before): 20 ms frames, in-band FEC, DTX.
    pub fn new(bitrate: u32, complexity: u32) -> Result<OpusEncoder> {
        let enc = gst::ElementFactory::make("opusenc")
            .property("bitrate", bitrate as i32)
            .property("complexity", complexity as i32)
            .property("inband-fec", true)
            .property("dtx", true)
            .property("packet-loss-percentage", 5i32)
            .property_from_str("frame-size", "20")
            .build()
            .context("no opusenc (gst-plugins-base)")?;
        let out = Arc::new(Mutex::new(Output::default()));
        let (o1, o2) = (out.clone(), out.clone());
        let collect = gst::Pad::builder(gst::PadDirection::Sink)
            .name("opus")
            .chain_function(move |_, _, buffer| {
                o1.lock().packets.push_back(buffer);
                Ok(gst::FlowSuccess::Ok)
            })
            .event_function(move |_, _, event| {
                if let gst::EventView::Caps(c) = event.view() {
                    o2.lock().caps = Some(c.caps_owned());
                }
                true
            })
            .build();
        let el = Driven::new(enc, collect, "tessera-mix", &audio_caps())?;
        Ok(OpusEncoder { el, out, frames: 0 })
    }

    /// Encode one 20 ms frame; the packet comes back without timestamps
    /// (the caller stamps it for its listener). None if the encoder failed
    /// or held the frame back (it does not, with 20 ms frames in and out).
    pub fn encode(&mut self, pcm: &[i16]) -> Option<gst::Buffer> {
        debug_assert_eq!(pcm.len(), FRAME);
        let mut bytes = Vec::with_capacity(pcm.len() * 2);
        for s in pcm {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let mut buf = gst::Buffer::from_mut_slice(bytes);
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(self.frames * FRAME as u64 * 1_000_000_000 / RATE as u64));
            b.set_duration(gst::ClockTime::from_mseconds(20));
        }
        self.frames += 1;
        if self.el.feed.push(buf).is_err() {
            return None;
        }
        let mut out = self.out.lock();
        // One packet per frame; anything older is stale.
        while out.packets.len() > 1 {
            out.packets.pop_front();
        }
        out.packets.pop_front().map(|b| super::unstamped(&b))
    }

    /// The caps of the packets (known after the first frame).
    pub fn caps(&self) -> Option<gst::Caps> {
        self.out.lock().caps.clone()
    }
}

/// An element driven through two pads of ours, with no pipeline and no
/// thread: what is pushed into `feed` comes out at `collect` (its chain
/// function) before the push returns.
struct Driven {
    el: gst::Element,
    /// Ours, linked to the element's sink pad.
    feed: gst::Pad,
    /// Ours, linked to the element's source pad.
    collect: gst::Pad,
}

impl Driven {
    /// Link `el` between a new feeding pad and `collect`, start it, and
    /// open a stream of `caps`.
    fn new(el: gst::Element, collect: gst::Pad, stream: &str, caps: &gst::Caps) -> Result<Driven> {
        let name = el.factory().map(|f| f.name().to_string()).unwrap_or_default();
        let feed = gst::Pad::builder(gst::PadDirection::Src).name("feed").build();
        let sink = el.static_pad("sink").with_context(|| format!("{name} has no sink pad"))?;
        let src = el.static_pad("src").with_context(|| format!("{name} has no src pad"))?;
        feed.link(&sink).with_context(|| format!("cannot feed {name}"))?;
        src.link(&collect).with_context(|| format!("cannot collect from {name}"))?;
        collect.set_active(true).context("collecting pad")?;
        feed.set_active(true).context("feeding pad")?;
        el.set_state(gst::State::Playing).with_context(|| format!("{name} refused to start"))?;
        feed.push_event(gst::event::StreamStart::new(stream));
        feed.push_event(gst::event::Caps::new(caps));
        feed.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
        Ok(Driven { el, feed, collect })
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        let _ = self.el.set_state(gst::State::Null);
        if let Some(sink) = self.el.static_pad("sink") {
            let _ = self.feed.unlink(&sink);
        }
        let _ = self.collect.set_active(false);
        let _ = self.feed.set_active(false);
    }
}

/// An Opus decoder driven the same way, for a transport that hands us
/// packets itself ([`super::direct`]): GStreamer's `opusdec` with no
/// pipeline and no thread; each packet comes back as 48 kHz mono PCM (the
/// mix's format: libopus mixes a stereo stream down itself) before
/// [`OpusDecoder::decode`] returns. A packet that follows a gap in RTP time
/// (a lost one) has the gap concealed first (`plc`), so the mix-minus ring
/// of the sender does not run dry.
pub struct OpusDecoder {
    el: Driven,
    out: Arc<Mutex<VecDeque<gst::Buffer>>>,
    /// RTP time (48 kHz) of the first packet, and where the next one is due.
    first: Option<u64>,
    next: Option<u64>,
}

/// Longest gap concealed; a longer one (a sender that paused) starts over.
const MAX_CONCEALED: u64 = (RATE as u64) / 5;

impl OpusDecoder {
    pub fn new() -> Result<OpusDecoder> {
        let dec = gst::ElementFactory::make("opusdec").property("plc", true).build().context("no opusdec (gst-plugins-base)")?;
        let out = Arc::new(Mutex::new(VecDeque::new()));
        let o = out.clone();
        let collect = gst::Pad::builder(gst::PadDirection::Sink)
            .name("pcm")
            .chain_function(move |_, _, buffer| {
                o.lock().push_back(buffer);
                Ok(gst::FlowSuccess::Ok)
            })
            // Mono 16-bit at 48 kHz, whatever the sender's channels.
            .query_function(|pad, parent, query| match query.view_mut() {
                gst::QueryViewMut::Caps(q) => {
                    let caps = match q.filter() {
                        Some(f) => f.intersect_with_mode(&audio_caps(), gst::CapsIntersectMode::First),
                        None => audio_caps(),
                    };
                    q.set_result(&caps);
                    true
                }
                gst::QueryViewMut::AcceptCaps(q) => {
                    let ok = q.caps().can_intersect(&audio_caps());
                    q.set_result(ok);
                    true
                }
                _ => gst::Pad::query_default(pad, parent, query),
            })
            .build();
        let caps = gst::Caps::builder("audio/x-opus").field("channel-mapping-family", 0i32).field("channels", 2i32).field("rate", RATE as i32).build();
        let el = Driven::new(dec, collect, "tessera-opus-in", &caps)?;
        Ok(OpusDecoder { el, out, first: None, next: None })
    }

    /// Decode `packet` (its RTP time at 48 kHz) into `pcm`, once per chunk
    /// of samples: the concealed gap before it if one was lost, then its
    /// own. Nothing for a packet the decoder refuses.
    pub fn decode(&mut self, packet: &[u8], rtp_time: u64, mut pcm: impl FnMut(&[i16])) {
        let first = *self.first.get_or_insert(rtp_time);
        let at = |t: u64| gst::ClockTime::from_nseconds(t.saturating_sub(first) * 1_000_000_000 / RATE as u64);
        match self.next {
            Some(next) if rtp_time > next && rtp_time - next <= MAX_CONCEALED => {
                self.el.feed.push_event(gst::event::Gap::builder(at(next)).duration(at(rtp_time) - at(next)).build());
                self.take(&mut pcm);
            }
            // In time, late, repeated or after a long pause: decoded as it comes.
            _ => {}
        }
        let mut buf = gst::Buffer::from_slice(packet.to_vec());
        if let Some(b) = buf.get_mut() {
            b.set_pts(at(rtp_time));
        }
        if self.el.feed.push(buf).is_ok() {
            let samples = self.take(&mut pcm);
            if samples > 0 {
                self.next = Some(rtp_time + samples);
            }
        }
    }

    /// Hand what the decoder put out to `pcm`; the samples handed.
    fn take(&self, pcm: &mut impl FnMut(&[i16])) -> u64 {
        let chunks: Vec<gst::Buffer> = self.out.lock().drain(..).collect();
        let mut samples = 0;
        for b in chunks {
            if let Ok(map) = b.map_readable() {
                let s: Vec<i16> = map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                samples += s.len() as u64;
                pcm(&s);
            }
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_comes_back_as_one_packet_at_once() {
        crate::media::init().expect("gstreamer");
        let mut e = OpusEncoder::new(32_000, 5).expect("encoder");
        let tone: Vec<i16> = (0..FRAME).map(|i| ((i as f64 / 48.0 * 440.0 * std::f64::consts::TAU / 1000.0).sin() * 8000.0) as i16).collect();
        for _ in 0..50 {
            let p = e.encode(&tone).expect("a packet for every frame");
            assert!(p.size() > 10 && p.pts().is_none());
        }
        let caps = e.caps().expect("caps after the first frame");
        let s = caps.structure(0).expect("a structure");
        assert_eq!(s.name(), "audio/x-opus");
        assert_eq!(s.get::<i32>("channels").ok(), Some(1));
    }

    /// Opus packets of a `hz` tone, `ms` long each, from a stereo encoder
    /// (browsers send stereo-capable Opus).
    fn tone_packets(hz: f64, ms: u32, n: usize) -> Vec<Vec<u8>> {
        let desc = format!(
            "audiotestsrc freq={hz} volume=0.3 samplesperbuffer={} num-buffers={n} ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size={ms} ! appsink name=s sync=false",
            48 * ms
        );
        let p = gst::parse::launch(&desc).expect("pipeline").downcast::<gst::Pipeline>().expect("a pipeline");
        let sink = p.by_name("s").expect("sink").downcast::<gst_app::AppSink>().expect("appsink");
        p.set_state(gst::State::Playing).expect("play");
        let mut v = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            v.push(s.buffer().expect("buffer").map_readable().expect("map").to_vec());
        }
        let _ = p.set_state(gst::State::Null);
        v
    }

    #[test]
    fn a_stereo_packet_comes_back_as_mono_pcm_at_once() {
        crate::media::init().expect("gstreamer");
        let packets = tone_packets(440.0, 40, 10);
        let mut d = OpusDecoder::new().expect("decoder");
        let mut total = 0;
        for (i, p) in packets.iter().enumerate() {
            let mut got = 0;
            d.decode(p, 1000 + i as u64 * 1920, |s| got += s.len());
            assert_eq!(got, 1920, "packet {i}: 40 ms of mono samples");
            total += got;
        }
        assert_eq!(total, packets.len() * 1920);
    }

    #[test]
    fn a_lost_packet_is_concealed_so_the_samples_stay_continuous() {
        crate::media::init().expect("gstreamer");
        let packets = tone_packets(440.0, 40, 10);
        let mut d = OpusDecoder::new().expect("decoder");
        let mut chunks = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == 4 || i == 5 {
                continue; // lost
            }
            d.decode(p, i as u64 * 1920, |s| chunks.push(s.to_vec()));
        }
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        assert_eq!(total, packets.len() * 1920, "the 80 ms lost are there, concealed");
        // The concealment continues the tone: not silence.
        let concealed = &chunks[4];
        let rms = (concealed.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / concealed.len() as f64).sqrt();
        assert!(rms > 300.0, "concealed audio is not silence (rms {rms:.0})");
    }
}
