//! What one media packet costs a WebRTC transport, both ends in one
//! process on loopback: GStreamer's webrtcbin (what tessera runs today)
//! against str0m (a Sans-IO stack driven from our own loop), the same
//! encoded frames at the same rates, alternated in rounds.
//!
//! ```text
//! cd bench/spikes/packet-cost && cargo build --release
//! LD_PRELOAD=/usr/local/lib/tessera/libsrtp2.so.1 ./target/release/packet-cost [rounds=3] [seconds=10] [receivers=10]
//! ```
//! (the preload gives webrtcbin the OpenSSL-built libsrtp the server loads,
//! `scripts/deps.sh` builds it). Not part of tessera's build or tests.
//!
//! CPU is the whole process (sender, receiver, feeder) per RTP packet sent.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gst::prelude::*;

fn process_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

struct Media {
    video: Vec<Vec<u8>>,
    audio: Vec<Vec<u8>>,
}

fn pull_all(desc: &str) -> Result<Vec<Vec<u8>>> {
    let p = gst::parse::launch(desc)?.downcast::<gst::Pipeline>().map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = p.by_name("out").context("out")?.downcast::<gst_app::AppSink>().map_err(|_| anyhow::anyhow!("not an appsink"))?;
    p.set_state(gst::State::Playing)?;
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        if let Some(b) = s.buffer() {
            out.push(b.map_readable()?.to_vec());
        }
    }
    p.set_state(gst::State::Null)?;
    Ok(out)
}

/// A 1280x720 rung at 1.2 Mbit/s (a moving test card: about 5 kB a frame,
/// five packets) and 20 ms Opus packets of a tone.
fn media() -> Result<Media> {
    let video = pull_all(
        "videotestsrc num-buffers=300 pattern=smpte horizontal-speed=4 ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! vp8enc deadline=1 cpu-used=16 end-usage=cbr target-bitrate=1200000 lag-in-frames=0 keyframe-max-dist=300 threads=2 \
         ! appsink name=out sync=false",
    )?;
    let audio = pull_all(
        "audiotestsrc num-buffers=250 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 \
         ! opusenc bitrate=32000 frame-size=20 ! appsink name=out sync=false",
    )?;
    Ok(Media { video, audio })
}

/// Feed `fps` video frames and `aps` audio packets a second for `secs`,
/// calling `video(i, frame)` / `audio(j, packet)`; `idle(until)` in between.
fn feed(m: &Media, fps: u64, aps: u64, secs: u64, mut video: impl FnMut(u64, &[u8]), mut audio: impl FnMut(u64, &[u8]), mut idle: impl FnMut(Instant)) {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let (mut nv, mut na, mut k, mut j) = (t0, t0, 0u64, 0u64);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= nv {
            video(k, &m.video[k as usize % m.video.len()]);
            k += 1;
            nv += Duration::from_nanos(1_000_000_000 / fps);
        }
        if now >= na {
            audio(j, &m.audio[j as usize % m.audio.len()]);
            j += 1;
            na += Duration::from_nanos(1_000_000_000 / aps);
        }
        idle(nv.min(na));
    }
}

mod s0 {
    use super::*;
    use str0m::format::Codec;
    use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input, Output, Rtc};

    pub struct Peer {
        pub rtc: Rtc,
        sock: UdpSocket,
        addr: SocketAddr,
        pub sent: u64,
        pub media: u64,
    }

    impl Peer {
        pub fn new() -> Result<Peer> {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            let addr = sock.local_addr()?;
            let mut rtc = Rtc::builder().clear_codecs().enable_vp8(true).enable_opus(true, false).build(Instant::now());
            rtc.add_local_candidate(Candidate::host(addr, "udp")?);
            Ok(Peer { rtc, sock, addr, sent: 0, media: 0 })
        }

        /// Everything due now; the next timeout.
        pub fn drive(&mut self) -> Result<Instant> {
            loop {
                match self.rtc.poll_output()? {
                    Output::Timeout(t) => return Ok(t),
                    Output::Transmit(t) => {
                        self.sock.send_to(&t.contents, t.destination)?;
                        self.sent += 1;
                    }
                    Output::Event(Event::MediaData(_)) => self.media += 1,
                    Output::Event(_) => {}
                }
            }
        }

        /// Wait for one datagram until `until`.
        pub fn recv(&mut self, until: Instant, buf: &mut [u8]) -> Result<()> {
            let wait = until.saturating_duration_since(Instant::now());
            if wait < Duration::from_micros(50) {
                // Due now (str0m's pacer releases queued packets on a timeout).
                self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                return Ok(());
            }
            self.sock.set_read_timeout(Some(wait))?;
            match self.sock.recv_from(buf) {
                Ok((n, source)) => {
                    let r = Receive { proto: Protocol::Udp, source, destination: self.addr, contents: (&buf[..n]).try_into()? };
                    self.rtc.handle_input(Input::Receive(Instant::now(), r))?;
                }
                Err(_) => self.rtc.handle_input(Input::Timeout(Instant::now()))?,
            }
            Ok(())
        }
    }

    /// (CPU seconds, RTP packets sent) over `secs`.
    pub fn run(m: &Media, fps: u64, aps: u64, secs: u64) -> Result<(f64, u64)> {
        let (mut l, mut r) = (Peer::new()?, Peer::new()?);
        let mut change = l.rtc.sdp_api();
        let vmid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let amid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().context("no offer")?;
        let answer = r.rtc.sdp_api().accept_offer(offer)?;
        l.rtc.sdp_api().accept_answer(pending, answer)?;
        let mut buf = vec![0u8; 2000];
        let start = Instant::now();
        while !(l.rtc.is_connected() && r.rtc.is_connected()) {
            let tl = l.drive()?;
            let tr = r.drive()?;
            l.recv(tl.min(Instant::now() + Duration::from_millis(2)), &mut buf)?;
            r.recv(tr.min(Instant::now() + Duration::from_millis(2)), &mut buf)?;
            if start.elapsed() > Duration::from_secs(5) {
                bail!("str0m peers did not connect");
            }
        }
        let vpt = l.rtc.codec_config().find(|p| p.spec().codec == Codec::Vp8).context("vp8")?.pt();
        let apt = l.rtc.codec_config().find(|p| p.spec().codec == Codec::Opus).context("opus")?.pt();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let receiver = std::thread::spawn(move || -> Result<u64> {
            let mut buf = vec![0u8; 2000];
            while !s2.load(Ordering::Relaxed) {
                let t = r.drive()?;
                r.recv(t, &mut buf)?;
            }
            Ok(r.media)
        });
        let (c0, p0) = (process_cpu(), l.sent);
        let mut err = None;
        let l = std::cell::RefCell::new(l);
        feed(
            m,
            fps,
            aps,
            secs,
            |k, f| {
                let now = Instant::now();
                if let Some(w) = l.borrow_mut().rtc.writer(vmid) {
                    if let Err(e) = w.write(vpt, now, MediaTime::new(k * 90_000 / fps, Frequency::NINETY_KHZ), f.to_vec()) {
                        err = Some(e);
                    }
                }
            },
            |j, a| {
                if let Some(w) = l.borrow_mut().rtc.writer(amid) {
                    let _ = w.write(apt, Instant::now(), MediaTime::new(j * 48_000 / aps, Frequency::FORTY_EIGHT_KHZ), a.to_vec());
                }
            },
            |until| {
                let mut l = l.borrow_mut();
                if let Ok(t) = l.drive() {
                    let _ = l.recv(t.min(until), &mut buf);
                }
            },
        );
        let (cpu, sent) = (process_cpu() - c0, l.borrow().sent - p0);
        stop.store(true, Ordering::Relaxed);
        let media = receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        if let Some(e) = err {
            bail!("str0m write: {e}");
        }
        if media < (fps + aps) * secs * 9 / 10 {
            bail!("str0m receiver got {media} frames of {} ({} datagrams sent)", (fps + aps) * secs, sent);
        }
        Ok((cpu, sent))
    }
}

mod wb {
    use super::*;

    fn wait(p: &gst::Promise) -> Result<Option<gst::Structure>> {
        match p.wait() {
            gst::PromiseResult::Replied => Ok(p.get_reply().map(|s| s.to_owned())),
            r => bail!("promise {r:?}"),
        }
    }

    fn description(w: &gst::Element, what: &str) -> Result<gst_webrtc::WebRTCSessionDescription> {
        let p = gst::Promise::new();
        w.emit_by_name::<()>(&format!("create-{what}"), &[&None::<gst::Structure>, &p]);
        let reply = wait(&p)?.context("no reply")?;
        let d = reply.get::<gst_webrtc::WebRTCSessionDescription>(what)?;
        let p = gst::Promise::new();
        w.emit_by_name::<()>("set-local-description", &[&d, &p]);
        wait(&p)?;
        Ok(d)
    }

    /// (CPU seconds, RTP packets sent) over `secs`.
    pub fn run(m: &Media, fps: u64, aps: u64, secs: u64) -> Result<(f64, u64)> {
        let send = gst::parse::launch(
            "webrtcbin name=w bundle-policy=max-bundle \
             appsrc name=v is-live=true do-timestamp=true format=time ! rtpvp8pay name=vpay pt=96 mtu=1200 picture-id-mode=15-bit \
               ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! w. \
             appsrc name=a is-live=true do-timestamp=true format=time ! rtpopuspay name=apay pt=111 \
               ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w.",
        )?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
        let recv = gst::Pipeline::new();
        recv.add(&gst::ElementFactory::make("webrtcbin").name("w").property_from_str("bundle-policy", "max-bundle").build()?)?;
        let sw = send.by_name("w").context("w")?;
        let rw = recv.by_name("w").context("w")?;
        let v = send.by_name("v").context("v")?.downcast::<gst_app::AppSrc>().map_err(|_| anyhow::anyhow!("v"))?;
        let a = send.by_name("a").context("a")?.downcast::<gst_app::AppSrc>().map_err(|_| anyhow::anyhow!("a"))?;
        v.set_caps(Some(&gst::Caps::builder("video/x-vp8").field("width", 1280).field("height", 720).field("framerate", gst::Fraction::new(fps as i32, 1)).build()));
        a.set_caps(Some(&gst::Caps::builder("audio/x-opus").field("channel-mapping-family", 0).field("channels", 1).field("rate", 48000).build()));
        for (from, to) in [(&sw, &rw), (&rw, &sw)] {
            let to = to.downgrade();
            from.connect("on-ice-candidate", false, move |args| {
                let (Ok(mline), Ok(c)) = (args[1].get::<u32>(), args[2].get::<String>()) else { return None };
                if let Some(to) = to.upgrade() {
                    to.emit_by_name::<()>("add-ice-candidate", &[&mline, &c]);
                }
                None
            });
        }
        let frames = Arc::new(AtomicU64::new(0));
        {
            let recv = recv.downgrade();
            let frames = frames.clone();
            rw.connect_pad_added(move |_, pad| {
                let Some(recv) = recv.upgrade() else { return };
                let video = pad.current_caps().and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok())).as_deref() == Some("video");
                let depay = gst::ElementFactory::make(if video { "rtpvp8depay" } else { "rtpopusdepay" }).build().expect("depayloader");
                let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().expect("fakesink");
                let f = frames.clone();
                sink.static_pad("sink").expect("pad").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    f.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
                recv.add_many([&depay, &sink]).expect("add");
                depay.link(&sink).expect("link");
                depay.sync_state_with_parent().expect("state");
                sink.sync_state_with_parent().expect("state");
                pad.link(&depay.static_pad("sink").expect("pad")).expect("link");
            });
        }
        let packets = Arc::new(AtomicU64::new(0));
        for pay in ["vpay", "apay"] {
            let p = packets.clone();
            send.by_name(pay).context("pay")?.static_pad("src").context("src")?.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
                let n = match &info.data {
                    Some(gst::PadProbeData::BufferList(l)) => l.len() as u64,
                    _ => 1,
                };
                p.fetch_add(n, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        for pad in sw.sink_pads() {
            let t: gst_webrtc::WebRTCRTPTransceiver = pad.property("transceiver");
            t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
        }
        recv.set_state(gst::State::Playing)?;
        send.set_state(gst::State::Playing)?;
        let offer = description(&sw, "offer")?;
        let p = gst::Promise::new();
        rw.emit_by_name::<()>("set-remote-description", &[&offer, &p]);
        wait(&p)?;
        let answer = description(&rw, "answer")?;
        let p = gst::Promise::new();
        sw.emit_by_name::<()>("set-remote-description", &[&answer, &p]);
        wait(&p)?;
        // Media until the receiver decodes: ICE and DTLS are up.
        let start = Instant::now();
        feed(m, 30, 50, 1, |_, f| { let _ = v.push_buffer(gst::Buffer::from_slice(f.to_vec())); }, |_, x| { let _ = a.push_buffer(gst::Buffer::from_slice(x.to_vec())); }, |u| std::thread::sleep(u.saturating_duration_since(Instant::now())));
        while frames.load(Ordering::Relaxed) == 0 {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("webrtcbin peers did not connect");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (c0, p0, f0) = (process_cpu(), packets.load(Ordering::Relaxed), frames.load(Ordering::Relaxed));
        feed(m, fps, aps, secs, |_, f| { let _ = v.push_buffer(gst::Buffer::from_slice(f.to_vec())); }, |_, x| { let _ = a.push_buffer(gst::Buffer::from_slice(x.to_vec())); }, |u| std::thread::sleep(u.saturating_duration_since(Instant::now())));
        let (cpu, sent) = (process_cpu() - c0, packets.load(Ordering::Relaxed) - p0);
        std::thread::sleep(Duration::from_millis(300));
        let got = frames.load(Ordering::Relaxed) - f0;
        send.set_state(gst::State::Null)?;
        recv.set_state(gst::State::Null)?;
        if got < (fps + aps) * secs * 9 / 10 {
            bail!("webrtcbin receiver got {got} frames of {}", (fps + aps) * secs);
        }
        Ok((cpu, sent))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let arg = |i: usize, d: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (rounds, secs, receivers) = (arg(1, 3), arg(2, 10), arg(3, 10));
    gst::init()?;
    let m = media()?;
    let mean = m.video.iter().map(|f| f.len()).sum::<usize>() / m.video.len();
    // One rung's frames and one mix's packets to `receivers` receivers.
    let (fps, aps) = (30 * receivers, 50 * receivers);
    println!("{} VP8 frames (mean {mean} B), {} Opus packets; {fps} frames and {aps} audio packets a second, {secs} s a round", m.video.len(), m.audio.len());
    let (mut wbv, mut s0v) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (cpu, n) = wb::run(&m, fps, aps, secs)?;
        let w = cpu / n as f64 * 1e6;
        let (cpu2, n2) = s0::run(&m, fps, aps, secs)?;
        let s = cpu2 / n2 as f64 * 1e6;
        println!("round {round}: webrtcbin {w:.1} us a packet ({n} packets, {:.1} % of a core), str0m {s:.1} us ({n2} datagrams, {:.1} % of a core)", cpu / secs as f64 * 100.0, cpu2 / secs as f64 * 100.0);
        wbv.push(w);
        s0v.push(s);
    }
    let (w, s) = (median(wbv), median(s0v));
    println!("median: webrtcbin {w:.1} us, str0m {s:.1} us a packet, both ends; str0m / webrtcbin {:.2}", s / w);
    Ok(())
}
