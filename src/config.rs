//! The server's configuration: one tree, each setting defined once.
//!
//! A setting lives in one section struct below as an `Option` field whose
//! doc comment is also its `--flag` help, is given its default once in
//! [`Settings::resolve`], and has a line in docs/configuration.md. The same
//! sections are read from `tessera.toml` (unknown keys are errors with
//! file:line:column) and from `tessera serve`'s flags; a flag wins over the
//! file, the file over the default. Nothing else needs to change to add one.
//!
//! These are the settings read at start. What an operator edits while the
//! server runs (layouts, groups, `[layout]` and `[overlay]` of
//! `pipelines/mixer.toml`) is [`crate::layouts::Catalog`], reloaded by the
//! watcher; the canvas, encoder and audio settings of `mixer.toml` are read
//! at start, and the `[media]` section here overrides them.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::layouts::{line_col, Problem};

/// `[server]`: where the server listens and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed). [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Folder of static files for the web client. [default: ./web, else the
    /// source tree's web/]
    #[arg(long)]
    pub web: Option<PathBuf>,
    /// Pipelines folder (mixer.toml, layouts/), watched for changes.
    /// [default: ./pipelines, else the source tree's pipelines/]
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
    /// Serve HTTPS and WSS with this certificate (PEM; a chain, leaf first).
    /// Needs tls_key. [default: plain HTTP]
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of tls_cert (PEM, PKCS#8). [default: none]
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS and WSS with a certificate generated at start for
    /// localhost, the listen address and every tls_name (LAN demos:
    /// browsers warn about it). [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls_self_signed: Option<bool>,
    /// A host name or address the self-signed certificate is also for
    /// (repeatable). [default: none]
    #[arg(long = "tls-name")]
    #[serde(rename = "tls_names")]
    pub tls_name: Option<Vec<String>>,
    /// Seconds a draining server (SIGTERM, POST /api/drain) lets its rooms
    /// run before it ends them and exits. [default: 600]
    #[arg(long)]
    pub drain_timeout: Option<u64>,
}

/// `[rooms]`: how many rooms, and how many in a room.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RoomsSection {
    /// Participants per room (viewers are counted apart); one more gets
    /// `room_full`. [default: 25]
    #[arg(long)]
    pub max_participants: Option<usize>,
    /// Viewers per room; one more gets `room_full`. [default: 200]
    #[arg(long)]
    pub max_viewers: Option<usize>,
    /// Rooms on this server; a join that would open one more gets
    /// `too_many_rooms`. [default: 100]
    #[arg(long)]
    pub max_rooms: Option<usize>,
    /// Chat messages a room keeps for late joiners (sent as
    /// `chat_history`); 0 keeps none. [default: 50]
    #[arg(long)]
    pub chat_history: Option<usize>,
    /// Chat messages one participant or viewer may send per minute
    /// (sustained); more get `rate_limited`. [default: 20]
    #[arg(long)]
    pub chat_per_minute: Option<u32>,
    /// Chat messages one may send at once before chat_per_minute applies.
    /// [default: 5]
    #[arg(long)]
    pub chat_burst: Option<u32>,
    /// Screens shared at once in a room; 0 turns sharing off (a share
    /// join gets `forbidden`). [default: 1]
    #[arg(long)]
    pub max_shares: Option<usize>,
    /// When max_shares are on, a new share takes the place of the oldest
    /// (which ends with `share_ended`) instead of getting `share_busy`.
    /// [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub share_takeover: Option<bool>,
    /// Frame rate a sharer is asked for (`max_framerate` of its
    /// `send_size`): a screen needs sharpness more than motion. [default: 15]
    #[arg(long)]
    pub share_fps: Option<u32>,
    /// Folder recordings are written to (created when needed).
    /// [default: ./recordings]
    #[arg(long)]
    pub recordings_dir: Option<PathBuf>,
    /// Record every room from when it opens until it closes. [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub record_all: Option<bool>,
    /// Folder HLS live streams are written to, one subfolder per stream
    /// name, served at `/hls/<name>/index.m3u8`. [default: ./hls]
    #[arg(long)]
    pub hls_dir: Option<PathBuf>,
}

/// `[limits]`: what one client may take, and when a silent one is gone.
/// Exceeding a limit costs only that client (docs/configuration.md, Limits).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Open signaling connections per client IP address (one office
    /// behind a NAT is one address); one more gets HTTP 429
    /// `too_many_connections` before the upgrade. [default: 64]
    #[arg(long)]
    pub connections_per_ip: Option<usize>,
    /// Joins per second per client IP address (sustained); more get
    /// `rate_limited`. [default: 10]
    #[arg(long)]
    pub joins_per_second_per_ip: Option<u32>,
    /// Joins one address may make at once before joins_per_second_per_ip
    /// applies. [default: 64]
    #[arg(long)]
    pub join_burst_per_ip: Option<u32>,
    /// Signaling messages per second per connection (sustained); more are
    /// dropped with one `rate_limited` error a second. [default: 50]
    #[arg(long)]
    pub messages_per_second: Option<u32>,
    /// Messages a connection may send at once before messages_per_second
    /// applies (a browser's burst of ICE candidates). [default: 200]
    #[arg(long)]
    pub message_burst: Option<u32>,
    /// Largest text frame, bytes; a larger one closes the connection with
    /// WebSocket code 1009. 1024..=1048576. [default: 65536]
    #[arg(long)]
    pub max_frame_bytes: Option<usize>,
    /// Largest SDP answer, bytes (`sdp_too_large`). [default: 32768]
    #[arg(long)]
    pub max_sdp_bytes: Option<usize>,
    /// Most lines in an SDP answer (`sdp_too_large`). [default: 2000]
    #[arg(long)]
    pub max_sdp_lines: Option<usize>,
    /// ICE candidates a connection may send per join
    /// (`too_many_candidates`). [default: 64]
    #[arg(long)]
    pub max_ice_candidates: Option<usize>,
    /// Longest room id, characters (`invalid_field`). [default: 64]
    #[arg(long)]
    pub max_room_chars: Option<usize>,
    /// Longest display name, characters (`invalid_field`). [default: 64]
    #[arg(long)]
    pub max_name_chars: Option<usize>,
    /// Longest chat message, characters (`chat_too_long`). [default: 1000]
    #[arg(long)]
    pub max_chat_chars: Option<usize>,
    /// Seconds between the server's WebSocket pings. [default: 5]
    #[arg(long)]
    pub ping_interval: Option<u64>,
    /// A connection that sends nothing (not even a pong) for this many
    /// seconds is closed (`idle_timeout`) and its participant removed.
    /// [default: 15]
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// A participant whose media stops for this many seconds while its
    /// WebSocket lives is removed (`media_timeout`); 0 turns it off.
    /// [default: 15]
    #[arg(long)]
    pub media_timeout: Option<u64>,
}

/// `[network]`: ICE and DTLS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Local address ICE may use (repeatable). [default: 127.0.0.1 when
    /// listening on loopback, otherwise every interface]
    #[arg(long = "ice-address")]
    #[serde(rename = "ice_addresses")]
    pub ice_address: Option<Vec<String>>,
    /// DTLS certificate and private key as one PEM file (`tessera dtls-cert`
    /// makes one); keeps the fingerprint across restarts and nodes.
    /// [default: an ECDSA P-256 certificate generated at start]
    #[arg(long)]
    pub dtls_cert: Option<PathBuf>,
    /// UDP ports for media, MIN-MAX: every participant's and viewer's ICE
    /// uses one port of this range (one firewall rule). [default: any port]
    #[arg(long)]
    pub udp_ports: Option<PortRange>,
    /// Public address to put in the server's ICE candidates instead of the
    /// local one it binds (a 1:1 NAT, e.g. a cloud VM); repeatable, one per
    /// address family. [default: none]
    #[arg(long = "announce-ip")]
    #[serde(rename = "announce_ips")]
    pub announce_ip: Option<Vec<IpAddr>>,
    /// STUN server given to clients, `stun:HOST:PORT` (repeatable). [default: none]
    #[arg(long)]
    pub stun: Option<Vec<String>>,
    /// TURN server given to clients, `turn:HOST:PORT[?transport=udp|tcp]` or
    /// `turns:...` (repeatable); needs turn_secret. [default: none]
    #[arg(long)]
    pub turn: Option<Vec<String>>,
    /// The TURN server's shared secret (coturn `--static-auth-secret`):
    /// clients get credentials made from it that expire. [default: none]
    #[arg(long)]
    pub turn_secret: Option<String>,
    /// Lifetime of the TURN credentials given at join, seconds, 60..=86400.
    /// [default: 86400]
    #[arg(long)]
    pub turn_ttl: Option<u64>,
}

/// `[auth]`: room tokens.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Secret that signs room tokens (HS256; `tessera token` mints them):
    /// with it, every /ws and /api request needs a valid token. [default:
    /// none: rooms are open]
    #[arg(long)]
    #[serde(rename = "secret")]
    pub auth_secret: Option<String>,
    /// A file holding auth_secret (keeps it out of `ps` and of this file).
    /// [default: none]
    #[arg(long)]
    #[serde(rename = "secret_file")]
    pub auth_secret_file: Option<PathBuf>,
}

/// `[webhook]`: events POSTed to a URL (docs/api.md, Webhooks).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// POST every room and participant event, recording and stream status
    /// to this http:// or https:// URL, signed. [default: none]
    #[arg(long)]
    #[serde(rename = "url")]
    pub webhook: Option<String>,
    /// Secret of the webhook's `Tessera-Signature` (HMAC-SHA256), at least
    /// 16 characters. [default: auth_secret]
    #[arg(long)]
    #[serde(rename = "secret")]
    pub webhook_secret: Option<String>,
}

/// `[media]`: overrides of pipelines/mixer.toml, read at start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// Canvas of the composed grid, WIDTHxHEIGHT. [default: mixer.toml's]
    #[arg(long)]
    pub canvas: Option<Size>,
    /// Frame rate of the composed grid, 1..=60. [default: mixer.toml's]
    #[arg(long)]
    pub fps: Option<u32>,
    /// Jitterbuffer latency for incoming RTP, milliseconds. [default: mixer.toml's]
    #[arg(long)]
    pub jitterbuffer_ms: Option<u32>,
    /// Extra compositor latency, milliseconds. [default: mixer.toml's]
    #[arg(long)]
    pub mixer_latency_ms: Option<u32>,
    /// Audio held back to meet the picture, milliseconds. [default: mixer.toml's]
    #[arg(long)]
    pub audio_delay_ms: Option<u32>,
    /// People mixed at once, each with a personal mix-minus encoding (1..=16). [default: mixer.toml's]
    #[arg(long)]
    pub audio_talkers: Option<u32>,
    /// Audio packet time asked of senders (a=ptime), ms: 20, 40 or 60. [default: mixer.toml's]
    #[arg(long)]
    pub audio_ptime_ms: Option<u32>,
    /// gst-launch fragment for each rung's VP8 encoder. [default: mixer.toml's]
    #[arg(long)]
    pub video_encoder: Option<String>,
    /// gst-launch fragment for each rung's H.264 encoder. [default: mixer.toml's]
    #[arg(long)]
    pub h264_encoder: Option<String>,
    /// libsrtp2 to load before GStreamer's SRTP elements (the build on
    /// OpenSSL, a quarter of the system's cost per packet); "" keeps the
    /// system's. A path that does not load stops the server.
    /// [default: /usr/local/lib/tessera/libsrtp2.so.1 if present]
    #[arg(long)]
    pub srtp_library: Option<String>,
    /// How participants' media travels: `webrtcbin` (GStreamer's WebRTC) or
    /// `str0m` (our own loop on str0m; work in progress: VP8 and Opus
    /// participants on the first of `ice_addresses`, no H.264, viewers or
    /// link statistics yet). [default: webrtcbin]
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
}

/// `[media] transport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Webrtcbin,
    #[default]
    Str0m,
}

/// `[cluster]`: more than one node, with Redis as the directory of nodes
/// and rooms (docs/cluster.md). Without `redis` the server is on its own.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Join a cluster whose directory is this Redis, redis://HOST:PORT/DB.
    /// [default: none, a single node]
    #[arg(long)]
    pub redis: Option<String>,
    /// This node's name in the cluster, unique. [default: HOSTNAME-PORT]
    #[arg(long)]
    pub node_id: Option<String>,
    /// The WebSocket URL other nodes reach this one at (ws:// or wss://,
    /// ending in /ws). [default: ws(s)://LISTEN/ws, which needs a listen
    /// address other than 0.0.0.0]
    #[arg(long)]
    pub node_url: Option<String>,
    /// Participants this node takes: its load is participants / capacity
    /// (or its rooms / max_rooms, or its CPU, whichever is highest), and a
    /// node at 1 gets no new rooms. [default: 50]
    #[arg(long)]
    pub node_capacity: Option<usize>,
    /// How long a room's lease lives without renewal, ms; a dead node's
    /// rooms can move after it. 2000..=60000. [default: 6000]
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// How often a node publishes its load and renews its leases, ms; a
    /// node silent for three of these is dead. 200..=20000 and at most a
    /// third of lease_ms. [default: 2000]
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
}

/// Every setting of `tessera serve`, as given (file or flags): a section per
/// table of `tessera.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    #[command(flatten)]
    pub server: ServerSection,
    #[command(flatten)]
    pub rooms: RoomsSection,
    #[command(flatten)]
    pub network: NetworkSection,
    #[command(flatten)]
    pub limits: LimitsSection,
    #[command(flatten)]
    pub auth: AuthSection,
    #[command(flatten)]
    pub media: MediaSection,
    #[command(flatten)]
    pub webhook: WebhookSection,
    #[command(flatten)]
    pub cluster: ClusterSection,
}

/// The resolved configuration: every value set, by section.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub rooms: Rooms,
    pub network: Network,
    pub limits: Limits,
    pub auth: Auth,
    /// Overrides of mixer.toml (None: keep mixer.toml's); see [`MediaSection::apply`].
    pub media: MediaSection,
    /// None: no webhook.
    pub webhook: Option<Webhook>,
    /// None: a single node.
    pub cluster: Option<Cluster>,
}

/// `[cluster]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub redis: String,
    /// None: HOSTNAME-PORT, with the port bound ([`Cluster::id_for`]).
    pub node_id: Option<String>,
    /// None: ws(s)://BOUND-ADDRESS/ws ([`Cluster::url_for`]).
    pub node_url: Option<String>,
    pub capacity: usize,
    pub lease: std::time::Duration,
    pub heartbeat: std::time::Duration,
}

/// `[webhook]`, resolved.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Webhook").field("url", &self.url).field("secret", &"<set>").finish()
    }
}

/// `[server]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub web: PathBuf,
    pub pipelines: PathBuf,
    /// None: plain HTTP.
    pub tls: Option<Tls>,
    /// How long a draining server keeps its rooms.
    pub drain_timeout: std::time::Duration,
}

/// Where the HTTPS/WSS certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Tls {
    Files { cert: PathBuf, key: PathBuf },
    /// Generated at start for these names (DNS names or addresses).
    SelfSigned { names: Vec<String> },
}

/// The STUN and TURN servers clients are given in `joined`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IceServers {
    pub stun: Vec<String>,
    pub turn: Vec<String>,
    pub turn_secret: Option<String>,
    pub turn_ttl_secs: u64,
}

/// `[auth]`, resolved.
#[derive(Clone, Default, PartialEq)]
pub struct Auth {
    /// None: rooms are open.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Auth").field("secret", &self.secret.as_ref().map(|_| "<set>")).finish()
    }
}

/// `[rooms]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Rooms {
    pub max_participants: usize,
    pub max_viewers: usize,
    pub max_rooms: usize,
    /// Chat messages kept per room for late joiners.
    pub chat_history: usize,
    /// Chat rate per sender: sustained per minute, and burst.
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// Shares at once (0: sharing off), and whether a new one takes over.
    pub max_shares: usize,
    pub share_takeover: bool,
    /// Frame rate asked of a sharer.
    pub share_fps: u32,
    pub recordings_dir: PathBuf,
    pub record_all: bool,
    pub hls_dir: PathBuf,
}

impl Default for Rooms {
    fn default() -> Rooms {
        Config::default().rooms
    }
}

/// `[limits]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// What one message may carry (frame, SDP, names).
    pub message: crate::protocol::Limits,
    pub connections_per_ip: usize,
    pub joins_per_second_per_ip: u32,
    pub join_burst_per_ip: u32,
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub max_ice_candidates: usize,
    pub ping_interval: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    /// None: never remove a participant for silent media.
    pub media_timeout: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Config::default().limits
    }
}

/// `[network]`, resolved: what every webrtcbin of the server is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    /// Empty: every interface.
    pub ice_addresses: Vec<String>,
    pub dtls_cert: Option<PathBuf>,
    /// None: any port.
    pub udp_ports: Option<PortRange>,
    /// Addresses announced in the server's candidates instead of the bound ones.
    pub announce_ips: Vec<IpAddr>,
    pub ice_servers: IceServers,
}

impl Default for Config {
    /// The defaults: `tessera serve` with no file and no flags.
    fn default() -> Config {
        Settings::default().resolve().unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

/// A size, `WIDTHxHEIGHT`: even, between 16x16 and 7680x4320. Checked
/// where it is read (file or flag), once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        parse_size(s).map(|(width, height)| Size { width, height })
    }
}

impl TryFrom<String> for Size {
    type Error = String;
    fn try_from(s: String) -> Result<Size, String> {
        s.parse()
    }
}

/// A range of UDP ports, `MIN-MAX`, both included, 1..=65535, MIN <= MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("`{s}`: a port range is MIN-MAX with 1 <= MIN <= MAX <= 65535");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (min, max): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        if min == 0 || min > max {
            return Err(bad());
        }
        Ok(PortRange { min, max })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<PortRange, String> {
        s.parse()
    }
}

impl MediaSection {
    /// mixer.toml's start-time settings with these overrides.
    pub fn apply(&self, m: &mut crate::layouts::MixerSettings) {
        if let Some(c) = self.canvas {
            (m.width, m.height) = (c.width, c.height);
        }
        m.fps = self.fps.unwrap_or(m.fps);
        m.jitterbuffer_ms = self.jitterbuffer_ms.unwrap_or(m.jitterbuffer_ms);
        m.mixer_latency_ms = self.mixer_latency_ms.unwrap_or(m.mixer_latency_ms);
        m.audio_delay_ms = self.audio_delay_ms.unwrap_or(m.audio_delay_ms);
        m.audio_talkers = self.audio_talkers.unwrap_or(m.audio_talkers);
        m.audio_ptime_ms = self.audio_ptime_ms.unwrap_or(m.audio_ptime_ms);
        if let Some(e) = &self.video_encoder {
            m.video_encoder = e.clone();
        }
        if let Some(e) = &self.h264_encoder {
            m.h264_encoder = e.clone();
        }
    }
}

/// A problem with a configuration file or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Problem),
    #[error("{0}")]
    Value(String),
}

fn or<T>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.or(b)
}

impl Settings {
    /// Read `tessera.toml`-style text; unknown keys and wrong types are
    /// reported with the file, line and column.
    pub fn from_toml(file: &Path, text: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid(Problem { file: file.to_path_buf(), line, column, message: e.message().trim().replace('\n', " ") })
        })
    }

    pub fn from_file(file: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { path: file.to_path_buf(), source })?;
        Settings::from_toml(file, &text)
    }

    /// `self` where set, else `under`: flags over the file.
    pub fn over(self, under: Settings) -> Settings {
        let (a, b) = (self, under);
        Settings {
            server: ServerSection {
                listen: or(a.server.listen, b.server.listen),
                web: or(a.server.web, b.server.web),
                pipelines: or(a.server.pipelines, b.server.pipelines),
                tls_cert: or(a.server.tls_cert, b.server.tls_cert),
                tls_key: or(a.server.tls_key, b.server.tls_key),
                tls_self_signed: or(a.server.tls_self_signed, b.server.tls_self_signed),
                tls_name: or(a.server.tls_name, b.server.tls_name),
                drain_timeout: or(a.server.drain_timeout, b.server.drain_timeout),
            },
            rooms: RoomsSection {
                max_participants: or(a.rooms.max_participants, b.rooms.max_participants),
                max_viewers: or(a.rooms.max_viewers, b.rooms.max_viewers),
                max_rooms: or(a.rooms.max_rooms, b.rooms.max_rooms),
                chat_history: or(a.rooms.chat_history, b.rooms.chat_history),
                chat_per_minute: or(a.rooms.chat_per_minute, b.rooms.chat_per_minute),
                chat_burst: or(a.rooms.chat_burst, b.rooms.chat_burst),
                max_shares: or(a.rooms.max_shares, b.rooms.max_shares),
                share_takeover: or(a.rooms.share_takeover, b.rooms.share_takeover),
                share_fps: or(a.rooms.share_fps, b.rooms.share_fps),
                recordings_dir: or(a.rooms.recordings_dir, b.rooms.recordings_dir),
                record_all: or(a.rooms.record_all, b.rooms.record_all),
                hls_dir: or(a.rooms.hls_dir, b.rooms.hls_dir),
            },
            limits: LimitsSection {
                connections_per_ip: or(a.limits.connections_per_ip, b.limits.connections_per_ip),
                joins_per_second_per_ip: or(a.limits.joins_per_second_per_ip, b.limits.joins_per_second_per_ip),
                join_burst_per_ip: or(a.limits.join_burst_per_ip, b.limits.join_burst_per_ip),
                messages_per_second: or(a.limits.messages_per_second, b.limits.messages_per_second),
                message_burst: or(a.limits.message_burst, b.limits.message_burst),
                max_frame_bytes: or(a.limits.max_frame_bytes, b.limits.max_frame_bytes),
                max_sdp_bytes: or(a.limits.max_sdp_bytes, b.limits.max_sdp_bytes),
                max_sdp_lines: or(a.limits.max_sdp_lines, b.limits.max_sdp_lines),
                max_ice_candidates: or(a.limits.max_ice_candidates, b.limits.max_ice_candidates),
                max_room_chars: or(a.limits.max_room_chars, b.limits.max_room_chars),
                max_name_chars: or(a.limits.max_name_chars, b.limits.max_name_chars),
                max_chat_chars: or(a.limits.max_chat_chars, b.limits.max_chat_chars),
                ping_interval: or(a.limits.ping_interval, b.limits.ping_interval),
                idle_timeout: or(a.limits.idle_timeout, b.limits.idle_timeout),
                media_timeout: or(a.limits.media_timeout, b.limits.media_timeout),
            },
            network: NetworkSection {
                ice_address: or(a.network.ice_address, b.network.ice_address),
                dtls_cert: or(a.network.dtls_cert, b.network.dtls_cert),
                udp_ports: or(a.network.udp_ports, b.network.udp_ports),
                announce_ip: or(a.network.announce_ip, b.network.announce_ip),
                stun: or(a.network.stun, b.network.stun),
                turn: or(a.network.turn, b.network.turn),
                turn_secret: or(a.network.turn_secret, b.network.turn_secret),
                turn_ttl: or(a.network.turn_ttl, b.network.turn_ttl),
            },
            auth: AuthSection {
                auth_secret: or(a.auth.auth_secret, b.auth.auth_secret),
                auth_secret_file: or(a.auth.auth_secret_file, b.auth.auth_secret_file),
            },
            media: MediaSection {
                canvas: or(a.media.canvas, b.media.canvas),
                fps: or(a.media.fps, b.media.fps),
                jitterbuffer_ms: or(a.media.jitterbuffer_ms, b.media.jitterbuffer_ms),
                mixer_latency_ms: or(a.media.mixer_latency_ms, b.media.mixer_latency_ms),
                audio_delay_ms: or(a.media.audio_delay_ms, b.media.audio_delay_ms),
                audio_talkers: or(a.media.audio_talkers, b.media.audio_talkers),
                audio_ptime_ms: or(a.media.audio_ptime_ms, b.media.audio_ptime_ms),
                video_encoder: or(a.media.video_encoder, b.media.video_encoder),
                h264_encoder: or(a.media.h264_encoder, b.media.h264_encoder),
                srtp_library: or(a.media.srtp_library, b.media.srtp_library),
                transport: or(a.media.transport, b.media.transport),
            },
            webhook: WebhookSection {
                webhook: or(a.webhook.webhook, b.webhook.webhook),
                webhook_secret: or(a.webhook.webhook_secret, b.webhook.webhook_secret),
            },
            cluster: ClusterSection {
                redis: or(a.cluster.redis, b.cluster.redis),
                node_id: or(a.cluster.node_id, b.cluster.node_id),
                node_url: or(a.cluster.node_url, b.cluster.node_url),
                node_capacity: or(a.cluster.node_capacity, b.cluster.node_capacity),
                lease_ms: or(a.cluster.lease_ms, b.cluster.lease_ms),
                heartbeat_ms: or(a.cluster.heartbeat_ms, b.cluster.heartbeat_ms),
            },
        }
    }

    /// Every value, with the defaults (defined here, once) where unset.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let listen = self.server.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let max_participants = self.rooms.max_participants.unwrap_or(25);
        if !(1..=1000).contains(&max_participants) {
            return Err(ConfigError::Value(format!("max_participants is {max_participants}; it must be between 1 and 1000")));
        }
        let max_viewers = self.rooms.max_viewers.unwrap_or(200);
        let max_rooms = self.rooms.max_rooms.unwrap_or(100);
        let limits = self.limits.resolve()?;
        in_range("max_viewers", max_viewers, 0, 100_000)?;
        in_range("max_rooms", max_rooms, 1, 100_000)?;
        let chat_history = self.rooms.chat_history.unwrap_or(50);
        let chat_per_minute = self.rooms.chat_per_minute.unwrap_or(20);
        let chat_burst = self.rooms.chat_burst.unwrap_or(5);
        in_range("chat_history", chat_history, 0, 10_000)?;
        in_range("chat_per_minute", chat_per_minute, 1, 6_000)?;
        in_range("chat_burst", chat_burst, 1, 1_000)?;
        let drain_timeout = self.server.drain_timeout.unwrap_or(600);
        in_range("drain_timeout", drain_timeout, 0, 86_400)?;
        let max_shares = self.rooms.max_shares.unwrap_or(1);
        let share_takeover = self.rooms.share_takeover.unwrap_or(false);
        let share_fps = self.rooms.share_fps.unwrap_or(15);
        in_range("max_shares", max_shares, 0, 4)?;
        in_range("share_fps", share_fps, 1, 60)?;
        if let Some(t) = self.media.audio_talkers {
            if !(1..=16).contains(&t) {
                return Err(ConfigError::Value(format!("audio_talkers is {t}; it must be between 1 and 16")));
            }
        }
        if let Some(p) = self.media.audio_ptime_ms {
            if !crate::media::audio::PTIMES_MS.contains(&p) {
                return Err(ConfigError::Value(format!("audio_ptime_ms is {p}; it must be 20, 40 or 60")));
            }
        }
        if let Some(fps) = self.media.fps {
            if !(1..=60).contains(&fps) {
                return Err(ConfigError::Value(format!("fps is {fps}; it must be between 1 and 60")));
            }
        }
        let tls = match (self.server.tls_cert, self.server.tls_key, self.server.tls_self_signed.unwrap_or(false)) {
            (None, None, false) => None,
            (Some(cert), Some(key), false) => Some(Tls::Files { cert, key }),
            (None, None, true) => {
                let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
                if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                    names.push(listen.ip().to_string());
                }
                names.extend(self.server.tls_name.clone().unwrap_or_default());
                Some(Tls::SelfSigned { names })
            }
            (Some(_), None, _) | (None, Some(_), _) => return Err(ConfigError::Value("tls_cert and tls_key go together: give both, or neither".into())),
            (Some(_), Some(_), true) => return Err(ConfigError::Value("give tls_cert and tls_key, or tls_self_signed, not both".into())),
        };
        if self.server.tls_name.as_ref().is_some_and(|n| !n.is_empty()) && !matches!(tls, Some(Tls::SelfSigned { .. })) {
            return Err(ConfigError::Value("tls_names are the names of the self-signed certificate: they need tls_self_signed".into()));
        }
        let stun = self.network.stun.unwrap_or_default();
        if let Some(bad) = stun.iter().find(|u| !(u.starts_with("stun:") || u.starts_with("stuns:"))) {
            return Err(ConfigError::Value(format!("stun server `{bad}`: a STUN URL starts with `stun:` or `stuns:`")));
        }
        let turn = self.network.turn.unwrap_or_default();
        if let Some(bad) = turn.iter().find(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
            return Err(ConfigError::Value(format!("turn server `{bad}`: a TURN URL starts with `turn:` or `turns:`")));
        }
        let turn_secret = self.network.turn_secret.filter(|s| !s.is_empty());
        if !turn.is_empty() && turn_secret.is_none() {
            return Err(ConfigError::Value("turn servers need turn_secret (the TURN server's --static-auth-secret) to give clients credentials".into()));
        }
        let turn_ttl_secs = self.network.turn_ttl.unwrap_or(86_400);
        if !(60..=86_400).contains(&turn_ttl_secs) {
            return Err(ConfigError::Value(format!("turn_ttl is {turn_ttl_secs}; it must be between 60 and 86400 seconds")));
        }
        let auth_secret = match (self.auth.auth_secret, self.auth.auth_secret_file) {
            (Some(_), Some(_)) => return Err(ConfigError::Value("give auth_secret or auth_secret_file, not both".into())),
            (Some(s), None) => Some(s),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?.trim().to_string()),
            (None, None) => None,
        };
        if auth_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Value("auth_secret is shorter than 16 characters: anyone could guess it and mint tokens".into()));
        }
        let webhook = match (self.webhook.webhook, self.webhook.webhook_secret.or(auth_secret.clone())) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::Value("a webhook needs a secret to sign its requests with: set [webhook] secret (--webhook-secret) or [auth] secret".into())),
            (Some(url), Some(secret)) => {
                if secret.len() < 16 {
                    return Err(ConfigError::Value("webhook_secret is shorter than 16 characters".into()));
                }
                crate::webhook::Target::new(&url, &secret).map_err(|e| ConfigError::Value(format!("{e:#}")))?;
                Some(Webhook { url, secret })
            }
        };
        let cluster = self.cluster.resolve(&listen)?;
        Ok(Config {
            auth: Auth { secret: auth_secret },
            webhook,
            cluster,
            server: Server {
                listen,
                web: self.server.web.unwrap_or_else(default_web_dir),
                pipelines: self.server.pipelines.unwrap_or_else(default_pipelines_dir),
                tls,
                drain_timeout: std::time::Duration::from_secs(drain_timeout),
            },
            rooms: Rooms {
                max_participants,
                max_viewers,
                max_rooms,
                chat_history,
                chat_per_minute,
                chat_burst,
                max_shares,
                share_takeover,
                share_fps,
                recordings_dir: self.rooms.recordings_dir.unwrap_or_else(|| PathBuf::from("recordings")),
                record_all: self.rooms.record_all.unwrap_or(false),
                hls_dir: self.rooms.hls_dir.unwrap_or_else(|| PathBuf::from("hls")),
            },
            limits,
            network: Network {
                ice_addresses: self.network.ice_address.unwrap_or_else(|| default_ice_addresses(&listen.ip())),
                dtls_cert: self.network.dtls_cert,
                udp_ports: self.network.udp_ports,
                announce_ips: self.network.announce_ip.unwrap_or_default(),
                ice_servers: IceServers { stun, turn, turn_secret, turn_ttl_secs },
            },
            media: self.media,
        })
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(name: &str, v: T, min: T, max: T) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::Value(format!("{name} is {v}; it must be between {min} and {max}")));
    }
    Ok(())
}

impl Cluster {
    /// This node's id, once the server is bound to `bound`.
    pub fn id_for(&self, bound: &SocketAddr) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(40).collect();
            format!("{}-{}", if host.is_empty() { "node" } else { &host }, bound.port())
        })
    }

    /// This node's WebSocket URL, once the server is bound to `bound`.
    pub fn url_for(&self, bound: &SocketAddr, tls: bool) -> String {
        self.node_url.clone().unwrap_or_else(|| format!("{}://{bound}/ws", if tls { "wss" } else { "ws" }))
    }
}

impl ClusterSection {
    fn resolve(self, listen: &SocketAddr) -> Result<Option<Cluster>, ConfigError> {
        let Some(redis) = self.redis else {
            if self.node_id.is_some() || self.node_url.is_some() {
                return Err(ConfigError::Value("node_id and node_url are for a cluster: they need redis".into()));
            }
            return Ok(None);
        };
        if !(redis.starts_with("redis://") || redis.starts_with("rediss://") || redis.starts_with("redis+unix://")) {
            return Err(ConfigError::Value(format!("redis `{redis}`: a Redis URL starts with redis://, rediss:// or redis+unix://")));
        }
        match &self.node_url {
            None if listen.ip().is_unspecified() => {
                return Err(ConfigError::Value(format!("listening on {listen}, the other nodes cannot guess this one's address: set node_url (--node-url ws://ADDRESS:{}/ws)", listen.port())))
            }
            Some(u) if !(u.starts_with("ws://") || u.starts_with("wss://")) || !u.ends_with("/ws") => {
                return Err(ConfigError::Value(format!("node_url `{u}`: it is this node's WebSocket, ws://HOST:PORT/ws or wss://HOST:PORT/ws")));
            }
            _ => {}
        }
        let (node_url, node_id) = (self.node_url, self.node_id);
        if let Some(id) = &node_id {
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(ConfigError::Value(format!("node_id `{id}`: 1 to 64 letters, digits, `-`, `_` or `.`")));
            }
        }
        let capacity = self.node_capacity.unwrap_or(50);
        in_range("node_capacity", capacity, 1, 100_000)?;
        let lease_ms = self.lease_ms.unwrap_or(6000);
        in_range("lease_ms", lease_ms, 2000, 60_000)?;
        let heartbeat_ms = self.heartbeat_ms.unwrap_or(2000);
        in_range("heartbeat_ms", heartbeat_ms, 200, 20_000)?;
        if heartbeat_ms * 3 > lease_ms {
            return Err(ConfigError::Value(format!("heartbeat_ms {heartbeat_ms} is over a third of lease_ms {lease_ms}: a lease would lapse between two renewals")));
        }
        Ok(Some(Cluster {
            redis,
            node_id,
            node_url,
            capacity,
            lease: std::time::Duration::from_millis(lease_ms),
            heartbeat: std::time::Duration::from_millis(heartbeat_ms),
        }))
    }
}

impl LimitsSection {
    fn resolve(self) -> Result<Limits, ConfigError> {
        use std::time::Duration;
        let d = crate::protocol::Limits::default();
        let message = crate::protocol::Limits {
            frame_bytes: self.max_frame_bytes.unwrap_or(d.frame_bytes),
            sdp_bytes: self.max_sdp_bytes.unwrap_or(d.sdp_bytes),
            sdp_lines: self.max_sdp_lines.unwrap_or(d.sdp_lines),
            room_chars: self.max_room_chars.unwrap_or(d.room_chars),
            name_chars: self.max_name_chars.unwrap_or(d.name_chars),
            chat_chars: self.max_chat_chars.unwrap_or(d.chat_chars),
        };
        in_range("max_frame_bytes", message.frame_bytes, 1024, 1024 * 1024)?;
        in_range("max_sdp_bytes", message.sdp_bytes, 1024, message.frame_bytes)?;
        in_range("max_sdp_lines", message.sdp_lines, 20, 100_000)?;
        in_range("max_room_chars", message.room_chars, 1, 1024)?;
        in_range("max_name_chars", message.name_chars, 1, 1024)?;
        in_range("max_chat_chars", message.chat_chars, 1, 100_000)?;
        let l = Limits {
            message,
            connections_per_ip: self.connections_per_ip.unwrap_or(64),
            joins_per_second_per_ip: self.joins_per_second_per_ip.unwrap_or(10),
            join_burst_per_ip: self.join_burst_per_ip.unwrap_or(64),
            messages_per_second: self.messages_per_second.unwrap_or(50),
            message_burst: self.message_burst.unwrap_or(200),
            max_ice_candidates: self.max_ice_candidates.unwrap_or(64),
            ping_interval: Duration::from_secs(self.ping_interval.unwrap_or(5)),
            idle_timeout: Duration::from_secs(self.idle_timeout.unwrap_or(15)),
            media_timeout: Some(self.media_timeout.unwrap_or(15)).filter(|s| *s > 0).map(Duration::from_secs),
        };
        in_range("connections_per_ip", l.connections_per_ip, 1, 100_000)?;
        in_range("joins_per_second_per_ip", l.joins_per_second_per_ip, 1, 100_000)?;
        in_range("join_burst_per_ip", l.join_burst_per_ip, 1, 100_000)?;
        in_range("messages_per_second", l.messages_per_second, 1, 100_000)?;
        in_range("message_burst", l.message_burst, 1, 100_000)?;
        in_range("max_ice_candidates", l.max_ice_candidates, 1, 10_000)?;
        in_range("ping_interval", l.ping_interval.as_secs(), 1, 600)?;
        in_range("idle_timeout", l.idle_timeout.as_secs(), 2 * l.ping_interval.as_secs(), 3600)?;
        Ok(l)
    }
}

/// `WIDTHxHEIGHT`, even, between 16x16 and 7680x4320.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}`: sizes are WIDTHxHEIGHT, even, between 16x16 and 7680x4320");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w < 16 || h < 16 || w > 7680 || h > 4320 || w % 2 != 0 || h % 2 != 0 {
        return Err(bad());
    }
    Ok((w, h))
}

/// `./web` if it exists, else the `web/` folder of the source tree.
pub fn default_web_dir() -> PathBuf {
    let local = PathBuf::from("web");
    if local.join("index.html").exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// `./pipelines` if it exists, else the `pipelines/` folder of the source tree.
pub fn default_pipelines_dir() -> PathBuf {
    let local = PathBuf::from("pipelines");
    if local.join("layouts").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines")
}

/// ICE addresses to use when none are configured: a server listening on
/// loopback only offers loopback candidates; otherwise every interface.
pub fn default_ice_addresses(listen: &std::net::IpAddr) -> Vec<String> {
    if listen.is_loopback() {
        vec![if listen.is_ipv4() { "127.0.0.1".into() } else { "::1".into() }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    fn flags(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap().s
    }

    #[test]
    fn no_file_and_no_flags_give_the_defaults() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.rooms.max_participants, 25);
        assert_eq!(c.network.ice_addresses, vec!["127.0.0.1".to_string()]);
        assert_eq!(c.network.dtls_cert, None);
        assert_eq!(c.media, MediaSection::default());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let file = Settings::from_toml(
            Path::new("tessera.toml"),
            "[server]\nlisten = \"0.0.0.0:9000\"\n[rooms]\nmax_participants = 9\n[media]\nfps = 15\n",
        )
        .unwrap();
        let c = flags(&["--max-participants", "4"]).over(file).resolve().unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap(), "from the file");
        assert_eq!(c.rooms.max_participants, 4, "from the flag");
        assert_eq!(c.media.fps, Some(15));
        assert!(c.network.ice_addresses.is_empty(), "not on loopback: every interface");
    }

    #[test]
    fn a_cluster_node_must_be_reachable_by_the_others() {
        let err = flags(&["--redis", "redis://10.0.0.5:6379/0", "--listen", "0.0.0.0:8080"]).resolve().unwrap_err().to_string();
        assert!(err.contains("set node_url"), "{err}");
        let ok = flags(&["--redis", "redis://10.0.0.5:6379/0", "--listen", "0.0.0.0:8080", "--node-url", "ws://10.0.0.11:8080/ws"]).resolve().unwrap();
        let c = ok.cluster.unwrap();
        assert_eq!((c.lease.as_millis(), c.heartbeat.as_millis(), c.capacity), (6000, 2000, 50), "the defaults");
        assert_eq!(c.url_for(&"0.0.0.0:8080".parse().unwrap(), false), "ws://10.0.0.11:8080/ws");
        let err = flags(&["--redis", "redis://x:1/0", "--node-url", "http://a/ws"]).resolve().unwrap_err().to_string();
        assert!(err.contains("ws://HOST:PORT/ws"), "{err}");
        let err = flags(&["--redis", "redis://x:1/0", "--node-id", "a b"]).resolve().unwrap_err().to_string();
        assert!(err.contains("node_id"), "{err}");
    }

    #[test]
    fn the_shipped_example_loads_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tessera.toml");
        let s = Settings::from_file(&path).unwrap();
        assert_eq!(s.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(s.clone().resolve().unwrap(), Settings::default().resolve().unwrap());
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let e = Settings::from_toml(Path::new("t.toml"), "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.toml:3:1:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
        let e = Settings::from_toml(Path::new("t.toml"), "[nope]\nx = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:"), "{e}");
        let e = Settings::from_toml(Path::new("t.toml"), "[rooms]\nmax_participants = \"many\"\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn transport_is_a_key_and_a_flag_with_str0m_by_default() {
        assert_eq!(Settings::default().resolve().unwrap().media.transport.unwrap_or_default(), Transport::Str0m);
        assert_eq!(flags(&["--transport", "str0m"]).media.transport, Some(Transport::Str0m));
        assert_eq!(flags(&["--transport", "webrtcbin"]).media.transport, Some(Transport::Webrtcbin));
        assert!(Cli::try_parse_from(["serve", "--transport", "libwebrtc"]).is_err());
        let s = Settings::from_toml(Path::new("t.toml"), "[media]\ntransport = \"str0m\"\n").unwrap();
        assert_eq!(s.media.transport, Some(Transport::Str0m));
        let e = Settings::from_toml(Path::new("t.toml"), "[media]\ntransport = \"quic\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn values_out_of_range_are_refused() {
        assert!(flags(&["--fps", "0"]).resolve().is_err());
        assert!(flags(&["--max-participants", "0"]).resolve().is_err());
        assert!(Cli::try_parse_from(["serve", "--canvas", "641x360"]).is_err());
        assert_eq!(flags(&["--canvas", "640x360"]).media.canvas, Some(Size { width: 640, height: 360 }));
        let e = Settings::from_toml(Path::new("t.toml"), "[media]\ncanvas = \"640x361\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:2:") && e.contains("WIDTHxHEIGHT"), "{e}");
        let e = Settings::from_file(Path::new("/nonexistent/tessera.toml")).unwrap_err();
        assert!(e.to_string().contains("cannot read /nonexistent/tessera.toml"), "{e}");
    }

    #[test]
    fn the_udp_port_range_is_read_from_the_file_or_the_flag() {
        let file = Settings::from_toml(Path::new("t"), "[network]\nudp_ports = \"40000-40099\"\n").unwrap();
        assert_eq!(Settings::default().over(file.clone()).resolve().unwrap().network.udp_ports, Some(PortRange { min: 40000, max: 40099 }));
        let c = flags(&["--udp-ports", "50000-50000"]).over(file).resolve().unwrap();
        assert_eq!(c.network.udp_ports, Some(PortRange { min: 50000, max: 50000 }));
        assert_eq!(Config::default().network.udp_ports, None);
        for bad in ["50000", "2-1", "0-10", "1-70000", "a-b"] {
            assert!(Cli::try_parse_from(["serve", "--udp-ports", bad]).is_err(), "{bad}");
        }
        let e = Settings::from_toml(Path::new("t"), "[network]\nudp_ports = \"9-3\"\n").unwrap_err().to_string();
        assert!(e.starts_with("t:2:") && e.contains("MIN-MAX"), "{e}");
    }

    #[test]
    fn tls_is_files_or_self_signed_and_never_half_given() {
        assert_eq!(Config::default().server.tls, None);
        let c = flags(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).resolve().unwrap();
        assert_eq!(c.server.tls, Some(Tls::Files { cert: "c.pem".into(), key: "k.pem".into() }));
        let c = flags(&["--listen", "10.0.0.5:443", "--tls-self-signed", "--tls-name", "meet.lan"]).resolve().unwrap();
        assert_eq!(c.server.tls, Some(Tls::SelfSigned { names: vec!["localhost".into(), "127.0.0.1".into(), "10.0.0.5".into(), "meet.lan".into()] }));
        for bad in [&["--tls-cert", "c.pem"][..], &["--tls-key", "k.pem"], &["--tls-cert", "c", "--tls-key", "k", "--tls-self-signed"], &["--tls-name", "x"]] {
            assert!(flags(bad).resolve().is_err(), "{bad:?}");
        }
        let file = Settings::from_toml(Path::new("t"), "[server]\ntls_self_signed = true\ntls_names = [\"a.lan\"]\n").unwrap();
        assert!(matches!(file.resolve().unwrap().server.tls, Some(Tls::SelfSigned { names }) if names.contains(&"a.lan".to_string())));
    }

    #[test]
    fn turn_needs_its_secret_and_urls_are_checked() {
        let c = flags(&["--stun", "stun:s.example:3478", "--turn", "turn:t.example:3478", "--turn-secret", "x", "--turn-ttl", "600"]).resolve().unwrap();
        assert_eq!(c.network.ice_servers.turn, ["turn:t.example:3478"]);
        assert_eq!((c.network.ice_servers.turn_secret.as_deref(), c.network.ice_servers.turn_ttl_secs), (Some("x"), 600));
        assert_eq!(Config::default().network.ice_servers.turn_ttl_secs, 86_400);
        assert!(flags(&["--turn", "turn:t:3478"]).resolve().is_err(), "no secret");
        assert!(flags(&["--turn", "t.example:3478", "--turn-secret", "x"]).resolve().is_err());
        assert!(flags(&["--stun", "http://x"]).resolve().is_err());
        assert!(flags(&["--turn", "turn:t:1", "--turn-secret", "x", "--turn-ttl", "100000"]).resolve().is_err());
        let c = flags(&["--announce-ip", "203.0.113.7"]).resolve().unwrap();
        assert_eq!(c.network.announce_ips, ["203.0.113.7".parse::<IpAddr>().unwrap()]);
        assert!(Cli::try_parse_from(["serve", "--announce-ip", "example.org"]).is_err(), "an address, not a name");
    }

    #[test]
    fn the_auth_secret_comes_from_a_flag_or_a_file_and_is_not_short() {
        assert_eq!(Config::default().auth.secret, None);
        let c = flags(&["--auth-secret", "0123456789abcdef0123"]).resolve().unwrap();
        assert_eq!(c.auth.secret.as_deref(), Some("0123456789abcdef0123"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "the secret is never printed");
        assert!(flags(&["--auth-secret", "short"]).resolve().is_err());
        let f = std::env::temp_dir().join(format!("tessera-secret-{}", std::process::id()));
        std::fs::write(&f, "from-a-file-0123456789\n").unwrap();
        let c = flags(&["--auth-secret-file", f.to_str().unwrap()]).resolve().unwrap();
        assert_eq!(c.auth.secret.as_deref(), Some("from-a-file-0123456789"));
        assert!(flags(&["--auth-secret-file", f.to_str().unwrap(), "--auth-secret", "0123456789abcdef0123"]).resolve().is_err());
        let _ = std::fs::remove_file(&f);
        assert!(flags(&["--auth-secret-file", "/nonexistent/secret"]).resolve().is_err());
    }

    #[test]
    fn repeatable_flags_replace_the_file_list() {
        let file = Settings::from_toml(Path::new("t"), "[network]\nice_addresses = [\"10.0.0.1\", \"10.0.0.2\"]\n").unwrap();
        assert_eq!(Settings::default().over(file.clone()).resolve().unwrap().network.ice_addresses, ["10.0.0.1", "10.0.0.2"]);
        let c = flags(&["--ice-address", "127.0.0.1"]).over(file).resolve().unwrap();
        assert_eq!(c.network.ice_addresses, ["127.0.0.1"]);
    }
}
