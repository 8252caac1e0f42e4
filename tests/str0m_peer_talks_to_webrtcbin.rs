//! The transport outside webrtcbin (`media::rtc`, str0m) against
//! webrtcbin, the stack of the bot: our offer with our certificate, their
//! answer, ICE and DTLS up, VP8 and Opus both ways, each side decoding what
//! the other sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;
use parking_lot::Mutex;
use tessera::media::dtls::DtlsCertificate;
use tessera::media::rtc::{Addresses, RtcEvent, RtcPeer};

#[derive(Default)]
struct Got {
    connected: bool,
    failed: Option<String>,
    video: u64,
    keyframes: u64,
    audio: u64,
}

fn pull_all(desc: &str) -> Vec<(Vec<u8>, u64)> {
    let p = gst::parse::launch(desc).expect("clip pipeline").downcast::<gst::Pipeline>().expect("pipeline");
    let sink = p.by_name("out").expect("out").downcast::<gst_app::AppSink>().expect("appsink");
    p.set_state(gst::State::Playing).expect("play");
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        let b = s.buffer().expect("buffer");
        out.push((b.map_readable().expect("map").to_vec(), b.pts().map(|t| t.nseconds()).unwrap_or(0)));
    }
    p.set_state(gst::State::Null).expect("null");
    out
}

fn promise_reply(p: &gst::Promise) -> Option<gst::Structure> {
    match p.wait() {
        gst::PromiseResult::Replied => p.get_reply().map(|s| s.to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_and_opus_flow_both_ways_between_str0m_and_webrtcbin() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    tessera::media::init().expect("GStreamer");
    let cert = DtlsCertificate::generate().expect("certificate");
    let frames = pull_all(
        "videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! vp8enc deadline=1 keyframe-max-dist=30 ! appsink name=out sync=false",
    );
    let packets = pull_all("audiotestsrc num-buffers=150 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! appsink name=out sync=false");

    let got = Arc::new(Mutex::new(Got::default()));
    let g = got.clone();
    let peer = RtcPeer::offer(
        &Addresses { bind: vec!["127.0.0.1".parse().expect("address")], announce: vec![] },
        None,
        &cert,
        None,
        Arc::new(move |ev| {
            let mut g = g.lock();
            match ev {
                RtcEvent::Connected => g.connected = true,
                RtcEvent::Failed(why) => g.failed = Some(why),
                RtcEvent::Media { kind: str0m::media::MediaKind::Video, keyframe, .. } => {
                    g.video += 1;
                    g.keyframes += keyframe as u64;
                }
                RtcEvent::Media { .. } => g.audio += 1,
                _ => {}
            }
        }),
    )
    .expect("peer");
    let offer = peer.sdp().to_string();
    assert!(offer.contains(cert.fingerprint()), "the offer carries our certificate's fingerprint:\n{offer}");
    let peer = Arc::new(peer);

    // The bot's stack: webrtcbin answering, sending a live VP8 picture and
    // an Opus tone, decoding what it receives.
    let pipeline = gst::parse::launch(
        "webrtcbin name=w bundle-policy=max-bundle \
         videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 \
           ! rtpvp8pay pt=96 ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! w. \
         audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 \
           ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w.",
    )
    .expect("webrtcbin pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let w = pipeline.by_name("w").expect("webrtcbin");
    // An ECDSA certificate of its own, as the bot, browsers and aiortc have.
    let theirs = DtlsCertificate::generate().expect("certificate");
    theirs.apply(&pipeline);
    // Loopback only, as the bot is run in the tests.
    let network = tessera::config::Network { ice_addresses: vec!["127.0.0.1".into()], ..Default::default() };
    tessera::media::webrtc::configure_ice(&w, &network).expect("ICE settings");
    let (decoded_video, decoded_audio) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    {
        let p = pipeline.downgrade();
        let (dv, da) = (decoded_video.clone(), decoded_audio.clone());
        w.connect_pad_added(move |_, pad| {
            let Some(p) = p.upgrade() else { return };
            let video = pad.current_caps().and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok())).as_deref() == Some("video");
            let chain = if video { "rtpvp8depay ! vp8dec ! fakesink name=sink sync=false" } else { "rtpopusdepay ! opusdec ! fakesink name=sink sync=false" };
            let bin = gst::parse::bin_from_description(chain, true).expect("decoder");
            let count = if video { dv.clone() } else { da.clone() };
            bin.by_name("sink").expect("sink").static_pad("sink").expect("pad").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
            p.add(&bin).expect("add");
            bin.sync_state_with_parent().expect("state");
            pad.link(&bin.static_pad("sink").expect("ghost pad")).expect("link");
        });
    }
    {
        let peer = peer.clone();
        w.connect("on-ice-candidate", false, move |args| {
            if let Ok(c) = args[2].get::<String>() {
                peer.add_ice(&c);
            }
            None
        });
    }
    pipeline.set_state(gst::State::Playing).expect("play");
    let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).expect("str0m's offer parses");
    let desc = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, sdp);
    let p = gst::Promise::new();
    w.emit_by_name::<()>("set-remote-description", &[&desc, &p]);
    promise_reply(&p);
    let p = gst::Promise::new();
    w.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &p]);
    let answer = promise_reply(&p).expect("an answer").get::<gst_webrtc::WebRTCSessionDescription>("answer").expect("answer");
    let p = gst::Promise::new();
    w.emit_by_name::<()>("set-local-description", &[&answer, &p]);
    promise_reply(&p);
    // webrtcbin writes the fingerprint of a certificate of its own making
    // into its descriptions; the bot (media::dtls) puts the one it uses.
    let answer_text: String = answer
        .sdp()
        .as_text()
        .expect("answer text")
        .lines()
        .map(|l| if l.starts_with("a=fingerprint:") { format!("a=fingerprint:sha-256 {}\r\n", theirs.fingerprint()) } else { format!("{l}\r\n") })
        .collect();
    if std::env::var("SHOW_SDP").is_ok() {
        eprintln!("OFFER\n{offer}\nANSWER\n{answer_text}");
    }
    peer.apply_answer(&answer_text, tessera::protocol::answer_video_codec(&answer_text).unwrap_or_default());

    let start = Instant::now();
    while !got.lock().connected {
        if let Some(why) = got.lock().failed.clone() {
            panic!("str0m peer failed: {why}");
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no ICE/DTLS connection in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three seconds of our media at its own pace.
    let t0 = Instant::now();
    let (mut k, mut j) = (0usize, 0usize);
    while t0.elapsed() < Duration::from_secs(3) {
        let now = t0.elapsed();
        while k < frames.len() && Duration::from_nanos(frames[k].1) <= now {
            peer.send_video(frames[k].0.clone(), frames[k].1 * 90 / 1_000_000);
            k += 1;
        }
        while j < packets.len() && Duration::from_nanos(packets[j].1) <= now {
            peer.send_audio(packets[j].0.clone(), packets[j].1 * 48 / 1_000_000);
            j += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.set_state(gst::State::Null).expect("null");
    let g = got.lock();
    let (dv, da) = (decoded_video.load(Ordering::Relaxed), decoded_audio.load(Ordering::Relaxed));
    eprintln!("webrtcbin decoded {dv} frames and {da} audio buffers; str0m got {} frames ({} key) and {} audio packets", g.video, g.keyframes, g.audio);
    assert!(dv >= 75, "webrtcbin decoded {dv} of our 90 frames");
    assert!(da >= 125, "webrtcbin decoded {da} of our 150 audio packets");
    assert!(g.video >= 60 && g.keyframes >= 1, "str0m got {} frames ({} keyframes) from webrtcbin in 3.5 s", g.video, g.keyframes);
    assert!(g.audio >= 100, "str0m got {} audio packets from webrtcbin in 3.5 s", g.audio);
}
