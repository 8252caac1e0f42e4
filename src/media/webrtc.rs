//! WebRTC wiring shared by every `webrtcbin` we run: the server's
//! participant and viewer pipelines ([`super::participant`]) and the bot
//! ([`crate::tools::bot_media`]). One implementation of:
//!
//! * set-up: the DTLS certificate, the ICE agent's addresses and ports;
//! * ICE candidate forwarding, connection and ICE state, gathering;
//! * the offer/answer promises (local descriptions corrected for the
//!   given certificate's fingerprint);
//! * incoming streams: which decoder a stream needs and how a chain is
//!   attached to a running pipeline;
//! * bus handling (errors become [`PeerEvent::Failed`]).
//!
//! Everything webrtcbin tells us becomes a typed [`PeerEvent`] handed to
//! the owner's callback, from GStreamer's threads: the callback must not
//! block (owners forward with `try_send` on a bounded channel). Closures
//! hold weak references to the element and pipeline, and no lock of ours
//! is held while a signal is emitted.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEConnectionState, WebRTCICEGatheringState, WebRTCPeerConnectionState, WebRTCSDPType, WebRTCSessionDescription};

use super::dtls::DtlsCertificate;
use crate::config::Network;
use super::make;

/// What a peer's webrtcbin reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A local ICE candidate, to signal to the other side.
    Ice { mline: u32, candidate: String },
    /// Every local candidate has been found.
    GatheringComplete,
    /// ICE and DTLS are up: media flows.
    Connected,
    /// ICE, DTLS, negotiation or the pipeline failed.
    Failed(String),
    /// Our offer or answer, already set as the local description.
    LocalDescription(String),
    /// The remote answer was accepted.
    RemoteApplied,
    /// The remote answer was refused (the reason is webrtcbin's).
    RemoteRefused(String),
}

/// The owner's event callback: called on GStreamer threads, must not block.
pub type OnEvent = Arc<dyn Fn(PeerEvent) + Send + Sync>;

/// An incoming stream's kind, from its pad's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// `audio` or `video`.
    pub media: String,
    /// RTP encoding name, upper case (`VP8`, `H264`, `OPUS`).
    pub encoding: String,
}

impl Stream {
    fn of(pad: &gst::Pad) -> Stream {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let s = caps.structure(0);
        let field = |name: &str| s.and_then(|s| s.get::<&str>(name).ok()).unwrap_or("").to_string();
        Stream { media: field("media"), encoding: field("encoding-name").to_ascii_uppercase() }
    }

    pub fn is_video(&self) -> bool {
        self.media == "video"
    }

    /// The depayloader and decoder this stream needs, or None for a codec
    /// we do not decode.
    pub fn decoder(&self) -> Option<&'static [&'static str]> {
        match (self.media.as_str(), self.encoding.as_str()) {
            ("video", "VP8") => Some(&["rtpvp8depay", "vp8dec"]),
            ("video", "H264") => Some(&["rtph264depay", "h264parse", "avdec_h264"]),
            ("audio", "OPUS") => Some(&["rtpopusdepay", "opusdec"]),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.media, self.encoding)
    }
}

/// A `webrtcbin` named `webrtc` inside its pipeline, wired.
#[derive(Clone)]
pub struct Peer {
    pipeline: gst::Pipeline,
    webrtcbin: gst::Element,
    cert: DtlsCertificate,
    events: OnEvent,
    /// Local candidates found so far.
    found: Arc<AtomicU32>,
    /// The jitterbuffers of incoming video (retransmission on).
    video_jitterbuffers: Arc<parking_lot::Mutex<Vec<glib::WeakRef<gst::Element>>>>,
    /// Whether lost incoming video is asked for again (NACK); on unless
    /// [`Peer::without_nack`].
    nack: Arc<AtomicBool>,
    /// The audio packet time our descriptions ask of the other side
    /// (`a=ptime`, ms); 0: none (see [`Peer::ask_ptime`]).
    ptime: Arc<AtomicU32>,
}

/// What the jitterbuffers of a peer's incoming video did about loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repair {
    /// Retransmissions asked for (NACKed packets, retries included).
    pub requested: u64,
    /// Packets that arrived by retransmission in time.
    pub recovered: u64,
    /// Packets given up as lost, and packets that came too late.
    pub lost: u64,
    pub late: u64,
}

/// How long after our description a peer may go without a single local
/// candidate before it is failed (host candidates take milliseconds).
pub const NO_CANDIDATE_TIMEOUT: Duration = Duration::from_secs(3);

impl Peer {
    /// Give the pipeline's webrtcbin our certificate and network settings,
    /// and forward its candidates, states and the pipeline's errors to `events`.
    pub fn new(pipeline: &gst::Pipeline, cert: DtlsCertificate, network: &Network, events: OnEvent) -> Result<Peer> {
        cert.apply(pipeline);
        let webrtcbin = pipeline.by_name("webrtc").context("webrtcbin `webrtc` missing")?;
        configure_ice(&webrtcbin, network)?;
        let peer = Peer {
            pipeline: pipeline.clone(),
            webrtcbin,
            cert,
            events,
            found: Arc::new(AtomicU32::new(0)),
            video_jitterbuffers: Default::default(),
            nack: Arc::new(AtomicBool::new(true)),
            ptime: Arc::new(AtomicU32::new(0)),
        };
        peer.connect_signals(network.announce_ips.clone());
        peer.connect_bus();
        retransmit_lost_video(&peer.webrtcbin, peer.video_jitterbuffers.clone(), peer.nack.clone());
        Ok(peer)
    }

    /// Never ask for lost incoming video again: a lost frame waits for a
    /// keyframe (the `loss` bench's comparison). Before any media flows.
    pub fn without_nack(&self) {
        self.nack.store(false, Ordering::SeqCst);
    }

    /// Ask the other side for audio packets of `ms` (`a=ptime` in every
    /// audio section of our offers and answers). Browsers follow it.
    pub fn ask_ptime(&self, ms: u32) {
        self.ptime.store(ms, Ordering::SeqCst);
    }

    pub fn webrtcbin(&self) -> &gst::Element {
        &self.webrtcbin
    }

    /// Loss repair of the incoming video so far (jitterbuffer statistics).
    pub fn repair(&self) -> Repair {
        repair_of(&self.video_jitterbuffers)
    }

    /// The jitterbuffers of the incoming video, as they come (weak).
    pub fn jitterbuffers(&self) -> Jitterbuffers {
        self.video_jitterbuffers.clone()
    }

    fn emit(&self, ev: PeerEvent) {
        (self.events)(ev)
    }

    fn connect_signals(&self, announce: Vec<std::net::IpAddr>) {
        let events = self.events.clone();
        let count = self.found.clone();
        self.webrtcbin.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1)?.get::<u32>().ok()?;
            let candidate = values.get(2)?.get::<String>().ok()?;
            count.fetch_add(1, Ordering::Relaxed);
            for candidate in crate::protocol::announce_candidate(&candidate, &announce) {
                events(PeerEvent::Ice { mline, candidate });
            }
            None
        });
        let events = self.events.clone();
        self.webrtcbin.connect_notify(Some("ice-gathering-state"), move |wb, _| {
            if wb.property::<WebRTCICEGatheringState>("ice-gathering-state") == WebRTCICEGatheringState::Complete {
                events(PeerEvent::GatheringComplete);
            }
        });
        let events = self.events.clone();
        self.webrtcbin.connect_notify(Some("connection-state"), move |wb, _| {
            let st: WebRTCPeerConnectionState = wb.property("connection-state");
            tracing::debug!(peer = %wb.parent().map(|p| p.name().to_string()).unwrap_or_default(), "connection state {st:?}");
            match st {
                WebRTCPeerConnectionState::Connected => events(PeerEvent::Connected),
                WebRTCPeerConnectionState::Failed => events(PeerEvent::Failed("the peer connection failed (ICE or DTLS)".into())),
                _ => {}
            }
        });
        let events = self.events.clone();
        self.webrtcbin.connect_notify(Some("ice-connection-state"), move |wb, _| {
            if wb.property::<WebRTCICEConnectionState>("ice-connection-state") == WebRTCICEConnectionState::Failed {
                events(PeerEvent::Failed("ICE failed".into()));
            }
        });
    }

    fn connect_bus(&self) {
        let Some(bus) = self.pipeline.bus() else { return };
        let events = self.events.clone();
        let name = self.pipeline.name().to_string();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let src = e.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                    tracing::warn!(pipeline = %name, "error from {src}: {} ({:?})", e.error(), e.debug());
                    events(PeerEvent::Failed(format!("media error in {}: {}", src.rsplit('/').next().unwrap_or(""), e.error())));
                }
                gst::MessageView::Warning(w) => tracing::debug!(pipeline = %name, "warning: {}", w.error()),
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    /// Call `f` for each stream webrtcbin adds (a source pad), with the
    /// pipeline to attach a chain to.
    pub fn on_stream(&self, f: impl Fn(&gst::Pipeline, &gst::Pad, &Stream) + Send + Sync + 'static) {
        let pipeline = self.pipeline.downgrade();
        self.webrtcbin.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(pipeline) = pipeline.upgrade() {
                f(&pipeline, pad, &Stream::of(pad));
            }
        });
    }

    /// Start the pipeline and wait for the state change to finish: webrtcbin
    /// creates the DTLS transports while it negotiates, and a state change
    /// still running in another thread could take a new transport to READY
    /// before our certificate is in place (its decoder would then refuse
    /// every peer certificate: about one handshake in sixty failed). Sinks
    /// must be `async=false` so nothing waits for preroll.
    pub fn play(&self, settle: Duration) -> Result<()> {
        self.pipeline.set_state(gst::State::Playing).context("the pipeline refused to play")?;
        match self.pipeline.state(gst::ClockTime::from_nseconds(settle.as_nanos() as u64)) {
            (Ok(_), gst::State::Playing, _) => {}
            (res, cur, pending) => {
                tracing::warn!(pipeline = %self.pipeline.name(), "not settled in PLAYING ({res:?}, {cur:?} -> {pending:?}); negotiating anyway")
            }
        }
        Ok(())
    }

    /// Make an offer; it is set as the local description and reported as
    /// [`PeerEvent::LocalDescription`].
    pub fn offer(&self) {
        let peer = self.weak();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Some(p) = peer.upgrade() {
                p.set_local(reply, "offer");
            }
        });
        self.webrtcbin.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    }

    /// Apply a remote offer and answer it; the answer is set as the local
    /// description and reported as [`PeerEvent::LocalDescription`].
    pub fn answer(&self, offer_sdp: &str) -> Result<()> {
        let msg = gst_sdp::SDPMessage::parse_buffer(offer_sdp.as_bytes()).context("the offer SDP does not parse")?;
        let offer = WebRTCSessionDescription::new(WebRTCSDPType::Offer, msg);
        let peer = self.weak();
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(p) = peer.upgrade() else { return };
            if let Some(reason) = promise_error(reply) {
                p.emit(PeerEvent::Failed(format!("the offer was refused: {reason}")));
                return;
            }
            let peer = p.weak();
            let answered = gst::Promise::with_change_func(move |reply| {
                if let Some(p) = peer.upgrade() {
                    p.set_local(reply, "answer");
                }
            });
            p.webrtcbin.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &answered]);
        });
        self.webrtcbin.emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        Ok(())
    }

    /// Apply the remote answer to our offer: [`PeerEvent::RemoteApplied`]
    /// or [`PeerEvent::RemoteRefused`].
    pub fn apply_answer(&self, sdp: &str) {
        let Ok(msg) = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()) else {
            self.emit(PeerEvent::RemoteRefused("the answer SDP does not parse".into()));
            return;
        };
        let desc = WebRTCSessionDescription::new(WebRTCSDPType::Answer, msg);
        let events = self.events.clone();
        let promise = gst::Promise::with_change_func(move |reply| match promise_error(reply) {
            Some(reason) => events(PeerEvent::RemoteRefused(reason)),
            None => events(PeerEvent::RemoteApplied),
        });
        self.webrtcbin.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
    }

    /// A remote ICE candidate (an empty one, end-of-candidates, is ignored).
    pub fn add_ice(&self, mline: u32, candidate: &str) {
        if !candidate.is_empty() {
            self.webrtcbin.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
        }
    }

    /// The reply to create-offer/create-answer: correct it for our
    /// certificate, set it as the local description, report it.
    fn set_local(&self, reply: std::result::Result<Option<&gst::StructureRef>, gst::PromiseError>, kind: &str) {
        let desc = match reply {
            Ok(Some(r)) => r.value(kind).ok().and_then(|v| v.get::<WebRTCSessionDescription>().ok()),
            _ => None,
        };
        let Some(desc) = desc else {
            self.emit(PeerEvent::Failed(format!("webrtcbin could not create an {kind}")));
            return;
        };
        let desc = match self.cert.local_description(&desc).and_then(|d| with_ptime(&d, self.ptime.load(Ordering::SeqCst))) {
            Ok(d) => d,
            Err(e) => {
                self.emit(PeerEvent::Failed(format!("{kind} SDP: {e:#}")));
                return;
            }
        };
        self.webrtcbin.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
        match desc.sdp().as_text() {
            Ok(sdp) => {
                tracing::trace!("local {kind}:\n{sdp}");
                self.emit(PeerEvent::LocalDescription(sdp))
            }
            Err(e) => self.emit(PeerEvent::Failed(format!("{kind} SDP: {e}"))),
        }
        self.fail_without_candidates();
    }

    /// Gathering starts with the local description. libnice gives up
    /// silently when it cannot bind (every port of the UDP port range
    /// taken): gathering never completes and no candidate comes. Say so
    /// after [`NO_CANDIDATE_TIMEOUT`] rather than let the other side time
    /// out. The check runs on the system clock's thread, never blocking.
    fn fail_without_candidates(&self) {
        let clock = gst::SystemClock::obtain();
        let at = clock.time() + gst::ClockTime::from_nseconds(NO_CANDIDATE_TIMEOUT.as_nanos() as u64);
        let (found, events) = (self.found.clone(), self.events.clone());
        let id = clock.new_single_shot_id(at);
        let armed = id.wait_async(move |_, _, _| {
            if found.load(Ordering::Relaxed) == 0 {
                events(PeerEvent::Failed("no local ICE candidate: no usable address, or every port of the UDP port range is taken".into()));
            }
        });
        if let Err(e) = armed {
            tracing::debug!("no candidate check not armed: {e:?}");
        }
    }

    fn weak(&self) -> WeakPeer {
        WeakPeer {
            pipeline: self.pipeline.downgrade(),
            webrtcbin: self.webrtcbin.downgrade(),
            cert: self.cert.clone(),
            events: self.events.clone(),
            found: self.found.clone(),
            video_jitterbuffers: self.video_jitterbuffers.clone(),
            nack: self.nack.clone(),
            ptime: self.ptime.clone(),
        }
    }
}

/// `desc` asking for audio packets of `ms` (unchanged for 0).
fn with_ptime(desc: &WebRTCSessionDescription, ms: u32) -> Result<WebRTCSessionDescription> {
    if ms == 0 {
        return Ok(desc.clone());
    }
    let text = desc.sdp().as_text().context("local SDP does not print")?;
    let asked = crate::protocol::with_audio_ptime(&text, ms);
    let msg = gst_sdp::SDPMessage::parse_buffer(asked.as_bytes()).context("local SDP does not parse with a=ptime")?;
    Ok(WebRTCSessionDescription::new(desc.type_(), msg))
}

/// A [`Peer`] held by webrtcbin's own callbacks without keeping it alive.
struct WeakPeer {
    pipeline: glib::WeakRef<gst::Pipeline>,
    webrtcbin: glib::WeakRef<gst::Element>,
    cert: DtlsCertificate,
    events: OnEvent,
    found: Arc<AtomicU32>,
    video_jitterbuffers: Arc<parking_lot::Mutex<Vec<glib::WeakRef<gst::Element>>>>,
    nack: Arc<AtomicBool>,
    ptime: Arc<AtomicU32>,
}

impl WeakPeer {
    fn upgrade(&self) -> Option<Peer> {
        Some(Peer {
            pipeline: self.pipeline.upgrade()?,
            webrtcbin: self.webrtcbin.upgrade()?,
            cert: self.cert.clone(),
            events: self.events.clone(),
            found: self.found.clone(),
            video_jitterbuffers: self.video_jitterbuffers.clone(),
            nack: self.nack.clone(),
            ptime: self.ptime.clone(),
        })
    }
}

/// The error a webrtcbin promise replied with, if any.
fn promise_error(reply: std::result::Result<Option<&gst::StructureRef>, gst::PromiseError>) -> Option<String> {
    match reply {
        Ok(Some(r)) => r.get::<glib::Error>("error").ok().map(|e| e.to_string()),
        Ok(None) => None,
        Err(e) => Some(format!("{e:?}")),
    }
}

/// The jitterbuffers of a peer's incoming video (weak: they go with it).
pub type Jitterbuffers = Arc<parking_lot::Mutex<Vec<glib::WeakRef<gst::Element>>>>;

/// What `jbs` did about loss so far (their statistics, summed).
pub fn repair_of(jbs: &Jitterbuffers) -> Repair {
    let live: Vec<gst::Element> = jbs.lock().iter().filter_map(|w| w.upgrade()).collect();
    let mut r = Repair::default();
    for jb in live {
        let s = jb.property::<gst::Structure>("stats");
        let n = |k: &str| s.get::<u64>(k).unwrap_or(0);
        r.requested += n("rtx-count");
        r.recovered += n("rtx-success-count");
        r.lost += n("num-lost");
        r.late += n("num-late");
    }
    r
}

/// Make the elements named in `factories`, preceded by a queue holding at
/// most `queue_ms` of data (none when 0).
pub fn chain(factories: &[&str], queue_ms: u64) -> Result<Vec<gst::Element>> {
    let mut elements = Vec::new();
    // No queue: the stream runs on the thread that pushes it (for
    // webrtcbin's source pads, its jitterbuffer's).
    if queue_ms > 0 {
        let queue = make("queue")?;
        queue.set_property("max-size-time", queue_ms * 1_000_000);
        elements.push(queue);
    }
    for f in factories {
        elements.push(make(f)?);
    }
    Ok(elements)
}

/// The statistics of the streams the peer sends us, from the RTP session
/// (one bundled session, 0, carries audio and video): each a
/// `application/x-rtp-source-stats` structure, with the report block the
/// peer last sent about our streams (`rb-*`) and the feedback we sent it
/// (`sent-pli-count`, ...).
pub fn remote_sources(webrtcbin: &gst::Element) -> Vec<gst::Structure> {
    let Some(rtpbin) = webrtcbin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("rtpbin")) else { return Vec::new() };
    let Some(session) = rtpbin.emit_by_name::<Option<glib::Object>>("get-internal-session", &[&0u32]) else { return Vec::new() };
    let stats = session.property::<gst::Structure>("stats");
    let Ok(sources) = stats.get::<glib::ValueArray>("source-stats") else { return Vec::new() };
    sources.iter().filter_map(|v| v.get::<gst::Structure>().ok()).filter(|s| !s.get::<bool>("internal").unwrap_or(true)).collect()
}

/// Keyframes we asked of the peer so far: PLIs and FIRs our RTCP sent
/// about its streams.
pub fn keyframes_asked(webrtcbin: &gst::Element) -> u64 {
    remote_sources(webrtcbin)
        .iter()
        .map(|s| s.get::<u32>("sent-pli-count").unwrap_or(0) as u64 + s.get::<u32>("sent-fir-count").unwrap_or(0) as u64)
        .sum()
}

/// A frame lost for good (retransmission could not repair it in time)
/// freezes the picture until the next keyframe, which the depayloader asks
/// the sender for at once (PLI), as a browser does. Decoding on broken
/// references would show smeared garbage until a keyframe came by chance.
pub fn freeze_on_loss(chain: &[gst::Element]) {
    for depay in chain.iter().filter(|e| e.find_property("wait-for-keyframe").is_some()) {
        depay.set_property("wait-for-keyframe", true);
        if depay.find_property("request-keyframe").is_some() {
            depay.set_property("request-keyframe", true);
        }
    }
}

/// Attach `chain` to the running `pipeline` between `pad` and `tail` (added
/// to the pipeline unless it is in already): link, start, then link the pad.
pub fn attach(pipeline: &gst::Pipeline, pad: &gst::Pad, chain: &[gst::Element], tail: &gst::Element) -> Result<()> {
    pipeline.add_many(chain.iter())?;
    if tail.parent().is_none() {
        pipeline.add(tail)?;
    }
    gst::Element::link_many(chain.iter())?;
    chain.last().context("empty chain")?.link(tail)?;
    tail.sync_state_with_parent()?;
    for e in chain {
        e.sync_state_with_parent()?;
    }
    pad.link(&chain[0].static_pad("sink").context("chain has no sink pad")?)?;
    Ok(())
}

/// Consume and drop a stream nobody uses.
pub fn discard(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<()> {
    let sink = make("fakesink")?;
    sink.set_property("async", false);
    sink.set_property("sync", false);
    pipeline.add(&sink)?;
    sink.sync_state_with_parent()?;
    pad.link(&sink.static_pad("sink").context("fakesink pad")?)?;
    Ok(())
}

/// An element of `pipeline` by name, as `T` (an appsrc, an appsink).
pub fn element<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> Result<T> {
    pipeline
        .by_name(name)
        .with_context(|| format!("{name} missing"))?
        .downcast::<T>()
        .map_err(|_| anyhow::anyhow!("{name} is not a {}", T::static_type().name()))
}

mod nice_ffi {
    use std::os::raw::{c_char, c_int, c_void};
    #[link(name = "nice")]
    extern "C" {
        pub fn nice_address_new() -> *mut c_void;
        pub fn nice_address_free(addr: *mut c_void);
        pub fn nice_address_set_from_string(addr: *mut c_void, s: *const c_char) -> c_int;
        pub fn nice_agent_add_local_address(agent: *mut c_void, addr: *const c_void) -> c_int;
    }
}

/// Regular RTCP reports (the ones with report blocks: round trip and loss
/// for the other side) of a session go 0.5 to 1.5 times this apart (RFC
/// 4585): about 2 a second (libwebrtc sends one a second for video). With
/// TWCC feedback every 100 ms, a session sends about 10 RTCP packets a
/// second in all (metrics test, rtpsession debug log).
const RTCP_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// How often a session sends TWCC feedback about what it receives (as
/// libwebrtc does, about every 100 ms).
const TWCC_FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
/// RTCP budget of a session, given so that [`RTCP_MIN_INTERVAL`] (not the
/// bandwidth share) sets the regular interval.
const RTCP_BUDGET: f64 = 1e6;
/// Wait this long after a gap before asking for the missing packet
/// (reordering within a burst is covered by `rtx-delay-reorder`).
const RTX_DELAY_MS: i32 = 5;
/// Ask again no sooner than this (twice the measured round trip if longer).
const RTX_MIN_RETRY_MS: i32 = 15;
/// Sessions up to this many members (SSRCs) send feedback at once.
const IMMEDIATE_FEEDBACK_MEMBERS: u32 = 64;
/// A video jitterbuffer waits at least this long for a lost packet.
pub const VIDEO_WAIT_MS: u32 = 150;

/// Ask for lost video packets again (NACK; the sender answers with RTX).
///
/// webrtcbin 1.22 turns a jitterbuffer's retransmission on only when the
/// remote description lists the stream's SSRC (`a=ssrc`): our offers have
/// none (the video send path is linked after the answer), so a bot
/// receiving from us never asked. Each new jitterbuffer's first packet
/// tells its payload type; one of our video codecs turns retransmission
/// on, whatever the description says (both sides negotiate `nack` for
/// video; audio has no NACK).
fn retransmit_lost_video(webrtcbin: &gst::Element, video: Arc<parking_lot::Mutex<Vec<glib::WeakRef<gst::Element>>>>, nack: Arc<AtomicBool>) {
    let Some(rtpbin) = webrtcbin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("rtpbin")) else {
        tracing::warn!("webrtcbin has no rtpbin child: lost video is not asked for again");
        return;
    };
    let bin = rtpbin.downgrade();
    rtpbin.connect("new-jitterbuffer", false, move |values| {
        let jb = values.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        let session_id = values.get(2).and_then(|v| v.get::<u32>().ok())?;
        let bin = bin.clone();
        let pad = jb.static_pad("sink")?;
        let weak = jb.downgrade();
        let video = video.clone();
        let nack = nack.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buf) else { return gst::PadProbeReturn::Ok };
            let pt = rtp.payload_type() as i32;
            // The session's RTCP pacing: regular reports, TWCC feedback,
            // and NACKs at once (a NACK that waited for a regular report,
            // 5 s apart by default, missed the jitterbuffer's deadline).
            // Set here, on the first packet, not in the signal: rtpbin
            // emits `new-jitterbuffer` holding a session lock, and
            // `get-internal-session` takes rtpbin's own (a join/leave soak
            // hung on that lock order).
            if let Some(session) = bin.upgrade().and_then(|b| b.emit_by_name::<Option<glib::Object>>("get-internal-session", &[&session_id])) {
                if session.find_property("rtcp-min-interval").is_some() {
                    session.set_property("rtcp-min-interval", RTCP_MIN_INTERVAL.as_nanos() as u64);
                }
                // rtpsession 1.22 sends a regular report only once a
                // whole interval of the RTCP bandwidth share (about 1.5 s
                // at the default 5 % of 64 kbit/s) has passed since its
                // last RTCP packet of any kind, early ones included. Early
                // packets (TWCC feedback, NACKs) came more often than
                // that, so after the first second no regular report (no
                // report blocks: no round trip, no loss for the other
                // side) ever left. A generous budget makes that interval a
                // few milliseconds, and the minimum above paces them.
                if session.find_property("rtcp-fraction").is_some() {
                    session.set_property("rtcp-fraction", RTCP_BUDGET);
                }
                // TWCC feedback at a steady pace instead of after every
                // video frame: each feedback is an early RTCP packet.
                if session.find_property("twcc-feedback-interval").is_some() {
                    session.set_property("twcc-feedback-interval", TWCC_FEEDBACK_INTERVAL.as_nanos() as u64);
                }
                // RFC 4585's immediate feedback mode (a NACK leaves at
                // once) holds only for sessions of at most this many
                // members, 3 by default; a peer's audio, video and RTX
                // streams both ways count, and every NACK then waited for
                // an early-RTCP slot (one per regular interval).
                if session.find_property("rtcp-immediate-feedback-threshold").is_some() {
                    session.set_property("rtcp-immediate-feedback-threshold", IMMEDIATE_FEEDBACK_MEMBERS);
                }
            }
            if crate::protocol::Codec::ALL.into_iter().any(|c| super::video_pt(c) == pt) {
                if let Some(jb) = weak.upgrade() {
                    // Only for packets seen missing (a later one arrived):
                    // guessing when the next packet is due declared the
                    // frames of a sparse stream (a still screen share at a
                    // few frames a second) lost before they were sent, and
                    // dropped them as late when they came.
                    jb.set_property("rtx-next-seqnum", false);
                    jb.set_property("do-retransmission", nack.load(Ordering::SeqCst));
                    // Ask at once and again soon, as libwebrtc does: the
                    // automatic settings waited a third of a frame before
                    // the first request and a whole frame (33 ms) before
                    // each retry, and a jitterbuffer gave up a third of
                    // the packets a lossy sender lost (the lossy uplink
                    // test's freezes reached 866 ms at 10 % loss).
                    jb.set_property("rtx-delay", RTX_DELAY_MS);
                    jb.set_property("rtx-min-retry-timeout", RTX_MIN_RETRY_MS);
                    // A lost packet needs a round trip and a retry to come
                    // again; packets in order pass at once whatever this is.
                    if jb.property::<u32>("latency") < VIDEO_WAIT_MS {
                        jb.set_property("latency", VIDEO_WAIT_MS);
                    }
                    let mut v = video.lock();
                    v.retain(|w| w.upgrade().is_some());
                    v.push(weak.clone());
                }
            } else if let Some(jb) = weak.upgrade() {
                // Audio is never resent (no RTX for Opus, and a late
                // frame is concealed). webrtcbin turns retransmission on
                // for every jitterbuffer of a bundled session when its
                // video asks for it, and the audio jitterbuffer then
                // NACKed a bot's audio about 40 times a second on
                // loopback, each NACK an early RTCP packet.
                jb.set_property("do-retransmission", false);
            }
            gst::PadProbeReturn::Remove
        });
        None
    });
}

/// Set up the ICE agent of `webrtcbin` (before any gathering): the local
/// addresses it may use (none given: every interface) and its UDP port
/// range (with max-bundle, one port per peer). ICE-TCP is off: its
/// passive candidates listen on TCP ports of the same range, and after a
/// peer leaves, its TCP connections' TIME_WAIT keeps those ports from
/// being listened on again for a minute, which failed every new peer's
/// gathering in a small range; clients that cannot use UDP go through TURN
/// over TCP or TLS instead. UPnP port mapping is turned off either way: it is for clients
/// behind home routers, and each agent otherwise starts a UPnP discovery of
/// its own (threads, sockets, and "Unable to listen" warnings when many
/// agents share a host).
pub fn configure_ice(webrtcbin: &gst::Element, network: &Network) -> Result<()> {
    let ice: glib::Object = webrtcbin.property("ice-agent");
    if ice.find_property("ice-tcp").is_some() {
        ice.set_property("ice-tcp", false);
    }
    if let Some(range) = network.udp_ports {
        // max first: min may not be set above the current max.
        ice.set_property("max-rtp-port", range.max as u32);
        ice.set_property("min-rtp-port", range.min as u32);
    }
    if ice.find_property("agent").is_none() {
        if network.ice_addresses.is_empty() {
            return Ok(());
        }
        anyhow::bail!("the ICE implementation of webrtcbin is not libnice; cannot restrict addresses");
    }
    let agent: glib::Object = ice.property("agent");
    if agent.find_property("upnp").is_some() {
        agent.set_property("upnp", false);
    }
    for a in &network.ice_addresses {
        let c = std::ffi::CString::new(a.as_str()).context("ICE address contains a NUL byte")?;
        // SAFETY: `agent` is a live NiceAgent (the property's declared type);
        // the NiceAddress is allocated, filled and freed here, and
        // nice_agent_add_local_address copies it.
        unsafe {
            let addr = nice_ffi::nice_address_new();
            let ok = nice_ffi::nice_address_set_from_string(addr, c.as_ptr()) != 0;
            if ok {
                nice_ffi::nice_agent_add_local_address(agent.as_ptr() as *mut _, addr);
            }
            nice_ffi::nice_address_free(addr);
            if !ok {
                anyhow::bail!("`{a}` is not an IP address");
            }
        }
    }
    Ok(())
}
