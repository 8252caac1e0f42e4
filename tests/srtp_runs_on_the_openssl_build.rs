//! Every connection's SRTP runs on libsrtp2 built on OpenSSL, not on
//! Debian's build of it on NSS. Profiled in a 25-person room, SRTP was a
//! fifth of every send and receive thread, most of it NSS setting up a new
//! cipher context for each packet (`PK11_CreateContextBySymKey`); the same
//! release on OpenSSL protects a packet in a quarter of the time.
//! `scripts/deps.sh` builds it and `media::init` loads it before
//! GStreamer's SRTP plugin, which then uses it (same soname).
//!
//! Here: the library in use by SRTP elements is that build (its file is
//! the one mapped, and it calls OpenSSL, not NSS), and it works: packets
//! protected by `srtpenc` and unprotected by `srtpdec` come out as they
//! went in, and a packet with a flipped bit is refused.

use gst::prelude::*;
use gst_rtp::prelude::*;
use tessera::media::srtp::{self, Srtp, DEFAULT_LIBRARY};

const KEY: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e";

fn rtp(seq: u16) -> gst::Buffer {
    let mut b = gst::Buffer::new_rtp_with_sizes(160, 0, 0).expect("an RTP buffer");
    {
        let mut r = gst_rtp::RTPBuffer::from_buffer_writable(b.get_mut().expect("new")).expect("maps");
        r.set_seq(seq);
        r.set_ssrc(0x1234);
        r.set_payload_type(96);
        r.set_timestamp(u32::from(seq) * 960);
        let p = r.payload_mut().expect("payload");
        for (i, x) in p.iter_mut().enumerate() {
            *x = (i as u16 ^ seq) as u8;
        }
    }
    b
}

#[test]
fn srtp_elements_run_on_the_openssl_build_and_round_trip() {
    tessera::media::init().expect("GStreamer initialises");
    let choice = srtp::choose(None).expect("no path: never an error");
    assert_eq!(choice, &Srtp::Loaded(DEFAULT_LIBRARY.into()), "scripts/deps.sh builds it; tessera uses {choice}");
    let file = std::fs::read(DEFAULT_LIBRARY).expect("the library is there");
    let has = |s: &[u8]| file.windows(s.len()).any(|w| w == s);
    assert!(has(b"EVP_CIPHER_CTX_new") && !has(b"PK11_CipherOp"), "{DEFAULT_LIBRARY} is built on OpenSSL, not NSS");

    let caps = format!(
        "application/x-srtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96,ssrc=(uint)4660,\
         srtp-key=(buffer){KEY},srtp-cipher=aes-128-icm,srtp-auth=hmac-sha1-80,srtcp-cipher=aes-128-icm,srtcp-auth=hmac-sha1-80"
    );
    let p = gst::parse::launch(&format!(
        "appsrc name=in format=time caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96,ssrc=(uint)4660\" \
         ! srtpenc key={KEY} ! identity name=wire ! capsfilter caps=\"{caps}\" ! srtpdec ! appsink name=out sync=false"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    assert_eq!(srtp::in_use().as_deref(), Some(std::path::Path::new(DEFAULT_LIBRARY)), "the SRTP plugin maps this library");

    // One packet on the wire gets a bit flipped in its payload: its
    // authentication tag no longer matches and srtpdec drops it.
    let wire = p.by_name("wire").expect("identity");
    wire.static_pad("src").expect("src").add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_mut() {
            let seq = gst_rtp::RTPBuffer::from_buffer_readable(b).map(|r| r.seq()).unwrap_or(0);
            if seq == 7 {
                let mut m = b.make_mut().map_writable().expect("writable");
                m[20] ^= 0x01;
            }
        }
        gst::PadProbeReturn::Ok
    });
    let src = p.by_name("in").expect("appsrc").downcast::<gst_app::AppSrc>().expect("appsrc");
    let sink = p.by_name("out").expect("appsink").downcast::<gst_app::AppSink>().expect("appsink");
    p.set_state(gst::State::Playing).expect("plays");
    let sent: Vec<gst::Buffer> = (0..20u16).map(rtp).collect();
    for b in &sent {
        src.push_buffer(b.clone()).expect("pushed");
    }
    src.end_of_stream().expect("eos");
    let mut got = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        let b = s.buffer().expect("a buffer");
        got.push(b.map_readable().expect("readable").to_vec());
    }
    let errors: Vec<String> = p.bus().expect("bus").iter().filter_map(|m| match m.view() {
        gst::MessageView::Error(e) => Some(format!("{}: {:?}", e.error(), e.debug())),
        _ => None,
    }).collect();
    p.set_state(gst::State::Null).expect("stops");
    assert!(errors.is_empty(), "{errors:?}");
    let want: Vec<Vec<u8>> = sent.iter().filter(|b| gst_rtp::RTPBuffer::from_buffer_readable(b).map(|r| r.seq()).unwrap_or(0) != 7).map(|b| b.map_readable().expect("readable").to_vec()).collect();
    assert_eq!(got.len(), 19, "19 packets unprotected, the tampered one refused");
    assert_eq!(got, want, "what came out is what went in");
}
