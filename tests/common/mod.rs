//! Shared helpers for the end-to-end tests: a server (in process or as a
//! child process) on a free port with a small canvas, and bots.
#![allow(dead_code)]

pub mod cluster;
pub mod codecs;
pub mod constrained;
pub mod lossy;
pub mod netns;
pub mod talkers;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tessera::tools::bot::{Bot, BotOptions};
use tessera::config::{Config, Network};
use tessera::media::MediaConfig;
use tessera::tools::procinfo::Proc;
use tessera::server::{self, Running, ServerConfig};

pub const CANVAS: (u32, u32) = (640, 360);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

pub fn media_config() -> MediaConfig {
    MediaConfig {
        canvas_width: CANVAS.0,
        canvas_height: CANVAS.1,
        network: Network { ice_addresses: vec!["127.0.0.1".into()], ..Network::default() },
        ..MediaConfig::default()
    }
}

/// A server in this process, on a free loopback port.
pub fn start_server(media: MediaConfig) -> Running {
    init_tracing();
    server::start(ServerConfig { config: listening_on("127.0.0.1:0"), media, ..ServerConfig::default() }).expect("server starts")
}

/// The default configuration, listening on `addr`.
pub fn listening_on(addr: &str) -> Config {
    let mut c = Config::default();
    c.server.listen = addr.parse().expect("a socket address");
    c
}

/// The shipped pipelines folder, loaded.
pub fn shipped_catalog() -> tessera::layouts::Catalog {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    tessera::layouts::load_dir(&dir, &tessera::media::check_fragment).expect("shipped pipelines are valid")
}

/// A server using `catalog`, watching `pipelines` if given.
pub fn start_server_with(catalog: tessera::layouts::Catalog, pipelines: Option<std::path::PathBuf>) -> Running {
    init_tracing();
    let mut config = listening_on("127.0.0.1:0");
    let watch_pipelines = pipelines.is_some();
    if let Some(dir) = pipelines {
        config.server.pipelines = dir;
    }
    server::start(ServerConfig { config, media: media_config(), catalog, watch_pipelines }).expect("server starts")
}

/// A minimal HTTP/1.1 request to the server; returns (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_bytes(addr, method, path, body).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.1 request: (status, head, body bytes).
pub async fn http_bytes(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head, out[split..].to_vec())
}

/// A decoded RGB frame (width, height, pixels).
pub type Rgb = (u32, u32, Vec<u8>);

/// Run `desc`, a pipeline with an appsink `v` (RGB video) and an appsink
/// `a` (mono F32LE, 48 kHz), until EOS, or (`enough` audio seconds given)
/// until that much audio and the frame are in. Returns the first frame
/// `at` or more after the first one (by PTS) and every audio sample.
pub fn decode_av(desc: &str, at: Duration, enough: Option<f64>, timeout: Duration) -> (Rgb, Vec<f32>) {
    use gst::prelude::*;
    let p = gst::parse::launch(desc).unwrap_or_else(|e| panic!("{desc}: {e}")).downcast::<gst::Pipeline>().unwrap();
    let v = p.by_name("v").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let a = p.by_name("a").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let frame = std::sync::Arc::new(parking_lot::Mutex::new(None));
    let samples = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    {
        let frame = frame.clone();
        let mut first = None;
        v.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let b = sample.buffer().unwrap();
                    let Some(pts) = b.pts() else { return Ok(gst::FlowSuccess::Ok) };
                    let first = *first.get_or_insert(pts.nseconds());
                    let mut f = frame.lock();
                    if f.is_none() && pts.nseconds() >= first + at.as_nanos() as u64 {
                        let st = sample.caps().unwrap().structure(0).unwrap().to_owned();
                        let (w, h) = (st.get::<i32>("width").unwrap() as u32, st.get::<i32>("height").unwrap() as u32);
                        *f = Some((w, h, b.map_readable().unwrap().to_vec()));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    {
        let samples = samples.clone();
        a.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let m = sample.buffer().unwrap().map_readable().unwrap();
                    samples.lock().extend(m.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let outcome = loop {
        if let Some(secs) = enough {
            if frame.lock().is_some() && samples.lock().len() as f64 >= secs * 48_000.0 {
                break Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            break Err(format!("no end within {timeout:?} (a frame: {}, {} audio samples)", frame.lock().is_some(), samples.lock().len()));
        }
        if let Some(m) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            match m.view() {
                gst::MessageView::Eos(_) => break Ok(()),
                gst::MessageView::Error(e) => break Err(format!("{} ({:?})", e.error(), e.debug())),
                _ => {}
            }
        }
    };
    p.set_state(gst::State::Null).unwrap();
    if let Err(e) = outcome {
        panic!("decoding `{desc}`: {e}");
    }
    let f = frame.lock().take().unwrap_or_else(|| panic!("decoding `{desc}`: no frame at {at:?} or later"));
    let s = std::mem::take(&mut *samples.lock());
    (f, s)
}

/// The mean colour of the 5x5 pixels around (x, y) of a decoded frame.
pub fn rgb_pixel(f: &Rgb, x: u32, y: u32) -> [u8; 3] {
    let mut sum = [0u32; 3];
    for dy in 0..5 {
        for dx in 0..5 {
            let i = (((y + dy - 2) * f.0 + (x + dx - 2)) * 3) as usize;
            for (c, total) in sum.iter_mut().enumerate() {
                *total += f.2[i + c] as u32;
            }
        }
    }
    sum.map(|s| (s / 25) as u8)
}

/// Red (440 Hz), green (660 Hz) and blue (880 Hz) bots joined to `room`
/// in that order, each receiving the grid: the room [`assert_three_tiles`]
/// and [`assert_tones`] check.
pub async fn three_bots(url: &str, room: &str) -> [Bot; 3] {
    let red = bot(url, room, "red", 0xff0000, 440.0).await;
    let green = bot(url, room, "green", 0x00ff00, 660.0).await;
    let blue = bot(url, room, "blue", 0x0000ff, 880.0).await;
    for b in [&red, &green, &blue] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    [red, green, blue]
}

/// The 3-bot grid (red, green, blue in join order) of a 640x360 frame:
/// each colour in its tile.
pub fn assert_three_tiles(frame: &Rgb, what: &str) {
    assert_eq!((frame.0, frame.1), (640, 360), "{what}");
    for (x, y, want, who) in [(160, 90, 0xff0000, "red"), (480, 90, 0x00ff00, "green"), (160, 270, 0x0000ff, "blue")] {
        let c = rgb_pixel(frame, x, y);
        assert!(color_close(c, want, 60), "{what}: {who}'s tile shows {c:?}");
    }
}

/// Each of `tones` is in the last 2 s of `samples` (48 kHz mono).
pub fn assert_tones(samples: &[f32], tones: &[f64], what: &str) {
    let tail = &samples[samples.len().saturating_sub(48_000 * 2)..];
    let (bin, db) = tessera::tools::bot_media::spectrum_db(tail, 48_000.0);
    for hz in tones {
        let level = tessera::tools::bot_media::level_at(bin, &db, *hz, 10.0);
        assert!(level > -40.0, "{what}: {hz} Hz is at {level:.1} dBFS");
    }
}

/// Colour of the decoded grid at canvas pixel (x, y).
pub fn color_at(b: &Bot, x: u32, y: u32) -> Option<[u8; 3]> {
    let f = b.last_frame()?;
    Some(f.mean_around(x, y, 3))
}

pub fn bot_options(url: &str, room: &str, name: &str, color: u32, tone: f64) -> BotOptions {
    BotOptions {
        server: url.to_string(),
        room: room.to_string(),
        name: name.to_string(),
        color: Some(color),
        tone_hz: tone,
        width: 320,
        height: 240,
        ..BotOptions::default()
    }
}

pub async fn bot(url: &str, room: &str, name: &str, color: u32, tone: f64) -> Bot {
    Bot::connect(bot_options(url, room, name, color, tone)).await.expect("bot connects")
}

/// Wait until the bot has joined, is connected and receives video.
/// One bot per (name, colour, tone) in `room`, each connected and
/// receiving the mixed video (10 s each at most) before it returns.
pub async fn bots_receiving(url: &str, room: &str, who: &[(&str, u32, f64)]) -> Vec<Bot> {
    let mut bots = Vec::new();
    for &(name, color, tone) in who {
        bots.push(bot(url, room, name, color, tone).await);
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    bots
}

pub async fn wait_receiving(b: &Bot, timeout: Duration) {
    let ok = b.wait_until(timeout, |b| b.is_connected() && b.stats().frames > 5).await;
    assert!(ok, "bot never received mixed video: connected={} stats={:?} errors={:?}", b.is_connected(), b.stats(), b.errors());
}

/// Is `c` within `tol` of `want` on every channel?
pub fn color_close(c: [u8; 3], want: u32, tol: i32) -> bool {
    let w = [(want >> 16) as u8, (want >> 8) as u8, want as u8];
    (0..3).all(|i| (c[i] as i32 - w[i] as i32).abs() <= tol)
}

/// `tessera serve` as a child process, for tests that measure the
/// server process itself (fds, threads).
pub struct ChildServer {
    pub child: Child,
    pub url: String,
    pub pid: u32,
}

impl ChildServer {
    pub fn spawn(extra: &[&str]) -> ChildServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--canvas", "640x360"]).args(extra);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("tessera serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads the listening line");
        assert!(line.contains("listening"), "unexpected first line: {line}");
        let (scheme, addr) = line.trim().rsplit_once(' ').and_then(|(_, u)| u.split_once("://")).expect("a URL on the listening line");
        let ws = if scheme == "https" { "wss" } else { "ws" };
        let pid = child.id();
        ChildServer { child, url: format!("{ws}://{addr}/ws"), pid }
    }

    pub fn fds(&self) -> usize {
        Proc(Some(self.pid)).fds().expect("the server's open fds")
    }

    pub fn threads(&self) -> usize {
        Proc(Some(self.pid)).threads().expect("the server's threads")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moving, detailed test picture: the encoder ladder reaches its
/// bitrates on it (solid colours compress to almost nothing).
pub use tessera::tools::netns::BUSY_PATTERN;

/// A bot sending the busy pattern.
pub fn busy_bot(url: &str, room: &str, name: &str, tone: f64) -> BotOptions {
    BotOptions { color: None, pattern: BUSY_PATTERN.into(), ..bot_options(url, room, name, 0, tone) }
}

/// `GET /api/rooms/{room}/stats` of an in-process server.
pub async fn room_stats(server: &Running, room: &str) -> serde_json::Value {
    let (status, body) = http(server.server.addr, "GET", &format!("/api/rooms/{room}/stats"), "").await;
    assert_eq!(status, 200, "stats: {body}");
    serde_json::from_str(&body).expect("stats are JSON")
}

/// The rungs (`codec:name`, e.g. `vp8:high`) whose encoder runs, and
/// those with receivers, from a room's stats.
pub fn rungs_running_and_used(stats: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let rungs = stats["media"]["rungs"].as_array().cloned().unwrap_or_default();
    let name = |r: &serde_json::Value| format!("{}:{}", r["codec"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or(""));
    let running = rungs.iter().filter(|r| r["running"] == true).map(name).collect();
    let used = rungs.iter().filter(|r| r["receivers"].as_u64().unwrap_or(0) > 0).map(name).collect();
    (running, used)
}

/// Video kbps (RTP, with headers) a bot receives over `secs`.
pub async fn video_kbps(b: &Bot, secs: f64) -> f64 {
    let b0 = b.stats().video_bytes;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    (b.stats().video_bytes - b0) as f64 * 8.0 / 1000.0 / secs
}

/// Frames per second a bot receives over `secs`.
pub async fn fps_over(b: &Bot, secs: f64) -> f64 {
    let f0 = b.stats().frames;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    (b.stats().frames - f0) as f64 / secs
}

/// The frame rate of the video `b` receives as it was sent, over `secs`:
/// frames per second of stream time (their RTP timestamps), not of arrival,
/// so a burst after a stall (a late decoder catching up, a queue let go)
/// reads as the rate the server encoded.
pub async fn stream_fps_over(b: &Bot, secs: f64) -> f64 {
    let s0 = b.stats();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let s1 = b.stats();
    let ticks = s1.rtp_ticks.saturating_sub(s0.rtp_ticks);
    if ticks == 0 {
        return 0.0;
    }
    (s1.rtp_frames - s0.rtp_frames) as f64 / (ticks as f64 / 90_000.0)
}

/// The Python of the virtualenv with aiortc that `scripts/deps.sh --browser`
/// makes (`TESSERA_INTEROP_PYTHON` overrides). Missing: the test fails and
/// says how to install it.
pub fn interop_python() -> std::path::PathBuf {
    let p = std::env::var_os("TESSERA_INTEROP_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: the aiortc interop tests need the virtualenv that `./scripts/deps.sh --browser` installs",
        p.display()
    );
    p
}

/// A participant on aiortc (tests/interop/aiortc_client.py), an
/// independent WebRTC stack, as a child process.
pub struct AiortcClient {
    child: Child,
    report: std::path::PathBuf,
    pub name: String,
}

impl AiortcClient {
    /// Join `room` as `name`; `extra` are more flags of the client
    /// (--color, --tone, --duration, --listen, --role, --quality).
    pub fn spawn(url: &str, room: &str, name: &str, extra: &[&str]) -> AiortcClient {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aiortc_client.py");
        let report = std::env::temp_dir().join(format!("tessera-aiortc-{}-{room}-{name}.json", std::process::id()));
        let _ = std::fs::remove_file(&report);
        let child = Command::new(interop_python())
            .arg(script)
            .args(["--server", url, "--room", room, "--name", name, "--ice-address", "127.0.0.1", "--report"])
            .arg(&report)
            .args(extra)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the aiortc client starts");
        AiortcClient { child, report, name: name.to_string() }
    }

    /// Wait for the client to finish (at most `timeout`) and read its report.
    pub async fn report(mut self, timeout: Duration) -> serde_json::Value {
        let t0 = std::time::Instant::now();
        loop {
            match self.child.try_wait().expect("wait for the aiortc client") {
                Some(status) => {
                    assert!(status.success(), "aiortc client {} exited with {status}", self.name);
                    break;
                }
                None if t0.elapsed() > timeout => panic!("aiortc client {} did not finish within {timeout:?}", self.name),
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let text = std::fs::read_to_string(&self.report).unwrap_or_else(|e| panic!("no report from {}: {e}", self.name));
        let _ = std::fs::remove_file(&self.report);
        serde_json::from_str(&text).expect("the aiortc report is JSON")
    }
}

impl Drop for AiortcClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `tessera serve` with `args`, expecting it to refuse to start: it
/// must exit non-zero by itself within 20 s (a server that starts anyway
/// fails the test instead of hanging it), without a panic. Its stderr.
pub fn refused_start(args: &[&std::ffi::OsStr]) -> String {
    refused_start_with(args, &[], Duration::from_secs(20))
}

/// [`refused_start`] with environment variables set (`Some`) or removed
/// (`None`) for the server, within `limit`.
pub fn refused_start_with(args: &[&std::ffi::OsStr], env: &[(&str, Option<&std::ffi::OsStr>)], limit: Duration) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().expect("tessera serve starts");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tessera serve {args:?} did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success(), "tessera serve {args:?} started: {err}");
    assert!(!err.contains("panicked"), "a panic instead of an error: {err}");
    err
}

/// `[r, g, b]` from a JSON array.
pub fn rgb_of(v: &serde_json::Value) -> [u8; 3] {
    let c: Vec<u8> = v.as_array().map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0) as u8).collect()).unwrap_or_default();
    assert_eq!(c.len(), 3, "not an RGB triple: {v}");
    [c[0], c[1], c[2]]
}

/// A free port on 127.0.0.1 (UDP), for a helper server to listen on.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free UDP port").port()
}

/// Debian's coturn on loopback with TURN REST credentials
/// (`--use-auth-secret --static-auth-secret`), relaying on loopback.
/// scripts/deps.sh --browser installs it; missing, the test fails here.
pub struct Coturn {
    child: Child,
    pub port: u16,
}

impl Coturn {
    pub fn start(secret: &str) -> Coturn {
        let port = free_udp_port();
        let relay = 20_000 + (port % 20_000);
        // coturn 4.6.1 exits at start with loopback peers allowed and a CLI
        // without a password, hence --no-cli.
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--realm=tessera.test", "--use-auth-secret"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay + 200))
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-multicast-peers", "--no-tcp-relay", "--log-file=stdout", "--simple-log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start coturn's turnserver (scripts/deps.sh --browser installs it): {e}"));
        let pid = child.id();
        let t0 = std::time::Instant::now();
        while !tessera::tools::procinfo::Proc(Some(pid)).udp_ports().unwrap_or_default().contains(&port) {
            assert!(t0.elapsed() < Duration::from_secs(10), "coturn is not listening on UDP {port} after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Coturn { child, port }
    }

    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw signaling connection, for tests that speak the protocol by hand.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `/ws` from the local address `from` (any 127.0.0.0/8 address is
/// a different client address on loopback). Err: the HTTP status and body
/// of a refused upgrade.
pub async fn ws_from(from: &str, server: std::net::SocketAddr) -> Result<Ws, (u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{from}:0").parse().expect("an address")).expect("bind the source address");
    let tcp = sock.connect(server).await.expect("connect");
    let url = format!("ws://{server}/ws");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(r)) => Err((r.status().as_u16(), String::from_utf8_lossy(r.body().as_deref().unwrap_or(&[])).into_owned())),
        Err(e) => panic!("websocket to {server}: {e}"),
    }
}

/// The next JSON message within `timeout` (None: none came, or closed).
pub async fn next_msg(ws: &mut Ws, timeout: Duration) -> Option<serde_json::Value> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let until = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The next message of type `ty` within `timeout`, skipping others.
pub async fn next_of_type(ws: &mut Ws, ty: &str, timeout: Duration) -> Option<serde_json::Value> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let v = next_msg(ws, left).await?;
        if v["type"] == ty {
            return Some(v);
        }
    }
}

/// Send one text frame.
pub async fn send_text(ws: &mut Ws, text: &str) {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.to_string())).await.expect("send");
}

/// The code of the next `error` (skipping other messages), within 5 s.
pub async fn next_error(ws: &mut Ws) -> String {
    let v = next_of_type(ws, "error", Duration::from_secs(5)).await.expect("an error in time");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "an error has a message: {v}");
    v["code"].as_str().unwrap_or_default().to_string()
}

/// `{"type":"join",...}`.
pub fn join_msg(room: &str, name: &str, role: &str) -> String {
    serde_json::json!({"type": "join", "room": room, "name": name, "role": role}).to_string()
}

/// A free TCP port on loopback (bound, then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free TCP port")
}

#[allow(unused_imports)]
pub use tessera::tools::nginx::NginxRtmp;

pub const THREE_BOTS: [(&str, u32, f64); 3] = [("red", 0xff0000, 440.0), ("green", 0x00ff00, 660.0), ("blue", 0x0000ff, 880.0)];

/// Three bots join a server on `media`: each receives the grid at full
/// frame rate with every other bot's colour in its tile, and hears the
/// others' tones but not its own.
pub async fn three_bots_see_and_hear_each_other_on(media: MediaConfig) {
    let server = start_server(media);
    let url = server.ws_url();
    let bots = bots_receiving(&url, "room1", &THREE_BOTS).await;
    for b in &bots {
        assert!(b.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(3)).await, "layout never had 3 tiles");
    }
    // Let audio buffers fill and the picture settle.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Frame rate over 3 s, measured at every receiver.
    let before: Vec<u64> = bots.iter().map(|b| b.stats().frames).collect();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = t0.elapsed().as_secs_f64();
    for (b, f0) in bots.iter().zip(before) {
        let fps = (b.stats().frames - f0) as f64 / secs;
        let s = b.stats();
        assert!(fps >= 25.0, "a bot received only {fps:.1} fps: {s:?}");
        assert_eq!((s.width, s.height), CANVAS, "mixed video is not at canvas size");
    }

    for (i, b) in bots.iter().enumerate() {
        let me = b.id().expect("joined");
        let (canvas, tiles) = b.layout().expect("layout");
        assert_eq!((canvas.width, canvas.height), CANVAS);
        assert_eq!(tiles.len(), 3);
        let seen = b.tiles_seen();
        // Every OTHER bot's colour is at the centre of that bot's tile.
        for (j, b2) in bots.iter().enumerate() {
            let id = b2.id().expect("joined");
            let tile = seen.iter().find(|t| t.id == id).expect("tile for every participant");
            if i != j {
                assert!(
                    color_close(tile.center_rgb, THREE_BOTS[j].1, 48),
                    "bot {} sees {:?} at the centre of {}'s tile, expected {:06x}",
                    THREE_BOTS[i].0, tile.center_rgb, THREE_BOTS[j].0, THREE_BOTS[j].1
                );
            }
        }
        assert!(seen.iter().any(|t| t.id == me));
        // Hears the others, not itself (mix-minus).
        let own = b.level_db(THREE_BOTS[i].2).expect("audio received");
        for (j, (_, _, tone)) in THREE_BOTS.iter().enumerate() {
            if i == j {
                continue;
            }
            let other = b.level_db(*tone).expect("audio received");
            assert!(other > -40.0, "bot {} hears {} Hz at only {other:.1} dBFS", THREE_BOTS[i].0, tone);
            assert!(own <= other - 20.0, "bot {} hears itself at {own:.1} dBFS vs {other:.1} dBFS for {tone} Hz", THREE_BOTS[i].0);
        }
        assert!(b.errors().is_empty(), "errors: {:?}", b.errors());
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
