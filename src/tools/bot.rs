//! `tessera bot`: a headless participant for CI. It joins a room over the
//! signaling protocol, sends a solid colour (or a test pattern) and a
//! tone, and reports what it received. Its media lives in
//! [`crate::tools::bot_media`]; this module is the signaling client and report.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::media::webrtc::PeerEvent;
use crate::tools::bot_media::{dominant_frequencies, level_at, BotMedia, RgbFrame};
use crate::protocol::{sdp_with_candidates, Canvas, ClientMessage, Role, ServerMessage, Tile};

#[derive(Debug, Clone)]
pub struct BotOptions {
    /// WebSocket URL of the server, e.g. `ws://127.0.0.1:8080/ws`.
    pub server: String,
    pub room: String,
    pub name: String,
    pub color: Option<u32>,
    pub pattern: String,
    pub tone_hz: f64,
    /// Tone volume, 0..1.
    pub volume: f64,
    /// Send video (false: receive-only video, audio still sent).
    pub send_video: bool,
    /// Load mode for benchmarks: pre-encoded media, nothing decoded.
    pub load: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Send ICE candidates as they are found (true) or all inside the answer.
    pub trickle: bool,
    pub ice_addresses: Vec<String>,
    /// Join as a receive-only viewer (sends nothing, has no tile).
    pub viewer: bool,
    /// Rung of the encoder ladder to ask for (`auto` when None).
    pub quality: Option<String>,
    /// Decode received video (false: count frames only; cheap).
    pub decode: bool,
    /// Ignore `send_size`: always send `width` x `height`.
    pub fixed_size: bool,
    /// Use relay (TURN) candidates only, like iceTransportPolicy `relay`.
    pub relay_only: bool,
    /// PEM certificate(s) to trust for `wss://` besides the public roots
    /// (a server's self-signed certificate).
    pub tls_trust: Option<String>,
    /// Room token, sent as `Authorization: Bearer` on the WebSocket request.
    pub token: Option<String>,
    /// Hostile sender (tests): random bytes after valid RTP headers, in
    /// every video and audio packet sent.
    pub corrupt_media: bool,
    /// Stop sending media this long after start while the WebSocket stays
    /// open (a frozen sender; tests of dead-peer detection).
    pub media_for: Option<std::time::Duration>,
    /// The video codec the bot sends and answers with (its answer lists
    /// only this one, so the server sends it back too).
    pub codec: crate::protocol::Codec,
    /// A share connection: the participant id and share key it presents
    /// (see [`Bot::share`]). It sends video only and receives nothing.
    pub share_of: Option<(String, String)>,
    /// Jitterbuffer of what it receives (ms): how long a lost packet has
    /// to come again (NACK, RTX) before it counts as lost.
    pub jitterbuffer_ms: u32,
    /// Ask for lost video packets again (NACK), as browsers do; off: every
    /// lost frame waits for a keyframe (PLI).
    pub nack: bool,
}

impl Default for BotOptions {
    fn default() -> Self {
        BotOptions {
            server: "ws://127.0.0.1:8080/ws".into(),
            room: "test".into(),
            name: "bot".into(),
            color: Some(0xff0000),
            pattern: "smpte".into(),
            tone_hz: 440.0,
            volume: 0.25,
            send_video: true,
            load: false,
            width: 320,
            height: 240,
            fps: 30,
            trickle: true,
            ice_addresses: vec!["127.0.0.1".into()],
            viewer: false,
            quality: None,
            decode: true,
            fixed_size: false,
            relay_only: false,
            tls_trust: None,
            token: None,
            corrupt_media: false,
            media_for: None,
            codec: crate::protocol::Codec::Vp8,
            share_of: None,
            jitterbuffer_ms: 50,
            nack: true,
        }
    }
}

/// Add chat messages (live or history) not seen yet, kept in `seq` order.
fn keep_chat(chat: &mut Vec<crate::protocol::ChatEntry>, entries: impl IntoIterator<Item = crate::protocol::ChatEntry>) {
    for entry in entries {
        if !chat.iter().any(|c| c.seq == entry.seq) {
            chat.push(entry);
        }
    }
    chat.sort_by_key(|c| c.seq);
}

/// A `quality` event as the bot received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QualitySeen {
    pub rung: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub kbps: u32,
    pub auto: bool,
    /// The video codec the server says it sends.
    pub codec: crate::protocol::Codec,
    /// Milliseconds since the bot connected.
    pub at_ms: u64,
}

/// A TLS connector trusting the public roots and the certificates in `pem`.
fn trusting(pem_text: &str) -> Result<tokio_tungstenite::Connector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let blocks = pem::parse_many(pem_text).context("the certificate to trust is not PEM")?;
    let mut added = 0;
    for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        roots.add(rustls::pki_types::CertificateDer::from(b.contents().to_vec())).context("a certificate to trust does not parse")?;
        added += 1;
    }
    if added == 0 {
        bail!("no CERTIFICATE in the certificate to trust");
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(cfg)))
}

/// Parse a colour: a name (red, green, blue, yellow, cyan, magenta, white,
/// black, orange, purple) or `#rrggbb` / `rrggbb` / `0xrrggbb`.
pub fn parse_color(s: &str) -> Result<u32> {
    let named = match s.to_ascii_lowercase().as_str() {
        "red" => Some(0xff0000),
        "green" => Some(0x00ff00),
        "blue" => Some(0x0000ff),
        "yellow" => Some(0xffff00),
        "cyan" => Some(0x00ffff),
        "magenta" => Some(0xff00ff),
        "white" => Some(0xffffff),
        "black" => Some(0x000000),
        "orange" => Some(0xff8000),
        "purple" => Some(0x8000ff),
        _ => None,
    };
    if let Some(c) = named {
        return Ok(c);
    }
    let hex = s.trim_start_matches('#').trim_start_matches("0x");
    if hex.len() != 6 {
        bail!("colour `{s}` is not a name or #rrggbb");
    }
    u32::from_str_radix(hex, 16).with_context(|| format!("colour `{s}` is not a name or #rrggbb"))
}

#[derive(Debug, Default, Clone)]
struct BotState {
    id: Option<String>,
    layout: Option<(Canvas, Vec<Tile>)>,
    layouts_received: u32,
    errors: Vec<(String, String)>,
    connected: bool,
    /// Candidate types of the selected pair (local, remote), when asked.
    selected_pair: Option<(String, String)>,
    closed: bool,
    send_size: Option<(u32, u32, u32)>,
    layout_name: Option<String>,
    speaker: Option<String>,
    qualities: Vec<QualitySeen>,
    /// The answer SDP as sent (with its candidates when not trickling).
    answer: Option<String>,
    /// Chat messages received (history first), by `seq`, each once.
    chat: Vec<crate::protocol::ChatEntry>,
    /// What `joined` said this bot was admitted as.
    role: Option<Role>,
    /// The key for a share connection, from `joined`.
    share_key: Option<String>,
    /// `removed`: the reason an operator gave.
    removed: Option<String>,
    /// The last `muted` from the server.
    server_muted: Option<bool>,
    /// The last `recording` from the server.
    recording: Option<bool>,
}


/// What the bot saw at a tile's centre.
#[derive(Debug, Clone, Serialize)]
pub struct TileSeen {
    pub id: String,
    pub name: String,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub center_rgb: [u8; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct FrequencySeen {
    pub hz: f64,
    pub db: f64,
}

/// `--report` output.
#[derive(Debug, Clone, Serialize)]
pub struct BotReport {
    pub room: String,
    pub name: String,
    pub id: Option<String>,
    pub connected: bool,
    pub frames: u64,
    pub fps: f64,
    pub fps_recent: f64,
    pub max_frame_gap_ms: u64,
    /// Gaps between decoded frames over 150 ms: `[ended at_ms, ms]`, newest last.
    pub freezes: Vec<[u64; 2]>,
    /// Video retransmissions asked for and received in time, packets given
    /// up as lost and come too late (the jitterbuffer's counts).
    pub rtx_requested: u64,
    pub rtx_recovered: u64,
    pub jitterbuffer_lost: u64,
    pub jitterbuffer_late: u64,
    pub width: u32,
    pub height: u32,
    pub received_kbps: f64,
    pub audio_seconds: f64,
    /// Milliseconds from opening the WebSocket to the first decoded mixed frame.
    pub join_to_first_frame_ms: Option<u64>,
    pub dominant_frequencies: Vec<FrequencySeen>,
    /// The streams received (`video/H264`, `audio/OPUS`, ...).
    pub received: Vec<String>,
    /// The video codec the bot sends and asked for.
    pub codec: crate::protocol::Codec,
    pub tiles: Vec<TileSeen>,
    pub layout: Option<serde_json::Value>,
    pub errors: Vec<serde_json::Value>,
    /// Every `quality` event, oldest first.
    pub qualities: Vec<QualitySeen>,
    /// Chat messages received (the room's history first), oldest first.
    pub chat: Vec<crate::protocol::ChatEntry>,
    pub video_packets: u64,
    pub video_lost: u64,
    pub video_bytes: u64,
    /// Candidate types of the selected pair (`{"local":"relay","remote":"host"}`),
    /// when known.
    pub selected_pair: Option<serde_json::Value>,
    /// Milliseconds since the bot connected.
    pub at_ms: u64,
}

pub struct Bot {
    opts: BotOptions,
    media: Arc<BotMedia>,
    state: Arc<Mutex<BotState>>,
    out: mpsc::Sender<String>,
    task: tokio::task::JoinHandle<()>,
    started: std::time::Instant,
}

impl Bot {
    /// Connect, join and start media. Returns once `join` is sent.
    pub async fn connect(opts: BotOptions) -> Result<Bot> {
        let (ev_tx, ev_rx) = mpsc::channel::<PeerEvent>(256);
        let media = {
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || BotMedia::new(&opts, ev_tx)).await??
        };
        let media = Arc::new(media);
        let started = std::time::Instant::now();
        let connector = match &opts.tls_trust {
            Some(pem) => Some(trusting(pem)?),
            None => None,
        };
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(opts.server.as_str())
            .with_context(|| format!("`{}` is not a WebSocket URL", opts.server))?;
        if let Some(t) = &opts.token {
            request.headers_mut().insert("authorization", format!("Bearer {t}").parse().context("the token is not a valid header value")?);
        }
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await.map_err(|e| match e {
            // The server's reason for a refused token is in the body.
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                let body = r.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
                anyhow::anyhow!("{} refused the connection ({}): {body}", opts.server, r.status())
            }
            e => anyhow::Error::new(e).context(format!("cannot connect to {}", opts.server)),
        })?;
        let (mut wtx, wrx) = ws.split();
        let join = ClientMessage::Join {
            room: opts.room.clone(),
            name: opts.name.clone(),
            role: match (&opts.share_of, opts.viewer) {
                (Some(_), _) => Role::Share,
                (None, true) => Role::Viewer,
                (None, false) => Role::Participant,
            },
            quality: opts.quality.clone().unwrap_or_else(|| "auto".into()),
            share_of: opts.share_of.as_ref().map(|(of, _)| of.clone()),
            share_key: opts.share_of.as_ref().map(|(_, key)| key.clone()),
        };
        wtx.send(Message::Text(join.to_json())).await.context("sending join")?;
        let (out_tx, mut out_rx) = mpsc::channel::<String>(256);
        // Writer: everything we send goes through one queue.
        tokio::spawn(async move {
            while let Some(t) = out_rx.recv().await {
                if wtx.send(Message::Text(t)).await.is_err() {
                    break;
                }
            }
            let _ = wtx.close().await;
        });
        let state = Arc::new(Mutex::new(BotState::default()));
        let task = tokio::spawn(run(wrx, ev_rx, media.clone(), state.clone(), out_tx.clone(), opts.trickle, opts.relay_only, started));
        Ok(Bot { opts, media, state, out: out_tx, task, started })
    }

    pub fn id(&self) -> Option<String> {
        self.state.lock().id.clone()
    }

    pub fn layout(&self) -> Option<(Canvas, Vec<Tile>)> {
        self.state.lock().layout.clone()
    }

    /// Name of the layout in the last `layout` message.
    pub fn layout_name(&self) -> Option<String> {
        self.state.lock().layout_name.clone()
    }

    /// The active speaker from the last `speaking` message.
    pub fn speaker(&self) -> Option<String> {
        self.state.lock().speaker.clone()
    }

    pub fn layouts_received(&self) -> u32 {
        self.state.lock().layouts_received
    }

    /// The answer this bot sent, once sent.
    pub fn answer(&self) -> Option<String> {
        self.state.lock().answer.clone()
    }

    pub fn errors(&self) -> Vec<(String, String)> {
        self.state.lock().errors.clone()
    }

    /// The last `send_size` hint from the server (width, height, max bitrate).
    pub fn send_size(&self) -> Option<(u32, u32, u32)> {
        self.state.lock().send_size
    }

    /// Every `quality` event received, oldest first.
    pub fn qualities(&self) -> Vec<QualitySeen> {
        self.state.lock().qualities.clone()
    }

    /// The rung named by the last `quality` event.
    pub fn rung(&self) -> Option<String> {
        self.state.lock().qualities.last().map(|q| q.rung.clone())
    }

    /// Ask for a rung by name, or `auto`.
    /// The role `joined` gave (a viewer token makes any join a viewer).
    pub fn role(&self) -> Option<Role> {
        self.state.lock().role
    }

    /// Share a screen: a second connection, as this participant's share,
    /// sending the videotestsrc `pattern` at `width` x `height` (and no
    /// audio). Waits up to 10 s for this bot's `joined`. Stop sharing by
    /// leaving the returned bot.
    pub async fn share(&self, pattern: &str, width: u32, height: u32) -> Result<Bot> {
        if !self.wait_until(Duration::from_secs(10), |b| b.share_key().is_some()).await {
            bail!("no share key: not joined as a participant within 10 s (or sharing is off)");
        }
        let (Some(id), Some(key)) = (self.id(), self.share_key()) else { bail!("no share key") };
        let opts = BotOptions {
            color: None,
            pattern: pattern.to_string(),
            width,
            height,
            fps: 15,
            viewer: false,
            share_of: Some((id, key)),
            ..self.opts.clone()
        };
        Bot::connect(opts).await
    }

    /// Why an operator removed this bot (`removed`), once it did.
    pub fn removed(&self) -> Option<String> {
        self.state.lock().removed.clone()
    }

    /// The last `muted` the server sent (an operator's mute of this bot).
    pub fn server_muted(&self) -> Option<bool> {
        self.state.lock().server_muted
    }

    /// What the last `recording` said (None: never told).
    pub fn recording(&self) -> Option<bool> {
        self.state.lock().recording
    }

    /// Has the server closed the signaling connection?
    pub fn closed(&self) -> bool {
        self.state.lock().closed
    }

    /// The share key `joined` gave this participant.
    pub fn share_key(&self) -> Option<String> {
        self.state.lock().share_key.clone()
    }

    /// Send a chat message to the room.
    pub async fn chat(&self, text: &str) -> Result<()> {
        self.send_raw(ClientMessage::Chat { text: text.into() }.to_json()).await
    }

    /// Chat messages received so far (history first), oldest first.
    pub fn chats(&self) -> Vec<crate::protocol::ChatEntry> {
        self.state.lock().chat.clone()
    }

    pub async fn set_quality(&self, quality: &str) -> Result<()> {
        self.send_raw(ClientMessage::SetQuality { quality: quality.into() }.to_json()).await
    }

    /// Ask webrtcbin which candidate pair carries the media: the types
    /// (`host`, `srflx`, `relay`, ...) of its local and remote candidates.
    /// Also kept for [`Bot::report`].
    pub async fn selected_pair(&self) -> Option<(String, String)> {
        let media = self.media.clone();
        let pair = tokio::task::spawn_blocking(move || media.selected_pair()).await.ok().flatten();
        if pair.is_some() {
            self.state.lock().selected_pair = pair.clone();
        }
        pair
    }

    pub fn is_connected(&self) -> bool {
        self.state.lock().connected
    }

    /// Time from opening the WebSocket to the first decoded mixed frame.
    pub fn join_to_first_frame(&self) -> Option<Duration> {
        self.media.stats().first_frame_at.map(|t| t.saturating_duration_since(self.started))
    }

    pub fn stats(&self) -> crate::tools::bot_media::ReceivedStats {
        self.media.stats()
    }

    pub fn reset_max_gap(&self) {
        self.media.reset_max_gap()
    }

    /// Watch canvas pixel (x, y) on every decoded frame (latency probes).
    pub fn set_probe(&self, x: u32, y: u32) {
        self.media.set_probe(x, y)
    }

    pub fn probe_log(&self) -> Vec<crate::tools::bot_media::ProbeSample> {
        self.media.probe_log()
    }

    /// RTP bytes sent so far (audio and video, before SRTP).
    pub fn sent_bytes(&self) -> u64 {
        self.media.sent_bytes()
    }

    /// When each colour change (see [`Bot::set_color`]) left this bot as RTP.
    pub fn sent_changes(&self) -> Vec<std::time::Instant> {
        self.media.sent_changes()
    }

    /// Set the tone's volume (0..1); `mark`: note when the next loud
    /// audio is captured (lip-sync measurement).
    pub fn set_volume(&self, volume: f64, mark: bool) {
        self.media.set_volume(volume, mark)
    }

    /// Capture times (ns, one clock) of colour changes and tone onsets sent.
    pub fn sent_av(&self) -> (Vec<u64>, Vec<u64>) {
        self.media.sent_av()
    }

    /// When each decoded audio buffer arrived and its RMS.
    pub fn audio_levels(&self) -> Vec<(std::time::Instant, f32)> {
        self.media.audio_levels()
    }

    /// Holes in the received audio (lost or never sent), when seen and how long.
    pub fn audio_gaps(&self) -> Vec<(std::time::Instant, std::time::Duration)> {
        self.media.audio_gaps()
    }

    /// Change the solid colour sent.
    pub fn set_color(&self, rgb: u32) {
        self.media.set_color(rgb)
    }

    pub fn last_frame(&self) -> Option<RgbFrame> {
        self.media.last_frame()
    }

    /// Level in dBFS of the received audio at `hz` (±10 Hz).
    pub fn level_db(&self, hz: f64) -> Option<f64> {
        let (bin, db) = self.media.spectrum()?;
        Some(level_at(bin, &db, hz, 10.0))
    }

    pub fn dominant_frequencies(&self, n: usize) -> Vec<(f64, f64)> {
        match self.media.spectrum() {
            Some((bin, db)) => dominant_frequencies(bin, &db, n, -70.0),
            None => Vec::new(),
        }
    }

    /// Colours at the centre of each tile of the last layout, from the
    /// last decoded frame (scaled if the frame is not at canvas size).
    pub fn tiles_seen(&self) -> Vec<TileSeen> {
        let Some((canvas, tiles)) = self.layout() else { return Vec::new() };
        let Some(frame) = self.last_frame() else { return Vec::new() };
        tiles
            .iter()
            .map(|t| {
                let cx = ((t.x + t.width / 2) as u64 * frame.width as u64 / canvas.width.max(1) as u64) as u32;
                let cy = ((t.y + t.height / 2) as u64 * frame.height as u64 / canvas.height.max(1) as u64) as u32;
                TileSeen {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    x: t.x,
                    y: t.y,
                    width: t.width,
                    height: t.height,
                    center_rgb: frame.mean_around(cx, cy, 3),
                }
            })
            .collect()
    }

    /// Send a raw text frame (for protocol tests).
    pub async fn send_raw(&self, text: String) -> Result<()> {
        self.out.send(text).await.context("signaling connection closed")
    }

    pub fn report(&self) -> BotReport {
        let st = self.state.lock().clone();
        let s = self.media.stats();
        BotReport {
            room: self.opts.room.clone(),
            name: self.opts.name.clone(),
            id: st.id.clone(),
            connected: st.connected,
            frames: s.frames,
            fps: s.fps,
            fps_recent: s.fps_recent,
            max_frame_gap_ms: s.max_frame_gap_ms,
            freezes: s
                .freezes
                .iter()
                .map(|(ended, gap)| [ended.saturating_duration_since(self.started).as_millis() as u64, gap.as_millis() as u64])
                .collect(),
            rtx_requested: s.repair.requested,
            rtx_recovered: s.repair.recovered,
            jitterbuffer_lost: s.repair.lost,
            jitterbuffer_late: s.repair.late,
            width: s.width,
            height: s.height,
            received_kbps: s.kbps,
            audio_seconds: s.audio_seconds,
            join_to_first_frame_ms: self.join_to_first_frame().map(|d| d.as_millis() as u64),
            dominant_frequencies: self
                .dominant_frequencies(5)
                .into_iter()
                .map(|(hz, db)| FrequencySeen { hz: (hz * 10.0).round() / 10.0, db: (db * 10.0).round() / 10.0 })
                .collect(),
            received: s.pads.clone(),
            codec: self.opts.codec,
            tiles: self.tiles_seen(),
            layout: st.layout.as_ref().map(|(c, t)| {
                serde_json::to_value(ServerMessage::Layout { canvas: *c, tiles: t.clone(), layout: st.layout_name.clone() })
                    .unwrap_or_default()
            }),
            errors: st.errors.iter().map(|(c, m)| serde_json::json!({"code": c, "message": m})).collect(),
            qualities: st.qualities.clone(),
            chat: st.chat.clone(),
            video_packets: s.video_packets,
            video_lost: s.video_lost,
            video_bytes: s.video_bytes,
            selected_pair: st.selected_pair.as_ref().map(|(l, r)| serde_json::json!({"local": l, "remote": r})),
            at_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Poll `pred` every 50 ms until it holds or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&Bot) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Send `leave`, close the connection and stop the media.
    pub async fn leave(self) {
        let _ = self.out.send(r#"{"type":"leave"}"#.to_string()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
        drop(self.out);
        let media = self.media;
        let _ = tokio::task::spawn_blocking(move || media.shutdown()).await;
    }

    /// Drop the connection without `leave` (as a crashed client would).
    pub async fn disconnect(self) {
        self.task.abort();
        drop(self.out);
        let media = self.media;
        let _ = tokio::task::spawn_blocking(move || media.shutdown()).await;
    }
}

type WsRead = futures::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

async fn run(
    mut wrx: WsRead,
    mut ev_rx: mpsc::Receiver<PeerEvent>,
    media: Arc<BotMedia>,
    state: Arc<Mutex<BotState>>,
    out: mpsc::Sender<String>,
    trickle: bool,
    relay_only: bool,
    started: std::time::Instant,
) {
    let mut answer: Option<String> = None;
    let mut candidates: Vec<(u32, String)> = Vec::new();
    let mut answer_sent = false;
    let mut gathering_done = false;
    loop {
        tokio::select! {
            msg = wrx.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(m) = serde_json::from_str::<ServerMessage>(&text) else {
                    tracing::warn!("bot: unexpected server message: {text}");
                    continue;
                };
                match m {
                    ServerMessage::Joined { id, ice_servers, role, share_key, .. } => {
                        media.set_ice_servers(&ice_servers);
                        let mut st = state.lock();
                        st.id = Some(id);
                        st.role = Some(role);
                        st.share_key = share_key;
                    }
                    ServerMessage::Offer { sdp } => {
                        if let Err(e) = media.handle_offer(&sdp) {
                            state.lock().errors.push(("bot_offer".into(), format!("{e:#}")));
                        }
                    }
                    ServerMessage::Ice { candidate, sdp_mline_index } => media.add_ice(sdp_mline_index, &candidate),
                    ServerMessage::Layout { canvas, tiles, layout } => {
                        let mut st = state.lock();
                        st.layout = Some((canvas, tiles));
                        st.layout_name = layout;
                        st.layouts_received += 1;
                    }
                    ServerMessage::Speaking { id } => state.lock().speaker = id,
                    ServerMessage::Quality { rung, width, height, fps, kbps, auto, codec, .. } => {
                        let at_ms = started.elapsed().as_millis() as u64;
                        tracing::debug!("bot: quality {rung} {width}x{height}@{fps} {kbps} kbps {} (auto {auto}) at {at_ms} ms", codec.name());
                        state.lock().qualities.push(QualitySeen { rung, width, height, fps, kbps, auto, codec, at_ms });
                    }
                    ServerMessage::SendSize { width, height, max_bitrate, fit, .. } => {
                        state.lock().send_size = Some((width, height, max_bitrate));
                        media.fit_send_size(width, height, max_bitrate, fit);
                    }
                    ServerMessage::Chat(entry) => keep_chat(&mut state.lock().chat, [entry]),
                    ServerMessage::ChatHistory { messages } => keep_chat(&mut state.lock().chat, messages),
                    ServerMessage::Error { code, message } => {
                        // A cluster that is handing a dead node's rooms on
                        // refuses joins for a while, and the bot (like the
                        // web client) tries again: expected, not a warning.
                        if code == crate::protocol::ErrorCode::ClusterUnavailable {
                            tracing::info!("bot: server error {code}: {message}");
                        } else {
                            tracing::warn!("bot: server error {code}: {message}");
                        }
                        state.lock().errors.push((code.to_string(), message));
                    }
                    ServerMessage::Removed { reason } => state.lock().removed = Some(reason),
                    ServerMessage::Muted { audio } => state.lock().server_muted = Some(audio),
                    ServerMessage::Recording { active } => state.lock().recording = Some(active),
                }
            }
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    PeerEvent::LocalDescription(sdp) => {
                        if trickle {
                            state.lock().answer = Some(sdp.clone());
                            let _ = out.send(ClientMessage::Answer { sdp }.to_json()).await;
                            for (m, c) in candidates.drain(..) {
                                let _ = out.send(ClientMessage::Ice { candidate: c, sdp_mline_index: m }.to_json()).await;
                            }
                            answer_sent = true;
                        } else {
                            answer = Some(sdp);
                        }
                    }
                    PeerEvent::Ice { mline, candidate } => {
                        if trickle && answer_sent {
                            let _ = out.send(ClientMessage::Ice { candidate, sdp_mline_index: mline }.to_json()).await;
                        } else {
                            candidates.push((mline, candidate));
                        }
                    }
                    PeerEvent::GatheringComplete => gathering_done = true,
                    PeerEvent::Connected => state.lock().connected = true,
                    PeerEvent::Failed(e) if relay_only => state.lock().errors.push((
                        "bot_media".into(),
                        format!("{e}; with relay only this means the TURN server was not reachable or refused the credentials (is turn_secret the TURN server's static-auth-secret?)"),
                    )),
                    PeerEvent::Failed(e) => state.lock().errors.push(("bot_media".into(), e)),
                    PeerEvent::RemoteApplied | PeerEvent::RemoteRefused(_) => {}
                }
            }
        }
        // Without trickle, the answer goes out once it exists AND gathering is done.
        if !trickle && !answer_sent && gathering_done {
            if let Some(sdp) = answer.take() {
                let full = sdp_with_candidates(&sdp, &candidates);
                state.lock().answer = Some(full.clone());
                let _ = out.send(ClientMessage::Answer { sdp: full }.to_json()).await;
                answer_sent = true;
            }
        }
    }
    state.lock().closed = true;
}
