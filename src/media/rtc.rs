//! A participant's transport outside webrtcbin: str0m (ICE, DTLS, SRTP,
//! RTP/RTCP, TWCC, NACK/RTX, packetizing), Sans-IO, driven by one tokio
//! task per peer with one UDP socket. No GStreamer here: frames come in as
//! bytes with their media time and go out the same way.
//!
//! Work in progress (docs/architecture.md, "Next: the transport outside
//! webrtcbin"): the server still runs webrtcbin; this is the peer that will
//! replace it, tested against webrtcbin (the bot's stack).
//!
//! The server offers: [`RtcPeer::offer`] makes the offer (our host
//! candidate in it), [`RtcPeer::apply_answer`] takes the answer, remote
//! candidates trickle in with [`RtcPeer::add_ice`]. Events go to the
//! owner's callback, which must not block (it runs on the peer's task).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::dtls::DtlsCertificate;

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
    /// its RTP time in the codec's clock.
    Media { kind: MediaKind, data: Vec<u8>, rtp_time: u64, keyframe: bool },
    /// The remote side asks for a keyframe of what we send.
    KeyframeRequested,
    /// An estimate of what the path to the remote side carries (bit/s);
    /// none while the estimator is off (see [`RtcPeer::offer`]).
    Estimate(u64),
}

pub type OnRtcEvent = Arc<dyn Fn(RtcEvent) + Send + Sync>;

enum Cmd {
    Answer(String),
    Ice(String),
    Video { data: Vec<u8>, rtp_time: u64 },
    Audio { data: Vec<u8>, rtp_time: u64 },
    AskKeyframe,
}

/// One remote peer. Dropping it ends its task and closes its socket.
pub struct RtcPeer {
    offer: String,
    local: SocketAddr,
    tx: mpsc::Sender<Cmd>,
}

/// Frames and packets queued towards a peer's task before the newest are
/// dropped (a second of video at 30 fps plus audio).
const QUEUE: usize = 96;

impl RtcPeer {
    /// A peer on `address` (a port of `ports`, or one the system chooses),
    /// offering Opus and VP8 both ways, with our DTLS certificate. Needs a
    /// tokio runtime (its task is spawned on the current one).
    pub fn offer(address: IpAddr, ports: Option<(u16, u16)>, cert: &DtlsCertificate, on_event: OnRtcEvent) -> Result<RtcPeer> {
        let runtime = tokio::runtime::Handle::try_current().context("the str0m transport needs the tokio runtime")?;
        let socket = bind(address, ports)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let socket = {
            let _guard = runtime.enter();
            UdpSocket::from_std(socket).context("registering the media socket")?
        };
        let (certificate, private_key) = cert.der()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            // No bandwidth estimator yet: its estimate is not fed to the rung
            // controller, and with it str0m paces every receiver's packets
            // on timers (a 16-person room: 29.4 -> 26.1 % of the machine
            // without it, three alternated pairs). Congestion control on
            // this transport is the next step (docs/architecture.md).
            .set_dtls_cert(str0m::config::DtlsCert { certificate, private_key })
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| anyhow!("host candidate: {e}"))?);
        let mut change = rtc.sdp_api();
        let audio = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let video = change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().context("str0m made no offer")?;
        let sdp = offer.to_sdp_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = Task { rtc, socket, local, pending: Some(pending), audio, video, on_event, connected: false };
        runtime.spawn(task.run(rx));
        Ok(RtcPeer { offer: sdp, local, tx })
    }

    /// Our offer, to signal.
    pub fn sdp(&self) -> &str {
        &self.offer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn apply_answer(&self, sdp: &str) {
        self.send(Cmd::Answer(sdp.to_string()));
    }

    /// A remote candidate (`candidate:...`, with or without `a=`); an empty
    /// one (end of candidates) is ignored.
    pub fn add_ice(&self, candidate: &str) {
        if !candidate.trim().is_empty() {
            self.send(Cmd::Ice(candidate.to_string()));
        }
    }

    /// An encoded VP8 frame, its RTP time at 90 kHz.
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

    fn send(&self, cmd: Cmd) {
        if self.tx.try_send(cmd).is_err() {
            tracing::debug!(local = %self.local, "peer queue full or closed; dropped");
        }
    }
}

struct Task {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    audio: Mid,
    video: Mid,
    on_event: OnRtcEvent,
    connected: bool,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2000];
        loop {
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
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => match (&buf[..n]).try_into() {
                        Ok(contents) => Some(Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents })),
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
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A full socket buffer drops the datagram, as a network would.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
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
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if !self.connected => {
                on(RtcEvent::Failed("ICE found no path".into()));
            }
            Event::MediaData(m) => {
                let kind = if m.mid == self.video { MediaKind::Video } else { MediaKind::Audio };
                let keyframe = kind == MediaKind::Video && m.is_keyframe();
                on(RtcEvent::Media { kind, data: m.data.to_vec(), rtp_time: m.time.numer(), keyframe });
            }
            Event::KeyframeRequest(_) => on(RtcEvent::KeyframeRequested),
            Event::EgressBitrateEstimate(b) => {
                let bps = match b {
                    str0m::bwe::BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                    _ => return,
                };
                on(RtcEvent::Estimate(bps));
            }
            _ => {}
        }
    }

    fn apply(&mut self, cmd: Cmd) -> Result<()> {
        let now = Instant::now();
        match cmd {
            Cmd::Answer(sdp) => {
                let outcome = match (SdpAnswer::from_sdp_string(&sdp), self.pending.take()) {
                    (Ok(answer), Some(pending)) => self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| format!("the answer does not fit the offer: {e}")),
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
            Cmd::Video { data, rtp_time } => self.write(self.video, Codec::Vp8, now, MediaTime::new(rtp_time, Frequency::NINETY_KHZ), data),
            Cmd::Audio { data, rtp_time } => self.write(self.audio, Codec::Opus, now, MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ), data),
            Cmd::AskKeyframe => {
                if let Some(mut w) = self.rtc.writer(self.video) {
                    let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                }
            }
        }
        Ok(())
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
    }
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
    anyhow::bail!("every UDP port of {min}-{max} on {address} is taken")
}
