//! An Opus encoder the audio mixer drives on its own thread: GStreamer's
//! `opusenc` with no pipeline, no queue and no streaming thread of its
//! own. The mixer pushes one 20 ms frame of PCM into the element's sink
//! pad and gets the encoded packet back from its source pad before the
//! push returns, so the mixer knows which tick and which listener every
//! packet belongs to (see [`super::audio`]).

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
    enc: gst::Element,
    /// Ours, linked to the encoder's sink pad.
    feed: gst::Pad,
    /// Ours, linked to the encoder's source pad.
    collect: gst::Pad,
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
        let feed = gst::Pad::builder(gst::PadDirection::Src).name("pcm").build();
        let sink = enc.static_pad("sink").context("opusenc has no sink pad")?;
        let src = enc.static_pad("src").context("opusenc has no src pad")?;
        feed.link(&sink).context("cannot feed opusenc")?;
        src.link(&collect).context("cannot collect from opusenc")?;
        collect.set_active(true).context("collecting pad")?;
        feed.set_active(true).context("feeding pad")?;
        enc.set_state(gst::State::Playing).context("opusenc refused to start")?;
        feed.push_event(gst::event::StreamStart::new("tessera-mix"));
        feed.push_event(gst::event::Caps::new(&audio_caps()));
        feed.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
        Ok(OpusEncoder { enc, feed, collect, out, frames: 0 })
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
        if self.feed.push(buf).is_err() {
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

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        let _ = self.enc.set_state(gst::State::Null);
        if let Some(sink) = self.enc.static_pad("sink") {
            let _ = self.feed.unlink(&sink);
        }
        let _ = self.collect.set_active(false);
        let _ = self.feed.set_active(false);
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
}
