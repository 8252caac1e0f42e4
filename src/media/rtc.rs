//! A participant's transport outside webrtcbin: str0m (ICE, DTLS, SRTP,
//! RTP/RTCP, TWCC, NACK/RTX, packetizing), Sans-IO, driven by one tokio
//! task per peer with a UDP socket per local address. No GStreamer here:
//! frames come in as bytes with their media time and go out the same way.
//!
//! Work in progress (docs/architecture.md, "Next: the transport outside
//! webrtcbin"): webrtcbin is still the default; this is the peer that will
//! replace it, tested against webrtcbin (the bot's stack).
//!
//! The server offers: [`RtcPeer::offer`] makes the offer (our host
//! candidates in it), [`RtcPeer::apply_answer`] takes the answer, remote
//! candidates trickle in with [`RtcPeer::add_ice`]. Events go to the
//! owner's callback, which must not block (it runs on the peer's task).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::RawPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::dtls::DtlsCertificate;
use crate::link::PacketReport;

/// What a peer reports to its owner.
#[derive(Debug)]
pub enum RtcEvent {
    /// ICE and DTLS are up: media flows.
    Connected,
    /// ICE gave up or DTLS failed.
    Failed(String),
    /// The remote answer was accepted.
    AnswerApplied,
    /// The remote answer does not parse or does not fit our offer.
    AnswerRefused(String),
    /// A complete frame (video) or packet (audio) from the remote side, with
    /// its RTP time in the codec's clock, and for audio the level its
    /// sender told in the header (RFC 6464; dBFS, 0 to -127), if it did.
    /// `contiguous` is false after data str0m gave up on (lost for good:
    /// retransmission did not repair it within its reordering window).
    /// `codec`: the video codec it came in (None: audio, or one we do
    /// not know).
    Media { kind: MediaKind, data: Vec<u8>, rtp_time: u64, keyframe: bool, level: Option<f64>, contiguous: bool, codec: Option<crate::protocol::Codec> },
    /// The remote side asks for a keyframe of what we send.
    KeyframeRequested,
    /// The packets one transport-wide feedback (TWCC) of the remote side
    /// reports: when we sent each (our clock), when it arrived (theirs) or
    /// that it was lost. Whenever the remote side sends one (raw packets
    /// are always on), with congestion control on or off.
    Feedback(Vec<PacketReport>),
}

/// What a peer counts of loss and its repair, both ways, and the round
/// trip: written by its task, read by the room's statistics.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Packets the remote side asked us for again (NACKed), and the
    /// retransmissions (RTX) we sent.
    pub nacked_to_us: AtomicU64,
    pub rtx_sent: AtomicU64,
    /// Packets we asked the remote side for again, the retransmissions
    /// that came back, and the keyframes we asked for (PLI).
    pub nacked_by_us: AtomicU64,
    pub rtx_received: AtomicU64,
    pub plis_sent: AtomicU64,
    /// The round trip (µs) from the remote side's receiver reports; 0
    /// before the first.
    pub rtt_us: AtomicU64,
}

impl PeerCounters {
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Packets a NACK asks for: each entry names one and up to 16 after it.
fn nacked_packets(nack: &str0m::rtp::rtcp::Nack) -> u64 {
    nack.reports.iter().map(|e| 1 + e.blp.count_ones() as u64).sum()
}

/// What the rung controller asks of a peer while it probes a higher rung
/// (bit/s): the rate the probe is after (0 when it does not probe), and
/// the rate a probe proved (taken, and set to 0, by the peer).
#[derive(Clone, Default)]
pub struct Probing {
    pub probe_bps: Arc<AtomicU32>,
    pub proven_bps: Arc<AtomicU32>,
}

pub type OnRtcEvent = Arc<dyn Fn(RtcEvent) + Send + Sync>;

enum Cmd {
    /// The answer, and the video codec it chose (what we send).
    Answer { sdp: String, video: crate::protocol::Codec },
    Ice(String),
    Video { data: Vec<u8>, rtp_time: u64 },
    Audio { data: Vec<u8>, rtp_time: u64 },
    AskKeyframe,
    Probing(Probing),
}

/// One remote peer. Dropping it ends its task and closes its sockets.
pub struct RtcPeer {
    offer: String,
    /// Our candidates' addresses (announced, or bound), one per socket.
    candidates: Vec<SocketAddr>,
    tx: mpsc::Sender<Cmd>,
    counters: Arc<PeerCounters>,
}

/// One media socket of a peer: bound on a local address, named in our
/// candidate by that address or, behind a 1:1 NAT, the public one
/// (`announce_ips`) with the same port.
struct MediaSocket {
    socket: UdpSocket,
    candidate: SocketAddr,
}

/// Where a peer listens: the addresses to bind and the public addresses
/// to announce instead of them (of the same family; the first of each).
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub bind: Vec<IpAddr>,
    pub announce: Vec<IpAddr>,
}

impl Addresses {
    /// The public address for a socket bound on `local`: the first
    /// announced one of its family, or none.
    fn announced(&self, local: IpAddr) -> Option<IpAddr> {
        self.announce.iter().copied().find(|a| a.is_ipv4() == local.is_ipv4())
    }
}

/// Timeouts due at once handled in one drain before the task yields.
const DUE_NOW_IN_A_ROW: u32 = 64;

/// Resent bytes, as a share of the last second's, over which str0m stops
/// resending (its default 0.15; 1024 packets over 3 s kept, as its default).
const RTX_RATIO_CAP: f32 = 0.3;

/// Frames and packets queued towards a peer's task before the newest are
/// dropped (a second of video at 30 fps plus audio).
const QUEUE: usize = 96;

impl RtcPeer {
    /// A peer with a socket on each of `addresses` (a port of `ports`, or
    /// one the system chooses) and a host candidate for each (announced as
    /// `addresses` says), offering Opus, and VP8 and H.264 (constrained
    /// baseline, packetization mode 1: what the webrtcbin offer names) both
    /// ways, with our DTLS
    /// certificate, and congestion control when `congestion` says where its
    /// estimate starts (str0m's estimator and pacer on, for the padding of
    /// probes; the server always passes one, the tests of the bare peer
    /// none). Needs a tokio runtime (its task is spawned on
    /// the current one).
    pub fn offer(addresses: &Addresses, ports: Option<(u16, u16)>, cert: &DtlsCertificate, congestion: Option<u32>, on_event: OnRtcEvent) -> Result<RtcPeer> {
        let runtime = tokio::runtime::Handle::try_current().context("the str0m transport needs the tokio runtime")?;
        anyhow::ensure!(!addresses.bind.is_empty(), "no address to bind media sockets on");
        let mut sockets = Vec::with_capacity(addresses.bind.len());
        for &address in &addresses.bind {
            let socket = bind(address, ports)?;
            socket.set_nonblocking(true)?;
            let local = socket.local_addr()?;
            let socket = {
                let _guard = runtime.enter();
                UdpSocket::from_std(socket).context("registering the media socket")?
            };
            let candidate = SocketAddr::new(addresses.announced(address).unwrap_or(address), local.port());
            sockets.push(MediaSocket { socket, candidate });
        }
        let (certificate, private_key) = cert.der()?;
        let mut config = Rtc::builder().clear_codecs().enable_opus(true, false).enable_vp8(true);
        // The payload types of the webrtcbin offer (media::video_pt), RTX
        // on the next.
        let h264 = super::video_pt(crate::protocol::Codec::H264) as u8;
        config.codec_config().add_h264(h264.into(), Some((h264 + 1).into()), true, 0x42e01f);
        let mut rtc = config
            // str0m's estimator and pacer only for the padding a probe
            // needs (its pacer sends it, capped by its estimate); the
            // estimate the rung controller reads is ours, made from the
            // TWCC feedback the raw packets show us.
            .enable_bwe(congestion.map(|bps| Bitrate::bps(bps as u64)))
            // The raw packets show us the TWCC feedback and what is sent,
            // NACKed and resent (a copy of each packet, some hundred
            // nanoseconds of one).
            .enable_raw_packets(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_dtls_cert(str0m::config::DtlsCert { certificate, private_key })
            .build(Instant::now());
        for s in &sockets {
            rtc.add_local_candidate(Candidate::host(s.candidate, "udp").map_err(|e| anyhow!("host candidate {}: {e}", s.candidate))?);
        }
        let candidates = sockets.iter().map(|s| s.candidate).collect();
        let mut change = rtc.sdp_api();
        let audio = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let video = change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().context("str0m made no offer")?;
        let sdp = offer.to_sdp_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(PeerCounters::default());
        // The answer takes our payload types: these are what RTX comes on
        // both ways.
        let rtx_pts = rtc.codec_config().params().iter().filter_map(|p| p.resend()).collect();
        let task = Task {
            rtc,
            sockets,
            pending: Some(pending),
            audio,
            video,
            on_event,
            connected: false,
            sent: SentPackets::new(),
            counters: counters.clone(),
            rtx_pts,
            video_unpaced: false,
            video_codec: Codec::Vp8,
            probing: None,
            probe_started: Instant::now(),
            probe_told: Instant::now(),
            estimate: 0,
            before_probe: 0,
        };
        runtime.spawn(task.run(rx));
        Ok(RtcPeer { offer: sdp, candidates, tx, counters })
    }

    /// Our offer, to signal.
    pub fn sdp(&self) -> &str {
        &self.offer
    }

    /// Our candidates' addresses, one per media socket.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Loss, repair and round trip, as counted so far.
    pub fn counters(&self) -> Arc<PeerCounters> {
        self.counters.clone()
    }

    /// Apply the answer to our offer; `video` is the codec it chose (the
    /// caller has read it from the answer: the peer sends video in it).
    pub fn apply_answer(&self, sdp: &str, video: crate::protocol::Codec) {
        self.send(Cmd::Answer { sdp: sdp.to_string(), video });
    }

    /// A remote candidate (`candidate:...`, with or without `a=`); an empty
    /// one (end of candidates) is ignored.
    pub fn add_ice(&self, candidate: &str) {
        if !candidate.trim().is_empty() {
            self.send(Cmd::Ice(candidate.to_string()));
        }
    }

    /// An encoded video frame in the answer's codec (VP8, or H.264 as an
    /// Annex B access unit), its RTP time at 90 kHz.
    pub fn send_video(&self, data: Vec<u8>, rtp_time: u64) {
        self.send(Cmd::Video { data, rtp_time });
    }

    /// An Opus packet, its RTP time at 48 kHz.
    pub fn send_audio(&self, data: Vec<u8>, rtp_time: u64) {
        self.send(Cmd::Audio { data, rtp_time });
    }

    /// Ask the remote side for a keyframe (PLI).
    pub fn ask_keyframe(&self) {
        self.send(Cmd::AskKeyframe);
    }

    /// What the rung controller asks for while it probes, read whenever
    /// the task runs; only a peer made with congestion control sends the
    /// padding.
    pub fn watch_probing(&self, probing: Probing) {
        self.send(Cmd::Probing(probing));
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.try_send(cmd).is_err() {
            tracing::debug!(candidate = ?self.candidates.first(), "peer queue full or closed; dropped");
        }
    }
}

struct Task {
    rtc: Rtc,
    sockets: Vec<MediaSocket>,
    pending: Option<SdpPendingOffer>,
    audio: Mid,
    video: Mid,
    on_event: OnRtcEvent,
    connected: bool,
    /// What we sent, by transport-wide sequence number, for the feedback.
    sent: SentPackets,
    counters: Arc<PeerCounters>,
    /// The payload types of retransmissions (RTX).
    rtx_pts: HashSet<Pt>,
    /// Video is out of the pacer.
    video_unpaced: bool,
    /// What we send video in: the answer's first video codec.
    video_codec: Codec,
    /// The rung controller's probing, and the probe's rate last told str0m.
    probing: Option<(Probing, u32)>,
    /// When that probe started, and when str0m was last told of it.
    probe_started: Instant,
    probe_told: Instant,
    /// str0m's last estimate, and what it was when a probe started.
    estimate: u32,
    before_probe: u32,
}

/// Sent packets by the low bits of their transport-wide sequence number:
/// (sequence number, when, bytes). A slot is reused after
/// [`SENT_SLOTS`] packets, some seconds of a receiver's traffic.
struct SentPackets {
    epoch: Instant,
    slots: Vec<Option<(u16, u64, u32)>>,
}

const SENT_SLOTS: usize = 2048;

impl SentPackets {
    fn new() -> SentPackets {
        SentPackets { epoch: Instant::now(), slots: vec![None; SENT_SLOTS] }
    }

    fn sent(&mut self, seq: u16, at: Instant, bytes: usize) {
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.slots[seq as usize % SENT_SLOTS] = Some((seq, ns, bytes as u32));
    }

    /// The reports of one feedback; packets we have no record of are left
    /// out.
    fn reports(&self, twcc: str0m::rtp::rtcp::Twcc) -> Vec<PacketReport> {
        // The arrival times are on the receiver's clock: any fixed origin
        // will do, the estimator only compares them with each other.
        let origin = self.epoch;
        twcc.into_iter(origin, 0u64.into())
            .filter_map(|(seq, _, arrived)| {
                let seq = (*seq & 0xffff) as u16;
                let (s, sent_ns, bytes) = self.slots[seq as usize % SENT_SLOTS]?;
                (s == seq).then(|| PacketReport {
                    sent_ns: Some(sent_ns),
                    arrived_ns: arrived.map(|t| t.saturating_duration_since(origin).as_nanos() as u64),
                    bytes,
                })
            })
            .collect()
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2000];
        loop {
            self.probe(Instant::now());
            let timeout = match self.drain() {
                Ok(t) => t,
                Err(e) => {
                    (self.on_event)(RtcEvent::Failed(format!("{e:#}")));
                    return;
                }
            };
            if !self.rtc.is_alive() {
                // ICE consent lost for good, or DTLS closed by the remote
                // side: the room drops the participant now, not after 20 s
                // of media silence.
                (self.on_event)(RtcEvent::Failed("the connection closed".into()));
                return;
            }
            let wait = timeout.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            let input = tokio::select! {
                r = recv_any(&self.sockets, &mut buf) => match r {
                    Ok((n, source, destination)) => match (&buf[..n]).try_into() {
                        Ok(contents) => Some(Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents })),
                        Err(_) => None, // not STUN, DTLS or (S)RTP: ignored
                    },
                    Err(e) => {
                        tracing::debug!("media socket: {e}");
                        None
                    }
                },
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        if let Err(e) = self.apply(cmd) {
                            (self.on_event)(RtcEvent::Failed(format!("{e:#}")));
                            return;
                        }
                        None
                    }
                    None => return, // the owner is gone
                },
                _ = tokio::time::sleep(wait) => None,
            };
            let input = input.unwrap_or_else(|| Input::Timeout(Instant::now()));
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::debug!("str0m refused input: {e}");
            }
        }
    }

    /// Send what is due and report events; the next time str0m needs us.
    fn drain(&mut self) -> Result<Instant> {
        // Bounded, so that a timeout str0m keeps due cannot hold the
        // worker: past it, the task yields to the runtime as before.
        let mut due_now = 0;
        loop {
            match self.rtc.poll_output()? {
                // Due now (str0m's pacer asks for this after each packet it
                // lets out): handled here rather than through a wake-up
                // of the task per packet.
                Output::Timeout(t) if t <= Instant::now() && due_now < DUE_NOW_IN_A_ROW => {
                    due_now += 1;
                    // As in the task's loop: a refused input is not fatal.
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        tracing::debug!("str0m refused a timeout: {e}");
                    }
                }
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // From the socket of the candidate str0m chose; a full
                    // socket buffer drops the datagram, as a network would.
                    if let Some(s) = self.sockets.iter().find(|s| s.candidate == t.source) {
                        let _ = s.socket.try_send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => self.event(e),
            }
        }
    }

    fn event(&mut self, e: Event) {
        let on = &self.on_event;
        match e {
            Event::Connected => {
                self.connected = true;
                on(RtcEvent::Connected);
            }
            Event::PeerStats(s) => {
                if let Some(rtt) = s.rtt {
                    self.counters.rtt_us.store(rtt.as_micros().max(1) as u64, Ordering::Relaxed);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if !self.connected => {
                on(RtcEvent::Failed("ICE found no path".into()));
            }
            Event::MediaData(m) => {
                let kind = if m.mid == self.video { MediaKind::Video } else { MediaKind::Audio };
                let keyframe = kind == MediaKind::Video && m.is_keyframe();
                let level = if kind == MediaKind::Audio { m.ext_vals.audio_level.map(f64::from) } else { None };
                let codec = match m.params.spec().codec {
                    Codec::Vp8 => Some(crate::protocol::Codec::Vp8),
                    Codec::H264 => Some(crate::protocol::Codec::H264),
                    _ => None,
                };
                on(RtcEvent::Media { kind, data: m.data.to_vec(), rtp_time: m.time.numer(), keyframe, level, contiguous: m.contiguous, codec });
            }
            Event::KeyframeRequest(_) => on(RtcEvent::KeyframeRequested),
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                // Its pacer's; the rung controller reads ours (the feedback).
                self.estimate = estimate.as_u64().min(u32::MAX as u64) as u32;
            }
            Event::RawPacket(p) => {
                let c = &self.counters;
                match *p {
                    RawPacket::RtpTx(header, packet) => {
                        if let Some(seq) = header.ext_vals.transport_cc {
                            self.sent.sent(seq, Instant::now(), packet.len());
                        }
                        if self.rtx_pts.contains(&header.payload_type) {
                            c.rtx_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Padding-only packets on the RTX stream (probes) are
                    // not retransmissions.
                    RawPacket::RtpRx(header, payload) if !payload.is_empty() && self.rtx_pts.contains(&header.payload_type) => {
                        c.rtx_received.fetch_add(1, Ordering::Relaxed);
                    }
                    RawPacket::RtcpRx(Rtcp::Twcc(twcc)) => {
                        let reports = self.sent.reports(twcc);
                        if !reports.is_empty() {
                            on(RtcEvent::Feedback(reports));
                        }
                    }
                    RawPacket::RtcpRx(Rtcp::Nack(n)) => _ = c.nacked_to_us.fetch_add(nacked_packets(&n), Ordering::Relaxed),
                    RawPacket::RtcpTx(Rtcp::Nack(n)) => _ = c.nacked_by_us.fetch_add(nacked_packets(&n), Ordering::Relaxed),
                    RawPacket::RtcpTx(Rtcp::Pli(_)) => _ = c.plis_sent.fetch_add(1, Ordering::Relaxed),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self, cmd: Cmd) -> Result<()> {
        let now = Instant::now();
        match cmd {
            Cmd::Answer { sdp, video } => {
                let outcome = match (SdpAnswer::from_sdp_string(&sdp), self.pending.take()) {
                    (Ok(answer), Some(pending)) => {
                        self.video_codec = match video {
                            crate::protocol::Codec::Vp8 => Codec::Vp8,
                            crate::protocol::Codec::H264 => Codec::H264,
                        };
                        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| format!("the answer does not fit the offer: {e}"))
                    }
                    (Err(e), pending) => {
                        self.pending = pending;
                        Err(format!("the answer does not parse: {e}"))
                    }
                    (_, None) => Err("an answer, but no offer is pending".into()),
                };
                (self.on_event)(match outcome {
                    Ok(()) => RtcEvent::AnswerApplied,
                    Err(why) => RtcEvent::AnswerRefused(why),
                });
            }
            Cmd::Ice(line) => {
                let line = line.trim().trim_start_matches("a=");
                match Candidate::from_sdp_string(line) {
                    Ok(c) => self.rtc.add_remote_candidate(c),
                    Err(e) => tracing::debug!("remote candidate `{line}` ignored: {e}"),
                }
            }
            Cmd::Video { data, rtp_time } => self.write(self.video, self.video_codec, now, MediaTime::new(rtp_time, Frequency::NINETY_KHZ), data),
            Cmd::Audio { data, rtp_time } => self.write(self.audio, Codec::Opus, now, MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ), data),
            Cmd::AskKeyframe => {
                if let Some(mut w) = self.rtc.writer(self.video) {
                    let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                }
            }
            Cmd::Probing(p) => self.probing = Some((p, 0)),
        }
        Ok(())
    }

    /// Tell str0m what a probe of the rung controller wants. At its start
    /// str0m's estimator starts over from the probe's rate: its pacer caps
    /// padding by its estimate, and the probe is there to find out whether
    /// the link carries that rate (the estimate falls if it does not).
    /// str0m then pads what we send up to the probe's rate, ramped up over
    /// the first half of the probe as the controller's padding is on
    /// webrtcbin (the controller's own figure assumes the rung sends its
    /// full bitrate; the padding here fills up to what was asked whatever
    /// the picture sends). When the probe ends the estimator starts over
    /// from the rate it proved, or else from where it was before the probe
    /// (or lower, if it fell).
    fn probe(&mut self, now: Instant) {
        let Some((asked, told)) = &mut self.probing else { return };
        let probe = asked.probe_bps.load(Ordering::Relaxed);
        if probe == 0 && *told == 0 {
            return;
        }
        if probe != 0 && probe == *told {
            // Ramping up: a new setting every 100 ms.
            let since = now.saturating_duration_since(self.probe_started);
            if since > Duration::from_millis(crate::ladder::PROBE_MS / 2 + 100) || now < self.probe_told + Duration::from_millis(100) {
                return;
            }
        }
        let (was, proven) = (*told, asked.proven_bps.swap(0, Ordering::Relaxed));
        *told = probe;
        if was == 0 && probe != 0 {
            self.before_probe = self.estimate;
        }
        if probe != was && probe != 0 {
            self.probe_started = now;
        }
        self.probe_told = now;
        let restart = match (was, probe) {
            (_, p) if p != 0 && p != was => Some(p),
            (_, 0) if proven > 0 => Some(proven),
            (_, 0) if self.before_probe > 0 => Some(self.before_probe.min(self.estimate)),
            _ => None,
        };
        let ramp = (now.saturating_duration_since(self.probe_started).as_secs_f64() * 1000.0 / (crate::ladder::PROBE_MS as f64 / 2.0)).min(1.0);
        let minimum = (probe as f64 * ramp) as u64;
        let mut bwe = self.rtc.bwe();
        if let Some(bps) = restart {
            bwe.reset(Bitrate::bps(bps as u64));
        }
        bwe.set_bitrate(Bitrate::bps(minimum), Bitrate::bps(probe as u64));
    }

    fn write(&mut self, mid: Mid, codec: Codec, now: Instant, time: MediaTime, data: Vec<u8>) {
        if !self.connected {
            return;
        }
        let Some(writer) = self.rtc.writer(mid) else { return };
        let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { return };
        if let Err(e) = writer.write(pt, now, time, data) {
            tracing::debug!("str0m write: {e}");
        }
        if mid == self.video && !self.video_unpaced {
            // Video goes out as it comes, as on webrtcbin: str0m's pacer
            // (on for the padding of probes) would spread each frame over
            // its estimate (20 ms of a 1.2 Mbit/s frame, a keyframe over a
            // tenth of a second). Its stream exists once the first frame
            // is written.
            if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(self.video, None) {
                stream.set_unpaced(true);
                // str0m drops every queued resend while resent bytes are
                // over 15 % of the last second's: at 10 % random loss a
                // keyframe's resends (and resends of resends) cross that,
                // the frame is lost for good, and the receiver waits for a
                // PLI's keyframe behind the rung's 500 ms throttle (freezes
                // of 670-740 ms in 3 of 9 runs of the lossy-link test).
                // A resend storm is still cut, at three times the loss we
                // serve (the lossy-link tests go to 10 %).
                stream.set_rtx_cache(1024, Duration::from_secs(3), Some(RTX_RATIO_CAP));
                self.video_unpaced = true;
            }
        }
    }
}

/// The next datagram on any of `sockets`: its length, where it came from
/// and our candidate it was sent to.
async fn recv_any(sockets: &[MediaSocket], buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for s in sockets {
            let mut read = tokio::io::ReadBuf::new(buf);
            if let std::task::Poll::Ready(r) = s.socket.poll_recv_from(cx, &mut read) {
                return std::task::Poll::Ready(r.map(|from| (read.filled().len(), from, s.candidate)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// A UDP socket on `address`: a free port of `ports` (tried from a random
/// start), or any port.
fn bind(address: IpAddr, ports: Option<(u16, u16)>) -> Result<std::net::UdpSocket> {
    let Some((min, max)) = ports else {
        return std::net::UdpSocket::bind((address, 0)).with_context(|| format!("binding a media socket on {address}"));
    };
    let span = (max - min) as u32 + 1;
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) % span;
    for i in 0..span {
        let port = min + ((start + i) % span) as u16;
        if let Ok(s) = std::net::UdpSocket::bind((address, port)) {
            return Ok(s);
        }
    }
    anyhow::bail!("every UDP port of the port range {min}-{max} on {address} is taken")
}

/// This machine's addresses ICE may use when none are configured: those
/// of every interface that is up, without loopback (unless there is
/// nothing else) and without IPv6 link-local ones (they need a scope).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut loopback = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates; we
    // only read it, each `ifa_addr` as the family it says it is, and free
    // it once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
                continue;
            }
            let ip = match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(a.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            if let IpAddr::V6(v6) = ip {
                if v6.segments()[0] & 0xffc0 == 0xfe80 {
                    continue;
                }
            }
            let list = if ip.is_loopback() { &mut loopback } else { &mut found };
            if !list.contains(&ip) {
                list.push(ip);
            }
        }
        libc::freeifaddrs(list);
    }
    if found.is_empty() {
        loopback
    } else {
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_addresses_are_the_up_interfaces_without_loopback_or_link_local() {
        // What `ip` (iproute2, which scripts/deps.sh installs) lists.
        let out = std::process::Command::new("ip").args(["-o", "addr", "show", "up"]).output().expect("ip -o addr show up");
        let listed: Vec<IpAddr> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6").nth(1))
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect();
        let usable = |a: &IpAddr| !a.is_loopback() && !matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let mut want: Vec<IpAddr> = listed.iter().copied().filter(usable).collect();
        if want.is_empty() {
            want = listed.iter().copied().filter(|a| a.is_loopback()).collect();
        }
        let mut got = interface_addresses();
        want.sort();
        want.dedup();
        got.sort();
        assert!(!got.is_empty(), "no address at all (ip lists {listed:?})");
        assert_eq!(got, want, "ip lists {listed:?}");
    }

    #[test]
    fn a_socket_names_the_announced_address_of_its_family() {
        let a = Addresses { bind: vec![], announce: vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()] };
        assert_eq!(a.announced("10.0.0.2".parse().unwrap()), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(a.announced("fd00::2".parse().unwrap()), Some("2001:db8::7".parse().unwrap()));
        let v4_only = Addresses { bind: vec![], announce: vec!["203.0.113.7".parse().unwrap()] };
        assert_eq!(v4_only.announced("fd00::2".parse().unwrap()), None, "no announced IPv6 address: the local one is named");
    }
}
