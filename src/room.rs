//! Rooms and participants: who is in which room, in what order, and which
//! tile each one has. No sockets and no GStreamer here: media is reached
//! through the [`MediaFactory`] / [`RoomMedia`] / [`ParticipantMedia`]
//! traits, so this module is tested with a fake media backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::layout::{self, Rect};
use crate::layouts::{self, Catalog, Fit};
use crate::protocol::{Canvas, ChatEntry, ErrorCode, ProtocolError, Role, ServerMessage, Tile};
use crate::signaling::limits::Bucket;
use crate::speaker::SpeakerDetector;

/// Events for one participant's signaling task, from the room and from media.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// A message from the room (layout, speaker, send size) to send as is.
    Send(ServerMessage),
    /// Something the participant's media did; signaling decides what the
    /// client is told.
    Media(MediaEvent),
    /// The room ends this connection's membership (a share whose
    /// participant left, or that another share took over): send the error,
    /// leave, close.
    Close(ProtocolError),
    /// An operator removed this member (or closed its room): send
    /// `removed` with the reason, leave, close.
    Removed(String),
}

/// What a participant's media reports. Media never builds wire messages:
/// the signaling session maps these to protocol messages and codes.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The server's offer, ready to send.
    Offer { sdp: String },
    /// A local ICE candidate of the server (m-line index, `candidate:...`).
    Ice { mline: u32, candidate: String },
    /// The client's answer is applied: its candidates may follow.
    AnswerApplied,
    /// The client's answer could not be used.
    AnswerRefused { reason: String },
    /// The receiver is now on this rung (or audio only).
    Rung(RungInfo),
    /// The participant's media failed (bus error, ICE or DTLS failure):
    /// remove it.
    Failed { reason: String },
}

/// The rung a receiver gets, for the `quality` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RungInfo {
    /// Rung name, or `audio` when video is paused on a starved link.
    pub rung: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub kbps: u32,
    /// Chosen by the server (true) or asked for by the client (false).
    pub auto: bool,
    /// The server's estimate of the receiver's downlink, when known.
    pub estimate_kbps: Option<u32>,
    pub codec: crate::protocol::Codec,
}

pub type EventSender = mpsc::Sender<ParticipantEvent>;

/// Creates the media side of a room.
pub trait MediaFactory: Send + Sync + 'static {
    fn create_room(&self, room: &str) -> anyhow::Result<Arc<dyn RoomMedia>>;
}

/// The media side of one room (mixer, encoder).
pub trait RoomMedia: Send + Sync {
    /// Canvas size of the composed grid.
    fn canvas(&self) -> (u32, u32);
    /// Start the media of a participant. Offers and ICE candidates are
    /// delivered on `events`.
    fn add_participant(&self, id: &str, opts: &JoinOptions, events: EventSender) -> anyhow::Result<Box<dyn ParticipantMedia>>;
    /// Names of the encoder ladder's rungs, highest first.
    fn rungs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Media statistics for the HTTP API (encoders, rungs, receivers).
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Place every participant's tile. Called with the room lock held, so
    /// it must not block; it must not call back into the room.
    fn set_layout(&self, tiles: &[Placement]);
    /// Frame rate of the composed grid (for bitrate hints).
    fn fps(&self) -> u32 {
        30
    }
    /// Deliver (participant id, level dBFS) for everyone about every 100 ms.
    fn on_levels(&self, _listener: LevelListener) {}
    /// What the metrics show of this room's media (`GET /metrics`).
    fn metrics(&self) -> MediaMetrics {
        MediaMetrics::default()
    }
    /// Start recording the room into `path`; `info` is kept up to date.
    fn start_recording(&self, _info: Arc<Mutex<RecordingInfo>>) -> anyhow::Result<()> {
        anyhow::bail!("this media backend does not record")
    }
    /// Start streaming the room live; `info` is kept up to date.
    fn start_stream(&self, _info: Arc<Mutex<StreamInfo>>) -> anyhow::Result<()> {
        anyhow::bail!("this media backend does not stream")
    }
    /// Stop recording or stream `id` and finish it (blocking, seconds at
    /// most). False: no such output running.
    fn stop_output(&self, _id: &str) -> bool {
        false
    }
    /// Refresh the duration and size of the running recordings.
    fn refresh_outputs(&self) {}
}

/// The state of a recording or a live stream (`GET /api/rooms/{room}/recordings`,
/// `…/streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStatus {
    /// Waiting for the first keyframe (a stream: for its server).
    Starting,
    Active,
    /// Stopped; the file or stream is being finished.
    Ending,
    Complete,
    /// A recording: for good. A stream: this attempt; it tries again in
    /// `retry_in_s`.
    Failed,
}

/// Where a live stream goes (`POST /api/rooms/{room}/streams`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamTarget {
    /// An RTMP server (`rtmp://host[:port]/app/key`).
    Rtmp(String),
    /// HLS written into `[rooms] hls_dir`/<name>, served at `/hls/<name>/index.m3u8`.
    Hls(String),
}

/// One live stream of a room.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    pub id: String,
    pub room: String,
    pub status: OutputStatus,
    /// `rtmp`: the URL with its last path segment (the stream key) hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<String>,
    /// `hls`: the playlist's path on this server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playlist: Option<String>,
    #[serde(skip)]
    pub target: StreamTarget,
    /// HLS: the folder the segments are written to.
    #[serde(skip)]
    pub dir: Option<std::path::PathBuf>,
    /// Connections tried (1 once it runs; more after failures).
    pub attempts: u32,
    /// Seconds streamed by the current attempt.
    pub duration_s: f64,
    /// Unix time it started.
    pub started_at: u64,
    /// While `failed`: seconds until the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_s: Option<f64>,
    /// The last failure (kept after a later attempt succeeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened in the hub, for webhooks (`[webhook] url`; docs/api.md,
/// Webhooks). Sent without waiting: a full queue drops events, never
/// blocks a room.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HubEvent {
    RoomStarted { room: EventRoom },
    RoomFinished { room: EventRoom },
    ParticipantJoined { room: EventRoom, participant: EventParticipant },
    ParticipantLeft { room: EventRoom, participant: EventParticipant },
    /// A recording started or changed status (active, complete, failed).
    RecordingUpdated { room: EventRoom, recording: RecordingInfo },
    /// A live stream started or changed status (active, failed, complete).
    StreamUpdated { room: EventRoom, stream: StreamInfo },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRoom {
    pub name: String,
    /// Participants in the room after the event.
    pub num_participants: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventParticipant {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// An RTMP URL with its stream key (the last path segment) hidden, for
/// listings and logs.
pub fn redact_rtmp(url: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > url.find("://").map(|j| j + 3).unwrap_or(0) && i + 1 < url.len() => format!("{}/***", &url[..i]),
        _ => url.to_string(),
    }
}

/// One recording of a room.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordingInfo {
    pub id: String,
    pub room: String,
    pub status: OutputStatus,
    pub path: std::path::PathBuf,
    /// Seconds recorded (so far, while running).
    pub duration_s: f64,
    pub size_bytes: u64,
    /// Unix time it started.
    pub started_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A room's media as the metrics show it: counters since the room
/// started, and the state now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaMetrics {
    pub frames_composed: u64,
    pub canvas_fps: u32,
    /// PLI/FIR and connects asking for a keyframe.
    pub keyframe_requests: u64,
    /// Receivers moved between rungs.
    pub rung_switches: u64,
    pub rungs: Vec<RungMetrics>,
    pub receivers: Vec<ReceiverMetrics>,
    /// Milliseconds from receivers' joins to their first frame since the
    /// last call (taken: each is reported once).
    pub first_frames_ms: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RungMetrics {
    pub codec: String,
    pub rung: String,
    pub running: bool,
    pub receivers: usize,
    /// Measured output over the last 2 s.
    pub bitrate_bps: u64,
    pub frames: u64,
    pub keyframes_forced: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverMetrics {
    /// The congestion controller's estimate of its downlink (0: none yet).
    pub estimate_bps: u64,
    pub delivered_bps: u64,
    /// Share of its video packets lost (0..1).
    pub loss: f64,
    /// Round trip from RTCP receiver reports, seconds (None: none yet).
    pub rtt_s: Option<f64>,
    pub viewer: bool,
}

pub type LevelListener = Box<dyn Fn(Vec<(String, f64)>) + Send + Sync>;

/// Where a participant goes in the grid and how its tile looks.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub id: String,
    pub name: String,
    /// The slot in canvas pixels (borders are drawn inside it).
    pub rect: Rect,
    /// Stacking order: higher is in front.
    pub z: i32,
    pub fit: Fit,
    /// Border width (pixels) and colour 0xRRGGBB; the highlight of the
    /// active speaker replaces it.
    pub border: u32,
    pub border_color: u32,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Draw name labels on tiles.
    pub label: bool,
    pub font: String,
    /// A shared screen: the participant sharing it.
    pub share_of: Option<String>,
}

/// The media side of one participant. Dropping it tears the media down.
pub trait ParticipantMedia: Send + Sync {
    /// Apply the client's answer; the outcome arrives as
    /// [`MediaEvent::AnswerApplied`] or [`MediaEvent::AnswerRefused`].
    fn apply_answer(&self, sdp: &str);
    /// A remote candidate, given only after the answer was applied.
    fn add_ice(&self, sdp_mline_index: u32, candidate: &str);
    /// Choose a rung of the ladder by name, or `auto` (already validated).
    fn set_quality(&self, _quality: &str) {}
    /// How long since this participant's last incoming media packet (or
    /// since it joined, before the first) at `now`; None when it is not
    /// expected to send any (a viewer, or an answer that sends nothing).
    fn media_silence(&self, _now: std::time::Instant) -> Option<std::time::Duration> {
        None
    }
}

/// How a client takes part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    pub role: Role,
    /// `auto` or a rung name of the ladder.
    pub quality: String,
    /// A share: whose screen, and that participant's share key.
    pub share_of: Option<(String, String)>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions { role: Role::Participant, quality: "auto".into(), share_of: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("room `{room}` is full ({max} {what})")]
    Full { room: String, max: usize, what: &'static str },
    #[error("this server runs {max} rooms, the most it may: `{room}` cannot open")]
    TooManyRooms { room: String, max: usize },
    #[error("media could not start: {0:#}")]
    Media(anyhow::Error),
    #[error("no room `{0}`")]
    NoRoom(String),
    #[error("{0}")]
    UnknownLayout(String),
    #[error("no participant `{0}` in this room")]
    UnknownParticipant(String),
    #[error("no quality `{quality}` (choose auto, {known})")]
    UnknownQuality { quality: String, known: String },
    #[error("more than {per_minute} chat messages a minute (or {burst} at once); this one was not sent")]
    ChatRate { per_minute: u32, burst: u32 },
    #[error("screen sharing is off on this server (max_shares = 0)")]
    SharingOff,
    #[error("no participant `{0}` in this room has that share key")]
    ShareKey(String),
    #[error("a screen is already shared ({by}); this room shows {max} share(s) at once")]
    ShareBusy { by: String, max: usize },
    #[error("the server is draining for a restart: it takes no new joins (try again, or another server)")]
    Draining,
    #[error("no recording `{0}` in this room")]
    UnknownRecording(String),
    #[error("no stream `{0}` in this room")]
    UnknownStream(String),
    #[error("the HLS stream `{0}` is already running")]
    StreamExists(String),
    #[error("{0}")]
    BadStream(String),
}

impl RoomError {
    pub fn to_protocol(&self) -> ProtocolError {
        match self {
            RoomError::Full { .. } => ProtocolError::new(ErrorCode::RoomFull, self.to_string()),
            RoomError::TooManyRooms { .. } => ProtocolError::new(ErrorCode::TooManyRooms, self.to_string()),
            RoomError::Media(_) => ProtocolError::new(ErrorCode::MediaFailed, self.to_string()),
            RoomError::NoRoom(_) => ProtocolError::new(ErrorCode::UnknownRoom, self.to_string()),
            RoomError::UnknownLayout(_) => ProtocolError::new(ErrorCode::UnknownLayout, self.to_string()),
            RoomError::UnknownParticipant(_) => ProtocolError::new(ErrorCode::UnknownParticipant, self.to_string()),
            RoomError::UnknownQuality { .. } => ProtocolError::new(ErrorCode::UnknownQuality, self.to_string()),
            RoomError::ChatRate { .. } => ProtocolError::new(ErrorCode::RateLimited, self.to_string()),
            RoomError::SharingOff | RoomError::ShareKey(_) => ProtocolError::new(ErrorCode::Forbidden, self.to_string()),
            RoomError::ShareBusy { .. } => ProtocolError::new(ErrorCode::ShareBusy, self.to_string()),
            RoomError::Draining => ProtocolError::new(ErrorCode::ServerDraining, self.to_string()),
            RoomError::UnknownRecording(_) => ProtocolError::new(ErrorCode::UnknownRecording, self.to_string()),
            RoomError::UnknownStream(_) => ProtocolError::new(ErrorCode::UnknownStream, self.to_string()),
            RoomError::StreamExists(_) => ProtocolError::new(ErrorCode::StreamExists, self.to_string()),
            RoomError::BadStream(_) => ProtocolError::new(ErrorCode::InvalidField, self.to_string()),
        }
    }
}

/// A room's layout state, as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayoutState {
    pub room: String,
    pub group: String,
    /// A single layout chosen explicitly (overrides the group).
    pub layout: Option<String>,
    /// The layout in use now.
    pub current: String,
    /// Reserved slot key -> participant id.
    pub pins: BTreeMap<String, String>,
    pub speaker: Option<String>,
}

/// A room as the admin API lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomInfo {
    pub room: String,
    /// The layout in use.
    pub layout: String,
    pub participants: Vec<MemberInfo>,
    pub viewers: Vec<MemberInfo>,
    pub shares: Vec<ShareInfo>,
    /// Seconds since the room opened.
    pub age_s: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemberInfo {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_muted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_muted: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShareInfo {
    pub id: String,
    /// The participant sharing.
    pub of: String,
}

/// One room for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    pub room: String,
    pub participants: usize,
    pub viewers: usize,
    pub shares: usize,
    pub media: MediaMetrics,
}

/// A change of layout requested through signaling or the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutRequest {
    pub group: Option<String>,
    pub layout: Option<String>,
    /// Reserved key -> participant id (null unpins).
    #[serde(default)]
    pub pins: BTreeMap<String, Option<String>>,
}

struct Member {
    /// Order of the join request: the grid is filled in this order even
    /// when participants' media start at different speeds.
    seq: u64,
    id: String,
    name: String,
    events: EventSender,
    audio_muted: bool,
    video_muted: bool,
    /// Last tile size and fit sent to this member as `send_size`.
    send_size: Option<(u32, u32, Fit)>,
}

/// A participant's shared screen: a connection of its own that sends video
/// only and gets no layout, speaker or chat messages, only `send_size`.
struct ShareMember {
    id: String,
    /// The participant sharing it.
    of: String,
    /// How the tile is labelled: the participant's name and "(screen)".
    name: String,
    events: EventSender,
    send_size: Option<(u32, u32, Fit)>,
}

struct Members {
    list: Vec<Member>,
    /// Shared screens, oldest first.
    shares: Vec<ShareMember>,
    /// A recording runs (members were told with `recording`).
    recording: bool,
    /// Receive-only viewers: no tile, but layout and speaker events.
    viewers: Vec<(String, EventSender)>,
    /// Joins that passed the capacity check and are starting their media.
    pending: usize,
    /// Set when the room was removed from the hub; joins must retry.
    closed: bool,
    group: String,
    layout: Option<String>,
    pins: BTreeMap<String, String>,
    speaker: SpeakerDetector,
    /// Everyone who may chat (participants and viewers), by id.
    chatters: HashMap<String, Chatter>,
    /// The last messages, oldest first, for late joiners.
    chat: std::collections::VecDeque<ChatEntry>,
    chat_seq: u64,
}

impl Members {
    /// Every member's event channel: participants, viewers and shares.
    fn every_member(&self) -> impl Iterator<Item = &EventSender> {
        self.list.iter().map(|p| &p.events).chain(self.viewers.iter().map(|(_, e)| e)).chain(self.shares.iter().map(|s| &s.events))
    }
}

/// A participant or viewer as the chat knows it.
struct Chatter {
    name: String,
    rate: Bucket,
}

pub struct Room {
    id: String,
    media: Arc<dyn RoomMedia>,
    members: Mutex<Members>,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    started: Instant,
    /// `[rooms]` chat settings: history kept, rate per sender.
    chat: ChatSettings,
    /// `[rooms]` share settings.
    share: ShareSettings,
}

#[derive(Debug, Clone, Copy)]
struct ShareSettings {
    max: usize,
    takeover: bool,
    fps: u32,
}

#[derive(Debug, Clone, Copy)]
struct ChatSettings {
    history: usize,
    per_minute: u32,
    burst: u32,
}


impl Room {
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }

    /// The layout in use and each participant's and share's placement.
    /// While someone shares, the share group's layout is used; the room's
    /// own choice (group, layout) comes back when the share stops.
    fn placements(&self, members: &Members) -> (String, Vec<Placement>) {
        let catalog = self.catalog();
        let builtin = Catalog::builtin();
        let n = members.list.len();
        let sharing = !members.shares.is_empty();
        let layout = if sharing {
            catalog.pick_share(n).or_else(|| builtin.pick_share(n)).expect("the built-in presentation covers every count")
        } else {
            catalog.pick(&members.group, members.layout.as_deref(), n).or_else(|| builtin.pick("grid", None, n)).expect("the built-in grid covers every count")
        };
        let (w, h) = self.media.canvas();
        let ids: Vec<&str> = members.list.iter().map(|m| m.id.as_str()).collect();
        let speaker = members.speaker.current().filter(|_| members.list.len() > 1);
        let m = &catalog.mixer;
        let (cameras, shares) = layouts::assign_with_shares(layout, &ids, speaker, &members.pins, members.shares.len());
        let shown = shares.into_iter().map(|(shi, si)| {
            let share = &members.shares[shi];
            let slot = &layout.slots[si];
            Placement {
                id: share.id.clone(),
                name: share.name.clone(),
                rect: slot.rect(w, h),
                z: slot.z,
                fit: Fit::Letterbox,
                border: slot.border,
                border_color: slot.border_color.0,
                audio_muted: false,
                video_muted: false,
                label: m.names,
                font: m.font.clone(),
                share_of: Some(share.of.clone()),
            }
        });
        let placed = cameras
            .into_iter()
            .map(|(pi, si)| {
                let member = &members.list[pi];
                let slot = &layout.slots[si];
                let highlighted = speaker == Some(member.id.as_str()) && m.highlight_width > 0;
                Placement {
                    id: member.id.clone(),
                    name: member.name.clone(),
                    rect: slot.rect(w, h),
                    z: slot.z,
                    fit: slot.fit,
                    border: if highlighted { m.highlight_width.max(slot.border) } else { slot.border },
                    border_color: if highlighted { m.highlight_color.0 } else { slot.border_color.0 },
                    audio_muted: member.audio_muted,
                    video_muted: member.video_muted,
                    label: m.names,
                    font: m.font.clone(),
                    share_of: None,
                }
            })
            .chain(shown)
            .collect();
        (layout.name.clone(), placed)
    }

    /// Recompute the grid, apply it to the media and tell every member;
    /// members whose tile changed size also get `send_size`.
    fn relayout(&self, members: &mut Members) {
        let (layout_name, placed) = self.placements(members);
        self.media.set_layout(&placed);
        let (w, h) = self.media.canvas();
        let tiles = placed
            .iter()
            .map(|p| Tile {
                id: p.id.clone(),
                name: p.name.clone(),
                x: p.rect.x,
                y: p.rect.y,
                width: p.rect.width,
                height: p.rect.height,
                audio_muted: p.audio_muted,
                video_muted: p.video_muted,
                share_of: p.share_of.clone(),
            })
            .collect();
        let msg = ServerMessage::Layout { canvas: Canvas { width: w, height: h }, tiles, layout: Some(layout_name) };
        for (id, events) in &members.viewers {
            if events.try_send(ParticipantEvent::Send(msg.clone())).is_err() {
                tracing::warn!(room = %self.id, viewer = %id, "event queue full; layout update dropped");
            }
        }
        let fps = self.media.fps();
        for m in members.list.iter_mut() {
            if m.events.try_send(ParticipantEvent::Send(msg.clone())).is_err() {
                tracing::warn!(room = %self.id, participant = %m.id, "event queue full; layout update dropped");
            }
            let size = placed.iter().find(|p| p.id == m.id).map(|p| (p.rect.width, p.rect.height, p.fit)).unwrap_or((16, 16, Fit::Crop));
            if m.send_size != Some(size) {
                m.send_size = Some(size);
                let hint = ServerMessage::SendSize {
                    width: size.0,
                    height: size.1,
                    max_bitrate: layout::send_bitrate(size.0, size.1, fps),
                    fit: size.2,
                    max_framerate: None,
                };
                let _ = m.events.try_send(ParticipantEvent::Send(hint));
            }
        }
        // A share is asked for its tile's size at the share frame rate,
        // with the bits a camera of that size would get at the canvas
        // rate: fewer frames, each sharper.
        for s in members.shares.iter_mut() {
            let size = placed.iter().find(|p| p.id == s.id).map(|p| (p.rect.width, p.rect.height, Fit::Letterbox)).unwrap_or((16, 16, Fit::Letterbox));
            if s.send_size != Some(size) {
                s.send_size = Some(size);
                let hint = ServerMessage::SendSize {
                    width: size.0,
                    height: size.1,
                    max_bitrate: layout::send_bitrate(size.0, size.1, fps),
                    fit: size.2,
                    max_framerate: Some(self.share.fps.min(fps)),
                };
                let _ = s.events.try_send(ParticipantEvent::Send(hint));
            }
        }
    }

    /// Relay a chat message from `id` to everyone in the room (the sender
    /// too) and keep it for late joiners. `now` paces the sender's rate;
    /// `at_ms` is the server's wall clock, in the message.
    pub fn chat(&self, id: &str, text: &str, now: Instant, at_ms: u64) -> Result<(), RoomError> {
        let mut m = self.members.lock();
        let settings = self.chat;
        let Some(chatter) = m.chatters.get_mut(id) else { return Err(RoomError::UnknownParticipant(id.to_string())) };
        if !chatter.rate.take(now) {
            return Err(RoomError::ChatRate { per_minute: settings.per_minute, burst: settings.burst });
        }
        let name = chatter.name.clone();
        m.chat_seq += 1;
        let entry = ChatEntry { id: id.to_string(), name, text: text.to_string(), at_ms, seq: m.chat_seq };
        if settings.history > 0 {
            if m.chat.len() >= settings.history {
                m.chat.pop_front();
            }
            m.chat.push_back(entry.clone());
        }
        Room::broadcast(&m, &ServerMessage::Chat(entry));
        Ok(())
    }

    /// A newcomer may chat, and gets the history (when there is any), and
    /// learns that the room is being recorded.
    fn welcome_chatter(&self, m: &mut Members, id: &str, name: &str, events: &EventSender) {
        if m.recording {
            let _ = events.try_send(ParticipantEvent::Send(ServerMessage::Recording { active: true }));
        }
        m.chatters.insert(id.to_string(), Chatter { name: name.to_string(), rate: Bucket::per_minute(self.chat.per_minute, self.chat.burst, Instant::now()) });
        if !m.chat.is_empty() {
            let _ = events.try_send(ParticipantEvent::Send(ServerMessage::ChatHistory { messages: m.chat.iter().cloned().collect() }));
        }
    }

    fn broadcast(members: &Members, msg: &ServerMessage) {
        for m in &members.list {
            let _ = m.events.try_send(ParticipantEvent::Send(msg.clone()));
        }
        for (_, events) in &members.viewers {
            let _ = events.try_send(ParticipantEvent::Send(msg.clone()));
        }
    }

    /// `auto` or a rung of this room's ladder.
    fn check_quality(&self, quality: &str) -> Result<(), RoomError> {
        let rungs = self.media.rungs();
        if quality == "auto" || rungs.is_empty() || rungs.iter().any(|r| r == quality) {
            Ok(())
        } else {
            Err(RoomError::UnknownQuality { quality: quality.to_string(), known: rungs.join(", ") })
        }
    }

    /// Media statistics plus who is in the room.
    pub fn stats(&self) -> serde_json::Value {
        let (participants, viewers, shares) = {
            let m = self.members.lock();
            (m.list.len(), m.viewers.len(), m.shares.len())
        };
        serde_json::json!({
            "room": self.id,
            "participants": participants,
            "viewers": viewers,
            "shares": shares,
            "media": self.media.stats(),
        })
    }

    fn state(&self, members: &Members) -> LayoutState {
        let (current, _) = self.placements(members);
        LayoutState {
            room: self.id.clone(),
            group: members.group.clone(),
            layout: members.layout.clone(),
            current,
            pins: members.pins.clone(),
            speaker: members.speaker.current().map(str::to_string),
        }
    }

    /// Tell every member whether the room is being recorded (when that
    /// changes); newcomers learn it when they join.
    fn set_recording(&self, active: bool) {
        let mut m = self.members.lock();
        if m.recording != active {
            m.recording = active;
            Room::broadcast(&m, &ServerMessage::Recording { active });
        }
    }

    /// The room for the admin API.
    fn info(&self) -> RoomInfo {
        let m = self.members.lock();
        let (layout, _) = self.placements(&m);
        let name_of = |id: &str| m.chatters.get(id).map(|c| c.name.clone()).unwrap_or_default();
        RoomInfo {
            room: self.id.clone(),
            layout,
            participants: m
                .list
                .iter()
                .map(|p| MemberInfo { id: p.id.clone(), name: p.name.clone(), audio_muted: Some(p.audio_muted), video_muted: Some(p.video_muted) })
                .collect(),
            viewers: m.viewers.iter().map(|(id, _)| MemberInfo { id: id.clone(), name: name_of(id), audio_muted: None, video_muted: None }).collect(),
            shares: m.shares.iter().map(|s| ShareInfo { id: s.id.clone(), of: s.of.clone() }).collect(),
            age_s: self.started.elapsed().as_secs(),
        }
    }

    /// Audio levels from media: update the active speaker.
    fn levels(&self, levels: Vec<(String, f64)>) {
        let mut m = self.members.lock();
        let now = self.started.elapsed().as_millis() as u64;
        if let Some(change) = m.speaker.update(now, &levels) {
            Self::broadcast(&m, &ServerMessage::Speaking { id: change });
            if !m.list.is_empty() {
                self.relayout(&mut m);
            }
        }
    }

    /// Apply a layout request; validates every part before changing anything.
    pub fn request_layout(&self, req: &LayoutRequest) -> Result<LayoutState, RoomError> {
        let catalog = self.catalog();
        if let Some(g) = &req.group {
            if catalog.group(g).is_none() {
                let mut known: Vec<&String> = catalog.groups.keys().collect();
                known.sort();
                return Err(RoomError::UnknownLayout(format!("no layout group `{g}` (groups: {})", known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))));
            }
        }
        if let Some(l) = &req.layout {
            if !catalog.layouts.contains_key(l) {
                return Err(RoomError::UnknownLayout(format!("no layout `{l}`")));
            }
        }
        let mut m = self.members.lock();
        for id in req.pins.values().flatten() {
            if !m.list.iter().any(|x| &x.id == id) {
                return Err(RoomError::UnknownParticipant(id.clone()));
            }
        }
        if let Some(g) = &req.group {
            m.group = g.clone();
            m.layout = None;
        }
        if let Some(l) = &req.layout {
            m.layout = Some(l.clone());
        }
        for (key, id) in &req.pins {
            match id {
                Some(id) => {
                    // One participant, one pin.
                    m.pins.retain(|_, v| v != id);
                    m.pins.insert(key.clone(), id.clone());
                }
                None => {
                    m.pins.remove(key);
                }
            }
        }
        if !m.list.is_empty() {
            self.relayout(&mut m);
        }
        Ok(self.state(&m))
    }
}

/// All rooms of a server.
pub struct Hub {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    factory: Arc<dyn MediaFactory>,
    limits: crate::config::Rooms,
    next_id: AtomicU64,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    /// STUN/TURN servers each participant is given in `joined`.
    ice_servers: crate::config::IceServers,
    /// Random per process: share keys are derived from it and the id.
    share_secret: [u8; 32],
    metrics: Arc<crate::metrics::Metrics>,
    /// Draining: no new joins; rooms run on until they empty or the drain
    /// deadline ends them.
    draining: std::sync::atomic::AtomicBool,
    /// Wakes whoever runs the drain (the process) when it is asked for.
    drain_wanted: tokio::sync::Notify,
    /// Every recording started, by id (finished ones stay listed).
    recordings: Mutex<BTreeMap<String, Arc<Mutex<RecordingInfo>>>>,
    /// Every live stream started, by id (finished ones stay listed).
    streams: Mutex<BTreeMap<String, Arc<Mutex<StreamInfo>>>>,
    /// Where [`HubEvent`]s go (the webhook sender), if anywhere.
    events: Mutex<Option<tokio::sync::mpsc::Sender<HubEvent>>>,
    /// The status of each recording and stream last reported as an event.
    reported: Mutex<HashMap<String, OutputStatus>>,
}

impl Hub {
    pub fn new(factory: Arc<dyn MediaFactory>, max_participants: usize) -> Arc<Hub> {
        let limits = crate::config::Rooms { max_participants, ..Default::default() };
        Self::with_config(factory, limits, Catalog::builtin(), crate::config::IceServers::default())
    }

    /// A hub with the `[rooms]` limits, the layouts and the STUN/TURN
    /// servers given to participants.
    pub fn with_config(factory: Arc<dyn MediaFactory>, limits: crate::config::Rooms, catalog: Catalog, ice_servers: crate::config::IceServers) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            factory,
            limits,
            next_id: AtomicU64::new(1),
            catalog: Arc::new(RwLock::new(Arc::new(catalog))),
            ice_servers,
            share_secret: random_secret(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            drain_wanted: tokio::sync::Notify::new(),
            recordings: Mutex::new(BTreeMap::new()),
            streams: Mutex::new(BTreeMap::new()),
            events: Mutex::new(None),
            reported: Mutex::new(HashMap::new()),
        })
    }

    /// Start recording `room` into `[rooms] recordings_dir`, as
    /// `<room>-<UTC time>-<id>.webm` (room ids are letters, digits, `-`,
    /// `_`, `.`: the name is a safe file name whatever the room).
    pub fn start_recording(&self, room: &str) -> Result<RecordingInfo, RoomError> {
        let r = self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?;
        Self::record(self, &r)
    }

    fn record(&self, r: &Arc<Room>) -> Result<RecordingInfo, RoomError> {
        let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let dir = &self.limits.recordings_dir;
        std::fs::create_dir_all(dir).map_err(|e| RoomError::Media(anyhow::anyhow!("cannot create the recordings folder {}: {e}", dir.display())))?;
        let safe: String = r.id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = dir.join(format!("{safe}-{}-{id}.webm", utc_stamp(now)));
        let info = Arc::new(Mutex::new(RecordingInfo {
            id: id.clone(),
            room: r.id.clone(),
            status: OutputStatus::Starting,
            path,
            duration_s: 0.0,
            size_bytes: 0,
            started_at: now,
            error: None,
        }));
        r.media.start_recording(info.clone()).map_err(RoomError::Media)?;
        let snapshot = info.lock().clone();
        self.recordings.lock().insert(id, info);
        r.set_recording(true);
        self.report_outputs();
        Ok(snapshot)
    }

    /// Stop recording `id` of `room` and finish the file (blocking for up
    /// to 5 s: call it off the async workers).
    pub fn stop_recording(&self, room: &str, id: &str) -> Result<RecordingInfo, RoomError> {
        let info = self.recordings.lock().get(id).filter(|i| i.lock().room == room).cloned().ok_or_else(|| RoomError::UnknownRecording(id.to_string()))?;
        if let Some(r) = self.room(room) {
            r.media.stop_output(id);
            let still = self.recordings.lock().values().any(|i| {
                let i = i.lock();
                i.room == room && matches!(i.status, OutputStatus::Starting | OutputStatus::Active)
            });
            r.set_recording(still);
        }
        self.report_outputs();
        let out = info.lock().clone();
        Ok(out)
    }

    /// The recordings of `room`, running and finished, oldest first.
    pub fn recordings(&self, room: &str) -> Vec<RecordingInfo> {
        if let Some(r) = self.room(room) {
            r.media.refresh_outputs();
        }
        let mut v: Vec<RecordingInfo> = self.recordings.lock().values().map(|i| i.lock().clone()).filter(|i| i.room == room).collect();
        v.sort_by_key(|i| (i.started_at, i.id.len(), i.id.clone()));
        v
    }

    /// Send every [`HubEvent`] to `sink` from now on (never waiting).
    pub fn send_events_to(&self, sink: tokio::sync::mpsc::Sender<HubEvent>) {
        *self.events.lock() = Some(sink);
    }

    fn emit(&self, e: impl FnOnce() -> HubEvent) {
        let sink = self.events.lock().clone();
        if let Some(sink) = sink {
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(e)) = sink.try_send(e()) {
                tracing::warn!("webhook queue full: {:?} dropped", std::mem::discriminant(&e));
            }
        }
    }

    fn event_room(&self, room: &str) -> EventRoom {
        let num_participants = self.room(room).map(|r| r.members.lock().list.len()).unwrap_or(0);
        EventRoom { name: room.to_string(), num_participants }
    }

    /// Report recordings and streams whose status changed since the last
    /// call (`recording_updated`, `stream_updated`). The server calls it
    /// every second while events go somewhere.
    pub fn report_outputs(&self) {
        if self.events.lock().is_none() {
            return;
        }
        let recordings: Vec<RecordingInfo> = self.recordings.lock().values().map(|i| i.lock().clone()).collect();
        let streams: Vec<StreamInfo> = self.streams.lock().values().map(|i| i.lock().clone()).collect();
        let mut changed_recordings = Vec::new();
        let mut changed_streams = Vec::new();
        {
            let mut seen = self.reported.lock();
            for r in recordings {
                if seen.insert(r.id.clone(), r.status) != Some(r.status) {
                    changed_recordings.push(r);
                }
            }
            for s in streams {
                if seen.insert(s.id.clone(), s.status) != Some(s.status) {
                    changed_streams.push(s);
                }
            }
        }
        for r in changed_recordings {
            self.emit(|| HubEvent::RecordingUpdated { room: self.event_room(&r.room), recording: r.clone() });
        }
        for s in changed_streams {
            self.emit(|| HubEvent::StreamUpdated { room: self.event_room(&s.room), stream: s.clone() });
        }
    }

    /// Where HLS streams are written (`[rooms] hls_dir`), served at `/hls/`.
    pub fn hls_dir(&self) -> &std::path::Path {
        &self.limits.hls_dir
    }

    /// Start streaming `room` live to `target`: an RTMP URL, or an HLS
    /// name (letters, digits, `-`, `_`; one running stream per name).
    pub fn start_stream(&self, room: &str, target: StreamTarget) -> Result<StreamInfo, RoomError> {
        let r = self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?;
        let (rtmp, playlist, dir) = match &target {
            StreamTarget::Rtmp(url) => {
                if !(url.starts_with("rtmp://") || url.starts_with("rtmps://")) || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(RoomError::BadStream(format!("`url` must be an rtmp:// or rtmps:// URL without spaces (got {:?})", redact_rtmp(url))));
                }
                (Some(redact_rtmp(url)), None, None)
            }
            StreamTarget::Hls(name) => {
                if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(RoomError::BadStream(format!("`hls` must be 1 to 64 letters, digits, `-` or `_` (got {name:?})")));
                }
                let busy = self.streams.lock().values().any(|s| {
                    let s = s.lock();
                    s.target == target && !matches!(s.status, OutputStatus::Complete)
                });
                if busy {
                    return Err(RoomError::StreamExists(name.clone()));
                }
                let dir = self.limits.hls_dir.join(name);
                // A new stream of that name starts a new playlist.
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(|e| RoomError::Media(anyhow::anyhow!("cannot create the HLS folder {}: {e}", dir.display())))?;
                (None, Some(format!("/hls/{name}/index.m3u8")), Some(dir))
            }
        };
        let id = format!("s{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let info = Arc::new(Mutex::new(StreamInfo {
            id: id.clone(),
            room: r.id.clone(),
            status: OutputStatus::Starting,
            rtmp,
            playlist,
            target,
            dir,
            attempts: 0,
            duration_s: 0.0,
            started_at: now,
            retry_in_s: None,
            error: None,
        }));
        r.media.start_stream(info.clone()).map_err(RoomError::Media)?;
        let snapshot = info.lock().clone();
        self.streams.lock().insert(id, info);
        self.report_outputs();
        Ok(snapshot)
    }

    /// Stop live stream `id` of `room` (blocking for up to 5 s: call it
    /// off the async workers).
    pub fn stop_stream(&self, room: &str, id: &str) -> Result<StreamInfo, RoomError> {
        let info = self.streams.lock().get(id).filter(|i| i.lock().room == room).cloned().ok_or_else(|| RoomError::UnknownStream(id.to_string()))?;
        if let Some(r) = self.room(room) {
            r.media.stop_output(id);
        }
        self.report_outputs();
        let out = info.lock().clone();
        Ok(out)
    }

    /// The live streams of `room`, running and finished, oldest first.
    pub fn streams(&self, room: &str) -> Vec<StreamInfo> {
        let mut v: Vec<StreamInfo> = self.streams.lock().values().map(|i| i.lock().clone()).filter(|i| i.room == room).collect();
        v.sort_by_key(|i| (i.started_at, i.id.len(), i.id.clone()));
        v
    }

    /// Stop taking joins (every join from now on gets `server_draining`)
    /// and wake [`Hub::drain_requested`]. True the first time.
    pub fn start_drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            tracing::info!("draining: no new joins; {} room(s) run on", self.room_count());
            self.drain_wanted.notify_one();
        }
        first
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once a drain was started (here or by [`Hub::start_drain`]).
    pub async fn drain_requested(&self) {
        if !self.is_draining() {
            self.drain_wanted.notified().await;
        }
    }

    /// The drain's deadline passed: every member of every room gets
    /// `error` `server_draining` and its connection closes.
    pub fn end_all(&self) -> usize {
        let rooms: Vec<Arc<Room>> = self.rooms.lock().values().cloned().collect();
        let mut n = 0;
        for r in rooms {
            let m = r.members.lock();
            for e in m.every_member() {
                let _ = e.try_send(ParticipantEvent::Close(ProtocolError::new(ErrorCode::ServerDraining, "the server is restarting: join again")));
                n += 1;
            }
        }
        n
    }

    /// End `room` here: every member gets `error` `code` and its
    /// connection closes (a cluster node that lost the room's lease).
    pub fn end_room(&self, room: &str, code: ErrorCode, message: &str) -> usize {
        let Some(r) = self.room(room) else { return 0 };
        let m = r.members.lock();
        let mut n = 0;
        for e in m.every_member() {
            let _ = e.try_send(ParticipantEvent::Close(ProtocolError::new(code, message)));
            n += 1;
        }
        n
    }

    /// The ids of the rooms running here.
    pub fn room_ids(&self) -> Vec<String> {
        self.rooms.lock().keys().cloned().collect()
    }

    /// `[rooms] max_rooms`.
    pub fn max_rooms(&self) -> usize {
        self.limits.max_rooms
    }

    /// The server's metrics (counters the signaling side feeds too).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// A scrape of `GET /metrics`: the counters and every room now.
    /// Blocking for a moment (each room's media is asked): call it off the
    /// async workers.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.metrics_snapshot())
    }

    /// The key a participant's share connection presents (`joined`'s
    /// `share_key`): only that participant's client learns it.
    fn share_key(&self, id: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.share_secret);
        h.update(id.as_bytes());
        h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }

    /// Install a new (already validated) catalog and re-lay every room.
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write() = Arc::new(catalog);
        let rooms: Vec<Arc<Room>> = self.rooms.lock().values().cloned().collect();
        for r in rooms {
            let mut m = r.members.lock();
            let c = r.catalog();
            m.speaker.hold_ms = c.mixer.speaker_hold_ms as u64;
            m.speaker.threshold_db = c.mixer.speaker_threshold_db;
            if !m.list.is_empty() {
                r.relayout(&mut m);
            }
        }
    }

    pub fn room(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.lock().get(id).cloned()
    }

    /// Change a room's layout (HTTP API).
    pub fn request_layout(&self, room: &str, req: &LayoutRequest) -> Result<LayoutState, RoomError> {
        self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?.request_layout(req)
    }

    /// Every room, sorted by id, with its members (the admin API).
    pub fn rooms_info(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.rooms.lock().values().cloned().collect();
        let mut out: Vec<RoomInfo> = rooms.iter().map(|r| r.info()).collect();
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }

    pub fn room_info(&self, room: &str) -> Option<RoomInfo> {
        self.room(room).map(|r| r.info())
    }

    /// Take member `id` (a participant, viewer or share) out of `room`:
    /// its client gets `removed` with `reason` and its connection closes
    /// (the membership is dropped by its connection, as for a `leave`).
    pub fn remove_member(&self, room: &str, id: &str, reason: &str) -> Result<(), RoomError> {
        let r = self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?;
        let m = r.members.lock();
        let events = m
            .list
            .iter()
            .find(|p| p.id == id)
            .map(|p| &p.events)
            .or_else(|| m.viewers.iter().find(|(v, _)| v == id).map(|(_, e)| e))
            .or_else(|| m.shares.iter().find(|s| s.id == id).map(|s| &s.events))
            .ok_or_else(|| RoomError::UnknownParticipant(id.to_string()))?;
        let _ = events.try_send(ParticipantEvent::Removed(reason.to_string()));
        Ok(())
    }

    /// Close `room`: every member gets `removed` with `reason`.
    pub fn close_room(&self, room: &str, reason: &str) -> Result<usize, RoomError> {
        let r = self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?;
        let m = r.members.lock();
        let mut n = 0;
        for e in m.every_member() {
            let _ = e.try_send(ParticipantEvent::Removed(reason.to_string()));
            n += 1;
        }
        Ok(n)
    }

    /// Mute (or unmute) participant `id`'s microphone in the mix, as an
    /// operator: everyone sees it in the layout, the participant gets
    /// `muted`. It may unmute itself afterwards, as after its own mute.
    pub fn server_mute(&self, room: &str, id: &str, audio: bool) -> Result<(), RoomError> {
        let r = self.room(room).ok_or_else(|| RoomError::NoRoom(room.to_string()))?;
        {
            let m = r.members.lock();
            let p = m.list.iter().find(|p| p.id == id).ok_or_else(|| RoomError::UnknownParticipant(id.to_string()))?;
            let _ = p.events.try_send(ParticipantEvent::Send(ServerMessage::Muted { audio }));
        }
        self.set_mute(&r, id, Some(audio), None);
        Ok(())
    }

    /// Every room with its members by role and its media's metrics.
    pub fn metrics_snapshot(&self) -> Vec<RoomSnapshot> {
        let rooms: Vec<Arc<Room>> = self.rooms.lock().values().cloned().collect();
        rooms
            .iter()
            .map(|r| {
                let (participants, viewers, shares) = {
                    let m = r.members.lock();
                    (m.list.len(), m.viewers.len(), m.shares.len())
                };
                RoomSnapshot { room: r.id.clone(), participants, viewers, shares, media: r.media.metrics() }
            })
            .collect()
    }

    pub fn room_stats(&self, room: &str) -> Option<serde_json::Value> {
        self.room(room).map(|r| r.stats())
    }

    pub fn layout_state(&self, room: &str) -> Option<LayoutState> {
        let r = self.room(room)?;
        let m = r.members.lock();
        Some(r.state(&m))
    }

    pub fn room_count(&self) -> usize {
        self.rooms.lock().len()
    }

    pub fn participant_count(&self) -> usize {
        self.rooms.lock().values().map(|r| r.members.lock().list.len()).sum()
    }

    fn get_or_create(&self, room: &str) -> Result<Arc<Room>, RoomError> {
        let mut rooms = self.rooms.lock();
        if let Some(r) = rooms.get(room) {
            return Ok(r.clone());
        }
        if rooms.len() >= self.limits.max_rooms {
            return Err(RoomError::TooManyRooms { room: room.to_string(), max: self.limits.max_rooms });
        }
        let media = self.factory.create_room(room).map_err(RoomError::Media)?;
        let catalog = self.catalog();
        let r = Arc::new(Room {
            id: room.to_string(),
            media: media.clone(),
            members: Mutex::new(Members {
                list: Vec::new(),
                viewers: Vec::new(),
                pending: 0,
                closed: false,
                group: catalog.mixer.default_group.clone(),
                layout: None,
                pins: BTreeMap::new(),
                speaker: SpeakerDetector::new(catalog.mixer.speaker_hold_ms as u64, catalog.mixer.speaker_threshold_db),
                chatters: HashMap::new(),
                chat: std::collections::VecDeque::new(),
                chat_seq: 0,
                shares: Vec::new(),
                recording: false,
            }),
            catalog: self.catalog.clone(),
            started: Instant::now(),
            chat: ChatSettings { history: self.limits.chat_history, per_minute: self.limits.chat_per_minute, burst: self.limits.chat_burst },
            share: ShareSettings { max: self.limits.max_shares, takeover: self.limits.share_takeover, fps: self.limits.share_fps },
        });
        let weak: Weak<Room> = Arc::downgrade(&r);
        media.on_levels(Box::new(move |levels| {
            if let Some(room) = weak.upgrade() {
                room.levels(levels);
            }
        }));
        rooms.insert(room.to_string(), r.clone());
        drop(rooms);
        self.emit(|| HubEvent::RoomStarted { room: EventRoom { name: room.to_string(), num_participants: 0 } });
        if self.limits.record_all {
            if let Err(e) = self.record(&r) {
                tracing::error!(room = %room, "record_all: the recording did not start: {e}");
            }
        }
        Ok(r)
    }

    /// Join `room`. Sends `joined` then (asynchronously, from media) the
    /// offer on `events`; every member gets the new `layout`. Blocking:
    /// call it off the async runtime's worker threads.
    pub fn join(self: &Arc<Self>, room_id: &str, name: &str, events: EventSender) -> Result<Membership, RoomError> {
        self.join_with(room_id, name, &JoinOptions::default(), events)
    }

    /// Join as a participant or a viewer, at a chosen quality.
    pub fn join_with(self: &Arc<Self>, room_id: &str, name: &str, opts: &JoinOptions, events: EventSender) -> Result<Membership, RoomError> {
        if self.is_draining() {
            return Err(RoomError::Draining);
        }
        if opts.role == Role::Share {
            return self.share(room_id, opts, events);
        }
        let viewer = opts.role == Role::Viewer;
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("p{seq}");
        // Reserve a place; retry if the room closed under us.
        let room = loop {
            let room = self.get_or_create(room_id)?;
            let mut m = room.members.lock();
            if m.closed {
                continue;
            }
            let (max, what) = if viewer { (self.limits.max_viewers, "viewers") } else { (self.limits.max_participants, "participants") };
            let taken = if viewer { m.viewers.len() } else { m.list.len() + m.pending };
            if taken >= max {
                drop(m);
                // A refused join gives back a room it opened.
                self.remove_if_empty(&room);
                return Err(RoomError::Full { room: room_id.to_string(), max, what });
            }
            m.pending += 1;
            drop(m);
            break room;
        };
        if let Err(e) = room.check_quality(&opts.quality) {
            self.abandon_reservation(&room);
            return Err(e);
        }
        let now_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let ice_servers = crate::turn::ice_servers(&self.ice_servers, &id, now_unix);
        let share_key = (!viewer && self.limits.max_shares > 0).then(|| self.share_key(&id));
        let _ = events.try_send(ParticipantEvent::Send(ServerMessage::Joined { id: id.clone(), room: room_id.to_string(), role: opts.role, ice_servers, share_key }));
        let media = match room.media.add_participant(&id, opts, events.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.abandon_reservation(&room);
                return Err(RoomError::Media(e));
            }
        };
        if viewer {
            let mut m = room.members.lock();
            m.pending -= 1;
            m.viewers.push((id.clone(), events.clone()));
            room.welcome_chatter(&mut m, &id, name, &events);
            if !m.list.is_empty() {
                // The new viewer learns the current grid.
                room.relayout(&mut m);
            }
            drop(m);
            tracing::info!(room = %room_id, viewer = %id, name = %name, "viewer joined");
            self.emit(|| HubEvent::ParticipantJoined { room: self.event_room(room_id), participant: EventParticipant { id: id.clone(), name: name.to_string(), role: Role::Viewer } });
            return Ok(Membership { hub: self.clone(), room, id, media: Some(media) });
        }
        {
            let mut m = room.members.lock();
            m.pending -= 1;
            room.welcome_chatter(&mut m, &id, name, &events);
            let at = m.list.iter().position(|x| x.seq > seq).unwrap_or(m.list.len());
            m.list.insert(at, Member {
                seq,
                id: id.clone(),
                name: name.to_string(),
                events,
                audio_muted: false,
                video_muted: false,
                send_size: None,
            });
            room.relayout(&mut m);
        }
        tracing::info!(room = %room_id, participant = %id, name = %name, "joined");
        self.emit(|| HubEvent::ParticipantJoined { room: self.event_room(room_id), participant: EventParticipant { id: id.clone(), name: name.to_string(), role: Role::Participant } });
        Ok(Membership { hub: self.clone(), room, id, media: Some(media) })
    }

    /// A participant's share connection: checked against the room's
    /// participants and its share key, then refused or taking over when
    /// the room shows `max_shares` already (a participant's new share
    /// always replaces its own old one).
    fn share(self: &Arc<Self>, room_id: &str, opts: &JoinOptions, events: EventSender) -> Result<Membership, RoomError> {
        if self.limits.max_shares == 0 {
            return Err(RoomError::SharingOff);
        }
        let (of, key) = opts.share_of.clone().unwrap_or_default();
        let room = self.room(room_id).ok_or_else(|| RoomError::NoRoom(room_id.to_string()))?;
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("s{seq}");
        let owner_name = {
            let mut m = room.members.lock();
            let owner = m.list.iter().find(|p| p.id == of).filter(|_| !m.closed && key == self.share_key(&of)).map(|p| p.name.clone());
            let Some(owner_name) = owner else { return Err(RoomError::ShareKey(of)) };
            let others = m.shares.iter().filter(|s| s.of != of).count();
            if others >= room.share.max && !room.share.takeover {
                let by = m.shares.iter().find(|s| s.of != of).map(|s| s.name.clone()).unwrap_or_default();
                return Err(RoomError::ShareBusy { by, max: room.share.max });
            }
            m.pending += 1;
            owner_name
        };
        let now_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let ice_servers = crate::turn::ice_servers(&self.ice_servers, &id, now_unix);
        let _ = events.try_send(ParticipantEvent::Send(ServerMessage::Joined { id: id.clone(), room: room_id.to_string(), role: Role::Share, ice_servers, share_key: None }));
        let media = match room.media.add_participant(&id, opts, events.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.abandon_reservation(&room);
                return Err(RoomError::Media(e));
            }
        };
        let mut m = room.members.lock();
        m.pending -= 1;
        if !m.list.iter().any(|p| p.id == of) {
            // The participant left while its share started.
            drop(m);
            drop(media);
            let _removed = self.remove_if_empty(&room);
            return Err(RoomError::ShareKey(of));
        }
        // Its own earlier share, then the oldest others beyond the limit.
        let mut ended = Vec::new();
        m.shares.retain(|s| {
            let keep = s.of != of;
            if !keep {
                ended.push((s.events.clone(), format!("{owner_name} started another share")));
            }
            keep
        });
        while m.shares.len() >= room.share.max {
            let old = m.shares.remove(0);
            ended.push((old.events, format!("{owner_name} took over the screen share")));
        }
        for (events, why) in ended {
            let _ = events.try_send(ParticipantEvent::Close(ProtocolError::new(ErrorCode::ShareEnded, why)));
        }
        m.shares.push(ShareMember { id: id.clone(), of: of.clone(), name: format!("{owner_name} (screen)"), events, send_size: None });
        room.relayout(&mut m);
        drop(m);
        tracing::info!(room = %room_id, share = %id, participant = %of, "share started");
        self.emit(|| HubEvent::ParticipantJoined { room: self.event_room(room_id), participant: EventParticipant { id: id.clone(), name: format!("{owner_name} (screen)"), role: Role::Share } });
        Ok(Membership { hub: self.clone(), room, id, media: Some(media) })
    }

    /// Give back a place reserved by `join` that will not be taken.
    fn abandon_reservation(&self, room: &Arc<Room>) {
        let mut m = room.members.lock();
        m.pending -= 1;
        let empty = m.list.is_empty() && m.viewers.is_empty() && m.shares.is_empty() && m.pending == 0;
        drop(m);
        if empty {
            self.remove_if_empty(room);
        }
    }

    fn remove_if_empty(&self, room: &Arc<Room>) -> Option<Arc<Room>> {
        let mut rooms = self.rooms.lock();
        let mut m = room.members.lock();
        if m.list.is_empty() && m.viewers.is_empty() && m.shares.is_empty() && m.pending == 0 && !m.closed {
            m.closed = true;
            drop(m);
            if let Some(r) = rooms.get(&room.id) {
                if Arc::ptr_eq(r, room) {
                    let removed = rooms.remove(&room.id);
                    drop(rooms);
                    self.emit(|| HubEvent::RoomFinished { room: EventRoom { name: room.id.clone(), num_participants: 0 } });
                    return removed;
                }
            }
        }
        None
    }

    /// Take a member off the grid; the others get the new layout.
    fn leave(&self, room: &Arc<Room>, id: &str) {
        self.metrics.leave();
        let left = self.leave_members(room, id);
        if let Some(participant) = left {
            let num_participants = room.members.lock().list.len();
            self.emit(|| HubEvent::ParticipantLeft { room: EventRoom { name: room.id.clone(), num_participants }, participant });
        }
    }

    /// [`Hub::leave`]'s work on the member lists: who left, if anyone.
    fn leave_members(&self, room: &Arc<Room>, id: &str) -> Option<EventParticipant> {
        let mut m = room.members.lock();
        let who = m
            .list
            .iter()
            .find(|x| x.id == id)
            .map(|x| EventParticipant { id: id.to_string(), name: x.name.clone(), role: Role::Participant })
            .or_else(|| m.viewers.iter().any(|(v, _)| v == id).then(|| EventParticipant { id: id.to_string(), name: String::new(), role: Role::Viewer }))
            .or_else(|| m.shares.iter().find(|s| s.id == id).map(|s| EventParticipant { id: id.to_string(), name: s.name.clone(), role: Role::Share }));
        m.chatters.remove(id);
        if let Some(i) = m.viewers.iter().position(|(v, _)| v == id) {
            m.viewers.remove(i);
            return who;
        }
        if let Some(i) = m.shares.iter().position(|s| s.id == id) {
            m.shares.remove(i);
            if !m.list.is_empty() {
                room.relayout(&mut m);
            }
            return who;
        }
        m.list.retain(|x| x.id != id);
        m.pins.retain(|_, v| v != id);
        // A participant's share ends with it.
        let (gone, kept): (Vec<ShareMember>, Vec<ShareMember>) = std::mem::take(&mut m.shares).into_iter().partition(|s| s.of == id);
        m.shares = kept;
        for s in gone {
            let _ = s.events.try_send(ParticipantEvent::Close(ProtocolError::new(ErrorCode::ShareEnded, "the participant sharing this screen left the room")));
        }
        if !m.list.is_empty() {
            room.relayout(&mut m);
        }
        who
    }

    /// Mute or unmute a member's microphone and/or camera; everyone gets
    /// the new layout (which shows the state).
    fn set_mute(&self, room: &Arc<Room>, id: &str, audio: Option<bool>, video: Option<bool>) {
        let mut m = room.members.lock();
        let Some(member) = m.list.iter_mut().find(|x| x.id == id) else { return };
        let before = (member.audio_muted, member.video_muted);
        member.audio_muted = audio.unwrap_or(member.audio_muted);
        member.video_muted = video.unwrap_or(member.video_muted);
        if before != (member.audio_muted, member.video_muted) {
            room.relayout(&mut m);
        }
    }
}

/// `20261127T051500Z` for Unix time `secs` (UTC; days to a civil date by
/// Howard Hinnant's algorithm).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// 32 random bytes from the operating system (`/dev/urandom`; std's
/// OS-seeded hash keys where it cannot be read).
pub(crate) fn random_secret() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    let mut out = [0u8; 32];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out)).is_ok() {
        return out;
    }
    tracing::warn!("cannot read /dev/urandom; share keys come from std's random hash keys");
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// A participant's place in a room. Dropping it leaves the room and tears
/// the participant's media down (blocking: drop it off the async workers).
pub struct Membership {
    hub: Arc<Hub>,
    room: Arc<Room>,
    id: String,
    media: Option<Box<dyn ParticipantMedia>>,
}

impl Membership {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn room_id(&self) -> &str {
        &self.room.id
    }

    pub fn apply_answer(&self, sdp: &str) {
        if let Some(m) = &self.media {
            m.apply_answer(sdp);
        }
    }

    pub fn add_ice(&self, sdp_mline_index: u32, candidate: &str) {
        if let Some(m) = &self.media {
            m.add_ice(sdp_mline_index, candidate);
        }
    }

    pub fn set_mute(&self, audio: Option<bool>, video: Option<bool>) {
        self.hub.set_mute(&self.room, &self.id, audio, video);
    }

    /// Choose a rung by name, or `auto`.
    /// See [`ParticipantMedia::media_silence`].
    pub fn media_silence(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        self.media.as_ref().and_then(|m| m.media_silence(now))
    }

    pub fn set_quality(&self, quality: &str) -> Result<(), RoomError> {
        self.room.check_quality(quality)?;
        if let Some(m) = &self.media {
            m.set_quality(quality);
        }
        Ok(())
    }

    /// Send a chat message to this room.
    pub fn chat(&self, text: &str) -> Result<(), RoomError> {
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.room.chat(&self.id, text, Instant::now(), at_ms)
    }

    /// Switch this participant's room's layout or pins.
    pub fn request_layout(&self, req: &LayoutRequest) -> Result<LayoutState, RoomError> {
        self.room.request_layout(req)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Take the tile away first so the mixer never shows a dead input,
        // then stop the participant's pipeline, then the room if empty.
        let media = self.media.take();
        self.hub.leave(&self.room, &self.id);
        drop(media);
        // The removed room (if any) is dropped here, outside every lock.
        let _removed = self.hub.remove_if_empty(&self.room);
        tracing::info!(room = %self.room.id, participant = %self.id, "left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct FakeFactory {
        rooms_created: AtomicUsize,
        layouts: Arc<Mutex<Vec<Vec<Placement>>>>,
        /// When set, the first participant's media start waits at the first
        /// barrier (it has started) and then at the second (let it finish).
        slow_start: Option<Arc<(std::sync::Barrier, std::sync::Barrier)>>,
    }
    struct FakeRoom {
        layouts: Arc<Mutex<Vec<Vec<Placement>>>>,
        slow_start: Option<Arc<(std::sync::Barrier, std::sync::Barrier)>>,
    }
    struct FakeParticipant;

    impl MediaFactory for FakeFactory {
        fn create_room(&self, _room: &str) -> anyhow::Result<Arc<dyn RoomMedia>> {
            self.rooms_created.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(FakeRoom { layouts: self.layouts.clone(), slow_start: self.slow_start.clone() }))
        }
    }
    impl RoomMedia for FakeRoom {
        fn canvas(&self) -> (u32, u32) {
            (640, 360)
        }
        fn add_participant(&self, id: &str, _opts: &JoinOptions, _events: EventSender) -> anyhow::Result<Box<dyn ParticipantMedia>> {
            if let (Some(gate), "p1") = (&self.slow_start, id) {
                gate.0.wait();
                gate.1.wait();
            }
            Ok(Box::new(FakeParticipant))
        }
        fn set_layout(&self, tiles: &[Placement]) {
            self.layouts.lock().push(tiles.to_vec());
        }
    }
    impl ParticipantMedia for FakeParticipant {
        fn apply_answer(&self, _sdp: &str) {}
        fn add_ice(&self, _i: u32, _c: &str) {}
    }

    fn drain(rx: &mut mpsc::Receiver<ParticipantEvent>) -> Vec<ServerMessage> {
        let mut v = Vec::new();
        while let Ok(ParticipantEvent::Send(m)) = rx.try_recv() {
            v.push(m);
        }
        v
    }

    fn chats(msgs: &[ServerMessage]) -> Vec<(String, String, u64)> {
        msgs.iter()
            .filter_map(|m| match m {
                ServerMessage::Chat(c) => Some((c.name.clone(), c.text.clone(), c.seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn chat_reaches_everyone_viewers_too_and_late_joiners_get_the_last_messages() {
        let limits = crate::config::Rooms { chat_history: 2, ..Default::default() };
        let hub = Hub::with_config(Arc::new(FakeFactory::default()), limits, Catalog::builtin(), Default::default());
        let (tx1, mut rx1) = mpsc::channel(64);
        let (tx2, mut rx2) = mpsc::channel(64);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let viewer = hub.join_with("r", "Vi", &JoinOptions { role: Role::Viewer, ..Default::default() }, tx2).unwrap();
        let (t0, at) = (Instant::now(), 1_700_000_000_000);
        for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
            let from = if i == 1 { &viewer } else { &a };
            a.room.chat(from.id(), text, t0, at + i as u64).unwrap();
        }
        let want = vec![("Ada".into(), "one".into(), 1), ("Vi".into(), "two".into(), 2), ("Ada".into(), "three".into(), 3)];
        assert_eq!(chats(&drain(&mut rx1)), want, "the sender hears its own messages");
        assert_eq!(chats(&drain(&mut rx2)), want, "viewers get chat");
        // A late joiner gets the last two (history 2), oldest first, once.
        let (tx3, mut rx3) = mpsc::channel(64);
        let _c = hub.join("r", "Cy", tx3).unwrap();
        let history: Vec<_> = drain(&mut rx3)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::ChatHistory { messages } => Some(messages),
                _ => None,
            })
            .collect();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].iter().map(|c| (c.text.as_str(), c.seq, c.at_ms)).collect::<Vec<_>>(), vec![("two", 2, at + 1), ("three", 3, at + 2)]);
        // One who left may not chat.
        let gone = viewer.id().to_string();
        drop(viewer);
        assert!(matches!(a.room.chat(&gone, "hi", t0, at), Err(RoomError::UnknownParticipant(_))));
    }

    #[test]
    fn chat_rate_is_per_sender_with_a_burst() {
        let limits = crate::config::Rooms { chat_per_minute: 60, chat_burst: 3, ..Default::default() };
        let hub = Hub::with_config(Arc::new(FakeFactory::default()), limits, Catalog::builtin(), Default::default());
        let (tx1, _rx1) = mpsc::channel(256);
        let (tx2, _rx2) = mpsc::channel(256);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let b = hub.join("r", "Bob", tx2).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            a.room.chat(a.id(), "x", t0, 0).unwrap();
        }
        let e = a.room.chat(a.id(), "x", t0, 0).unwrap_err();
        assert_eq!(e.to_protocol().code, ErrorCode::RateLimited);
        // Bob is not held back by Ada.
        a.room.chat(b.id(), "y", t0, 0).unwrap();
        // One a second comes back (60 a minute).
        a.room.chat(a.id(), "x", t0 + std::time::Duration::from_millis(1100), 0).unwrap();
        assert!(a.room.chat(a.id(), "x", t0 + std::time::Duration::from_millis(1200), 0).is_err());
    }

    #[test]
    fn joins_and_leaves_update_every_members_layout() {
        let f = Arc::new(FakeFactory::default());
        let hub = Hub::new(f.clone(), 4);
        let (tx1, mut rx1) = mpsc::channel(64);
        let (tx2, mut rx2) = mpsc::channel(64);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let b = hub.join("r", "Bob", tx2).unwrap();
        let m1 = drain(&mut rx1);
        assert!(matches!(&m1[0], ServerMessage::Joined { room, .. } if room == "r"));
        match m1.iter().rev().find(|m| matches!(m, ServerMessage::Layout { .. })).unwrap() {
            ServerMessage::Layout { tiles, .. } => {
                assert_eq!(tiles.len(), 2);
                assert_eq!(tiles[0].name, "Ada");
                assert_eq!((tiles[1].x, tiles[1].width), (320, 320));
            }
            other => panic!("{other:?}"),
        }
        drain(&mut rx2);
        drop(a);
        match drain(&mut rx2).iter().rev().find(|m| matches!(m, ServerMessage::Layout { .. })).unwrap() {
            ServerMessage::Layout { tiles, .. } => {
                assert_eq!(tiles.len(), 1);
                assert_eq!(tiles[0].id, b.id());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hub.room_count(), 1);
        drop(b);
        assert_eq!(hub.room_count(), 0);
        // A new join creates a fresh room.
        let (tx3, _rx3) = mpsc::channel(64);
        let _c = hub.join("r", "Cy", tx3).unwrap();
        assert_eq!(f.rooms_created.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn mute_is_shown_in_the_layout_and_reaches_media() {
        let f = Arc::new(FakeFactory::default());
        let hub = Hub::new(f.clone(), 4);
        let (tx1, mut rx1) = mpsc::channel(64);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let first = drain(&mut rx1);
        assert!(first.iter().any(|m| matches!(m, ServerMessage::SendSize { width: 640, height: 360, .. })), "{first:?}");
        a.set_mute(None, Some(true));
        let msgs = drain(&mut rx1);
        match msgs.iter().rev().find(|m| matches!(m, ServerMessage::Layout { .. })).unwrap() {
            ServerMessage::Layout { tiles, .. } => assert!(tiles[0].video_muted && !tiles[0].audio_muted),
            other => panic!("{other:?}"),
        }
        // Same tile size: no new send_size.
        assert!(!msgs.iter().any(|m| matches!(m, ServerMessage::SendSize { .. })));
        let last = f.layouts.lock().last().cloned().unwrap();
        assert!(last[0].video_muted);
        // A second participant halves the tile: a new send_size.
        let (tx2, _rx2) = mpsc::channel(64);
        let _b = hub.join("r", "Bob", tx2).unwrap();
        assert!(drain(&mut rx1).iter().any(|m| matches!(m, ServerMessage::SendSize { width: 320, height: 360, .. })));
    }

    fn all_events(rx: &mut mpsc::Receiver<ParticipantEvent>) -> Vec<ParticipantEvent> {
        let mut v = Vec::new();
        while let Ok(e) = rx.try_recv() {
            v.push(e);
        }
        v
    }

    fn last_layout(msgs: &[ServerMessage]) -> (String, Vec<Tile>) {
        match msgs.iter().rev().find(|m| matches!(m, ServerMessage::Layout { .. })) {
            Some(ServerMessage::Layout { tiles, layout, .. }) => (layout.clone().unwrap_or_default(), tiles.clone()),
            _ => panic!("no layout in {msgs:?}"),
        }
    }

    fn share_opts(of: &str, key: &str) -> JoinOptions {
        JoinOptions { role: Role::Share, share_of: Some((of.into(), key.into())), ..Default::default() }
    }

    fn key_of(msgs: &[ServerMessage]) -> String {
        msgs.iter()
            .find_map(|m| match m {
                ServerMessage::Joined { share_key, .. } => share_key.clone(),
                _ => None,
            })
            .expect("a participant's joined has a share key")
    }

    #[test]
    fn a_share_takes_the_presentation_floor_and_the_room_returns_to_its_layout() {
        let f = Arc::new(FakeFactory::default());
        let hub = Hub::new(f.clone(), 4);
        let (tx1, mut rx1) = mpsc::channel(64);
        let (tx2, mut rx2) = mpsc::channel(64);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let _b = hub.join("r", "Bob", tx2).unwrap();
        let key = key_of(&drain(&mut rx1));
        let before = last_layout(&drain(&mut rx2));
        assert_eq!(before.0, "grid-2x1");
        let (ts, mut rxs) = mpsc::channel(64);
        let share = hub.join_with("r", "ignored", &share_opts(a.id(), &key), ts).unwrap();
        let (layout, tiles) = last_layout(&drain(&mut rx2));
        assert_eq!(layout, "presentation");
        let t = tiles.iter().find(|t| t.id == share.id()).expect("the share has a tile");
        assert_eq!((t.x, t.y, t.width, t.height), (0, 0, 512, 288), "the share slot: 0.8 x 0.8 of 640x360");
        assert_eq!(t.share_of.as_deref(), Some(a.id()));
        assert_eq!(t.name, "Ada (screen)");
        assert_eq!(tiles.iter().filter(|t| t.share_of.is_none()).count(), 2, "both cameras in the strip");
        let placed = f.layouts.lock().last().cloned().unwrap();
        assert_eq!(placed.iter().find(|p| p.id == share.id()).unwrap().fit, Fit::Letterbox);
        // The share connection gets its size at the share frame rate, not layouts.
        let got = drain(&mut rxs);
        assert!(matches!(&got[0], ServerMessage::Joined { role: Role::Share, share_key: None, .. }), "{got:?}");
        assert!(got.iter().any(|m| matches!(m, ServerMessage::SendSize { width: 512, height: 288, fit: Fit::Letterbox, max_framerate: Some(15), .. })), "{got:?}");
        assert!(!got.iter().any(|m| matches!(m, ServerMessage::Layout { .. } | ServerMessage::Speaking { .. })), "{got:?}");
        drop(share);
        let (layout, tiles) = last_layout(&drain(&mut rx2));
        assert_eq!((layout.as_str(), tiles.len()), ("grid-2x1", 2), "back to the room's layout");
    }

    #[test]
    fn a_share_needs_its_participant_s_key_and_sharing_on() {
        let hub = Hub::new(Arc::new(FakeFactory::default()), 4);
        let (tx1, mut rx1) = mpsc::channel(64);
        let (tx2, mut rx2) = mpsc::channel(64);
        let a = hub.join("r", "Ada", tx1).unwrap();
        let b = hub.join("r", "Bob", tx2).unwrap();
        let (ka, kb) = (key_of(&drain(&mut rx1)), key_of(&drain(&mut rx2)));
        assert_ne!(ka, kb);
        let (ts, _rs) = mpsc::channel(64);
        let e = hub.join_with("r", "x", &share_opts(a.id(), &kb), ts.clone()).err().unwrap();
        assert_eq!(e.to_protocol().code, ErrorCode::Forbidden, "{e}");
        let e = hub.join_with("other", "x", &share_opts(a.id(), &ka), ts.clone()).err().unwrap();
        assert_eq!(e.to_protocol().code, ErrorCode::UnknownRoom, "{e}");
        assert_eq!(hub.room_count(), 1, "a share never opens a room");
        let (tv, mut rv) = mpsc::channel(64);
        let _v = hub.join_with("r", "Vi", &JoinOptions { role: Role::Viewer, ..Default::default() }, tv).unwrap();
        assert!(drain(&mut rv).iter().any(|m| matches!(m, ServerMessage::Joined { share_key: None, .. })), "viewers get no share key");
        let off = crate::config::Rooms { max_shares: 0, ..Default::default() };
        let hub2 = Hub::with_config(Arc::new(FakeFactory::default()), off, Catalog::builtin(), Default::default());
        let (tx3, mut rx3) = mpsc::channel(64);
        let c = hub2.join("r", "Cy", tx3).unwrap();
        assert!(drain(&mut rx3).iter().any(|m| matches!(m, ServerMessage::Joined { share_key: None, .. })), "no key when sharing is off");
        let e = hub2.join_with("r", "x", &share_opts(c.id(), "00"), ts).err().unwrap();
        assert_eq!(e.to_protocol().code, ErrorCode::Forbidden);
        drop(b);
    }

    #[test]
    fn a_second_sharer_is_refused_or_takes_over_and_a_leaving_sharer_ends_its_share() {
        for takeover in [false, true] {
            let limits = crate::config::Rooms { share_takeover: takeover, ..Default::default() };
            let hub = Hub::with_config(Arc::new(FakeFactory::default()), limits, Catalog::builtin(), Default::default());
            let (tx1, mut rx1) = mpsc::channel(64);
            let (tx2, mut rx2) = mpsc::channel(64);
            let a = hub.join("r", "Ada", tx1).unwrap();
            let b = hub.join("r", "Bob", tx2).unwrap();
            let (ka, kb) = (key_of(&drain(&mut rx1)), key_of(&drain(&mut rx2)));
            let (ts1, mut rs1) = mpsc::channel(64);
            let s1 = hub.join_with("r", "x", &share_opts(a.id(), &ka), ts1).unwrap();
            let (ts2, mut rs2) = mpsc::channel(64);
            let second = hub.join_with("r", "x", &share_opts(b.id(), &kb), ts2);
            if !takeover {
                let e = second.err().unwrap();
                assert_eq!(e.to_protocol().code, ErrorCode::ShareBusy);
                assert!(e.to_string().contains("Ada (screen)"), "{e}");
                // Ada's own new share replaces her old one, whatever the policy.
                let (ts3, _rs3) = mpsc::channel(64);
                let s3 = hub.join_with("r", "x", &share_opts(a.id(), &ka), ts3).unwrap();
                assert!(all_events(&mut rs1).iter().any(|e| matches!(e, ParticipantEvent::Close(p) if p.code == ErrorCode::ShareEnded)));
                drop(s1);
                let (_, tiles) = last_layout(&drain(&mut rx2));
                assert!(tiles.iter().any(|t| t.id == s3.id()), "the new share stays when the old connection goes");
                // Ada leaves: her share ends with her.
                drop(a);
                let (layout, tiles) = last_layout(&drain(&mut rx2));
                assert_eq!((layout.as_str(), tiles.len()), ("grid-1x1", 1), "{tiles:?}");
                drop(s3);
            } else {
                let s2 = second.unwrap();
                let ended = all_events(&mut rs1);
                assert!(ended.iter().any(|e| matches!(e, ParticipantEvent::Close(p) if p.code == ErrorCode::ShareEnded && p.message.contains("Bob"))), "{ended:?}");
                let (_, tiles) = last_layout(&drain(&mut rx1));
                let shown: Vec<&str> = tiles.iter().filter(|t| t.share_of.is_some()).map(|t| t.id.as_str()).collect();
                assert_eq!(shown, vec![s2.id()]);
                drop(b);
                assert!(all_events(&mut rs2).iter().any(|e| matches!(e, ParticipantEvent::Close(p) if p.code == ErrorCode::ShareEnded)));
                drop(s1);
                drop(s2);
                drop(a);
            }
        }
    }

    /// Regression: the grid was filled in the order participants' media
    /// became ready, so a slow first joiner ended up second.
    #[test]
    fn the_grid_follows_join_order_not_media_start_order() {
        let gate = Arc::new((std::sync::Barrier::new(2), std::sync::Barrier::new(2)));
        let f = Arc::new(FakeFactory { slow_start: Some(gate.clone()), ..FakeFactory::default() });
        let hub = Hub::new(f.clone(), 4);
        let h1 = hub.clone();
        let (tx1, _rx1) = mpsc::channel(64);
        let slow = std::thread::spawn(move || h1.join("r", "slow", tx1).unwrap());
        // "slow" asked first and its media is starting; "fast" joins and is
        // done before "slow"'s media is let go.
        gate.0.wait();
        let (tx2, _rx2) = mpsc::channel(64);
        let fast = hub.join("r", "fast", tx2).unwrap();
        gate.1.wait();
        let slow = slow.join().unwrap();
        let last = f.layouts.lock().last().cloned().unwrap();
        assert_eq!(last.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec![slow.id(), fast.id()]);
        assert_eq!(last[0].name, "slow");
    }

    #[test]
    fn a_full_room_refuses_with_room_full() {
        let hub = Hub::new(Arc::new(FakeFactory::default()), 2);
        let keep: Vec<_> = (0..2)
            .map(|i| {
                let (tx, rx) = mpsc::channel(64);
                (hub.join("r", &format!("n{i}"), tx).unwrap(), rx)
            })
            .collect();
        let (tx, _rx) = mpsc::channel(64);
        let err = hub.join("r", "late", tx).err().unwrap();
        assert_eq!(err.to_protocol().code, ErrorCode::RoomFull);
        assert_eq!(keep.len(), 2);
        assert_eq!(hub.participant_count(), 2);
    }
}
