//! Media: the only module of the server that talks to GStreamer.
//!
//! * [`mixer`]: one pipeline per room: a `compositor` for the grid, the
//!   encoder ladder ([`delivery`]: one encoder per rung in use, shared by
//!   every receiver on it) and the mix-minus audio mixer ([`audio`]).
//! * [`participant`]: one pipeline per participant around `webrtcbin`:
//!   decodes what the participant sends into the room mixer, sends its
//!   rung's encoded grid and its own audio mix back; reports typed
//!   [`crate::room::MediaEvent`]s, never wire messages.
//! * [`webrtc`]: the webrtcbin wiring every peer shares (the participant
//!   pipeline here and the bot): ICE, states, offer/answer, decoders, bus.
//! * [`share`]: a participant's shared screen, a second pipeline around
//!   `webrtcbin` that only receives video into a compositor input.
//! * [`dtls`]: the process's DTLS certificate (ECDSA P-256).
//! * [`preview`]: `tessera preview`, a layout rendered as the mixer would.
//!
//! Pipelines are bridged with appsink/appsrc (see docs/architecture.md).
//! The bot's media lives apart, in [`crate::tools::bot_media`].

pub mod audio;
pub mod delivery;
pub mod direct;
pub mod dtls;
pub mod mixer;
pub mod opus;
pub mod participant;
pub mod preview;
pub mod raw;
pub mod recording;
pub mod rtc;
pub mod stream;
pub mod share;
pub mod srtp;
pub mod webrtc;

use std::sync::{Arc, Once};

use anyhow::{Context, Result};
use gst::prelude::*;

use crate::ladder::{default_ladder, fit_ladder, Rung};
use crate::room::{EventSender, JoinOptions, MediaFactory, ParticipantMedia, RoomMedia};

pub use crate::layouts::DEFAULT_VIDEO_ENCODER;

/// Media settings of a server.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Size and frame rate of the composed grid. Fixed for the life of a
    /// room so joins and leaves never renegotiate the mixer.
    pub canvas_width: u32,
    pub canvas_height: u32,
    pub fps: u32,
    /// webrtcbin jitterbuffer latency (incoming RTP), milliseconds.
    pub jitterbuffer_ms: u32,
    /// compositor (aggregator) latency on top of upstream latency, milliseconds.
    pub mixer_latency_ms: u32,
    /// Audio held back on top of the mix's jitter prebuffer, milliseconds.
    pub audio_delay_ms: u32,
    /// gst-launch fragment encoding raw video to VP8 (one per rung).
    pub video_encoder: String,
    /// gst-launch fragment encoding raw video to H.264 (one per rung, for
    /// receivers that chose H.264).
    pub h264_encoder: String,
    /// The encoder ladder, highest first; empty: derived from the canvas.
    pub ladder: Vec<Rung>,
    /// Opus bitrate of each participant's mix, bits per second.
    pub audio_bitrate: u32,
    /// Opus encoder complexity (0..=10) of every mix encoder.
    pub audio_complexity: u32,
    /// Talkers mixed at most, each with a personal mix-minus encoder.
    pub audio_talkers: u32,
    /// A 20 ms frame at or above this level (dBFS) makes its sender a talker.
    pub audio_talker_threshold_db: f64,
    /// Audio packet time asked of senders, ms (`a=ptime` in our SDP).
    pub audio_ptime_ms: u32,
    /// Canvas background, 0xRRGGBB.
    pub background: u32,
    /// `[network]`: ICE addresses, given to every webrtcbin.
    pub network: crate::config::Network,
    /// The rung that carries a shared screen alone (mixer.toml `[share]`).
    pub share_focus: crate::layouts::ShareFocus,
    /// Live streams (mixer.toml `[stream]`).
    pub stream: crate::layouts::StreamSettings,
    /// DTLS certificate of every participant's and viewer's webrtcbin.
    /// None: the process's own, generated at first use (ECDSA P-256).
    pub dtls: Option<dtls::DtlsCertificate>,
    /// How participants' media travels (`[media] transport`).
    pub transport: crate::config::Transport,
}

impl Default for MediaConfig {
    /// mixer.toml's defaults (defined once, in [`crate::layouts::MixerSettings`]),
    /// every interface, the process's certificate.
    fn default() -> Self {
        MediaConfig::from_mixer(&crate::layouts::MixerSettings::default())
    }
}

impl MediaConfig {
    /// How the room's audio mixer mixes and encodes.
    pub fn mix_settings(&self) -> audio::MixSettings {
        audio::MixSettings {
            delay_ms: self.audio_delay_ms,
            talkers: self.audio_talkers as usize,
            talker_threshold_db: self.audio_talker_threshold_db,
            bitrate: self.audio_bitrate,
            complexity: self.audio_complexity,
        }
    }

    /// The start-time media settings of a pipelines folder's mixer.toml.
    pub fn from_mixer(m: &crate::layouts::MixerSettings) -> MediaConfig {
        MediaConfig {
            canvas_width: m.width,
            canvas_height: m.height,
            fps: m.fps,
            jitterbuffer_ms: m.jitterbuffer_ms,
            mixer_latency_ms: m.mixer_latency_ms,
            audio_delay_ms: m.audio_delay_ms,
            video_encoder: m.video_encoder.clone(),
            h264_encoder: m.h264_encoder.clone(),
            ladder: m.ladder.clone(),
            audio_bitrate: m.audio_bitrate,
            audio_complexity: m.audio_complexity,
            audio_talkers: m.audio_talkers,
            audio_talker_threshold_db: m.audio_talker_threshold_db,
            audio_ptime_ms: m.audio_ptime_ms,
            share_focus: m.share_focus.clone(),
            stream: m.stream.clone(),
            background: m.background.0,
            network: crate::config::Network::default(),
            dtls: None,
            transport: crate::config::Transport::default(),
        }
    }

    /// mixer.toml's settings with the server configuration's overrides.
    pub fn configured(m: &crate::layouts::MixerSettings, cfg: &crate::config::Config, dtls: dtls::DtlsCertificate) -> MediaConfig {
        let mut m = m.clone();
        cfg.media.apply(&mut m);
        MediaConfig { network: cfg.network.clone(), dtls: Some(dtls), transport: cfg.media.transport.unwrap_or_default(), ..MediaConfig::from_mixer(&m) }
    }

    /// The DTLS certificate to give every webrtcbin of this server.
    pub fn dtls_certificate(&self) -> Result<dtls::DtlsCertificate> {
        match &self.dtls {
            Some(c) => Ok(c.clone()),
            None => dtls::DtlsCertificate::process(),
        }
    }

    /// The ladder index of the share focus rung, if any.
    pub fn focus_rung(&self) -> Option<usize> {
        let rungs = self.rungs();
        match self.share_focus.rung.as_deref() {
            None => rungs.len().checked_sub(1),
            Some("") => None,
            Some(name) => rungs.iter().position(|r| r.name == name),
        }
    }

    /// The ladder in use: the declared one fitted to the canvas, or the
    /// default one for the canvas.
    pub fn rungs(&self) -> Vec<Rung> {
        if self.ladder.is_empty() {
            default_ladder(self.canvas_width, self.canvas_height, self.fps)
        } else {
            fit_ladder(&self.ladder, self.canvas_width, self.canvas_height, self.fps)
        }
    }
}

/// Transport-wide congestion control header extension (its SDP id).
pub const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
pub const TWCC_EXT_ID: u8 = 3;

static INIT: Once = Once::new();

/// Initialise GStreamer once and check that every element we use exists.
pub fn init() -> Result<()> {
    // Before any SRTP element loads the system's libsrtp2 (no path: the
    // default one when there; never an error).
    srtp::choose(None)?;
    let mut res = Ok(());
    INIT.call_once(|| {
        openssl_without_atexit();
        res = gst::init().context("GStreamer failed to initialise").map(|_| ())
    });
    res?;
    let needed = [
        "webrtcbin", "compositor", "videotestsrc", "audiotestsrc", "vp8enc", "vp8dec", "rtpvp8pay",
        "rtpvp8depay", "opusenc", "opusdec", "rtpopuspay", "rtpopusdepay", "appsrc", "appsink",
        "videoconvert", "videoscale", "audioconvert", "audioresample", "capsfilter", "queue",
        "aspectratiocrop", "videocrop", "textoverlay", "tee", "valve", "videorate",
        // Every offer names H.264: what a client sends in it is decoded.
        "rtph264pay", "rtph264depay", "h264parse", "avdec_h264",
    ];
    let missing: Vec<&str> = needed.iter().copied().filter(|n| gst::ElementFactory::find(n).is_none()).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "GStreamer elements missing: {} (install the packages listed in scripts/deps.sh)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Tell the system OpenSSL, before GStreamer's DTLS elements load it, to
/// leave its global state to the operating system at exit.
///
/// By default OpenSSL frees that state from an `atexit` handler, which
/// assumes every thread that used it has stopped. GStreamer's pooled
/// streaming threads outlive the pipelines that used OpenSSL (DTLS) and run
/// OpenSSL's per-thread cleanup whenever they end; racing with the handler
/// at exit, that aborted a test binary with "double free or corruption"
/// after all its tests had passed (CI, `viewers_share_the_rung_encoders`).
/// `OPENSSL_INIT_NO_ATEXIT` is OpenSSL's documented way out (curl uses it);
/// the first initialisation decides, so this runs before `gst::init`.
fn openssl_without_atexit() {
    const OPENSSL_INIT_NO_ATEXIT: u64 = 0x0008_0000;
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbol has the
    // C signature `int OPENSSL_init_crypto(uint64_t, const OPENSSL_INIT_SETTINGS *)`
    // and accepts a null settings pointer. The library stays loaded (it is
    // never closed, and GStreamer's DTLS plugin links the same one).
    unsafe {
        let lib = libc::dlopen(c"libcrypto.so.3".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if lib.is_null() {
            tracing::debug!("libcrypto.so.3 not loaded here; OpenSSL keeps its exit handler");
            return;
        }
        let sym = libc::dlsym(lib, c"OPENSSL_init_crypto".as_ptr());
        if sym.is_null() {
            return;
        }
        let init: extern "C" fn(u64, *const libc::c_void) -> libc::c_int = std::mem::transmute(sym);
        if init(OPENSSL_INIT_NO_ATEXIT, std::ptr::null()) != 1 {
            tracing::warn!("OpenSSL refused OPENSSL_INIT_NO_ATEXIT");
        }
    }
}

/// Return the heap memory freed so far to the system (glibc `malloc_trim`).
///
/// A participant's pipeline spreads its allocations over glibc's per-thread
/// arenas (up to 8 per core); freed there, the memory stays in the process
/// unless trimmed, so the resident size only ever grew with the number of
/// participants a server had seen. Called after a participant's pipeline
/// (and its room's, when it was the last) is gone.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Make an element or explain which plugin is missing.
pub(crate) fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("cannot create GStreamer element `{factory}`"))
}

/// The GStreamer implementation of [`MediaFactory`].
pub struct GstMedia {
    cfg: Arc<MediaConfig>,
}

impl GstMedia {
    pub fn new(cfg: MediaConfig) -> Result<Self> {
        init()?;
        // Fail at start, not at the first join, on a bad encoder fragment.
        check_fragment(&cfg.video_encoder)
            .map_err(|e| anyhow::anyhow!("the video encoder `{}` does not work: {e}", cfg.video_encoder))?;
        check_fragment(&cfg.h264_encoder)
            .map_err(|e| anyhow::anyhow!("the H.264 encoder `{}` does not work: {e}", cfg.h264_encoder))?;
        Ok(GstMedia { cfg: Arc::new(cfg) })
    }
}

impl MediaFactory for GstMedia {
    fn create_room(&self, room: &str) -> Result<Arc<dyn RoomMedia>> {
        Ok(Arc::new(GstRoom { mixer: Arc::new(mixer::RoomMixer::new(room, self.cfg.clone())?), outputs: parking_lot::Mutex::new(Vec::new()) }))
    }
}

struct GstRoom {
    mixer: Arc<mixer::RoomMixer>,
    /// Recordings and live streams running (a stopped one is finished and dropped).
    outputs: parking_lot::Mutex<Vec<Box<dyn Output>>>,
}

/// What a room sends out besides its members' streams: a recording or a
/// live stream, each a receiver of the room's shared encodings.
trait Output: Send + Sync {
    fn id(&self) -> &str;
    /// End it and finish its file or stream (blocking, seconds at most).
    fn stop(&self);
    /// Bring its reported duration and size up to date.
    fn refresh(&self) {}
}

impl Output for recording::Recording {
    fn id(&self) -> &str {
        recording::Recording::id(self)
    }
    fn stop(&self) {
        recording::Recording::stop(self)
    }
    fn refresh(&self) {
        recording::Recording::refresh(self)
    }
}

impl Output for stream::LiveStream {
    fn id(&self) -> &str {
        stream::LiveStream::id(self)
    }
    fn stop(&self) {
        stream::LiveStream::stop(self)
    }
}

impl Drop for GstRoom {
    /// The room closed: its recordings and streams end, finished.
    fn drop(&mut self) {
        for o in self.outputs.lock().drain(..) {
            o.stop();
        }
    }
}

impl RoomMedia for GstRoom {
    fn canvas(&self) -> (u32, u32) {
        self.mixer.canvas()
    }

    fn add_participant(&self, id: &str, opts: &JoinOptions, events: EventSender) -> Result<Box<dyn ParticipantMedia>> {
        if opts.role == crate::protocol::Role::Share {
            return Ok(Box::new(share::SharePipeline::new(id, self.mixer.clone(), events)?));
        }
        if self.mixer.config().transport == crate::config::Transport::Str0m && opts.role == crate::protocol::Role::Participant {
            return Ok(Box::new(direct::DirectParticipant::new(id, self.mixer.clone(), opts, events)?));
        }
        let p = participant::ParticipantPipeline::new(id, self.mixer.clone(), opts, events)?;
        Ok(Box::new(p))
    }

    fn rungs(&self) -> Vec<String> {
        self.mixer.delivery().ladder().into_iter().map(|r| r.name).collect()
    }

    fn stats(&self) -> serde_json::Value {
        let d = self.mixer.delivery();
        serde_json::json!({
            "encoders_running": d.running_encoders(),
            "rungs": d.stats(),
            "receivers": d.receivers(),
            "viewers": self.mixer.viewer_count(),
            "audio": self.mixer.audio_stats(),
            "inputs": self.mixer.input_stats(),
        })
    }

    fn set_layout(&self, tiles: &[crate::room::Placement]) {
        self.mixer.set_layout(tiles);
    }

    fn fps(&self) -> u32 {
        self.mixer.config().fps
    }

    fn on_levels(&self, listener: crate::room::LevelListener) {
        let listener: audio::Levels = Arc::from(listener);
        self.mixer.on_levels(listener);
    }

    fn start_recording(&self, info: Arc<parking_lot::Mutex<crate::room::RecordingInfo>>) -> Result<()> {
        let (id, path) = {
            let i = info.lock();
            (i.id.clone(), i.path.clone())
        };
        let r = recording::Recording::start(&self.mixer, &id, path, info)?;
        self.outputs.lock().push(Box::new(r));
        Ok(())
    }

    fn start_stream(&self, info: Arc<parking_lot::Mutex<crate::room::StreamInfo>>) -> Result<()> {
        let s = stream::LiveStream::start(&self.mixer, info)?;
        self.outputs.lock().push(Box::new(s));
        Ok(())
    }

    fn stop_output(&self, id: &str) -> bool {
        // Taken out of the list first: stopping blocks, and not under the lock.
        let o = {
            let mut list = self.outputs.lock();
            list.iter().position(|o| o.id() == id).map(|i| list.remove(i))
        };
        o.map(|o| o.stop()).is_some()
    }

    fn refresh_outputs(&self) {
        for o in self.outputs.lock().iter() {
            o.refresh();
        }
    }

    fn metrics(&self) -> crate::room::MediaMetrics {
        let d = self.mixer.delivery();
        let frames = d.rung_frames();
        let viewers = self.mixer.viewer_ids();
        crate::room::MediaMetrics {
            frames_composed: d.frames_composed(),
            canvas_fps: self.mixer.config().fps,
            keyframe_requests: d.counters.keyframe_requests.load(std::sync::atomic::Ordering::Relaxed),
            rung_switches: d.counters.rung_switches.load(std::sync::atomic::Ordering::Relaxed),
            rungs: d
                .stats()
                .into_iter()
                .zip(frames)
                .map(|(r, frames)| crate::room::RungMetrics {
                    codec: r.codec.name().to_string(),
                    rung: r.rung.name.clone(),
                    running: r.running,
                    receivers: r.receivers,
                    bitrate_bps: r.kbps as u64 * 1000,
                    frames,
                    keyframes_forced: r.keyframes_forced,
                })
                .collect(),
            receivers: d
                .receivers()
                .into_iter()
                .map(|r| crate::room::ReceiverMetrics {
                    estimate_bps: r.estimate_kbps as u64 * 1000,
                    delivered_bps: r.delivered_kbps as u64 * 1000,
                    loss: r.loss,
                    rtt_s: r.rtt_ms.map(|ms| ms / 1000.0),
                    viewer: viewers.contains(&r.id),
                })
                .collect(),
            first_frames_ms: d.counters.take_first_frames(),
        }
    }
}

/// The colorimetry of the canvas and of everything composed into it: the
/// one VP8 (and H.264 without colour signalling) is decoded with, and the
/// one a decoded VP8 tile already has. A tile, card or border in another
/// would be converted by the compositor on every frame of the room (the
/// background in bt709, the default for a 720p frame, cost a 16-person
/// room a tenth of a core converting every tile), and a canvas in bt709
/// was shown by every decoder with bt601's colours.
pub const CANVAS_COLORIMETRY: &str = "bt601";

/// Where one receiver's encoded media goes: the rung's frames
/// ([`delivery`]) or its mix packets ([`audio`]).
#[derive(Clone)]
pub enum Outlet {
    /// Into its pipeline: the appsrc in front of its payloader and
    /// webrtcbin, which stamps frames with its own running time.
    AppSrc(gst_app::AppSrc),
    /// Straight to its transport ([`rtc`]): called on the room's streaming
    /// or mixer thread with the buffer and the clock time it stands for (the
    /// pipelines' clock, the system clock); must not block.
    Direct(DirectOut),
}

pub type DirectOut = std::sync::Arc<dyn Fn(&gst::Buffer, gst::ClockTime) + Send + Sync>;

impl From<gst_app::AppSrc> for Outlet {
    fn from(a: gst_app::AppSrc) -> Outlet {
        Outlet::AppSrc(a)
    }
}

/// A copy of `buffer` (sharing its memory) without timestamps, so the
/// receiving live appsrc stamps it with its own running time
/// (`do-timestamp`): each pipeline has its own base time.
pub(crate) fn unstamped(buffer: &gst::Buffer) -> gst::Buffer {
    let mut b = buffer.copy();
    {
        let m = b.make_mut();
        m.set_pts(gst::ClockTime::NONE);
        m.set_dts(gst::ClockTime::NONE);
    }
    b
}

/// Tear a pipeline down so that nothing leaks: flush the bus, drop its
/// handler, go to NULL (which closes webrtcbin's sockets).
pub(crate) fn shutdown_pipeline(pipeline: &gst::Pipeline) {
    if let Some(bus) = pipeline.bus() {
        bus.set_flushing(true);
        bus.unset_sync_handler();
    }
    if let Err(e) = pipeline.set_state(gst::State::Null) {
        tracing::warn!("pipeline {} refused NULL: {e}", pipeline.name());
    }
}

/// RTP caps we send and accept; `rtcp-fb` fields become SDP feedback lines.
pub(crate) fn opus_rtp_caps() -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("encoding-name", "OPUS")
        .field("payload", 111i32)
        .field("clock-rate", 48000i32)
        // Browsers only accept `opus/48000/2`; without it they reject the m-line.
        .field("encoding-params", "2")
        .build()
}

/// The RTP payload type of each video codec in our offers.
pub(crate) fn video_pt(codec: crate::protocol::Codec) -> i32 {
    match codec {
        crate::protocol::Codec::Vp8 => 96,
        crate::protocol::Codec::H264 => 102,
    }
}

/// What a payloader of `codec` sends: payload type, feedback, TWCC.
pub(crate) fn video_rtp_caps(codec: crate::protocol::Codec) -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", codec.rtp_name())
        .field("payload", video_pt(codec))
        .field("clock-rate", 90000i32)
        .field("rtcp-fb-nack", true)
        .field("rtcp-fb-nack-pli", true)
        .field("rtcp-fb-ccm-fir", true)
        .field("rtcp-fb-transport-cc", true)
        .field(format!("extmap-{TWCC_EXT_ID}").as_str(), TWCC_URI)
        .build()
}

/// The video codecs a server offer lists, VP8 first (the default): H.264
/// as constrained baseline, packetization-mode 1, the profile every
/// browser and phone decodes.
pub(crate) fn offered_video_caps() -> gst::Caps {
    let mut caps = video_rtp_caps(crate::protocol::Codec::Vp8);
    let mut h264 = video_rtp_caps(crate::protocol::Codec::H264);
    {
        let h = h264.make_mut();
        if let Some(s) = h.structure_mut(0) {
            s.set("packetization-mode", "1");
            s.set("profile-level-id", "42e01f");
            s.set("level-asymmetry-allowed", "1");
        }
    }
    caps.make_mut().append(h264);
    caps
}

/// The encoded video a rung of `codec` hands its receivers' appsrc.
pub(crate) fn encoded_video_caps(codec: crate::protocol::Codec) -> gst::Caps {
    match codec {
        crate::protocol::Codec::Vp8 => gst::Caps::builder("video/x-vp8").build(),
        // The profile and level the offer names (42e01f): the payloader
        // accepts no less once the answer is applied; every rung's stream
        // is within them (the canvas is at most 720p30 for level 3.1).
        crate::protocol::Codec::H264 => gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .field("profile", "constrained-baseline")
            .field("level", "3.1")
            .build(),
    }
}

/// Check a gst-launch fragment with GStreamer's own parser: it must parse,
/// and every element and property it names must exist.
pub fn check_fragment(desc: &str) -> std::result::Result<(), String> {
    init().map_err(|e| format!("{e:#}"))?;
    let mut ctx = gst::ParseContext::new();
    match gst::parse::bin_from_description_full(desc, true, Some(&mut ctx), gst::ParseFlags::FATAL_ERRORS) {
        Ok(_) => Ok(()),
        Err(e) => {
            let missing = ctx.missing_elements();
            match e.kind::<gst::ParseError>() {
                Some(gst::ParseError::NoSuchElement) if !missing.is_empty() => {
                    Err(format!("no such element: {}", missing.join(", ")))
                }
                _ => Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fragments_are_checked_by_gstreamer() {
        assert!(super::check_fragment("vp8enc deadline=1 cpu-used=8").is_ok());
        let e = super::check_fragment("vp8enc nosuchprop=1").unwrap_err();
        assert!(e.contains("nosuchprop"), "{e}");
        let e = super::check_fragment("vp9000enc").unwrap_err();
        assert!(e.contains("vp9000enc"), "{e}");
        assert!(super::check_fragment("vp8enc ! !").is_err());
    }
}
