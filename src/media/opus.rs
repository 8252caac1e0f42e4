//! Opus on libopus directly, for the audio mixer's encoders (one
//! 20 ms frame in, its packet out, on the mixer's thread: the mixer knows
//! which tick and which listener every packet belongs to, see
//! [`super::audio`]) and for the str0m transport's incoming audio
//! ([`OpusDecoder`], on the peer's task). Both were GStreamer's `opusenc`
//! and `opusdec` driven through pads of ours; the audio decoder base class
//! around libopus cost as much again as the decoding (a 25-person room on
//! str0m: 12 % of the transport's thread time in it, 20 % in libopus).
//! The settings are those `opusenc` applied, so the packets are the same.

use std::os::raw::{c_int, c_uchar};

use anyhow::{bail, Result};

use super::audio::{FRAME, RATE};

#[allow(non_camel_case_types)]
#[repr(C)]
struct opus_encoder {
    _private: [u8; 0],
}

#[allow(non_camel_case_types)]
#[repr(C)]
struct opus_decoder {
    _private: [u8; 0],
}

#[link(name = "opus")]
extern "C" {
    fn opus_encoder_create(fs: i32, channels: c_int, application: c_int, error: *mut c_int) -> *mut opus_encoder;
    fn opus_encoder_destroy(st: *mut opus_encoder);
    fn opus_encoder_ctl(st: *mut opus_encoder, request: c_int, ...) -> c_int;
    fn opus_encode(st: *mut opus_encoder, pcm: *const i16, frame_size: c_int, data: *mut c_uchar, max_data_bytes: i32) -> i32;
    fn opus_decoder_create(fs: i32, channels: c_int, error: *mut c_int) -> *mut opus_decoder;
    fn opus_decoder_destroy(st: *mut opus_decoder);
    fn opus_decoder_ctl(st: *mut opus_decoder, request: c_int, ...) -> c_int;
    fn opus_decode(st: *mut opus_decoder, data: *const c_uchar, len: i32, pcm: *mut i16, frame_size: c_int, decode_fec: c_int) -> c_int;
}

// From opus_defines.h.
const OPUS_APPLICATION_AUDIO: c_int = 2049;
const OPUS_SET_BITRATE_REQUEST: c_int = 4002;
const OPUS_SET_VBR_REQUEST: c_int = 4006;
const OPUS_SET_BANDWIDTH_REQUEST: c_int = 4008;
const OPUS_SET_COMPLEXITY_REQUEST: c_int = 4010;
const OPUS_SET_INBAND_FEC_REQUEST: c_int = 4012;
const OPUS_SET_PACKET_LOSS_PERC_REQUEST: c_int = 4014;
const OPUS_SET_DTX_REQUEST: c_int = 4016;
const OPUS_BANDWIDTH_FULLBAND: c_int = 1105;
const OPUS_RESET_STATE: c_int = 4028;

/// The largest packet we let the encoder make (RFC 6716's maximum for one
/// frame is 1275 bytes).
const MAX_PACKET_BYTES: usize = 1500;
/// The longest stretch one decode call returns (120 ms, Opus's longest packet).
const MAX_DECODED: usize = RATE / 1000 * 120;
/// Concealment goes in steps of 2.5 ms (libopus wants a multiple of it).
const CONCEAL_STEP: u64 = (RATE / 400) as u64;

/// The caps of the mix's packets, for the webrtcbin path's payloader.
pub fn opus_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-opus")
        .field("rate", RATE as i32)
        .field("channels", 1i32)
        .field("channel-mapping-family", 0i32)
        .field("stream-count", 1i32)
        .field("coupled-count", 0i32)
        .build()
}

pub struct OpusEncoder {
    st: *mut opus_encoder,
    caps: gst::Caps,
    out: Vec<u8>,
}

// The state is only ever touched through `&mut self`.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    /// The settings every mix encoder has (`opusenc`'s, which it was
    /// before): 48 kHz mono, 20 ms frames, full band, constant bitrate,
    /// in-band FEC, DTX, 5 % expected loss.
    pub fn new(bitrate: u32, complexity: u32) -> Result<OpusEncoder> {
        let mut err: c_int = 0;
        // SAFETY: plain constructor; a null return is checked.
        let st = unsafe { opus_encoder_create(RATE as i32, 1, OPUS_APPLICATION_AUDIO, &mut err) };
        if st.is_null() || err != 0 {
            bail!("libopus refused an encoder (error {err})");
        }
        let enc = OpusEncoder { st, caps: opus_caps(), out: vec![0; MAX_PACKET_BYTES] };
        let settings = [
            (OPUS_SET_BITRATE_REQUEST, bitrate.min(i32::MAX as u32) as c_int),
            (OPUS_SET_BANDWIDTH_REQUEST, OPUS_BANDWIDTH_FULLBAND),
            (OPUS_SET_VBR_REQUEST, 0),
            (OPUS_SET_COMPLEXITY_REQUEST, complexity.min(10) as c_int),
            (OPUS_SET_INBAND_FEC_REQUEST, 1),
            (OPUS_SET_DTX_REQUEST, 1),
            (OPUS_SET_PACKET_LOSS_PERC_REQUEST, 5),
        ];
        for (request, value) in settings {
            // SAFETY: a live encoder; each request takes one opus_int32.
            let r = unsafe { opus_encoder_ctl(enc.st, request, value as i32) };
            if r != 0 {
                bail!("libopus refused setting {request} to {value} (error {r})");
            }
        }
        Ok(enc)
    }

    /// Encode one 20 ms frame; the packet comes back without timestamps
    /// (the caller stamps it for its listener). None if the encoder failed.
    pub fn encode(&mut self, pcm: &[i16]) -> Option<gst::Buffer> {
        if pcm.len() != FRAME {
            return None;
        }
        // SAFETY: `pcm` holds FRAME samples of one channel, `out` its length.
        let n = unsafe { opus_encode(self.st, pcm.as_ptr(), FRAME as c_int, self.out.as_mut_ptr(), self.out.len() as i32) };
        if n <= 0 {
            return None;
        }
        Some(gst::Buffer::from_slice(self.out[..n as usize].to_vec()))
    }

    /// The caps of the packets.
    pub fn caps(&self) -> Option<gst::Caps> {
        Some(self.caps.clone())
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: made by opus_encoder_create, destroyed once.
        unsafe { opus_encoder_destroy(self.st) }
    }
}

/// An Opus decoder for a transport that hands us packets itself
/// ([`super::direct`]): each packet comes back as 48 kHz mono PCM (the
/// mix's format: libopus mixes a stereo stream down itself) before
/// [`OpusDecoder::decode`] returns. A packet that follows a gap in RTP time
/// (a lost one) has the gap filled first: from the in-band FEC the packet
/// carries for the one before it where it has some, concealed otherwise,
/// so the mix-minus ring of the sender does not run dry.
pub struct OpusDecoder {
    st: *mut opus_decoder,
    pcm: Vec<i16>,
    /// RTP time (48 kHz) where the next packet is due.
    next: Option<u64>,
}

// The state is only ever touched through `&mut self`.
unsafe impl Send for OpusDecoder {}

/// Longest gap filled; a longer one (a sender that paused) starts over.
const MAX_CONCEALED: u64 = (RATE as u64) / 5;

impl OpusDecoder {
    pub fn new() -> Result<OpusDecoder> {
        let mut err: c_int = 0;
        // SAFETY: plain constructor; a null return is checked.
        let st = unsafe { opus_decoder_create(RATE as i32, 1, &mut err) };
        if st.is_null() || err != 0 {
            bail!("libopus refused a decoder (error {err})");
        }
        Ok(OpusDecoder { st, pcm: vec![0; MAX_DECODED], next: None })
    }

    /// Packets are being left undecoded: the next one decoded starts over
    /// (no concealment of what was skipped, a fresh decoder state).
    pub fn pause(&mut self) {
        if self.next.take().is_some() {
            // SAFETY: a live decoder; OPUS_RESET_STATE takes no argument.
            unsafe { opus_decoder_ctl(self.st, OPUS_RESET_STATE) };
        }
    }

    /// Decode `packet` (its RTP time at 48 kHz) into `pcm`, once per chunk
    /// of samples: the gap before it if one was lost, then its own.
    /// Nothing for a packet the decoder refuses.
    pub fn decode(&mut self, packet: &[u8], rtp_time: u64, mut pcm: impl FnMut(&[i16])) {
        if packet.is_empty() || packet.len() > i32::MAX as usize {
            return;
        }
        if let Some(next) = self.next.filter(|&n| rtp_time > n && rtp_time - n <= MAX_CONCEALED) {
            // In steps libopus takes (at most 120 ms, multiples of 2.5 ms);
            // the last step asks for the packet's FEC (which covers its
            // predecessor's end; libopus conceals what it does not cover).
            let mut gap = (rtp_time - next) / CONCEAL_STEP * CONCEAL_STEP;
            while gap > 0 {
                let step = gap.min(MAX_DECODED as u64 / CONCEAL_STEP * CONCEAL_STEP);
                gap -= step;
                let (data, len, fec) = if gap == 0 { (packet.as_ptr(), packet.len() as i32, 1) } else { (std::ptr::null(), 0, 0) };
                // SAFETY: a live decoder; `data` is the packet or null; `pcm`
                // holds MAX_DECODED ≥ step samples.
                let n = unsafe { opus_decode(self.st, data, len, self.pcm.as_mut_ptr(), step as c_int, fec) };
                if n > 0 {
                    pcm(&self.pcm[..n as usize]);
                }
            }
        }
        // SAFETY: as above; frame_size is the buffer's length.
        let n = unsafe { opus_decode(self.st, packet.as_ptr(), packet.len() as i32, self.pcm.as_mut_ptr(), MAX_DECODED as c_int, 0) };
        if n > 0 {
            pcm(&self.pcm[..n as usize]);
            self.next = Some(rtp_time + n as u64);
        }
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: made by opus_decoder_create, destroyed once.
        unsafe { opus_decoder_destroy(self.st) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

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

    #[test]
    fn a_lost_packet_is_filled_from_the_fec_its_successor_carries() {
        // A browser's Opus (speech, 32 kbps, FEC on, as Chrome sends it)
        // carries in-band FEC: a lost packet's 20 ms come back from its
        // successor, much closer to what was sent than a concealment
        // (which only extrapolates what came before).
        crate::media::init().expect("gstreamer");
        let mut e = OpusEncoder::new(32_000, 5).expect("encoder");
        const OPUS_APPLICATION_VOIP: c_int = 2048;
        let mut err = 0;
        // SAFETY: a new encoder replaces the mix settings' one (dropped).
        e.st = unsafe {
            opus_encoder_destroy(e.st);
            opus_encoder_create(RATE as i32, 1, OPUS_APPLICATION_VOIP, &mut err)
        };
        for (r, v) in [(OPUS_SET_BITRATE_REQUEST, 32_000), (OPUS_SET_INBAND_FEC_REQUEST, 1), (OPUS_SET_PACKET_LOSS_PERC_REQUEST, 10)] {
            // SAFETY: a live encoder, one opus_int32 each.
            assert_eq!(unsafe { opus_encoder_ctl(e.st, r, v as i32) }, 0);
        }
        // A tone that glides, so that extrapolating it is wrong.
        let tone = |i: usize| {
            let t = i as f64 / RATE as f64;
            ((300.0 * t + 400.0 * t * t) * std::f64::consts::TAU).sin() * 8000.0
        };
        let packets: Vec<Vec<u8>> = (0..30)
            .map(|k| {
                let pcm: Vec<i16> = (k * FRAME..(k + 1) * FRAME).map(|i| tone(i) as i16).collect();
                e.encode(&pcm).expect("a packet").map_readable().expect("map").to_vec()
            })
            .collect();
        let decode_all = |lost: Option<usize>| {
            let mut d = OpusDecoder::new().expect("decoder");
            let mut out: Vec<i16> = Vec::new();
            for (k, p) in packets.iter().enumerate() {
                if Some(k) != lost {
                    d.decode(p, 5000 + (k * FRAME) as u64, |s| out.extend_from_slice(s));
                }
            }
            out
        };
        let reference = decode_all(None);
        let filled = decode_all(Some(20));
        assert_eq!(filled.len(), packets.len() * FRAME, "the lost 20 ms are there");
        // The same loss concealed (libopus's PLC, no FEC).
        let concealed = {
            let mut d = OpusDecoder::new().expect("decoder");
            let mut out: Vec<i16> = Vec::new();
            for (k, p) in packets.iter().enumerate().take(20) {
                d.decode(p, (k * FRAME) as u64, |s| out.extend_from_slice(s));
            }
            // SAFETY: a live decoder, a null packet asks for concealment.
            let n = unsafe { opus_decode(d.st, std::ptr::null(), 0, d.pcm.as_mut_ptr(), FRAME as c_int, 0) };
            assert_eq!(n, FRAME as c_int);
            out.extend_from_slice(&d.pcm[..FRAME]);
            out
        };
        let lost = 20 * FRAME..21 * FRAME;
        let err = |x: &[i16]| (x.iter().zip(&reference[lost.clone()]).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>() / FRAME as f64).sqrt();
        let (fec, plc) = (err(&filled[lost.clone()]), err(&concealed[lost.clone()]));
        assert!(fec < plc / 2.0, "filled from FEC: error {fec:.0}, concealed: {plc:.0} (against the packet itself)");
    }
}
