//! Signaling protocol: the JSON messages exchanged on `GET /ws`, their
//! validation, and the stable error codes sent back to clients.
//!
//! This module knows nothing about GStreamer or warp. Every message is a
//! JSON object with a `type` field; see `docs/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one message may carry. The defaults here are the defaults of the
/// `[limits]` settings of the same names (docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest text frame (bytes); larger frames close the connection with
    /// WebSocket close code 1009.
    pub frame_bytes: usize,
    /// Largest SDP answer (bytes) and most lines in it (`sdp_too_large`).
    pub sdp_bytes: usize,
    pub sdp_lines: usize,
    /// Longest room id and display name, in characters (`invalid_field`).
    pub room_chars: usize,
    pub name_chars: usize,
    /// Longest chat message, in characters (`chat_too_long`).
    pub chat_chars: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { frame_bytes: 64 * 1024, sdp_bytes: 32 * 1024, sdp_lines: 2_000, room_chars: 64, name_chars: 64, chat_chars: 1000 }
    }
}
/// Number of m-lines in every offer the server makes: 0 = audio, 1 = video.
pub const OFFER_MLINES: u32 = 2;

/// Stable error codes. The wire form is the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    MissingType,
    UnknownType,
    MissingField,
    InvalidField,
    UnsupportedFrame,
    NotJoined,
    AlreadyJoined,
    AnswerBeforeOffer,
    InvalidSdp,
    UnknownMline,
    RoomFull,
    UnknownLayout,
    UnknownParticipant,
    UnknownRoom,
    UnknownQuality,
    MediaFailed,
    Internal,
    /// Room tokens (HTTP 401 before the upgrade, or at `join`).
    MissingToken,
    InvalidToken,
    ExpiredToken,
    TokenNotYetValid,
    /// The `join` names another room than the token, or the token may not
    /// do what was asked (the HTTP API without an admin token).
    Forbidden,
    /// Limits (docs/configuration.md, `[limits]`).
    RateLimited,
    TooManyConnections,
    TooManyRooms,
    SdpTooLarge,
    TooManyCandidates,
    /// A chat message over `[limits] max_chat_chars`.
    ChatTooLong,
    /// Dead peers: a silent WebSocket, or media that stopped.
    IdleTimeout,
    MediaTimeout,
    /// Someone else shares and the room allows no more shares (`[rooms]
    /// max_shares`, without `share_takeover`).
    ShareBusy,
    /// This share connection ended: its participant left or stopped it, or
    /// another share took its place.
    ShareEnded,
    /// The server is draining for a restart: no new joins; at its
    /// deadline the rooms still open end with it (rejoin: in a cluster
    /// another node takes the room).
    ServerDraining,
    /// (HTTP API) no such recording in the room.
    UnknownRecording,
    /// (HTTP API) no such live stream in the room.
    UnknownStream,
    /// (HTTP API) an HLS stream of that name is running.
    StreamExists,
    /// Cluster: Redis is out of reach so no new room can be placed, or the
    /// room's node stopped answering (try again in a few seconds).
    ClusterUnavailable,
    /// Cluster: the room moved to another node (this node lost its lease
    /// while Redis was out of reach): join again.
    RoomMoved,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::AnswerBeforeOffer => "answer_before_offer",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::UnknownMline => "unknown_mline",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::UnknownLayout => "unknown_layout",
            ErrorCode::UnknownParticipant => "unknown_participant",
            ErrorCode::UnknownRoom => "unknown_room",
            ErrorCode::UnknownQuality => "unknown_quality",
            ErrorCode::MediaFailed => "media_failed",
            ErrorCode::Internal => "internal",
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::TokenNotYetValid => "token_not_yet_valid",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::SdpTooLarge => "sdp_too_large",
            ErrorCode::TooManyCandidates => "too_many_candidates",
            ErrorCode::ChatTooLong => "chat_too_long",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::MediaTimeout => "media_timeout",
            ErrorCode::ShareBusy => "share_busy",
            ErrorCode::ShareEnded => "share_ended",
            ErrorCode::ServerDraining => "server_draining",
            ErrorCode::UnknownRecording => "unknown_recording",
            ErrorCode::UnknownStream => "unknown_stream",
            ErrorCode::StreamExists => "stream_exists",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
            ErrorCode::RoomMoved => "room_moved",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol-level error: a stable code plus a human readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { code, message: message.into() }
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error { code: self.code, message: self.message.clone() }
    }
}

/// Messages a client sends. Serialised by clients (the bot, the tests);
/// the server reads them with [`parse_client_message`], which validates
/// every field and gives each problem its stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// `role` (default participant) and `quality` (default `auto`) are optional.
    /// A `share` connection names the participant whose screen it carries
    /// and that participant's `share_key` (from its `joined`).
    Join {
        room: String,
        name: String,
        role: Role,
        quality: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        share_of: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        share_key: Option<String>,
    },
    /// Choose a rung of the encoder ladder by name, or `auto`.
    SetQuality { quality: String },
    Answer { sdp: String },
    /// An ICE candidate. An empty `candidate` means end-of-candidates.
    Ice {
        candidate: String,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: u32,
    },
    /// Microphone and/or camera muted (true) or live (false); an absent
    /// field leaves that state unchanged.
    Mute {
        #[serde(skip_serializing_if = "Option::is_none")]
        audio: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        video: Option<bool>,
    },
    /// Switch the room to a layout group (chosen by count) or one layout.
    SetLayout {
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        layout: Option<String>,
    },
    /// Pin participant `id` to the reserved slot `slot`; `id: None` unpins.
    Pin { slot: String, id: Option<String> },
    /// A text chat message to everyone in the room (viewers included).
    Chat { text: String },
    Leave,
}

impl ClientMessage {
    /// The message as a WebSocket text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("client messages always serialise: {e}"))
    }
}

/// A STUN or TURN server, in the shape of WebRTC's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

fn participant() -> Role {
    Role::Participant
}

/// How a client takes part in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends camera and microphone, has a tile, hears everyone else.
    Participant,
    /// Receive-only: the composed video and the whole audio mix, no tile.
    Viewer,
    /// A participant's second connection that sends only a shared screen:
    /// it gets the floor of the presentation layout, hears and sees nothing.
    Share,
}

/// One chat message as the server relays it: who sent it, and when (server
/// time, milliseconds since the Unix epoch). `seq` counts the room's
/// messages from 1, so a client can order and de-duplicate them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    pub id: String,
    pub name: String,
    pub text: String,
    pub at_ms: u64,
    pub seq: u64,
}

/// How a picture fills its tile (a layout slot's `fit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Fill the tile, centred; the picture's overflow is cut off (cameras).
    #[default]
    Crop,
    /// Keep the whole picture; bars fill the rest of the tile (content
    /// whose edges matter, e.g. a shared screen).
    Letterbox,
}

/// A video codec the server sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// The default: first in the server's offer.
    #[default]
    Vp8,
    /// Constrained baseline, packetization-mode 1.
    H264,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Vp8, Codec::H264];

    /// Its place in [`Codec::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        }
    }

    /// The RTP encoding name (`a=rtpmap`), upper case.
    pub fn rtp_name(self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
        }
    }

    pub fn parse(s: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s) || c.rtp_name().eq_ignore_ascii_case(s))
    }
}

/// The video codec an answer chose: the first payload type of its first
/// live video section, by its `a=rtpmap` name. None without a live video
/// section or with a codec we do not know.
pub fn answer_video_codec(sdp: &str) -> Option<Codec> {
    let mut first_pt: Option<&str> = None;
    let mut in_video = false;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            if first_pt.is_some() {
                break;
            }
            let mut f = m.split_whitespace();
            let (kind, port) = (f.next(), f.next());
            in_video = kind == Some("video") && port.is_some_and(|p| p != "0");
            if in_video {
                first_pt = f.nth(1);
            }
        } else if let (true, Some(pt)) = (in_video, first_pt) {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let (n, enc) = rest.split_once(' ')?;
                if n == pt {
                    return Codec::parse(enc.split('/').next()?);
                }
            }
        }
    }
    None
}

/// Canvas size in a layout message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
}

/// One tile of the composed grid, in canvas pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    pub id: String,
    pub name: String,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// The participant's microphone is muted (left out of the mix).
    #[serde(default)]
    pub audio_muted: bool,
    /// The participant's camera is off (its tile shows a name card).
    #[serde(default)]
    pub video_muted: bool,
    /// A shared screen: the id of the participant sharing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_of: Option<String>,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        id: String,
        room: String,
        /// What the server admitted this client as: a token may make a
        /// `participant` join a `viewer`. Absent from older servers.
        #[serde(default = "participant")]
        role: Role,
        /// STUN/TURN servers to use (RTCIceServer), when the server has any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
        /// A participant's key for its screen-share connection (`join` with
        /// `role: "share"`, `share_of` and `share_key`). Participants only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_key: Option<String>,
    },
    Offer { sdp: String },
    Ice {
        candidate: String,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: u32,
    },
    Layout {
        canvas: Canvas,
        tiles: Vec<Tile>,
        /// Name of the layout in use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layout: Option<String>,
    },
    /// The active speaker changed (`id` null: nobody holds the floor).
    Speaking { id: Option<String> },
    /// The size this participant's video occupies in the grid, and a
    /// bitrate that suits it: sending more is wasted uplink.
    ///
    /// `fit` says how the tile shows the picture: `crop` fills the tile
    /// and cuts the overflow (send at least the tile's size in both
    /// directions, "cover"), `letterbox` shows all of it (fit inside it).
    SendSize {
        width: u32,
        height: u32,
        max_bitrate: u32,
        #[serde(default)]
        fit: Fit,
        /// Highest frame rate worth sending (a shared screen: sharpness
        /// before motion). Absent: the canvas rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_framerate: Option<u32>,
    },
    /// The rung of the encoder ladder this receiver now gets (`rung` is
    /// `audio` while video is paused on a weak link). `estimate_kbps` is
    /// the server's estimate of the receiver's downlink, when known.
    Quality {
        rung: String,
        width: u32,
        height: u32,
        fps: u32,
        kbps: u32,
        auto: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimate_kbps: Option<u32>,
        /// The video codec this receiver gets (the answer's choice).
        #[serde(default)]
        codec: Codec,
    },
    Error { code: ErrorCode, message: String },
    /// A chat message, relayed to everyone in the room (its sender too).
    Chat(ChatEntry),
    /// The room's last chat messages, oldest first: sent once after
    /// `joined` when there are any.
    ChatHistory { messages: Vec<ChatEntry> },
    /// An operator took this client out of the room (or closed the room):
    /// the connection closes next. Do not rejoin on your own.
    Removed { reason: String },
    /// An operator muted (true) or unmuted (false) this participant's
    /// microphone in the mix.
    Muted { audio: bool },
    /// The room is being recorded (true) or no longer (false): sent to
    /// every member when it changes, and after `joined` while it is.
    Recording { active: bool },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialisation failed"}"#.to_string()
        })
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(code, message)
}

fn field_str<'a>(obj: &'a serde_json::Map<String, Value>, name: &str, ty: &str) -> Result<&'a str, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => {
            Err(err(ErrorCode::MissingField, format!("`{ty}` needs the field `{name}`")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(err(ErrorCode::InvalidField, format!("`{name}` in `{ty}` must be a string"))),
    }
}

/// Room ids: 1 to `room_chars` (64) characters of `A-Z a-z 0-9 - _ .`.
pub fn validate_room(room: &str, limits: &Limits) -> Result<(), ProtocolError> {
    let n = room.chars().count();
    if n == 0 || n > limits.room_chars {
        return Err(err(ErrorCode::InvalidField, format!("`room` must be 1 to {} characters", limits.room_chars)));
    }
    if !room.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(err(ErrorCode::InvalidField, "`room` may contain only letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

/// Display names: any Unicode except control characters and the
/// invisible formatting ones that reorder or hide text (bidi overrides and
/// isolates, zero-width characters), 1 to `name_chars` (64) characters
/// after trimming.
pub fn validate_name(name: &str, limits: &Limits) -> Result<String, ProtocolError> {
    let trimmed = name.trim();
    let n = trimmed.chars().count();
    if n == 0 || n > limits.name_chars {
        return Err(err(ErrorCode::InvalidField, format!("`name` must be 1 to {} characters", limits.name_chars)));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(err(ErrorCode::InvalidField, "`name` may not contain control characters"));
    }
    if trimmed.chars().any(is_invisible_format) {
        return Err(err(ErrorCode::InvalidField, "`name` may not contain bidi overrides or zero-width characters"));
    }
    Ok(trimmed.to_string())
}

/// A chat message: 1 to `chat_chars` characters once trimmed; line breaks
/// and tabs are kept, other control characters refused. Shown as text by
/// clients (never as markup).
pub fn validate_chat(text: &str, limits: &Limits) -> Result<String, ProtocolError> {
    let trimmed = text.trim();
    let n = trimmed.chars().count();
    if n == 0 {
        return Err(err(ErrorCode::InvalidField, "`text` of `chat` is empty"));
    }
    if n > limits.chat_chars {
        return Err(err(ErrorCode::ChatTooLong, format!("a chat message is at most {} characters; this one has {n}", limits.chat_chars)));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(err(ErrorCode::InvalidField, "`text` of `chat` may not contain control characters other than line breaks and tabs"));
    }
    Ok(trimmed.to_string())
}

/// Quality names: `auto` or a rung name (1 to 16 of `a-z 0-9 -`); whether
/// the rung exists is checked against the room's ladder.
pub fn validate_quality(q: &str) -> Result<String, ProtocolError> {
    if q.is_empty() || q.len() > 16 || !q.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(err(ErrorCode::InvalidField, "`quality` must be `auto` or a rung name such as `high`, `medium`, `low`"));
    }
    Ok(q.to_string())
}

/// Bidi embeddings, overrides and isolates, zero-width and word-joiner
/// characters, the BOM: they change how a name card reads without showing.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Parse and validate one text frame from a client, with the default limits.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    parse_client_message_with(text, &Limits::default())
}

/// Parse and validate one text frame from a client.
pub fn parse_client_message_with(text: &str, limits: &Limits) -> Result<ClientMessage, ProtocolError> {
    if text.len() > limits.frame_bytes {
        return Err(err(ErrorCode::InvalidField, format!("frame larger than {} bytes", limits.frame_bytes)));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(ErrorCode::MalformedJson, format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| err(ErrorCode::MalformedJson, "a message must be a JSON object"))?;
    let ty = match obj.get("type") {
        None | Some(Value::Null) => return Err(err(ErrorCode::MissingType, "a message needs a string field `type`")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err(ErrorCode::MissingType, "`type` must be a string")),
    };
    match ty {
        "join" => {
            let room = field_str(obj, "room", ty)?;
            validate_room(room, limits)?;
            let name = validate_name(field_str(obj, "name", ty)?, limits)?;
            let role = match obj.get("role") {
                None | Some(Value::Null) => Role::Participant,
                Some(Value::String(r)) if r == "participant" => Role::Participant,
                Some(Value::String(r)) if r == "viewer" => Role::Viewer,
                Some(Value::String(r)) if r == "share" => Role::Share,
                Some(_) => return Err(err(ErrorCode::InvalidField, "`role` must be `participant`, `viewer` or `share`")),
            };
            let quality = match obj.get("quality") {
                None | Some(Value::Null) => "auto".to_string(),
                Some(_) => validate_quality(field_str(obj, "quality", ty)?)?,
            };
            let (share_of, share_key) = if role == Role::Share {
                let of = field_str(obj, "share_of", ty)?;
                let key = field_str(obj, "share_key", ty)?;
                for (v, n) in [(of, "share_of"), (key, "share_key")] {
                    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(err(ErrorCode::InvalidField, format!("`{n}` must be 1 to 64 letters and digits, as the server gave it")));
                    }
                }
                (Some(of.to_string()), Some(key.to_string()))
            } else {
                (None, None)
            };
            Ok(ClientMessage::Join { room: room.to_string(), name, role, quality, share_of, share_key })
        }
        "set_quality" => Ok(ClientMessage::SetQuality { quality: validate_quality(field_str(obj, "quality", ty)?)? }),
        "answer" => {
            let sdp = field_str(obj, "sdp", ty)?;
            validate_answer_sdp(sdp, limits)?;
            Ok(ClientMessage::Answer { sdp: sdp.to_string() })
        }
        "ice" => {
            let candidate = field_str(obj, "candidate", ty)?;
            if !candidate.is_empty() && !candidate.starts_with("candidate:") {
                return Err(err(ErrorCode::InvalidField, "`candidate` must start with `candidate:` (or be empty for end-of-candidates)"));
            }
            if candidate.chars().any(|c| c == '\r' || c == '\n') {
                return Err(err(ErrorCode::InvalidField, "`candidate` must be one line"));
            }
            let idx = match obj.get("sdpMLineIndex") {
                None | Some(Value::Null) => {
                    return Err(err(ErrorCode::MissingField, "`ice` needs the field `sdpMLineIndex`"))
                }
                Some(v) => v.as_u64().ok_or_else(|| {
                    err(ErrorCode::InvalidField, "`sdpMLineIndex` must be a non-negative integer")
                })?,
            };
            if idx >= OFFER_MLINES as u64 {
                return Err(err(
                    ErrorCode::UnknownMline,
                    format!("`sdpMLineIndex` {idx} names no m-line of the offer (it has {OFFER_MLINES})"),
                ));
            }
            Ok(ClientMessage::Ice { candidate: candidate.to_string(), sdp_mline_index: idx as u32 })
        }
        "mute" => {
            let flag = |name: &str| -> Result<Option<bool>, ProtocolError> {
                match obj.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Bool(b)) => Ok(Some(*b)),
                    Some(_) => Err(err(ErrorCode::InvalidField, format!("`{name}` in `mute` must be true or false"))),
                }
            };
            let (audio, video) = (flag("audio")?, flag("video")?);
            if audio.is_none() && video.is_none() {
                return Err(err(ErrorCode::MissingField, "`mute` needs `audio` and/or `video`"));
            }
            Ok(ClientMessage::Mute { audio, video })
        }
        "set_layout" => {
            let opt = |name: &str| -> Result<Option<String>, ProtocolError> {
                match obj.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 64 => Ok(Some(s.clone())),
                    Some(_) => Err(err(ErrorCode::InvalidField, format!("`{name}` in `set_layout` must be a name of 1 to 64 characters"))),
                }
            };
            let (group, layout) = (opt("group")?, opt("layout")?);
            match (&group, &layout) {
                (None, None) => Err(err(ErrorCode::MissingField, "`set_layout` needs `group` or `layout`")),
                (Some(_), Some(_)) => Err(err(ErrorCode::InvalidField, "`set_layout` takes `group` or `layout`, not both")),
                _ => Ok(ClientMessage::SetLayout { group, layout }),
            }
        }
        "pin" => {
            let slot = field_str(obj, "slot", ty)?;
            if slot.is_empty() || slot.chars().count() > 64 {
                return Err(err(ErrorCode::InvalidField, "`slot` must be a reserved key of 1 to 64 characters"));
            }
            let id = match obj.get("id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(err(ErrorCode::InvalidField, "`id` in `pin` must be a participant id or null")),
            };
            Ok(ClientMessage::Pin { slot: slot.to_string(), id })
        }
        "chat" => Ok(ClientMessage::Chat { text: validate_chat(field_str(obj, "text", ty)?, limits)? }),
        "leave" => Ok(ClientMessage::Leave),
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(err(ErrorCode::UnknownType, format!("unknown message type `{shown}`")))
        }
    }
}

/// Semantic checks on an answer before any SDP parser sees it: size, line
/// count, one m-line per offered m-line, ICE credentials and a DTLS
/// fingerprint for every media section (at session or media level).
pub fn validate_answer_sdp(sdp: &str, limits: &Limits) -> Result<(), ProtocolError> {
    let invalid = |m: &str| err(ErrorCode::InvalidSdp, m.to_string());
    if sdp.trim().is_empty() {
        return Err(invalid("the answer SDP is empty"));
    }
    if sdp.len() > limits.sdp_bytes {
        return Err(err(ErrorCode::SdpTooLarge, format!("the answer SDP has {} bytes; at most {} are taken", sdp.len(), limits.sdp_bytes)));
    }
    if sdp.bytes().any(|b| b == 0) {
        return Err(invalid("the answer SDP contains a NUL byte"));
    }
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    if lines.len() > limits.sdp_lines {
        return Err(err(ErrorCode::SdpTooLarge, format!("the answer SDP has {} lines; at most {} are taken", lines.len(), limits.sdp_lines)));
    }
    if !lines.first().map(|l| l.starts_with("v=0")).unwrap_or(false) {
        return Err(invalid("the answer SDP must start with `v=0`"));
    }
    // Split into the session part and media sections.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in &lines {
        if line.is_empty() {
            continue;
        }
        if line.len() < 2 || line.as_bytes()[1] != b'=' {
            return Err(invalid(&format!("the SDP line `{}` is not of the form `x=...`", truncate(line, 40))));
        }
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push(line);
        }
    }
    let session = &sections[0];
    let media = &sections[1..];
    if media.len() != OFFER_MLINES as usize {
        return Err(invalid(&format!(
            "the answer has {} m-lines; the offer had {OFFER_MLINES} (audio, video)",
            media.len()
        )));
    }
    let has = |sec: &[&str], prefix: &str| sec.iter().any(|l| l.starts_with(prefix));
    for (i, sec) in media.iter().enumerate() {
        let m = sec[0];
        let fields: Vec<&str> = m[2..].split_whitespace().collect();
        if fields.len() < 3 {
            return Err(invalid(&format!("m-line {i} is incomplete")));
        }
        let expected = if i == 0 { "audio" } else { "video" };
        if fields[0] != expected {
            return Err(invalid(&format!("m-line {i} is `{}`, expected `{expected}`", fields[0])));
        }
        // A rejected m-line (port 0) needs no transport attributes.
        if fields[1] == "0" {
            continue;
        }
        for (attr, what) in [
            ("a=ice-ufrag:", "ICE username fragment"),
            ("a=ice-pwd:", "ICE password"),
            ("a=fingerprint:", "DTLS fingerprint"),
        ] {
            if !has(sec, attr) && !has(session, attr) {
                return Err(invalid(&format!("m-line {i} has no {what} (`{attr}`)")));
            }
        }
    }
    Ok(())
}

/// The connection address of a candidate (`candidate:...` or
/// `a=candidate:...`), as written.
fn candidate_address(candidate: &str) -> Option<&str> {
    let c = candidate.strip_prefix("a=").unwrap_or(candidate);
    if !c.starts_with("candidate:") {
        return None;
    }
    c.split(' ').nth(4)
}

/// Is this an ICE candidate whose address is an mDNS name
/// (`<uuid>.local`, what browsers put in host candidates to hide local
/// addresses)? The server cannot resolve them (it is not on the client's
/// LAN); they are dropped without an error, and ICE learns the client's
/// address from its connectivity checks (a peer-reflexive candidate).
pub fn is_mdns_candidate(candidate: &str) -> bool {
    candidate_address(candidate).is_some_and(|a| a.to_ascii_lowercase().ends_with(".local"))
}

/// Is the candidate's address a name rather than an IP address? webrtcbin
/// would look any name up (GStreamer 1.22's lookup kept about six file
/// descriptors and a thread for good when the participant left first):
/// the server never resolves a name a client gives it.
pub fn candidate_has_name(candidate: &str) -> bool {
    candidate_address(candidate).is_some_and(|a| a.parse::<std::net::IpAddr>().is_err())
}

/// The SDP without candidates whose address is a name (see
/// [`candidate_has_name`]).
pub fn without_named_candidates(sdp: &str) -> String {
    let named = |l: &str| l.starts_with("a=candidate:") && candidate_has_name(l);
    if !sdp.lines().any(|l| named(l.trim_end_matches('\r'))) {
        return sdp.to_string();
    }
    let ending = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out: String = sdp.lines().filter(|l| !named(l.trim_end_matches('\r'))).collect::<Vec<_>>().join(ending);
    out.push_str(ending);
    out
}

/// Does an answer send media to the server: a media section that is not
/// rejected (port 0) and whose direction is `sendrecv` (the default) or
/// `sendonly`?
pub fn answer_sends_media(sdp: &str) -> bool {
    let mut sends = false;
    let mut section: Option<(bool, bool)> = None; // (live, sending)
    let mut close = |sec: Option<(bool, bool)>| {
        if let Some((live, sending)) = sec {
            sends |= live && sending;
        }
    };
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            close(section.take());
            let live = m.split_whitespace().nth(1).is_some_and(|port| port != "0");
            section = Some((live, true));
        } else if let Some((_, sending)) = section.as_mut() {
            match line {
                "a=recvonly" | "a=inactive" => *sending = false,
                "a=sendrecv" | "a=sendonly" => *sending = true,
                _ => {}
            }
        }
    }
    close(section);
    sends
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A host candidate as a server behind a 1:1 NAT must announce it: its
/// address replaced by each announced address of the same family (the
/// server keeps binding the local one). Other candidates, and candidates
/// with no announced address of their family, are kept as they are.
pub fn announce_candidate(candidate: &str, announce: &[std::net::IpAddr]) -> Vec<String> {
    let fields: Vec<&str> = candidate.split(' ').collect();
    let host = fields.get(6) == Some(&"typ") && fields.get(7) == Some(&"host");
    let Some(local) = fields.get(4).and_then(|a| a.parse::<std::net::IpAddr>().ok()).filter(|_| host) else {
        return vec![candidate.to_string()];
    };
    let same: Vec<String> = announce.iter().filter(|a| a.is_ipv4() == local.is_ipv4()).map(|a| a.to_string()).collect();
    if same.is_empty() {
        return vec![candidate.to_string()];
    }
    same.iter()
        .map(|a| {
            let mut f = fields.clone();
            f[4] = a;
            f.join(" ")
        })
        .collect()
}

/// `sdp` asking for audio packets of `ms` milliseconds: `a=ptime:<ms>`
/// ends every audio section (replacing one already there). Other
/// sections and lines are kept as they are.
pub fn with_audio_ptime(sdp: &str, ms: u32) -> String {
    let mut out = String::with_capacity(sdp.len() + 32);
    let mut audio = false;
    let ptime = format!("a=ptime:{ms}\r\n");
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with("m=") {
            if audio {
                out.push_str(&ptime);
            }
            audio = bare.starts_with("m=audio ");
        }
        if audio && bare.starts_with("a=ptime:") {
            continue;
        }
        out.push_str(line);
        if !line.ends_with('\n') && !line.is_empty() {
            out.push_str("\r\n");
        }
    }
    if audio {
        out.push_str(&ptime);
    }
    out
}

/// The id of header extension `uri` in the audio section of `sdp` (or at
/// session level), if it is there (`a=extmap:ID[/direction] URI`).
pub fn audio_extmap(sdp: &str, uri: &str) -> Option<u8> {
    let mut section = "";
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            section = line.split(' ').next().unwrap_or("");
        } else if section.is_empty() || section == "m=audio" {
            if let Some(v) = line.strip_prefix("a=extmap:") {
                let mut parts = v.split_whitespace();
                let id = parts.next().and_then(|i| i.split('/').next()).and_then(|i| i.parse::<u8>().ok());
                if parts.next() == Some(uri) {
                    return id.filter(|i| (1..=14).contains(i));
                }
            }
        }
    }
    None
}

/// The audio packet time (`a=ptime`, ms) the first audio section of
/// `sdp` asks for, if any.
pub fn audio_ptime(sdp: &str) -> Option<u32> {
    let mut audio = false;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            if audio {
                return None;
            }
            audio = line.starts_with("m=audio ");
        } else if audio {
            if let Some(v) = line.strip_prefix("a=ptime:") {
                return v.trim().parse().ok();
            }
        }
    }
    None
}

/// Insert `a=candidate` lines (and `a=end-of-candidates`) into an SDP for a
/// client that does not trickle. `candidates` are (m-line index, candidate
/// attribute value starting with `candidate:`). Candidates already present
/// are not repeated.
pub fn sdp_with_candidates(sdp: &str, candidates: &[(u32, String)]) -> String {
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 100);
    let mut mline: i64 = -1;
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect();
    let flush = |out: &mut String, mline: i64, section: &[&str]| {
        if mline < 0 {
            return;
        }
        for (idx, c) in candidates {
            if *idx as i64 == mline {
                let line = format!("a={c}");
                if !section.contains(&line.as_str()) {
                    out.push_str(&line);
                    out.push_str("\r\n");
                }
            }
        }
        if !section.contains(&"a=end-of-candidates") {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    let mut section: Vec<&str> = Vec::new();
    for line in lines {
        if line.starts_with("m=") {
            flush(&mut out, mline, &section);
            section.clear();
            mline += 1;
        }
        if mline >= 0 {
            section.push(line);
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    flush(&mut out, mline, &section);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_audio_level_extension_id_is_read_from_the_audio_section_only() {
        use super::audio_extmap;
        let uri = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
        let sdp = format!("v=0\r\nm=audio 9 X 111\r\na=extmap:3 http://x\r\na=extmap:1/sendonly {uri}\r\nm=video 9 X 96\r\na=extmap:5 {uri}\r\n");
        assert_eq!(audio_extmap(&sdp, uri), Some(1));
        let video_only = format!("v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=extmap:5 {uri}\r\n");
        assert_eq!(audio_extmap(&video_only, uri), None, "a video section's does not count");
        assert_eq!(audio_extmap(&format!("v=0\r\na=extmap:2 {uri}\r\nm=audio 9 X 111\r\n"), uri), Some(2), "session level");
        assert_eq!(audio_extmap(&format!("v=0\r\nm=audio 9 X 111\r\na=extmap:15 {uri}\r\n"), uri), None, "15 is reserved");
        assert_eq!(audio_extmap(&format!("v=0\r\nm=audio 9 X 111\r\na=extmap:x {uri}\r\n"), uri), None);
    }

    #[test]
    fn audio_sections_end_with_the_asked_packet_time_and_nothing_else_changes() {
        let sdp = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ptime:20\r\na=rtpmap:111 OPUS/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        let asked = with_audio_ptime(sdp, 40);
        assert_eq!(
            asked,
            "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 OPUS/48000/2\r\na=ptime:40\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
        );
        assert_eq!(audio_ptime(&asked), Some(40));
        assert_eq!(audio_ptime(sdp), Some(20));
        // Audio last, and no audio at all.
        let last = with_audio_ptime("v=0\r\nm=video 9 X 96\r\nm=audio 9 X 111\r\na=mid:1\r\n", 60);
        assert!(last.ends_with("m=audio 9 X 111\r\na=mid:1\r\na=ptime:60\r\n"), "{last}");
        assert_eq!(with_audio_ptime("v=0\r\nm=video 9 X 96\r\n", 40), "v=0\r\nm=video 9 X 96\r\n");
        assert_eq!(audio_ptime("v=0\r\nm=video 9 X 96\r\na=ptime:40\r\n"), None, "only an audio section's counts");
    }

    #[test]
    fn host_candidates_carry_the_announced_address() {
        use super::announce_candidate;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let host = "candidate:1 1 UDP 2015363327 10.0.0.5 43119 typ host";
        assert_eq!(announce_candidate(host, &[ip("203.0.113.7")]), ["candidate:1 1 UDP 2015363327 203.0.113.7 43119 typ host"]);
        assert_eq!(announce_candidate(host, &[ip("2001:db8::1")]), [host], "no IPv4 address announced");
        assert_eq!(announce_candidate(host, &[]), [host]);
        let relay = "candidate:2 1 UDP 5 198.51.100.1 3478 typ relay raddr 10.0.0.5 rport 43119";
        assert_eq!(announce_candidate(relay, &[ip("203.0.113.7")]), [relay], "only host candidates");
        assert_eq!(announce_candidate(host, &[ip("203.0.113.7"), ip("198.51.100.9")]).len(), 2);
        assert_eq!(announce_candidate("", &[ip("203.0.113.7")]), [""]);
    }

    #[test]
    fn every_client_message_reads_back_as_written() {
        use super::{parse_client_message, ClientMessage, Role};
        let all = [
            ClientMessage::Join { room: "r1".into(), name: "Ann".into(), role: Role::Viewer, quality: "low".into(), share_of: None, share_key: None },
            ClientMessage::Join { room: "r1".into(), name: "Ann".into(), role: Role::Share, quality: "auto".into(), share_of: Some("p3".into()), share_key: Some("0a1b".into()) },
            ClientMessage::SetQuality { quality: "auto".into() },
            ClientMessage::Answer {
                sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u\r\na=ice-pwd:pppppppppppppppppppppp\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:u\r\na=ice-pwd:pppppppppppppppppppppp\r\n"
                    .into(),
            },
            ClientMessage::Ice { candidate: "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into(), sdp_mline_index: 1 },
            ClientMessage::Ice { candidate: String::new(), sdp_mline_index: 0 },
            ClientMessage::Mute { audio: Some(true), video: None },
            ClientMessage::SetLayout { group: Some("grid".into()), layout: None },
            ClientMessage::Pin { slot: "main".into(), id: Some("p1".into()) },
            ClientMessage::Pin { slot: "main".into(), id: None },
            ClientMessage::Leave,
        ];
        for m in all {
            let text = m.to_json();
            assert_eq!(parse_client_message(&text).as_ref(), Ok(&m), "{text}");
        }
    }

    use super::*;

    #[test]
    fn chat_text_is_trimmed_limited_and_free_of_control_characters() {
        let l = Limits { chat_chars: 10, ..Limits::default() };
        let parse = |t: &str| parse_client_message_with(&format!(r#"{{"type":"chat","text":{}}}"#, serde_json::to_string(t).unwrap()), &l);
        assert_eq!(parse("  <b>x</b> ").unwrap(), ClientMessage::Chat { text: "<b>x</b>".into() }, "trimmed, markup kept as text");
        assert_eq!(parse("a\nb\tc").unwrap(), ClientMessage::Chat { text: "a\nb\tc".into() });
        assert_eq!(parse("   ").unwrap_err().code, ErrorCode::InvalidField);
        assert_eq!(parse("0123456789x").unwrap_err().code, ErrorCode::ChatTooLong);
        assert_eq!(parse("🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉").unwrap(), ClientMessage::Chat { text: "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉".into() }, "characters, not bytes");
        assert_eq!(parse("bell\u{7}").unwrap_err().code, ErrorCode::InvalidField);
        let missing = parse_client_message_with(r#"{"type":"chat"}"#, &l).unwrap_err();
        assert_eq!(missing.code, ErrorCode::MissingField);
        let entry = ChatEntry { id: "p1".into(), name: "Ada".into(), text: "<i>x</i>".into(), at_ms: 5, seq: 1 };
        assert_eq!(ServerMessage::Chat(entry.clone()).to_json(), r#"{"type":"chat","id":"p1","name":"Ada","text":"<i>x</i>","at_ms":5,"seq":1}"#);
        assert_eq!(ServerMessage::ChatHistory { messages: vec![entry] }.to_json(), r#"{"type":"chat_history","messages":[{"id":"p1","name":"Ada","text":"<i>x</i>","at_ms":5,"seq":1}]}"#);
    }

    #[test]
    fn the_answer_s_first_video_payload_names_its_codec() {
        let answer = |video: &str| {
            format!(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\n{video}"
            )
        };
        let h264 = answer("m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n");
        assert_eq!(answer_video_codec(&h264), Some(Codec::H264));
        let both = answer("m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:102 H264/90000\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(answer_video_codec(&both), Some(Codec::Vp8), "the first payload type decides, not the first rtpmap");
        let rejected = answer("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(answer_video_codec(&rejected), None);
        assert_eq!(answer_video_codec(&answer("m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n")), None);
        assert_eq!(answer_video_codec(&answer("")), None);
        assert_eq!(answer_video_codec("m=video 9 RTP 96"), None, "no rtpmap");
        assert_eq!(Codec::parse("H264"), Some(Codec::H264));
        assert_eq!(Codec::parse("vp8"), Some(Codec::Vp8));
        assert_eq!(Codec::parse("av1"), None);
        assert!(Codec::ALL.iter().enumerate().all(|(i, c)| c.index() == i));
    }

    #[test]
    fn join_parses_and_trims_name() {
        let m = parse_client_message(r#"{"type":"join","room":"r1","name":"  Ada  "}"#).unwrap();
        assert_eq!(m, ClientMessage::Join { room: "r1".into(), name: "Ada".into(), role: Role::Participant, quality: "auto".into(), share_of: None, share_key: None });
    }

    #[test]
    fn a_share_join_names_its_participant_and_key() {
        let m = parse_client_message(r#"{"type":"join","room":"r1","name":"Ada","role":"share","share_of":"p3","share_key":"9f0e"}"#).unwrap();
        assert_eq!(m, ClientMessage::Join { room: "r1".into(), name: "Ada".into(), role: Role::Share, quality: "auto".into(), share_of: Some("p3".into()), share_key: Some("9f0e".into()) });
        let e = parse_client_message(r#"{"type":"join","room":"r1","name":"Ada","role":"share","share_of":"p3"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingField);
        let e = parse_client_message(r#"{"type":"join","room":"r1","name":"Ada","role":"share","share_of":"p3","share_key":"<x>"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        let e = parse_client_message(r#"{"type":"join","room":"r1","name":"Ada","role":"host"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        // Other roles ignore the share fields.
        let m = parse_client_message(r#"{"type":"join","room":"r1","name":"Ada","share_of":"p3"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Join { role: Role::Participant, share_of: None, .. }));
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        // Golden JSON for every variant, as docs/protocol.md shows them.
        let tile = |id: &str, name: &str, x: u32| Tile { id: id.into(), name: name.into(), x, y: 0, width: 640, height: 720, audio_muted: false, video_muted: x > 0, share_of: None };
        let cases: Vec<(ServerMessage, &str)> = vec![
            (ServerMessage::Joined { id: "p7".into(), room: "standup".into(), role: Role::Participant, ice_servers: vec![], share_key: None }, r#"{"type":"joined","id":"p7","room":"standup","role":"participant"}"#),
            (
                ServerMessage::Joined { id: "p7".into(), room: "standup".into(), role: Role::Participant, ice_servers: vec![], share_key: Some("5d1c0e".into()) },
                r#"{"type":"joined","id":"p7","room":"standup","role":"participant","share_key":"5d1c0e"}"#,
            ),
            (
                ServerMessage::Joined {
                    id: "p7".into(),
                    room: "standup".into(),
                    role: Role::Viewer,
                    ice_servers: vec![IceServer { urls: vec!["turn:t.example:3478".into()], username: Some("1700086400:p7".into()), credential: Some("feUJjB3zpqOCotTY82kk2Z1oFWI=".into()) }],
                    share_key: None,
                },
                r#"{"type":"joined","id":"p7","room":"standup","role":"viewer","ice_servers":[{"urls":["turn:t.example:3478"],"username":"1700086400:p7","credential":"feUJjB3zpqOCotTY82kk2Z1oFWI="}]}"#,
            ),
            (ServerMessage::Offer { sdp: "v=0\r\n".into() }, r#"{"type":"offer","sdp":"v=0\r\n"}"#),
            (
                ServerMessage::Ice { candidate: "candidate:1 1 UDP 2015363327 127.0.0.1 43119 typ host".into(), sdp_mline_index: 0 },
                r#"{"type":"ice","candidate":"candidate:1 1 UDP 2015363327 127.0.0.1 43119 typ host","sdpMLineIndex":0}"#,
            ),
            (
                ServerMessage::Layout { canvas: Canvas { width: 1280, height: 720 }, tiles: vec![tile("p7", "Ada", 0), tile("p8", "Bob", 640)], layout: Some("grid-2x1".into()) },
                r#"{"type":"layout","canvas":{"width":1280,"height":720},"tiles":[{"id":"p7","name":"Ada","x":0,"y":0,"width":640,"height":720,"audio_muted":false,"video_muted":false},{"id":"p8","name":"Bob","x":640,"y":0,"width":640,"height":720,"audio_muted":false,"video_muted":true}],"layout":"grid-2x1"}"#,
            ),
            (ServerMessage::Speaking { id: Some("p8".into()) }, r#"{"type":"speaking","id":"p8"}"#),
            (ServerMessage::Speaking { id: None }, r#"{"type":"speaking","id":null}"#),
            (ServerMessage::Removed { reason: "removed by an operator".into() }, r#"{"type":"removed","reason":"removed by an operator"}"#),
            (ServerMessage::Muted { audio: true }, r#"{"type":"muted","audio":true}"#),
            (ServerMessage::Recording { active: true }, r#"{"type":"recording","active":true}"#),
            (ServerMessage::SendSize { width: 320, height: 360, max_bitrate: 276480, fit: Fit::Crop, max_framerate: None }, r#"{"type":"send_size","width":320,"height":360,"max_bitrate":276480,"fit":"crop"}"#),
            (ServerMessage::SendSize { width: 1280, height: 576, max_bitrate: 884736, fit: Fit::Letterbox, max_framerate: Some(15) }, r#"{"type":"send_size","width":1280,"height":576,"max_bitrate":884736,"fit":"letterbox","max_framerate":15}"#),
            (
                ServerMessage::Layout {
                    canvas: Canvas { width: 1280, height: 720 },
                    tiles: vec![Tile { id: "p9".into(), name: "Ada (screen)".into(), x: 0, y: 0, width: 1280, height: 576, audio_muted: false, video_muted: false, share_of: Some("p7".into()) }],
                    layout: Some("presentation-4".into()),
                },
                r#"{"type":"layout","canvas":{"width":1280,"height":720},"tiles":[{"id":"p9","name":"Ada (screen)","x":0,"y":0,"width":1280,"height":576,"audio_muted":false,"video_muted":false,"share_of":"p7"}],"layout":"presentation-4"}"#,
            ),
            (
                ServerMessage::Quality { rung: "low".into(), width: 320, height: 180, fps: 15, kbps: 120, auto: true, estimate_kbps: Some(150), codec: Codec::H264 },
                r#"{"type":"quality","rung":"low","width":320,"height":180,"fps":15,"kbps":120,"auto":true,"estimate_kbps":150,"codec":"h264"}"#,
            ),
            (
                ServerMessage::Quality { rung: "high".into(), width: 1280, height: 720, fps: 30, kbps: 1200, auto: false, estimate_kbps: None, codec: Codec::Vp8 },
                r#"{"type":"quality","rung":"high","width":1280,"height":720,"fps":30,"kbps":1200,"auto":false,"codec":"vp8"}"#,
            ),
            (
                ServerMessage::Error { code: ErrorCode::UnknownMline, message: "x".into() },
                r#"{"type":"error","code":"unknown_mline","message":"x"}"#,
            ),
        ];
        for (msg, golden) in cases {
            assert_eq!(msg.to_json(), golden);
            // And back: clients (the bot) read them with the same types.
            assert_eq!(serde_json::from_str::<ServerMessage>(golden).unwrap(), msg);
        }
        // Every error code's wire form is its documented snake_case name.
        for code in [ErrorCode::MalformedJson, ErrorCode::AnswerBeforeOffer, ErrorCode::UnknownQuality, ErrorCode::MediaFailed, ErrorCode::ShareBusy, ErrorCode::ShareEnded, ErrorCode::ServerDraining] {
            let v: Value = serde_json::from_str(&ServerMessage::Error { code, message: String::new() }.to_json()).unwrap();
            assert_eq!(v["code"], code.as_str());
        }
    }

    #[test]
    fn candidates_named_by_a_host_name_are_recognised_and_stripped() {
        let mdns = "candidate:1 1 udp 2113937151 3f2a9c1e-0d4b-4c3e-9a9e-5b7a2d1c0e11.local 52743 typ host generation 0";
        assert!(is_mdns_candidate(mdns));
        assert!(is_mdns_candidate(&format!("a={mdns}")));
        assert!(!is_mdns_candidate("candidate:1 1 udp 2122260223 192.0.2.7 52743 typ host"));
        assert!(!is_mdns_candidate("candidate:1 1 udp 1 198.51.100.1 3478 typ srflx raddr x.local rport 9"), "only the address counts");
        assert!(candidate_has_name(mdns));
        assert!(candidate_has_name("candidate:1 1 UDP 2122260223 999.999.999.999 1 typ host"));
        assert!(candidate_has_name("candidate:1 1 UDP 1 turn.example.org 3478 typ relay"));
        assert!(!candidate_has_name("candidate:1 1 UDP 1 2001:db8::7 3478 typ host"));
        assert!(!candidate_has_name("candidate:x"), "too short to have an address: webrtcbin refuses it");
        let sdp = format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na={mdns}\r\na=candidate:2 1 udp 1 192.0.2.7 9 typ host\r\na=mid:audio0\r\n");
        let out = without_named_candidates(&sdp);
        assert_eq!(out, "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:2 1 udp 1 192.0.2.7 9 typ host\r\na=mid:audio0\r\n");
        assert_eq!(without_named_candidates("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn an_answer_sends_media_unless_every_section_is_receive_only_or_rejected() {
        let sdp = |a: &str, v: &str| format!("v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{a}m=video {v} UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n");
        assert!(answer_sends_media(&sdp("a=sendrecv\r\n", "9")));
        assert!(answer_sends_media(&sdp("", "9")), "no direction: sendrecv");
        assert!(!answer_sends_media(&sdp("a=recvonly\r\n", "9")));
        assert!(!answer_sends_media(&sdp("a=inactive\r\n", "9")));
        assert!(!answer_sends_media("v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"), "rejected");
        assert!(!answer_sends_media(""));
    }

    #[test]
    fn candidates_are_inserted_once_per_section() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        let out = sdp_with_candidates(sdp, &[(0, "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into())]);
        assert_eq!(out.matches("a=candidate:1 1 UDP").count(), 1);
        assert_eq!(out.matches("a=end-of-candidates").count(), 2);
        let again = sdp_with_candidates(&out, &[(0, "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into())]);
        assert_eq!(again.matches("a=candidate:1 1 UDP").count(), 1);
        assert_eq!(again.matches("a=end-of-candidates").count(), 2);
    }
}
