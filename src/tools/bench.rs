//! `tessera bench`: measured scenarios against a `tessera serve` child
//! process. Load comes from in-process bots in load mode (media encoded
//! once and looped, nothing decoded) plus one decoding observer bot; the
//! server's and the load's CPU are read separately from /proc.
//!
//! Scenarios here: `capacity` (CPU, memory, threads, fds and the observer's
//! frame rate per room size), `join` (WebSocket connect to first decoded
//! mixed frame, and the longest gap residents see while others come and go)
//! `latency` (glass to glass over loopback), `ladder` (downlink per rung of
//! the encoder ladder) and `viewers` (server CPU per receive-only viewer).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::protocol::Codec;
use crate::tools::bot::{Bot, BotOptions};
use crate::media::webrtc::PeerEvent;
use crate::tools::bot_media::BotMedia;
use crate::tools::procinfo::Proc;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub quick: bool,
    pub scenarios: Vec<String>,
    pub out_dir: PathBuf,
    /// The `tessera` binary to run as the server.
    pub server_bin: PathBuf,
    pub canvas: String,
    /// Room sizes overriding the scenario defaults (capacity, raw).
    pub participants: Vec<usize>,
    /// Capacity input kinds to run (`tile`, `360p`; empty: both).
    pub inputs: Vec<String>,
    /// Capacity measurement window overriding the default.
    pub window: Option<Duration>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct CapacityRow {
    /// `tile`: load bots follow the server's `send_size` (as browsers do);
    /// `360p`: every input 640x360 whatever its tile.
    pub inputs: String,
    pub participants: usize,
    pub server_cpu_pct_of_machine: f64,
    pub server_cpu_pct_of_core: f64,
    pub load_cpu_pct_of_machine: f64,
    pub rss_mib: f64,
    pub threads: usize,
    pub fds: usize,
    /// Decoded frames per second at the observer (its decoder shares the
    /// saturated machine with the load).
    pub observer_fps: f64,
    /// Frames per second the server sent the observer (RTP frames received).
    pub observer_rtp_fps: f64,
    pub observer_max_gap_ms: u64,
    /// Frames the observer did not get over the whole window, against the
    /// canvas rate (30 fps), and video RTP packets it found missing.
    pub observer_dropped_frames: u64,
    pub observer_lost_packets: u64,
    /// Participants sending and receiving H.264 (every other load bot);
    /// the rest, the observer included, VP8.
    #[serde(default)]
    pub h264_participants: usize,
    /// A load bot also shares a screen (scenario `share`).
    #[serde(default)]
    pub sharing: bool,
    /// What the room also sends out (scenario `outputs`): "" nothing,
    /// "recording", "rtmp" or "hls".
    #[serde(default)]
    pub output: String,
    /// Threads the room added to the idle server, per participant.
    #[serde(default)]
    pub threads_per_participant: f64,
    /// CPU of the server's threads over the windows, by kind (a thread's
    /// name without its numbers), % of one core, busiest first.
    #[serde(default)]
    pub thread_cpu: Vec<(String, f64)>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct JoinResult {
    pub residents: usize,
    pub joins: usize,
    pub join_to_first_frame_ms: Vec<u64>,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub resident_max_gap_ms: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct LatencyResult {
    pub changes: usize,
    pub detected: usize,
    pub samples_ms: Vec<u64>,
    pub p50_ms: u64,
    pub p95_ms: u64,
    /// Server-added latency: RTP of the changed frame leaving the sender
    /// (loopback, so arriving at the server) to RTP of the first composed
    /// frame showing it arriving at the observer.
    pub server_detected: usize,
    pub server_samples_ms: Vec<f64>,
    pub server_p50_ms: f64,
    pub server_p95_ms: f64,
}

/// Lip sync at a receiver: how much later (positive) or earlier the audio
/// of an event arrives than its picture, net of the sender's own capture
/// offset.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AvSyncResult {
    pub events: usize,
    pub detected: usize,
    pub samples_ms: Vec<f64>,
    pub p5_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// One receiver behind a lossy router (scenario `loss`): what it saw
/// over the window at one loss level, with or without NACK.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct LossRow {
    /// `downlink`: packets to the namespaced bot are dropped, and it is the
    /// receiver measured; `uplink`: packets from it, and its picture as the
    /// server decodes it for everyone's mix is measured.
    #[serde(default = "downlink")]
    pub path: String,
    /// Packets dropped at random, %.
    pub loss_pct: u32,
    /// The receiver asks for lost packets again (NACK/RTX); otherwise each
    /// lost frame waits for a keyframe (PLI).
    pub nack: bool,
    pub secs: f64,
    /// Frames decoded per second.
    pub fps: f64,
    /// Longest gap between decoded frames, and gaps over 150 ms.
    pub longest_freeze_ms: u64,
    pub freezes: usize,
    /// Keyframes forced by the busiest rung.
    pub keyframes: u64,
    /// Packets the server resent, and that as kbps (at the receiver's mean
    /// video packet size).
    pub resent_packets: u64,
    pub resent_kbps: f64,
    /// Video packets still missing after the jitterbuffer, %.
    pub missing_pct: f64,
    /// The receiving jitterbuffer's requests (retries included), packets
    /// recovered in time, packets given up (a freeze until a keyframe;
    /// None where the transport does not say: a sender's video on str0m).
    #[serde(default)]
    pub asked: u64,
    #[serde(default)]
    pub recovered: u64,
    #[serde(default)]
    pub given_up: Option<u64>,
}

/// Scenario `cluster`: Redis and three nodes on loopback.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ClusterResult {
    pub lease_ms: u64,
    /// Join to first decoded frame through the room's node, and through
    /// another node that carries the signaling to it, ms (alternating).
    pub direct_ms: Vec<u64>,
    pub carried_ms: Vec<u64>,
    pub direct_p50_ms: u64,
    pub carried_p50_ms: u64,
    /// SIGKILL of the room's node to the slowest of three rejoining bots
    /// receiving the mix again, ms, per kill.
    pub kill_to_mix_ms: Vec<u64>,
    pub kill_p50_ms: u64,
    pub kill_max_ms: u64,
}

fn downlink() -> String {
    "downlink".into()
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RungDownlink {
    /// `vp8` or `h264` (an older report has VP8 rungs only).
    #[serde(default = "vp8_name")]
    pub codec: String,
    pub rung: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub video_kbps: f64,
    pub total_kbps: f64,
    /// The rung's encoding thread, % of one core.
    #[serde(default)]
    pub cpu_pct_of_core: Option<f64>,
}

fn vp8_name() -> String {
    Codec::Vp8.name().to_string()
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct HlsViewerRow {
    #[serde(default)]
    pub participants: usize,
    pub viewers: usize,
    pub server_cpu_pct_of_core: f64,
    /// The bench process (load bots, observer, the fetch loops).
    pub load_cpu_pct_of_machine: f64,
    /// New segments in the window, and the fewest any player fetched.
    pub segments_expected: u64,
    pub min_segments_fetched: u64,
    /// What the server sent to the players, Mbit/s.
    pub served_mbps: f64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ViewerRow {
    pub viewers: usize,
    pub server_cpu_pct_of_machine: f64,
    /// The bench process (load bots, observer, viewer bots).
    pub load_cpu_pct_of_machine: f64,
    pub min_viewer_fps: f64,
}

/// Scenario 4: per-client bandwidth through tessera and in a full mesh.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct BandwidthRow {
    pub participants: usize,
    /// Mean over the load bots: RTP kbps sent and received.
    pub tessera_up_kbps: f64,
    pub tessera_down_kbps: f64,
    /// Mean over the mesh clients (each sends to and receives from every other).
    pub mesh_up_kbps: f64,
    pub mesh_down_kbps: f64,
    /// Peer connections of the mesh that delivered media / all of them.
    pub mesh_links_up: usize,
    pub mesh_links: usize,
}

/// Scenario 5: tessera against the same work as a plain pipeline.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RawRow {
    pub participants: usize,
    /// CPU of the plain decode → compose → encode pipeline.
    pub raw_cpu_pct_of_machine: f64,
    pub raw_fps: f64,
    /// The server's CPU in the capacity scenario (tile inputs), same size.
    pub tessera_cpu_pct_of_machine: Option<f64>,
    /// tessera / raw.
    pub ratio: Option<f64>,
    /// Where the plain pipeline's time goes, as [`CapacityRow::thread_cpu`]
    /// (the bench process's own threads, idle while it runs, included).
    #[serde(default)]
    pub thread_cpu: Vec<(String, f64)>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub date: String,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub canvas: String,
    pub capacity: Vec<CapacityRow>,
    pub join: Option<JoinResult>,
    pub glass_to_glass: Option<LatencyResult>,
    /// Audio against video offset at a receiver (scenario `avsync`).
    #[serde(default)]
    pub avsync: Option<AvSyncResult>,
    /// A receiver behind a lossy link, with and without NACK (scenario `loss`).
    #[serde(default)]
    pub loss: Vec<LossRow>,
    /// Three nodes and Redis: the proxy's cost and a killed node's (scenario `cluster`).
    #[serde(default)]
    pub cluster: Option<ClusterResult>,
    /// Per-receiver downlink and encoding CPU on each rung of the shipped
    /// ladder, per codec.
    pub ladder: Vec<RungDownlink>,
    /// Rooms all on VP8 and with half the room on H.264, side by side.
    #[serde(default)]
    pub mixed_codecs: Vec<CapacityRow>,
    /// Rooms without and with a shared screen, side by side.
    #[serde(default)]
    pub share: Vec<CapacityRow>,
    /// Rooms with nothing, a recording, an RTMP stream, an HLS stream, side by side.
    #[serde(default)]
    pub outputs: Vec<CapacityRow>,
    /// HLS players (plain HTTP fetch loops) on a streamed room.
    #[serde(default)]
    pub hls_viewers: Vec<HlsViewerRow>,
    /// Server CPU with 0, 10, 20 receive-only viewers on a room of 4.
    pub viewers: Vec<ViewerRow>,
    /// The plain-pipeline lower bound per room size.
    pub raw: Vec<RawRow>,
    /// One 720p rung encoder per codec on the same composed grid.
    #[serde(default)]
    pub codecs: Vec<CodecRow>,
    /// Per-client bandwidth, tessera against a peer-to-peer mesh.
    pub bandwidth: Vec<BandwidthRow>,
    /// Server CPU of one room over plain HTTP/WS and over HTTPS/WSS.
    pub tls: Vec<TlsRow>,
    /// Scenarios run later than `machine` and kept together with the
    /// earlier ones: what ran, where and when.
    pub reruns: Vec<String>,
    /// Join/leave cycles, aborted and hostile connections against a room
    /// of two honest bots: the server's fds, threads and RSS before and after.
    pub soak: Option<SoakResult>,
    /// Largest room with the observer at >= 29 fps and the server under
    /// 70 % of the machine, inputs at tile size.
    pub capacity_limit: Option<usize>,
    /// The same with every input at 640x360.
    pub capacity_limit_360p: Option<usize>,
}

struct ServerProc {
    child: Child,
    url: String,
    /// `host:port`, for the HTTP API.
    addr: String,
    /// Where its recordings and HLS streams go (removed with it).
    outputs: PathBuf,
    /// Its stderr.
    log: PathBuf,
    /// Its threads before anyone joined.
    idle_threads: usize,
}

impl ServerProc {
    fn start(bin: &Path, canvas: &str) -> Result<ServerProc> {
        ServerProc::start_with(bin, canvas, &[])
    }

    fn start_with(bin: &Path, canvas: &str, extra: &[String]) -> Result<ServerProc> {
        ServerProc::start_on(bin, canvas, "127.0.0.1", extra)
    }

    /// Listening and gathering ICE on `host` only.
    fn start_on(bin: &Path, canvas: &str, host: &str, extra: &[String]) -> Result<ServerProc> {
        ServerProc::start_at(bin, canvas, host, 0, extra)
    }

    /// Listening on `host:port` (0: a free port), gathering ICE on `host`.
    fn start_at(bin: &Path, canvas: &str, host: &str, port: u16, extra: &[String]) -> Result<ServerProc> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Never the working directory's ./hls or ./recordings: a bench run
        // from a checkout once left HLS segments that got committed.
        let outputs = std::env::temp_dir().join(format!("tessera-bench-out-{}-{n}", std::process::id()));
        // Its log: shown (the end of it) if it exits on its own.
        let log = std::env::temp_dir().join(format!("tessera-bench-server-{}-{n}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(bin)
            .args(["serve", "--listen", &format!("{host}:{port}"), "--canvas", canvas, "--ice-address", host])
            .arg("--recordings-dir")
            .arg(outputs.join("recordings"))
            .arg("--hls-dir")
            .arg(outputs.join("hls"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.contains("listening") {
            bail!("server did not start: {line}");
        }
        let (scheme, addr) = line.trim().rsplit_once(' ').and_then(|(_, u)| u.split_once("://")).context("no URL on the listening line")?;
        let ws = if scheme == "https" { "wss" } else { "ws" };
        let idle_threads = Proc(Some(child.id())).threads()?;
        Ok(ServerProc { url: format!("{ws}://{addr}/ws"), addr: addr.to_string(), child, outputs, log, idle_threads })
    }

    /// A plain-HTTP request to the server's API; the status.
    async fn http(&self, method: &str, path: &str) -> Result<u16> {
        Ok(http_request(&self.addr, method, path, "").await?.0)
    }

    /// Start a live stream of `room` (`body` as `POST …/streams` takes it)
    /// and wait until it is active.
    async fn stream(&self, room: &str, body: &str) -> Result<()> {
        let (status, answer) = http_request(&self.addr, "POST", &format!("/api/rooms/{room}/streams"), body).await?;
        if status != 201 {
            bail!("the stream did not start: HTTP {status} {}", String::from_utf8_lossy(&answer));
        }
        let t0 = Instant::now();
        loop {
            let (_, list) = http_request(&self.addr, "GET", &format!("/api/rooms/{room}/streams"), "").await?;
            let list: serde_json::Value = serde_json::from_slice(&list)?;
            if list["streams"].as_array().is_some_and(|a| a.iter().any(|s| s["status"] == "active")) {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(15) {
                bail!("the stream is not active after 15 s: {list}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// An HTTP/1.1 request (`Connection: close`): status and body.
async fn http_request(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.context("connecting to the server")?;
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).with_context(|| format!("no status in {head:?}"))?;
    Ok((status, out[split..].to_vec()))
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            // Gone before the bench stopped it: say how, with its last words.
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!("  the server under test exited on its own ({status}); the end of its log:");
            for l in tail.iter().rev() {
                eprintln!("    {l}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.outputs);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// utime + stime of a process (`self` or a pid), in seconds; 0 when it is gone.
fn cpu_seconds(pid: &str) -> f64 {
    let p = if pid == "self" { Proc::myself() } else { Proc(pid.parse().ok()) };
    p.cpu_seconds().unwrap_or(0.0)
}

/// CPUs of this machine ("% of machine" divides by it).
fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim().to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let date = Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    Machine { cpus: cpus(), cpu_model: model, kernel, date }
}

fn load_bot(url: &str, room: &str, i: usize, fixed_size: bool) -> BotOptions {
    BotOptions {
        fixed_size,
        server: url.to_string(),
        room: room.to_string(),
        name: format!("load{i}"),
        color: Some(COLORS[i % COLORS.len()]),
        tone_hz: 300.0 + 40.0 * i as f64,
        volume: 0.05,
        load: true,
        width: 640,
        height: 360,
        ..BotOptions::default()
    }
}

fn observer(url: &str, room: &str, name: &str) -> BotOptions {
    BotOptions { server: url.to_string(), room: room.to_string(), name: name.to_string(), color: Some(0xffffff), ..BotOptions::default() }
}

async fn wait_frames(b: &Bot, timeout: Duration) -> bool {
    b.wait_until(timeout, |b| b.stats().frames > 3).await
}

/// A fresh server with a room of `n` participants: `n - 1` load bots and
/// one decoding observer that already receives the mixed video.
async fn loaded_room(o: &BenchOptions, room: &str, n: usize, observer_name: &str, inputs: Inputs) -> Result<(ServerProc, Vec<Bot>, Bot)> {
    loaded_room_with(o, room, n, observer_name, inputs, None, false).await
}

/// [`loaded_room`], the server serving HTTPS/WSS with `tls` when given,
/// and with every other load bot (the 1st, 3rd, ...) on H.264 if `h264`.
async fn loaded_room_with(o: &BenchOptions, room: &str, n: usize, observer_name: &str, inputs: Inputs, tls: Option<&TlsFiles>, h264: bool) -> Result<(ServerProc, Vec<Bot>, Bot)> {
    let extra = tls.map(|t| t.flags()).unwrap_or_default();
    let server = ServerProc::start_with(&o.server_bin, &o.canvas, &extra)?;
    let trust = tls.map(|t| t.cert_pem.clone());
    let mut bots = Vec::new();
    for i in 0..n.saturating_sub(1) {
        let codec = if h264 && i % 2 == 0 { Codec::H264 } else { Codec::Vp8 };
        bots.push(Bot::connect(BotOptions { tls_trust: trust.clone(), codec, ..load_bot(&server.url, room, i, inputs == Inputs::Full360p) }).await?);
    }
    let obs = Bot::connect(BotOptions { tls_trust: trust, ..observer(&server.url, room, observer_name) }).await?;
    if !wait_frames(&obs, Duration::from_secs(20)).await {
        bail!("the {observer_name} received no video in a room of {n}");
    }
    Ok((server, bots, obs))
}

/// CPU (% of one core over `secs`) of each kind of thread between two
/// readings of [`Proc::thread_cpu_seconds`]: names without their digits
/// (`nicesrc3:src` and `nicesrc12:src` are one kind), busiest first.
fn thread_kinds(before: &std::collections::BTreeMap<String, f64>, after: &std::collections::BTreeMap<String, f64>, secs: f64) -> Vec<(String, f64)> {
    let mut kinds = std::collections::BTreeMap::<String, f64>::new();
    for (name, t) in after {
        // A thread kind's threads that ended in between count as zero.
        let used = t - before.get(name).copied().unwrap_or(0.0);
        let kind: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
        *kinds.entry(kind).or_insert(0.0) += used.max(0.0) / secs * 100.0;
    }
    let mut v: Vec<(String, f64)> = kinds.into_iter().filter(|(_, c)| *c >= 0.05).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Drop every bot's connection (as crashed clients would; fastest teardown).
async fn disconnect_all(obs: Bot, bots: Vec<Bot>) {
    obs.disconnect().await;
    for b in bots {
        b.disconnect().await;
    }
}

/// What the load bots send in the capacity scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inputs {
    /// Follow the server's `send_size`: each input arrives at its tile size.
    Tile,
    /// 640x360 whatever the tile (a client that ignores `send_size`).
    Full360p,
}

impl Inputs {
    fn label(self) -> &'static str {
        match self {
            Inputs::Tile => "tile",
            Inputs::Full360p => "360p",
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Windows per capacity measurement; the row reports the median window.
const WINDOWS: usize = 3;

async fn capacity(o: &BenchOptions, plan: &[(Inputs, Vec<usize>)], warm: Duration, window: Duration) -> Result<Vec<CapacityRow>> {
    let cpus = cpus() as f64;
    let mut rows = Vec::new();
    for (inputs, sizes) in plan {
        for &n in sizes {
            rows.push(capacity_row(o, *inputs, n, cpus, warm, window).await?);
        }
    }
    Ok(rows)
}

async fn capacity_row(o: &BenchOptions, inputs: Inputs, n: usize, cpus: f64, warm: Duration, window: Duration) -> Result<CapacityRow> {
    capacity_row_with(o, inputs, n, cpus, warm, window, None, false, Extra::Nothing).await
}

/// The screen a load bot shares in scenario `share`: a pattern at
/// 1280x720 (the bot pre-encodes it at the size the server asks for).
const SHARED_SCREEN: (&str, u32, u32) = ("smpte", 1280, 720);

/// What a capacity row adds to the room.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extra {
    Nothing,
    /// A load bot shares this screen.
    Share(&'static str, u32, u32),
    /// The room is recorded (`POST /api/rooms/{room}/recordings`).
    Recording,
    /// The room streams to the RTMP server on this port (`POST …/streams`).
    Rtmp(u16),
    /// The room streams HLS (`POST …/streams {"hls": …}`).
    Hls,
}

impl Extra {
    fn output(self) -> &'static str {
        match self {
            Extra::Recording => "recording",
            Extra::Rtmp(_) => "rtmp",
            Extra::Hls => "hls",
            _ => "",
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn capacity_row_with(o: &BenchOptions, inputs: Inputs, n: usize, cpus: f64, warm: Duration, window: Duration, tls: Option<&TlsFiles>, h264: bool, extra: Extra) -> Result<CapacityRow> {
    let h264_participants = if h264 { n.saturating_sub(1).div_ceil(2) } else { 0 };
    eprintln!(
        "bench capacity: {n} participants ({} load bots + 1 observer), {} inputs{}{}",
        n - 1,
        inputs.label(),
        if tls.is_some() { ", HTTPS/WSS" } else { "" },
        if h264 { format!(", {h264_participants} on H.264") } else { String::new() }
    );
    let (server, bots, obs) = loaded_room_with(o, "capacity", n, "observer", inputs, tls, h264).await?;
    match extra {
        Extra::Recording => {
            let status = server.http("POST", "/api/rooms/capacity/recordings").await?;
            if status != 201 {
                bail!("the recording did not start: HTTP {status}");
            }
        }
        Extra::Rtmp(port) => server.stream("capacity", &format!("{{\"url\":\"rtmp://127.0.0.1:{port}/live/bench\"}}")).await?,
        Extra::Hls => server.stream("capacity", "{\"hls\":\"bench\"}").await?,
        _ => {}
    }
    let sharer = match (extra, bots.first()) {
        (Extra::Share(pattern, w, h), Some(b)) => {
            let s = b.share(pattern, w, h).await?;
            if !obs.wait_until(Duration::from_secs(10), |b| b.layout().is_some_and(|(_, t)| t.iter().any(|t| t.share_of.is_some()))).await {
                bail!("the share never reached the layout: {:?}", s.errors());
            }
            Some(s)
        }
        _ => None,
    };
    tokio::time::sleep(warm).await;
    let pid = server.pid().to_string();
    obs.reset_max_gap();
    let (mut server_cpu, mut load_cpu, mut fps, mut rtp_fps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (first, started) = (obs.stats(), Instant::now());
    let threads0 = Proc(Some(server.pid())).thread_cpu_seconds()?;
    for _ in 0..WINDOWS {
        let (s0, l0, t0) = (cpu_seconds(&pid), cpu_seconds("self"), Instant::now());
        let (f0, r0) = (obs.stats().frames, obs.stats().rtp_frames);
        tokio::time::sleep(window / WINDOWS as u32).await;
        let secs = t0.elapsed().as_secs_f64();
        let (s1, l1) = (cpu_seconds(&pid), cpu_seconds("self"));
        let (f1, r1) = (obs.stats().frames, obs.stats().rtp_frames);
        rtp_fps.push((r1 - r0) as f64 / secs);
        server_cpu.push((s1 - s0) / secs * 100.0);
        load_cpu.push((l1 - l0) / secs * 100.0 / cpus);
        fps.push((f1 - f0) as f64 / secs);
    }
    let core = median(server_cpu);
    let thread_cpu = thread_kinds(&threads0, &Proc(Some(server.pid())).thread_cpu_seconds()?, started.elapsed().as_secs_f64());
    let threads = Proc(Some(server.pid())).threads()?;
    let last = obs.stats();
    let expected = (started.elapsed().as_secs_f64() * 30.0).round() as u64;
    let row = CapacityRow {
        inputs: inputs.label().into(),
        participants: n,
        server_cpu_pct_of_core: core,
        server_cpu_pct_of_machine: core / cpus,
        load_cpu_pct_of_machine: median(load_cpu),
        rss_mib: Proc(Some(server.pid())).rss_mib()?,
        threads,
        fds: Proc(Some(server.pid())).fds()?,
        threads_per_participant: threads.saturating_sub(server.idle_threads) as f64 / n as f64,
        thread_cpu,
        observer_fps: median(fps),
        observer_rtp_fps: median(rtp_fps),
        observer_max_gap_ms: last.max_frame_gap_ms,
        observer_dropped_frames: expected.saturating_sub(last.frames - first.frames),
        observer_lost_packets: last.video_lost - first.video_lost,
        h264_participants,
        sharing: sharer.is_some(),
        output: extra.output().to_string(),
    };
    eprintln!(
        "  server {:.1} % of machine, load {:.1} %, observer {:.1} fps sent / {:.1} decoded, RSS {:.0} MiB",
        row.server_cpu_pct_of_machine, row.load_cpu_pct_of_machine, row.observer_rtp_fps, row.observer_fps, row.rss_mib
    );
    if let Some(s) = sharer {
        s.disconnect().await;
    }
    disconnect_all(obs, bots).await;
    drop(server);
    Ok(row)
}

/// Scenario `outputs`: a room of `n` with nothing, a recording, an RTMP
/// stream (to nginx-rtmp on loopback) and an HLS stream, `rounds` times
/// interleaved: what each costs the server (a recording: a muxer and a
/// file; a stream: the top rung's H.264 encoder unless someone receives
/// H.264 already, an Opus decode, an AAC encode, a muxer).
async fn outputs_cost(o: &BenchOptions, n: usize, rounds: usize, warm: Duration, window: Duration) -> Result<Vec<CapacityRow>> {
    let cpus = cpus() as f64;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _rtmp = super::nginx::NginxRtmp::start(port)?;
    let mut rows = Vec::new();
    for _ in 0..rounds {
        for extra in [Extra::Nothing, Extra::Recording, Extra::Rtmp(port), Extra::Hls] {
            rows.push(capacity_row_with(o, Inputs::Tile, n, cpus, warm, window, None, false, extra).await?);
        }
    }
    Ok(rows)
}

/// Scenario `hls-viewers`: a room of `n` streamed as HLS, and `counts`
/// plain HTTP players on it in turn (fetch loops in this process): the
/// server's CPU and whether every player got every new segment.
async fn hls_viewers(o: &BenchOptions, n: usize, counts: &[usize], window: Duration) -> Result<Vec<HlsViewerRow>> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let cpus = cpus() as f64;
    let (server, bots, obs) = loaded_room_with(o, "hls", n, "observer", Inputs::Tile, None, false).await?;
    server.stream("hls", "{\"hls\":\"bench\"}").await?;
    let pid = server.pid().to_string();
    let mut rows = Vec::new();
    for &count in counts {
        eprintln!("bench hls-viewers: {count} players on a room of {n}");
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut players = Vec::new();
        for _ in 0..count {
            let (addr, stop, bytes) = (server.addr.clone(), stop.clone(), bytes.clone());
            players.push(tokio::spawn(async move {
                // Segment names fetched (or present at the start), and the
                // numbers of the new ones fetched.
                let mut seen = std::collections::HashSet::new();
                let (mut first, mut fetched) = (true, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((200, list)) = http_request(&addr, "GET", "/hls/bench/index.m3u8", "").await {
                        let names: Vec<String> = String::from_utf8_lossy(&list).lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(|l| l.trim().to_string()).collect();
                        for name in names {
                            if seen.insert(name.clone()) && !first {
                                if let Ok((200, body)) = http_request(&addr, "GET", &format!("/hls/bench/{name}"), "").await {
                                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                                    fetched.extend(segment_number(&name));
                                }
                            }
                        }
                        first = false;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                fetched
            }));
        }
        // Every player has seen the playlist once before the window.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let segments_before = hls_segments(&server.addr).await?;
        let (s0, l0, b0, t0) = (cpu_seconds(&pid), cpu_seconds("self"), bytes.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let (s1, l1, b1) = (cpu_seconds(&pid), cpu_seconds("self"), bytes.load(Ordering::Relaxed));
        let segments_after = hls_segments(&server.addr).await?;
        // A segment listed at the end may be fetched a moment later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        // Per player: how many of the segments that appeared in the window it fetched.
        let mut fetched = Vec::new();
        for p in players {
            let got = p.await.unwrap_or_default();
            fetched.push(got.iter().filter(|i| (segments_before..segments_after).contains(*i)).count() as u64);
        }
        let row = HlsViewerRow {
            participants: n,
            viewers: count,
            server_cpu_pct_of_core: (s1 - s0) / secs * 100.0,
            load_cpu_pct_of_machine: (l1 - l0) / secs * 100.0 / cpus,
            segments_expected: segments_after.saturating_sub(segments_before),
            min_segments_fetched: fetched.iter().copied().min().unwrap_or(0),
            served_mbps: (b1 - b0) as f64 * 8.0 / secs / 1e6,
        };
        eprintln!("  server {:.1} % of a core, {} new segments, every player fetched ≥ {}, {:.1} Mbit/s", row.server_cpu_pct_of_core, row.segments_expected, row.min_segments_fetched, row.served_mbps);
        rows.push(row);
    }
    disconnect_all(obs, bots).await;
    drop(server);
    Ok(rows)
}

/// The number hlssink2 gave a segment (`segment00042.ts`: 42).
fn segment_number(name: &str) -> Option<u64> {
    name.trim_start_matches("segment").trim_end_matches(".ts").parse().ok()
}

/// The number the next segment of the HLS playlist will have (hlssink2
/// numbers from 0, as the media sequence does).
async fn hls_segments(addr: &str) -> Result<u64> {
    let (_, list) = http_request(addr, "GET", "/hls/bench/index.m3u8", "").await?;
    let text = String::from_utf8_lossy(&list);
    let first: u64 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    Ok(first + text.matches("#EXTINF").count() as u64)
}

/// Scenario `share`: a room of `n` without and with a shared screen,
/// `rounds` times interleaved: what a share costs the server (its decoder,
/// its tile in the compositor, the presentation layout).
async fn share_cost(o: &BenchOptions, n: usize, rounds: usize, warm: Duration, window: Duration) -> Result<Vec<CapacityRow>> {
    let cpus = cpus() as f64;
    let mut rows = Vec::new();
    for _ in 0..rounds {
        let (pattern, w, h) = SHARED_SCREEN;
        for extra in [Extra::Nothing, Extra::Share(pattern, w, h)] {
            rows.push(capacity_row_with(o, Inputs::Tile, n, cpus, warm, window, None, false, extra).await?);
        }
    }
    Ok(rows)
}

/// A certificate and key written for the server under test, trusted by the bots.
struct TlsFiles {
    dir: PathBuf,
    cert_pem: String,
}

impl TlsFiles {
    fn new() -> Result<TlsFiles> {
        let id = crate::certs::Identity::generate(&["localhost".into(), "127.0.0.1".into()])?;
        let dir = std::env::temp_dir().join(format!("tessera-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cert.pem"), &id.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &id.key_pem)?;
        Ok(TlsFiles { dir, cert_pem: id.cert_pem })
    }

    fn flags(&self) -> Vec<String> {
        vec!["--tls-cert".into(), self.dir.join("cert.pem").display().to_string(), "--tls-key".into(), self.dir.join("key.pem").display().to_string()]
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One row of the HTTPS/WSS cost comparison.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TlsRow {
    pub tls: bool,
    pub round: usize,
    pub participants: usize,
    pub server_cpu_pct_of_machine: f64,
    pub observer_fps: f64,
}

/// The same room served over plain HTTP/WS and over HTTPS/WSS, alternating
/// (plain, TLS, plain, TLS), so both see the same machine state.
async fn tls_cost(o: &BenchOptions, n: usize, rounds: usize, warm: Duration, window: Duration) -> Result<Vec<TlsRow>> {
    let cpus = cpus() as f64;
    let files = TlsFiles::new()?;
    let mut rows = Vec::new();
    for round in 0..rounds {
        for tls in [false, true] {
            let r = capacity_row_with(o, Inputs::Tile, n, cpus, warm, window, tls.then_some(&files), false, Extra::Nothing).await?;
            rows.push(TlsRow { tls, round, participants: n, server_cpu_pct_of_machine: r.server_cpu_pct_of_machine, observer_fps: r.observer_fps });
        }
    }
    Ok(rows)
}

/// Nearest-rank percentile of sorted samples, 0 when there are none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    crate::tools::plot::percentile(sorted, p).unwrap_or(0)
}

async fn join_time(o: &BenchOptions, residents: usize, joins: usize) -> Result<JoinResult> {
    eprintln!("bench join: {joins} joins into a room of {residents}");
    let (server, bots, resident) = loaded_room(o, "join", residents, "resident", Inputs::Tile).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    resident.reset_max_gap();
    let mut times = Vec::new();
    for i in 0..joins {
        let b = Bot::connect(observer(&server.url, "join", &format!("joiner{i}"))).await?;
        if !wait_frames(&b, Duration::from_secs(10)).await {
            bail!("joiner {i} received no video");
        }
        if let Some(d) = b.join_to_first_frame() {
            times.push(d.as_millis() as u64);
        }
        b.leave().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gap = resident.stats().max_frame_gap_ms;
    disconnect_all(resident, bots).await;
    drop(server);
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let r = JoinResult { residents, joins, p50_ms: percentile(&sorted, 0.5), p95_ms: percentile(&sorted, 0.95), join_to_first_frame_ms: times, resident_max_gap_ms: gap };
    eprintln!("  join to first frame p50 {} ms, p95 {} ms; resident's longest gap {} ms", r.p50_ms, r.p95_ms, r.resident_max_gap_ms);
    Ok(r)
}

/// A room of two for the loopback timing scenarios: a sender bot with a
/// solid colour and an observer (grey) watching the centre of the
/// sender's tile in every decoded frame; `tune` adjusts both bots' options.
async fn sender_and_observer(o: &BenchOptions, room: &str, tune: impl Fn(BotOptions) -> BotOptions) -> Result<(ServerProc, Bot, Bot)> {
    let server = ServerProc::start(&o.server_bin, &o.canvas)?;
    let sender = Bot::connect(tune(observer(&server.url, room, "sender"))).await?;
    let obs = Bot::connect(tune(BotOptions { color: Some(0x808080), ..observer(&server.url, room, "observer") })).await?;
    for b in [&sender, &obs] {
        if !wait_frames(b, Duration::from_secs(20)).await {
            bail!("no video in the {room} room");
        }
    }
    let sid = sender.id().context("sender id")?;
    if !obs.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.iter().any(|t| t.id == sid)).unwrap_or(false)).await {
        bail!("observer has no tile for the sender");
    }
    let (_, tiles) = obs.layout().context("layout")?;
    let t = tiles.iter().find(|t| t.id == sid).context("sender tile")?;
    obs.set_probe(t.x + t.width / 2, t.y + t.height / 2);
    Ok((server, sender, obs))
}

/// Lip sync over loopback: a sender bot flips its colour and switches a
/// tone on at the same moment, `events` times; an observer bot notes when
/// the new colour (centre of the sender's tile) and the tone (the level of
/// its decoded audio) arrive. The offset is audio arrival − video arrival,
/// less what the sender itself put between the two captures (PTS of the
/// changed frame and of the first loud audio buffer at its encoders), so
/// only the server's paths (and the observer's jitterbuffers and
/// decoders, alike for both) remain.
async fn avsync(o: &BenchOptions, events: usize) -> Result<AvSyncResult> {
    eprintln!("bench avsync: {events} colour flips with a tone burst");
    // Both silent but for the sender's bursts.
    let (_server, sender, obs) = sender_and_observer(o, "avsync", |b| BotOptions { volume: 0.0, ..b }).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let colors = [0xff0000u32, 0x0000ff];
    let mut flips = Vec::new();
    for i in 0..events {
        let c = colors[i % 2];
        let at = Instant::now();
        sender.set_color(c);
        sender.set_volume(0.5, true);
        flips.push((at, c));
        tokio::time::sleep(Duration::from_millis(250)).await;
        sender.set_volume(0.0, false);
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (log, levels) = (obs.probe_log(), obs.audio_levels());
    let (video_pts, audio_pts) = sender.sent_av();
    sender.disconnect().await;
    obs.disconnect().await;
    let near = |p: [u8; 3], c: u32| {
        let w = [(c >> 16) as u8, (c >> 8) as u8, c as u8];
        (0..3).all(|i| (p[i] as i32 - w[i] as i32).abs() <= 60)
    };
    let mut samples = Vec::new();
    for (i, (at, c)) in flips.iter().enumerate() {
        let until = *at + Duration::from_millis(600);
        let seen_video = log.iter().find(|s| s.decoded >= *at && s.decoded < until && near(s.rgb, *c)).map(|s| s.decoded);
        let heard = levels.iter().find(|(t, rms)| *t >= *at && *t < until && *rms > crate::tools::bot_media::TONE_ON_RMS).map(|(t, _)| *t);
        let (Some(v), Some(a), Some(vp), Some(ap)) = (seen_video, heard, video_pts.get(i), audio_pts.get(i)) else { continue };
        let arrived_ms = if a >= v { a.duration_since(v).as_secs_f64() * 1e3 } else { -(v.duration_since(a).as_secs_f64() * 1e3) };
        let captured_ms = (*ap as f64 - *vp as f64) / 1e6;
        samples.push(arrived_ms - captured_ms);
    }
    if video_pts.len() != flips.len() || audio_pts.len() != flips.len() {
        eprintln!("  note: the sender saw {} colour changes and {} tone onsets of {} events; matched by order", video_pts.len(), audio_pts.len(), flips.len());
    }
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| if sorted.is_empty() { 0.0 } else { sorted[((sorted.len() - 1) as f64 * q).round() as usize] };
    let r = AvSyncResult { events, detected: samples.len(), p5_ms: pick(0.05), p50_ms: pick(0.5), p95_ms: pick(0.95), samples_ms: samples };
    eprintln!("  audio − video at the receiver: p50 {:+.1} ms, p5 {:+.1} ms, p95 {:+.1} ms ({} of {} events)", r.p50_ms, r.p5_ms, r.p95_ms, r.detected, r.events);
    if r.detected * 2 < events {
        bail!("only {} of {events} lip-sync events were seen in both audio and video", r.detected);
    }
    Ok(r)
}

/// Keyframes each rung forced so far, and packets resent to receivers.
fn forced_and_resent(stats: &serde_json::Value) -> (Vec<u64>, u64) {
    let rungs = stats["media"]["rungs"].as_array().map(|r| r.iter().map(|r| r["keyframes_forced"].as_u64().unwrap_or(0)).collect()).unwrap_or_default();
    let resent = stats["media"]["receivers"].as_array().map(|r| r.iter().map(|r| r["rtx_packets"].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
    (rungs, resent)
}

/// A receiver behind a lossy link: the bot's host sits behind a router
/// namespace that drops 0, 3 and 10 % of the packets towards it at random
/// (nftables), `window` each, first asking for lost packets again (NACK,
/// RTX: the server's default and every browser's) and then not (each lost
/// frame waits for a keyframe). The receiving bot's jitterbuffer holds
/// 150 ms, as a browser's waits for retransmissions, and its depayloader
/// freezes the picture until a keyframe after a frame lost for good.
/// Needs root, iproute2 and nftables (`scripts/deps.sh --browser`).
async fn loss(o: &BenchOptions, window: Duration) -> Result<Vec<LossRow>> {
    use crate::tools::netns::{Netns, NsBot, BUSY_PATTERN};
    eprintln!("bench loss: a receiver behind 0, 3, 10 % random loss, with and without NACK, {} s each", window.as_secs());
    let ns = Netns::create().map_err(|e| anyhow::anyhow!("the loss scenario needs network namespaces (root, iproute2): {e}"))?;
    ns.loss(0, true).map_err(|e| anyhow::anyhow!("the loss scenario needs nftables (scripts/deps.sh --browser installs it): {e}"))?;
    let server = ServerProc::start_on(&o.server_bin, &o.canvas, &ns.host_ip, &[])?;
    let room = "loss";
    let sender = Bot::connect(BotOptions {
        decode: false,
        ice_addresses: vec![ns.host_ip.clone()],
        color: None,
        pattern: BUSY_PATTERN.into(),
        width: 320,
        height: 240,
        ..observer(&server.url, room, "sender")
    })
    .await?;
    if !wait_frames(&sender, Duration::from_secs(20)).await {
        bail!("no video in the loss room");
    }
    let me = std::env::current_exe().context("this binary")?;
    let stats = || async { http_request(&server.addr, "GET", &format!("/api/rooms/{room}/stats"), "").await.ok().and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok()).unwrap_or_default() };
    let mut rows = Vec::new();
    for nack in [true, false] {
        let mut flags = vec!["--jitterbuffer-ms", "150"];
        if !nack {
            flags.push("--no-nack");
        }
        let weak = NsBot::start(&me, &ns, &server.url, room, &flags).map_err(|e| anyhow::anyhow!(e))?;
        let n = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Settled: about 5 s of video (RTT known, start-up keyframes done).
        while n(&weak.report(), "frames") < 150.0 {
            if Instant::now() > deadline {
                bail!("the namespaced bot decoded no video: {}", weak.report());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for percent in [0u32, 3, 10] {
            ns.loss(percent, true).map_err(|e| anyhow::anyhow!(e))?;
            let (a, (k0, r0)) = (weak.report(), forced_and_resent(&stats().await));
            tokio::time::sleep(window).await;
            let (b, (k1, r1)) = (weak.report(), forced_and_resent(&stats().await));
            let from = n(&a, "at_ms") as u64;
            let freezes: Vec<u64> = b["freezes"].as_array().map(|f| f.iter().filter(|x| x[0].as_u64().unwrap_or(0) > from).filter_map(|x| x[1].as_u64()).collect()).unwrap_or_default();
            let secs = ((n(&b, "at_ms") - n(&a, "at_ms")) / 1000.0).max(0.001);
            let (packets, bytes) = (n(&b, "video_packets") - n(&a, "video_packets"), n(&b, "video_bytes") - n(&a, "video_bytes"));
            let lost = n(&b, "video_lost") - n(&a, "video_lost");
            let resent = r1.saturating_sub(r0);
            let row = LossRow {
                path: downlink(),
                loss_pct: percent,
                nack,
                secs,
                fps: (n(&b, "frames") - n(&a, "frames")) / secs,
                longest_freeze_ms: freezes.iter().copied().max().unwrap_or(0),
                freezes: freezes.len(),
                keyframes: k1.iter().zip(&k0).map(|(b, a)| b.saturating_sub(*a)).max().unwrap_or(0),
                resent_packets: resent,
                resent_kbps: resent as f64 * (bytes / packets.max(1.0)) * 8.0 / 1000.0 / secs,
                missing_pct: lost / (packets + lost).max(1.0) * 100.0,
                asked: (n(&b, "rtx_requested") - n(&a, "rtx_requested")) as u64,
                recovered: (n(&b, "rtx_recovered") - n(&a, "rtx_recovered")) as u64,
                given_up: Some((n(&b, "jitterbuffer_lost") - n(&a, "jitterbuffer_lost")) as u64),
            };
            eprintln!(
                "  {percent:>2} % loss, NACK {}: {:.1} fps, longest freeze {} ms ({} over 150 ms), {} keyframes, resent {} packets ({:.0} kbps), {:.2} % missing",
                if nack { "on " } else { "off" },
                row.fps,
                row.longest_freeze_ms,
                row.freezes,
                row.keyframes,
                row.resent_packets,
                row.resent_kbps,
                row.missing_pct
            );
            rows.push(row);
        }
        ns.loss(0, true).map_err(|e| anyhow::anyhow!(e))?;
        if nack {
            // The same bot as a sender: loss on its uplink, its picture as
            // the server decodes it (the server always asks again).
            rows.extend(uplink(&ns, &weak, &stats, window).await?);
        }
        drop(weak);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sender.disconnect().await;
    Ok(rows)
}

/// Packets given up, or "unknown" where the transport does not count them.
fn given_up(n: Option<u64>) -> String {
    n.map_or("unknown".into(), |n| n.to_string())
}

/// Loss on the namespaced bot's uplink at 3 and 10 %: its input as the
/// server decodes it (room stats `media.inputs`).
async fn uplink<F, Fut>(ns: &crate::tools::netns::Netns, bot: &crate::tools::netns::NsBot, stats: &F, window: Duration) -> Result<Vec<LossRow>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    let id = bot.report()["id"].as_str().map(str::to_string).context("the namespaced bot has no id")?;
    let input = |s: &serde_json::Value| s["media"]["inputs"]["list"].as_array().and_then(|l| l.iter().find(|i| i["id"] == id.as_str()).cloned()).unwrap_or_default();
    let mut rows = Vec::new();
    for percent in [0u32, 3, 10] {
        ns.loss(percent, false).map_err(|e| anyhow::anyhow!(e))?;
        let a = stats().await;
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let b = stats().await;
        let secs = started.elapsed().as_secs_f64();
        let (ia, ib) = (input(&a), input(&b));
        let from = a["media"]["inputs"]["at_ms"].as_u64().unwrap_or(0);
        let freezes: Vec<u64> = ib["freezes"].as_array().map(|f| f.iter().filter(|x| x[0].as_u64().unwrap_or(0) > from).filter_map(|x| x[1].as_u64()).collect()).unwrap_or_default();
        let d = |k: &str| ib[k].as_u64().unwrap_or(0).saturating_sub(ia[k].as_u64().unwrap_or(0));
        let row = LossRow {
            path: "uplink".into(),
            loss_pct: percent,
            nack: true,
            secs,
            fps: d("frames") as f64 / secs,
            longest_freeze_ms: freezes.iter().copied().max().unwrap_or(0),
            freezes: freezes.len(),
            keyframes: 0,
            resent_packets: d("recovered"),
            resent_kbps: 0.0,
            missing_pct: 0.0,
            asked: d("nack_requests"),
            recovered: d("recovered"),
            // Null in the stats where the transport does not count it.
            given_up: ib["lost"].as_u64().map(|b| b.saturating_sub(ia["lost"].as_u64().unwrap_or(0))),
        };
        eprintln!(
            "  {percent:>2} % loss from the sender: the server decoded {:.1} fps, longest freeze {} ms ({} over 150 ms), asked {} again, recovered {}, gave up {}",
            row.fps,
            row.longest_freeze_ms,
            row.freezes,
            row.asked,
            row.recovered,
            given_up(row.given_up)
        );
        rows.push(row);
    }
    ns.loss(0, false).map_err(|e| anyhow::anyhow!(e))?;
    Ok(rows)
}

/// Glass to glass over loopback: a sender bot flips its solid colour at a
/// known instant; an observer bot (same process, same clock) watches the
/// centre of the sender's tile in every decoded frame. Includes the
/// sender's encoder, the server (jitterbuffer, compositor, shared encoder)
/// and the observer's decoder.
async fn glass_to_glass(o: &BenchOptions, changes: usize) -> Result<LatencyResult> {
    eprintln!("bench glass-to-glass: {changes} colour changes");
    let (_server, sender, obs) = sender_and_observer(o, "latency", |b| b).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let colors = [0xff0000u32, 0x0000ff];
    let mut flips = Vec::new();
    for i in 0..changes {
        let c = colors[i % 2];
        let at = Instant::now();
        sender.set_color(c);
        flips.push((at, c));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = obs.probe_log();
    let sent = sender.sent_changes();
    let near = |p: [u8; 3], c: u32| {
        let w = [(c >> 16) as u8, (c >> 8) as u8, c as u8];
        (0..3).all(|i| (p[i] as i32 - w[i] as i32).abs() <= 60)
    };
    let mut samples = Vec::new();
    let mut server_us = Vec::new();
    for (i, (at, c)) in flips.iter().enumerate() {
        let Some(seen) = log.iter().find(|s| s.decoded >= *at && near(s.rgb, *c)) else { continue };
        samples.push(seen.decoded.duration_since(*at).as_millis() as u64);
        // Server-added: the changed frame's last RTP packet leaving the
        // sender → the last RTP packet of the first composed frame showing
        // it reaching the observer (loopback: the network adds ~0).
        if let (Some(out), Some(arrived)) = (sent.get(i), seen.arrived) {
            if arrived >= *out && arrived < *at + Duration::from_millis(400) {
                server_us.push(arrived.duration_since(*out).as_micros() as u64);
            }
        }
    }
    sender.disconnect().await;
    obs.disconnect().await;
    if sent.len() != flips.len() {
        eprintln!("  note: the sender saw {} of {} colour changes leave; server-added samples are matched by order", sent.len(), flips.len());
    }
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let mut server_sorted = server_us.clone();
    server_sorted.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let r = LatencyResult {
        changes,
        detected: samples.len(),
        p50_ms: percentile(&sorted, 0.5),
        p95_ms: percentile(&sorted, 0.95),
        samples_ms: samples,
        server_detected: server_us.len(),
        server_p50_ms: ms(percentile(&server_sorted, 0.5)),
        server_p95_ms: ms(percentile(&server_sorted, 0.95)),
        server_samples_ms: server_us.iter().map(|&u| ms(u)).collect(),
    };
    eprintln!("  glass to glass p50 {} ms, p95 {} ms ({} of {} changes seen)", r.p50_ms, r.p95_ms, r.detected, r.changes);
    eprintln!("  server-added p50 {:.1} ms, p95 {:.1} ms ({} changes traced)", r.server_p50_ms, r.server_p95_ms, r.server_detected);
    Ok(r)
}

/// Per-receiver downlink on each rung of each codec: two senders with a
/// busy picture, one count-only receiver per rung and codec. A rung's CPU
/// is its encoding thread's (`q-<codec>-<rung>:src`: scaling, rate,
/// encoder and handing frames to its receivers).
async fn ladder(o: &BenchOptions, window: Duration) -> Result<Vec<RungDownlink>> {
    eprintln!("bench ladder: downlink per rung and codec");
    let server = ServerProc::start(&o.server_bin, &o.canvas)?;
    let busy = |name: &str| BotOptions {
        color: None,
        pattern: BUSY.into(),
        ..observer(&server.url, "ladder", name)
    };
    let senders = vec![Bot::connect(busy("sender0")).await?, Bot::connect(BotOptions { tone_hz: 660.0, ..busy("sender1") }).await?];
    let rungs: Vec<String> = crate::media::MediaConfig::default().rungs().iter().map(|r| r.name.clone()).collect();
    let mut receivers = Vec::new();
    for codec in Codec::ALL {
        for rung in &rungs {
            let name = format!("{}-{rung}", codec.name());
            let b = Bot::connect(BotOptions { viewer: true, decode: false, codec, quality: Some(rung.clone()), ..observer(&server.url, "ladder", &name) }).await?;
            receivers.push((codec, rung.clone(), b));
        }
    }
    for (codec, rung, b) in &receivers {
        if !wait_frames(b, Duration::from_secs(20)).await {
            bail!("the {} {rung} receiver got no video", codec.name());
        }
        if let Some(q) = b.qualities().last().filter(|q| q.codec != *codec) {
            bail!("the {} {rung} receiver was sent {}", codec.name(), q.codec.name());
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: Vec<_> = receivers.iter().map(|(_, _, b)| b.stats()).collect();
    let proc = Proc(Some(server.pid()));
    let (c0, threads0, t0) = (proc.cpu_seconds()?, proc.thread_cpu_seconds()?, Instant::now());
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let (c1, threads1) = (proc.cpu_seconds()?, proc.thread_cpu_seconds()?);
    eprintln!("  server {:.1} % of the machine with every rung of both codecs in use", (c1 - c0) / secs * 100.0 / cpus() as f64);
    let mut rows = Vec::new();
    for ((codec, rung, b), s0) in receivers.iter().zip(before) {
        let s1 = b.stats();
        // /proc keeps 15 bytes of a thread's name.
        let thread: String = format!("q-{}-{rung}:src", codec.name()).chars().take(15).collect();
        let busy = |t: &std::collections::BTreeMap<String, f64>| t.get(&thread).copied();
        let row = RungDownlink {
            codec: codec.name().to_string(),
            rung: rung.to_string(),
            width: s1.width,
            height: s1.height,
            fps: (s1.frames - s0.frames) as f64 / secs,
            video_kbps: (s1.video_bytes - s0.video_bytes) as f64 * 8.0 / 1000.0 / secs,
            total_kbps: (s1.bytes - s0.bytes) as f64 * 8.0 / 1000.0 / secs,
            cpu_pct_of_core: busy(&threads1).zip(busy(&threads0)).map(|(a, b)| (a - b) / secs * 100.0),
        };
        eprintln!(
            "  {} {}: {}x{} at {:.1} fps, video {:.0} kbps, video + audio {:.0} kbps, encoding thread {}",
            row.codec,
            row.rung,
            row.width,
            row.height,
            row.fps,
            row.video_kbps,
            row.total_kbps,
            row.cpu_pct_of_core.map(|c| format!("{c:.1} % of a core")).unwrap_or_else(|| format!("`{thread}` not found"))
        );
        rows.push(row);
    }
    for (_, _, b) in receivers {
        b.disconnect().await;
    }
    for b in senders {
        b.disconnect().await;
    }
    Ok(rows)
}

/// Scenario `mixed-codecs`: a room of `n` all on VP8, then the same room
/// with every other load bot sending and receiving H.264, `rounds` times
/// interleaved: what serving both codecs costs.
async fn mixed_codecs(o: &BenchOptions, sizes: &[usize], rounds: usize, warm: Duration, window: Duration) -> Result<Vec<CapacityRow>> {
    let cpus = cpus() as f64;
    let mut rows = Vec::new();
    for &n in sizes {
        for _ in 0..rounds {
            for h264 in [false, true] {
                rows.push(capacity_row_with(o, Inputs::Tile, n, cpus, warm, window, None, h264, Extra::Nothing).await?);
            }
        }
    }
    Ok(rows)
}

/// Server CPU added by receive-only viewers (count-only bots, on the
/// highest rung) on a room of 4 participants.
async fn viewers(o: &BenchOptions, counts: &[usize], warm: Duration, window: Duration) -> Result<Vec<ViewerRow>> {
    let cpus = cpus() as f64;
    let mut rows = Vec::new();
    for &n in counts {
        eprintln!("bench viewers: {n} viewers on a room of 4");
        let (server, bots, obs) = loaded_room(o, "viewers", 4, "observer", Inputs::Tile).await?;
        let mut vs = Vec::new();
        for i in 0..n {
            vs.push(Bot::connect(BotOptions { viewer: true, decode: false, ..observer(&server.url, "viewers", &format!("viewer{i}")) }).await?);
        }
        for v in &vs {
            if !wait_frames(v, Duration::from_secs(20)).await {
                bail!("a viewer got no video");
            }
        }
        tokio::time::sleep(warm).await;
        let pid = server.pid().to_string();
        let f0: Vec<u64> = vs.iter().map(|v| v.stats().frames).collect();
        let (s0, l0, t0) = (cpu_seconds(&pid), cpu_seconds("self"), Instant::now());
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let (s1, l1) = (cpu_seconds(&pid), cpu_seconds("self"));
        let min_fps = vs.iter().zip(f0).map(|(v, f)| (v.stats().frames - f) as f64 / secs).fold(f64::INFINITY, f64::min);
        let row = ViewerRow {
            viewers: n,
            server_cpu_pct_of_machine: (s1 - s0) / secs * 100.0 / cpus,
            load_cpu_pct_of_machine: (l1 - l0) / secs * 100.0 / cpus,
            min_viewer_fps: if n == 0 { 0.0 } else { min_fps },
        };
        eprintln!("  server {:.1} % of machine, load {:.1} %, slowest viewer {:.1} fps", row.server_cpu_pct_of_machine, row.load_cpu_pct_of_machine, row.min_viewer_fps);
        rows.push(row);
        for v in vs {
            v.disconnect().await;
        }
        disconnect_all(obs, bots).await;
        drop(server);
    }
    Ok(rows)
}

const COLORS: [u32; 6] = [0xff0000, 0x00ff00, 0x0000ff, 0xffff00, 0x00ffff, 0xff00ff];
/// A picture busy enough that every encoder reaches its bitrate, like a
/// camera: the bandwidth comparison uses it on both sides.
const BUSY: &str = "zone-plate kx2=20 ky2=20 kt=1";

/// A mesh client's media: what a load bot sends (640x360 VP8 clip, Opus),
/// once per peer, nothing decoded.
fn mesh_client(i: usize) -> BotOptions {
    BotOptions {
        color: None,
        pattern: BUSY.into(),
        tone_hz: 300.0 + 40.0 * i as f64,
        volume: 0.05,
        load: true,
        width: 640,
        height: 360,
        decode: false,
        fixed_size: true,
        ..BotOptions::default()
    }
}

/// One peer connection of the mesh: client `i` calls client `j` directly
/// (offer, answer and ICE candidates exchanged in this process). Media
/// flows both ways on it.
struct MeshLink {
    ends: [(usize, Arc<BotMedia>); 2],
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

async fn mesh_link(i: usize, j: usize) -> Result<MeshLink> {
    use tokio::sync::mpsc;
    let (ta, mut ra) = mpsc::channel(256);
    let (tb, mut rb) = mpsc::channel(256);
    let (ca, cb) = (mesh_client(i), mesh_client(j));
    let a = Arc::new(tokio::task::spawn_blocking(move || BotMedia::new(&ca, ta)).await??);
    let b = Arc::new(tokio::task::spawn_blocking(move || BotMedia::new(&cb, tb)).await??);
    // Each side's description, and the candidates it found before it.
    async fn described(rx: &mut mpsc::Receiver<PeerEvent>, what: &str) -> Result<(String, Vec<(u32, String)>)> {
        let mut early = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(PeerEvent::LocalDescription(s))) => return Ok((s, early)),
                Ok(Some(PeerEvent::Ice { mline, candidate })) => early.push((mline, candidate)),
                Ok(Some(PeerEvent::Failed(e))) => bail!("{what}: {e}"),
                Ok(Some(_)) => {}
                _ => bail!("{what}: nothing in 10 s"),
            }
        }
    }
    a.create_offer();
    let (offer, early_a) = described(&mut ra, &format!("mesh link {i}-{j} offer")).await?;
    b.handle_offer(&offer)?;
    let (answer, early_b) = described(&mut rb, &format!("mesh link {i}-{j} answer")).await?;
    a.apply_answer(&answer);
    for (m, c) in early_a {
        b.add_ice(m, &c);
    }
    for (m, c) in early_b {
        a.add_ice(m, &c);
    }
    let forward = |mut rx: mpsc::Receiver<PeerEvent>, to: Arc<BotMedia>| {
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let PeerEvent::Ice { mline, candidate } = ev {
                    to.add_ice(mline, &candidate);
                }
            }
        })
    };
    let forwarders = vec![forward(ra, b.clone()), forward(rb, a.clone())];
    Ok(MeshLink { ends: [(i, a), (j, b)], forwarders })
}

/// Scenario 4: per-client uplink and downlink, through tessera (load bots
/// following `send_size`) and in a full peer-to-peer mesh of the same
/// clients, over the same window.
async fn bandwidth(o: &BenchOptions, sizes: &[usize], warm: Duration, window: Duration) -> Result<Vec<BandwidthRow>> {
    let kbps = |bytes: u64, secs: f64| bytes as f64 * 8.0 / 1000.0 / secs;
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("bench bandwidth: {n} clients through tessera");
        // n load bots and nothing else, so every tile is one of theirs.
        let server = ServerProc::start(&o.server_bin, &o.canvas)?;
        let mut bots = Vec::new();
        for i in 0..n {
            bots.push(Bot::connect(BotOptions { color: None, pattern: BUSY.into(), ..load_bot(&server.url, "bandwidth", i, false) }).await?);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !bots.iter().all(|b| b.stats().video_bytes > 0) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(warm).await;
        let before: Vec<(u64, u64)> = bots.iter().map(|b| (b.sent_bytes(), b.stats().bytes)).collect();
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let (mut up, mut down) = (0.0, 0.0);
        for (b, (s0, r0)) in bots.iter().zip(&before) {
            up += kbps(b.sent_bytes() - s0, secs);
            down += kbps(b.stats().bytes - r0, secs);
        }
        let (t_up, t_down) = (up / bots.len().max(1) as f64, down / bots.len().max(1) as f64);
        for b in bots {
            b.disconnect().await;
        }
        drop(server);

        eprintln!("bench bandwidth: {n} clients in a full mesh ({} peer connections)", n * (n - 1) / 2);
        let mut links = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                links.push(mesh_link(i, j).await?);
            }
        }
        let ends = || links.iter().flat_map(|l| l.ends.iter());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !ends().all(|(_, m)| m.stats().bytes > 0) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(warm).await;
        let before: Vec<(u64, u64)> = ends().map(|(_, m)| (m.sent_bytes(), m.stats().bytes)).collect();
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let (mut up, mut down) = (vec![0.0; n], vec![0.0; n]);
        for ((i, m), (s0, r0)) in ends().zip(&before) {
            up[*i] += kbps(m.sent_bytes() - s0, secs);
            down[*i] += kbps(m.stats().bytes - r0, secs);
        }
        let links_up = links.iter().filter(|l| l.ends.iter().all(|(_, m)| m.stats().bytes > 0)).count();
        let row = BandwidthRow {
            participants: n,
            tessera_up_kbps: t_up,
            tessera_down_kbps: t_down,
            mesh_up_kbps: up.iter().sum::<f64>() / n as f64,
            mesh_down_kbps: down.iter().sum::<f64>() / n as f64,
            mesh_links_up: links_up,
            mesh_links: links.len(),
        };
        eprintln!(
            "  per client: tessera up {:.0} / down {:.0} kbps; mesh up {:.0} / down {:.0} kbps ({} of {} links up)",
            row.tessera_up_kbps, row.tessera_down_kbps, row.mesh_up_kbps, row.mesh_down_kbps, row.mesh_links_up, row.mesh_links
        );
        for l in links {
            for f in l.forwarders {
                f.abort();
            }
            for (_, m) in l.ends {
                let _ = tokio::task::spawn_blocking(move || drop(m)).await;
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One encoder on the composed grid (scenario `codecs`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CodecRow {
    /// `vp8 (vp8enc)`, `h264 (x264enc)`, `h264 (openh264enc)`.
    pub encoder: String,
    pub fragment: String,
    /// Median over the rounds of the encoder's CPU: the run's CPU minus the
    /// same grid's without an encoder, % of one core.
    pub cpu_pct_of_core: f64,
    /// Median encoded kbps (the downlink of a receiver on this rung).
    pub kbps: f64,
    pub fps: f64,
}

/// The encoders the `codecs` scenario compares at the top rung's size,
/// frame rate and bitrate: the shipped VP8 and H.264 (openh264enc)
/// fragments, and x264enc, the alternative.
fn codec_candidates(bitrate: u32) -> Vec<(String, String)> {
    vec![
        ("vp8 (vp8enc)".into(), crate::layouts::DEFAULT_VIDEO_ENCODER.replace("target-bitrate=1200000", &format!("target-bitrate={bitrate}"))),
        ("h264 (x264enc)".into(), crate::layouts::X264_ENCODER.replace("bitrate=1200 ", &format!("bitrate={} ", bitrate / 1000))),
        ("h264 (openh264enc)".into(), crate::layouts::DEFAULT_H264_ENCODER.replace("bitrate=1200000", &format!("bitrate={bitrate}"))),
    ]
}

/// Scenario `codecs`: the grid of 4 tile-sized inputs composed at the canvas
/// size, encoded by each candidate in turn (and by none, the baseline),
/// `rounds` times interleaved so the machine's drift hits all alike.
async fn codecs(o: &BenchOptions, rounds: usize, warm: Duration, window: Duration) -> Result<Vec<CodecRow>> {
    let (w, h) = parse_canvas(&o.canvas)?;
    let bitrate = crate::media::MediaConfig::default().rungs().first().map(|r| r.bitrate).unwrap_or(1_200_000);
    let candidates = codec_candidates(bitrate);
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); candidates.len() + 1];
    let mut kbps: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    let mut fps: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for round in 0..rounds {
        for k in 0..=candidates.len() {
            let fragment = if k == 0 { "identity".to_string() } else { candidates[k - 1].1.clone() };
            eprintln!("bench codecs: round {} of {rounds}, {}", round + 1, if k == 0 { "no encoder" } else { &candidates[k - 1].0 });
            let (run, seconds) = tokio::task::spawn_blocking(move || {
                let mut marks = Vec::new();
                let run = crate::tools::rawmix::run(4, w, h, 30, &fragment, crate::tools::rawmix::AudioEncoders::of_a_room(), warm, window, || marks.push(cpu_seconds("self")));
                run.map(|r| (r, marks.get(1).zip(marks.first()).map(|(b, a)| b - a).unwrap_or(0.0)))
            })
            .await??;
            cpu[k].push(seconds / run.seconds * 100.0);
            if k > 0 {
                kbps[k - 1].push(run.bytes as f64 * 8.0 / 1000.0 / run.seconds);
                fps[k - 1].push(run.frames as f64 / run.seconds);
            }
        }
    }
    let base = median(cpu[0].clone());
    let rows: Vec<CodecRow> = candidates
        .into_iter()
        .enumerate()
        .map(|(i, (encoder, fragment))| CodecRow {
            encoder,
            fragment,
            cpu_pct_of_core: (median(cpu[i + 1].clone()) - base).max(0.0),
            kbps: median(kbps[i].clone()),
            fps: median(fps[i].clone()),
        })
        .collect();
    for r in &rows {
        eprintln!("  {}: {:.1} % of a core, {:.0} kbps, {:.1} fps", r.encoder, r.cpu_pct_of_core, r.kbps, r.fps);
    }
    Ok(rows)
}

/// Scenario 5: the room's decode → compose → encode work as one plain
/// GStreamer pipeline (see [`crate::media::rawmix`]), in this process with
/// no bot running, CPU from /proc/self.
async fn raw_pipeline(o: &BenchOptions, sizes: &[usize], warm: Duration, window: Duration, capacity: &[CapacityRow]) -> Result<Vec<RawRow>> {
    let cpus = cpus() as f64;
    let (w, h) = parse_canvas(&o.canvas)?;
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("bench raw: plain decode → compose → encode pipeline, {n} inputs");
        let (run, cpu, thread_cpu) = tokio::task::spawn_blocking(move || {
            let mut marks = Vec::new();
            let run = crate::tools::rawmix::run(n, w, h, 30, crate::layouts::DEFAULT_VIDEO_ENCODER, crate::tools::rawmix::AudioEncoders::of_a_room(), warm, window, || {
                marks.push((cpu_seconds("self"), Proc::myself().thread_cpu_seconds().unwrap_or_default()))
            });
            run.map(|r| match (marks.first(), marks.get(1)) {
                (Some(a), Some(b)) => (r, b.0 - a.0, thread_kinds(&a.1, &b.1, r.seconds)),
                _ => (r, 0.0, Vec::new()),
            })
        })
        .await??;
        let raw = cpu / run.seconds * 100.0 / cpus;
        let tessera = capacity.iter().find(|c| c.inputs == Inputs::Tile.label() && c.participants == n).map(|c| c.server_cpu_pct_of_machine);
        let row = RawRow {
            participants: n,
            raw_cpu_pct_of_machine: raw,
            raw_fps: run.frames as f64 / run.seconds,
            tessera_cpu_pct_of_machine: tessera,
            ratio: tessera.map(|t| t / raw.max(0.01)),
            thread_cpu,
        };
        eprintln!(
            "  raw pipeline {:.1} % of machine at {:.1} fps; tessera {}",
            row.raw_cpu_pct_of_machine,
            row.raw_fps,
            row.ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "not measured in this run".into())
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The report's charts as SVG, each rasterised to a PNG beside it; returns
/// (title, png file name relative to the output folder).
fn write_plots(r: &Report, out: &Path) -> Result<Vec<(String, String)>> {
    use crate::tools::plot::{cdf_chart, line_chart, Series};
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir)?;
    let mut charts: Vec<(String, String, String)> = Vec::new();
    let cap = |inputs: &str, f: &dyn Fn(&CapacityRow) -> f64| -> Vec<(f64, f64)> {
        r.capacity.iter().filter(|c| c.inputs == inputs).map(|c| (c.participants as f64, f(c))).collect()
    };
    let series = |name: &str, color: &str, points: Vec<(f64, f64)>, dashed: bool| Series { name: name.into(), color: color.into(), points, dashed };
    if !r.capacity.is_empty() {
        let cpu = vec![
            series("server, tile-sized inputs", "#1f77b4", cap("tile", &|c| c.server_cpu_pct_of_machine), false),
            series("server, 360p inputs", "#ff7f0e", cap("360p", &|c| c.server_cpu_pct_of_machine), false),
            series("load bots + observer, tile-sized", "#7f7f7f", cap("tile", &|c| c.load_cpu_pct_of_machine), true),
        ];
        let svg = line_chart("Server CPU by room size", "participants", "CPU, % of the machine (2 cores)", &cpu, &[(70.0, "target 70 %".into(), "#d62728".into())], Some(0.0), Some(100.0));
        charts.push(("CPU vs participants".into(), "capacity_cpu".into(), svg));
        let fps = vec![
            series("decoded, tile-sized inputs", "#1f77b4", cap("tile", &|c| c.observer_fps), false),
            series("decoded, 360p inputs", "#ff7f0e", cap("360p", &|c| c.observer_fps), false),
            series("sent by the server, tile-sized", "#1f77b4", cap("tile", &|c| c.observer_rtp_fps), true),
            series("sent by the server, 360p", "#ff7f0e", cap("360p", &|c| c.observer_rtp_fps), true),
        ];
        let svg = line_chart("Mixed video at the observer", "participants", "frames per second", &fps, &[(29.0, "target 29 fps".into(), "#d62728".into())], Some(0.0), Some(35.0));
        charts.push(("Observer frame rate vs participants".into(), "capacity_fps".into(), svg));
    }
    if let Some(l) = &r.glass_to_glass {
        let sets = vec![
            ("glass to glass".to_string(), "#1f77b4".to_string(), l.samples_ms.clone()),
            ("server-added".to_string(), "#2ca02c".to_string(), l.server_samples_ms.iter().map(|v| v.round() as u64).collect()),
        ];
        let svg = cdf_chart(
            "Latency distribution (loopback)",
            "milliseconds",
            &sets,
            &[(150.0, "g2g target".into(), "#d62728".into()), (60.0, "server target".into(), "#9467bd".into())],
        );
        charts.push(("Latency distribution".into(), "latency".into(), svg));
    }
    if !r.bandwidth.is_empty() {
        let pts = |f: &dyn Fn(&BandwidthRow) -> f64| -> Vec<(f64, f64)> { r.bandwidth.iter().map(|b| (b.participants as f64, f(b))).collect() };
        let bw = vec![
            series("mesh uplink", "#d62728", pts(&|b| b.mesh_up_kbps), false),
            series("mesh downlink", "#ff9896", pts(&|b| b.mesh_down_kbps), true),
            series("tessera uplink", "#1f77b4", pts(&|b| b.tessera_up_kbps), false),
            series("tessera downlink", "#aec7e8", pts(&|b| b.tessera_down_kbps), true),
        ];
        let svg = line_chart("Per-client bandwidth: tessera vs full mesh", "participants", "kbps (RTP)", &bw, &[], Some(0.0), None);
        charts.push(("Bandwidth per client, tessera vs mesh".into(), "bandwidth".into(), svg));
    }
    let mut out_list = Vec::new();
    for (title, name, svg) in charts {
        let svg_path = dir.join(format!("{name}.svg"));
        std::fs::write(&svg_path, svg)?;
        crate::media::preview::svg_to_png(&svg_path, &dir.join(format!("{name}.png")))?;
        out_list.push((title, format!("plots/{name}.png")));
    }
    Ok(out_list)
}

fn parse_canvas(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once('x').context("canvas must be WIDTHxHEIGHT")?;
    Ok((w.trim().parse().context("canvas width")?, h.trim().parse().context("canvas height")?))
}

/// The issue's targets beside what this run measured.
fn targets(r: &Report) -> String {
    let mut s = String::from("## Targets\n\n| target | measured in this run |\n|---|---|\n");
    let none = || "not run".to_string();
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    if !r.capacity.is_empty() {
        let l = r.capacity_limit.unwrap_or(0);
        s += &format!(
            "| 16 participants at ≥ 29 fps with the server under 70 % (stretch 25) | largest room: {} with tile-sized inputs, {} with 360p inputs ({}) |\n",
            r.capacity_limit.map(|n| n.to_string()).unwrap_or_else(|| "none".into()),
            r.capacity_limit_360p.map(|n| n.to_string()).unwrap_or_else(|| "none".into()),
            met(l >= 16)
        );
        if let Some(c) = r.capacity.iter().find(|c| c.inputs == "tile" && c.participants == 16) {
            s += &format!(
                "| (the 16-person row, tile-sized inputs) | server {:.1} % of the machine, load {:.1} %; {:.1} fps decoded by the observer, {:.1} fps sent by the server |\n",
                c.server_cpu_pct_of_machine, c.load_cpu_pct_of_machine, c.observer_fps, c.observer_rtp_fps
            );
        }
    }
    match &r.glass_to_glass {
        Some(g) => {
            s += &format!("| server-added latency p95 ≤ 60 ms | p95 {:.1} ms, p50 {:.1} ms ({}) |\n", g.server_p95_ms, g.server_p50_ms, met(g.server_p95_ms <= 60.0));
            s += &format!("| glass-to-glass p95 ≤ 150 ms | p95 {} ms, p50 {} ms ({}) |\n", g.p95_ms, g.p50_ms, met(g.p95_ms <= 150));
        }
        None => s += &format!("| latency | {} |\n", none()),
    }
    match &r.avsync {
        Some(a) => s += &format!(
            "| lip sync: audio ≤ 45 ms early, ≤ 125 ms late (and within ±20 ms) | p50 {:+.0} ms, p5 {:+.0} ms, p95 {:+.0} ms, positive = audio late ({}) |\n",
            a.p50_ms,
            a.p5_ms,
            a.p95_ms,
            if a.p5_ms >= -45.0 && a.p95_ms <= 125.0 { if a.p5_ms >= -20.0 && a.p95_ms <= 20.0 { "met, within ±20 ms" } else { "met, beyond ±20 ms" } } else { "**missed**" }
        ),
        None => s += &format!("| lip sync | {} |\n", none()),
    }
    // #18's loss goal, per path, with NACK (the default).
    for path in ["downlink", "uplink"] {
        let rows: Vec<&LossRow> = r.loss.iter().filter(|l| l.nack && l.path == path && l.loss_pct > 0).collect();
        if rows.is_empty() {
            continue;
        }
        let limit = |pct: u32| if pct <= 3 { 300 } else { 700 };
        let ok = rows.iter().all(|l| l.longest_freeze_ms <= limit(l.loss_pct));
        let seen: Vec<String> = rows.iter().map(|l| format!("{} % {} ms", l.loss_pct, l.longest_freeze_ms)).collect();
        s += &format!("| {path} loss: no freeze over 300 ms at 3 %, over 700 ms at 10 % | longest freeze {} ({}) |\n", seen.join(", "), met(ok));
    }
    if let Some(c) = &r.cluster {
        s += &format!(
            "| cluster: a killed node's participants get the mix again within 5 s of its lease ending ({} s) | p50 {} ms, max {} ms after the kill over {} kill(s) ({}) |\n",
            c.lease_ms / 1000,
            c.kill_p50_ms,
            c.kill_max_ms,
            c.kill_to_mix_ms.len(),
            met(c.kill_max_ms <= c.lease_ms + 5000)
        );
    }
    match &r.join {
        Some(j) => s += &format!("| join to first frame p95 ≤ 1 s | p95 {} ms, p50 {} ms ({}) |\n", j.p95_ms, j.p50_ms, met(j.p95_ms <= 1000)),
        None => s += &format!("| join | {} |\n", none()),
    }
    let ratios: Vec<String> = r.raw.iter().filter_map(|x| x.ratio.map(|v| format!("{}: {v:.2}", x.participants))).collect();
    if !ratios.is_empty() {
        let ok = r.raw.iter().all(|x| x.ratio.is_some_and(|v| v <= 1.25));
        s += &format!("| tessera / plain pipeline CPU ≤ 1.25 | {} ({}) |\n", ratios.join(", "), met(ok));
    }
    s + "\n"
}

fn markdown(r: &Report, plots: &[(String, String)]) -> String {
    let mut s = String::new();
    s += "# Benchmark results\n\n";
    s += &format!(
        "Machine: {} CPUs ({}), Linux {}. Date: {}. Canvas {}. {}\n\n",
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.kernel,
        r.machine.date,
        r.canvas,
        if r.quick { "Quick (smoke) sizes." } else { "Full sizes." }
    );
    if !r.reruns.is_empty() {
        s += &format!("Scenarios run again later, the rest kept from the run above: {}.\n\n", r.reruns.join("; "));
    }
    s += "Produced by `./scripts/bench` (release build). Load: in-process bots sending a VP8 clip (encoded once per size and looped: at their tile's size, or 640x360) and Opus, decoding nothing; one decoding observer bot. Server and load share the 2 cores. CPU from /proc; \"% of machine\" is of all cores. Single runs vary by several points of CPU; rows at the edge (16 participants) can land on either side of 29 fps from one run to the next.\n\n";
    s += &targets(r);
    s += "## Capacity\n\nInputs `tile`: the load bots follow the server's `send_size` and send at their tile's size, as the web client does; `360p`: every input is 640x360 whatever its tile (the compositor scales it down). CPU and fps are the median of three windows. \"fps (decoded)\" is what the observer bot decoded, and is what the largest-room figure uses; \"fps sent\" counts the RTP frames it received, i.e. what the server put out, decoded or not (the observer's decoder shares the saturated machine with the load).\n\n| inputs | participants | server CPU (% of machine) | server CPU (% of one core) | load CPU (% of machine) | RSS MiB | threads | threads per participant | fds | observer fps (decoded) | fps sent (RTP) | observer max gap ms | frames dropped | RTP lost |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for c in &r.capacity {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {:.1} | {} | {:.1} | {:.1} | {} | {} | {} |\n",
            c.inputs,
            c.participants, c.server_cpu_pct_of_machine, c.server_cpu_pct_of_core, c.load_cpu_pct_of_machine, c.rss_mib, c.threads, c.threads_per_participant, c.fds, c.observer_fps, c.observer_rtp_fps, c.observer_max_gap_ms, c.observer_dropped_frames, c.observer_lost_packets
        );
    }
    // Where the time of the 16-person tile room (or the largest measured) goes.
    let accounted = r.capacity.iter().filter(|c| c.inputs == "tile" && !c.thread_cpu.is_empty()).min_by_key(|c| c.participants.abs_diff(16));
    if let Some(c) = accounted {
        s += &format!(
            "\nWhere the server's time goes in the {}-person room with tile-sized inputs, by kind of thread (its name without numbers; % of one core over the three windows, those over 1 %): {}.\n",
            c.participants,
            c.thread_cpu.iter().filter(|(_, p)| *p >= 1.0).map(|(k, p)| format!("`{k}` {p:.1}")).collect::<Vec<_>>().join(", ")
        );
    }
    let limit = |l: Option<usize>| l.map(|n| n.to_string()).unwrap_or_else(|| "none measured".into());
    s += &format!(
        "\nLargest room with the observer at ≥ 29 fps and the server under 70 % of the machine: **{}** with tile-sized inputs, **{}** with 360p inputs.\n",
        limit(r.capacity_limit),
        limit(r.capacity_limit_360p)
    );
    if let Some(j) = &r.join {
        s += &format!(
            "\n## Join time\n\nWebSocket connect to first decoded mixed frame, {} joins into a room of {}: p50 **{} ms**, p95 **{} ms**. Longest gap in a resident's mixed stream during those joins and leaves: {} ms.\n",
            j.joins, j.residents, j.p50_ms, j.p95_ms, j.resident_max_gap_ms
        );
    }
    if let Some(l) = &r.glass_to_glass {
        s += &format!(
            "\n## Latency (loopback)\n\nA sender bot flips its colour every 400 ms; an observer bot in the same process (same clock) finds the change at the centre of the sender's tile in its decoded mix.\n\n\
             - **Glass to glass** (colour set at the sender → decoded at the observer; includes both bots' encoder, decoder and jitterbuffer): {} of {} changes seen, p50 **{} ms**, p95 **{} ms**.\n\
             - **Server-added** (the last RTP packet of the first changed frame leaving the sender → the last RTP packet of the first composed frame showing it reaching the observer's jitterbuffer, before any buffering; on loopback the network adds ~0.1 ms): {} changes traced, p50 **{:.1} ms**, p95 **{:.1} ms**.\n",
            l.detected, l.changes, l.p50_ms, l.p95_ms, l.server_detected, l.server_p50_ms, l.server_p95_ms
        );
    }
    if let Some(a) = &r.avsync {
        s += &format!(
            "\n## Lip sync (loopback)\n\n`./scripts/bench --scenario avsync`: a sender bot flips its colour and switches a tone on at the same moment, every 700 ms; an observer bot notes when the new colour (its decoded mix, centre of the sender's tile) and the tone (the level of its decoded audio) arrive. Offset = audio arrival − video arrival − what the sender's own capture put between them (the PTS of the changed frame and of the first loud audio buffer at its encoders); positive means the audio is late. The observer receives both with the same 50 ms jitterbuffer and plays nothing out, so this is the server's audio path (jitter ring, 20 ms mix tick, Opus) against its video path (jitterbuffer, compositor, rung encoder). Goal (ITU-R BT.1359): audio no more than 45 ms early, no more than 125 ms late, and within ±20 ms.\n\n{} of {} events seen in both: p50 **{:+.1} ms**, p5 {:+.1} ms, p95 {:+.1} ms.\n",
            a.detected, a.events, a.p50_ms, a.p5_ms, a.p95_ms
        );
    }
    if !r.loss.is_empty() {
        s += "\n## Packet loss (a receiver behind a lossy router)\n\n`./scripts/bench --scenario loss` (root): the receiving bot sits behind a router namespace that drops packets towards it at random (nftables `numgen random`), 20 s per level (5 s with `--quick`); another bot sends a moving zone plate. The receiver's jitterbuffer holds 150 ms (a browser's waits for retransmissions) and its depayloader freezes the picture until a keyframe after a frame lost for good, as a browser does. *NACK on* is the default (the receiver asks for lost packets, the server resends them over RTX); *off*, every lost frame waits for a keyframe (PLI), which the rung's encoder makes for everyone on the rung. A freeze is a gap of over 150 ms between decoded frames. *Uplink*: the same bot's own packets to the server are dropped, and its picture is measured as the server decodes it for everyone's mix (room stats `media.inputs`; the server always asks again, its video jitterbuffer waits 150 ms). Goal (#18): no freeze over 300 ms at 3 % and over 700 ms at 10 %, one keyframe per 2 s at most.\n\n| path | loss | NACK | fps | longest freeze | freezes > 150 ms | keyframes (busiest rung) | asked again / recovered / given up | resent | still missing |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for l in &r.loss {
            let down = l.path == "downlink";
            s += &format!(
                "| {} | {} % | {} | {:.1} | {} ms | {} | {} | {} / {} / {} | {} | {} |\n",
                l.path,
                l.loss_pct,
                if l.nack { "on" } else { "off" },
                l.fps,
                l.longest_freeze_ms,
                l.freezes,
                if down { format!("{} in {:.0} s", l.keyframes, l.secs) } else { "–".into() },
                l.asked,
                l.recovered,
                given_up(l.given_up),
                if down { format!("{} packets, {:.0} kbps", l.resent_packets, l.resent_kbps) } else { "–".into() },
                if down { format!("{:.2} %", l.missing_pct) } else { "–".into() }
            );
        }
    }
    if let Some(c) = &r.cluster {
        s += &format!(
            "\n## Cluster (three nodes and Redis on loopback)\n\n`./scripts/bench --scenario cluster`: Redis (`redis-server`, no persistence) and three nodes on this machine (docs/cluster.md). *Join*: a decoding bot joins a running room through the room's own node, or through another node that carries its signaling there (alternating, {} of each); join to first decoded frame. *Kill*: three rejoining bots of a room, each starting at a different node, and the room's node killed with SIGKILL; the time until the slowest of the three receives the mix again from a live node (lease {} ms, renewed every 2 s, so it ends 4–6 s after the kill), {} kill(s).\n\n| | p50 | all (ms) |\n|---|---|---|\n| join through the room's node | {} ms | {:?} |\n| join carried by another node | {} ms | {:?} |\n| SIGKILL to mix again | {} ms (max {} ms) | {:?} |\n",
            c.direct_ms.len(),
            c.lease_ms,
            c.kill_to_mix_ms.len(),
            c.direct_p50_ms,
            c.direct_ms,
            c.carried_p50_ms,
            c.carried_ms,
            c.kill_p50_ms,
            c.kill_max_ms,
            c.kill_to_mix_ms
        );
    }
    if !r.ladder.is_empty() {
        s += "\n## Downlink per rung (encoder ladder)\n\n`./scripts/bench --scenario ladder`: two senders with a moving zone plate (the ladder reaches its bitrates on it), one receive-only receiver per rung and codec asking for it explicitly, all in one room at once; RTP bytes received, headers included. Server CPU per rung is its encoding thread's (`q-<codec>-<rung>:src`: scale, frame rate, encoder, handing frames to its receivers), in % of one core; the shipped encoders are vp8enc and openh264enc.\n\n| codec | rung | size | fps | video kbps | video + audio kbps | rung CPU (% of a core) |\n|---|---|---|---|---|---|---|\n";
        for l in &r.ladder {
            let cpu = l.cpu_pct_of_core.map(|c| format!("{c:.1}")).unwrap_or_else(|| "–".into());
            s += &format!("| {} | {} | {}x{} | {:.1} | {:.0} | {:.0} | {} |\n", l.codec, l.rung, l.width, l.height, l.fps, l.video_kbps, l.total_kbps, cpu);
        }
    }
    if !r.mixed_codecs.is_empty() {
        s += "\n## Half the room on H.264\n\n`./scripts/bench --scenario mixed-codecs`: a room with tile-sized inputs all on VP8, then the same room with every other load bot sending pre-encoded H.264 and receiving the H.264 rung (the observer stays on VP8), alternating in one run. Serving both codecs adds the H.264 decoders of those inputs and one more top-rung encoder. The bots share the machine: where server + load pass 90 %, the machine is saturated and the difference understates the cost.\n\n| participants | on H.264 | server CPU (% of machine) | load CPU (% of machine) | RSS MiB | threads | observer fps (decoded) |\n|---|---|---|---|---|---|---|\n";
        for c in &r.mixed_codecs {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.0} | {} | {:.1} |\n",
                c.participants, c.h264_participants, c.server_cpu_pct_of_machine, c.load_cpu_pct_of_machine, c.rss_mib, c.threads, c.observer_fps
            );
        }
        let mut sizes: Vec<usize> = r.mixed_codecs.iter().map(|c| c.participants).collect();
        sizes.sort_unstable();
        sizes.dedup();
        s += "\n";
        for n in sizes {
            let med = |h264: bool| median(r.mixed_codecs.iter().filter(|c| c.participants == n && (c.h264_participants > 0) == h264).map(|c| c.server_cpu_pct_of_machine).collect());
            let (vp8, mixed) = (med(false), med(true));
            s += &format!("{n} participants: all VP8 **{vp8:.1} %**, half H.264 **{mixed:.1} %** of the machine (median); both codecs − VP8 only **{:+.1} points** (ratio {:.2}).\n", mixed - vp8, mixed / vp8.max(0.01));
        }
    }
    if !r.share.is_empty() {
        with_and_without(
            &mut s,
            "A shared screen",
            "`./scripts/bench --scenario share`: a room with tile-sized inputs, then the same room with one load bot also sharing a screen (a second connection sending a SMPTE pattern pre-encoded at the 1024x576 its `send_size` asks for, 15 fps), so the room is in the presentation layout; alternating in one run, medians. The observer receives the high rung. The share adds a decoder, a large tile and nothing else: the rung encoders are the same.",
            ("sharing", "a share"),
            &r.share,
            |c| c.sharing,
        );
    }
    if !r.outputs.is_empty() {
        s += "\n## Recording and streaming a room\n\n`./scripts/bench --scenario outputs`: a room with tile-sized inputs, then the same room recorded (`POST /api/rooms/{room}/recordings`: the top rung's VP8 and the viewers' full-mix Opus muxed into WebM, no encoder of its own), streamed to RTMP (nginx-rtmp on loopback: the top rung in H.264, whose encoder runs for the stream since every bot here receives VP8, and the full mix decoded and encoded once to AAC, in FLV) and streamed as HLS (the same into MPEG-TS segments), alternating in one run, medians. The observer receives the high rung, so its VP8 encoder runs in every row.\n\n| participants | output | server CPU (% of a core) | server CPU (% of machine) | load CPU (% of machine) | RSS MiB | observer fps (decoded) |\n|---|---|---|---|---|---|---|\n";
        for c in &r.outputs {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |\n",
                c.participants, if c.output.is_empty() { "none" } else { &c.output }, c.server_cpu_pct_of_core, c.server_cpu_pct_of_machine, c.load_cpu_pct_of_machine, c.rss_mib, c.observer_fps
            );
        }
        let med = |out: &str| median(r.outputs.iter().filter(|c| c.output == out).map(|c| c.server_cpu_pct_of_core).collect());
        let none = med("");
        let n = r.outputs.first().map(|c| c.participants).unwrap_or(0);
        s += &format!("\n{n} participants, median server CPU in % of a core: nothing else **{none:.1}**");
        for (out, what) in [("recording", "one recording"), ("rtmp", "one RTMP stream"), ("hls", "one HLS stream")] {
            if r.outputs.iter().any(|c| c.output == out) {
                let v = med(out);
                s += &format!("; {what} **{v:.1}** ({:+.1} points, ratio {:.2})", v - none, v / none.max(0.01));
            }
        }
        s += ".\n";
    }
    if !r.hls_viewers.is_empty() {
        let n = r.hls_viewers.first().map(|v| v.participants).unwrap_or(0);
        s += &format!("\n## HLS players\n\n`./scripts/bench --scenario hls-viewers`: a room of {n} streamed as HLS (4 s segments), then plain HTTP fetch loops in the bench process, each fetching the playlist every 0.5 s and every new segment, as a player does. A player keeps up when it fetched every segment that appeared in the window.\n\n| players | server CPU (% of a core) | load CPU (% of machine) | new segments | fewest fetched by a player | served Mbit/s |\n|---|---|---|---|---|---|\n");
        for v in &r.hls_viewers {
            s += &format!("| {} | {:.1} | {:.1} | {} | {} | {:.1} |\n", v.viewers, v.server_cpu_pct_of_core, v.load_cpu_pct_of_machine, v.segments_expected, v.min_segments_fetched, v.served_mbps);
        }
        if let (Some(first), Some(kept)) = (r.hls_viewers.first(), r.hls_viewers.iter().filter(|v| v.min_segments_fetched >= v.segments_expected).max_by_key(|v| v.viewers)) {
            s += &format!(
                "\n{} players kept up; server CPU {:.1} % of a core against {:.1} % with none ({:+.1} points: the segmenting is in both, what players add is sending files).\n",
                kept.viewers,
                kept.server_cpu_pct_of_core,
                first.server_cpu_pct_of_core,
                kept.server_cpu_pct_of_core - first.server_cpu_pct_of_core
            );
        }
    }
    if !r.viewers.is_empty() {
        s += "\n## Viewers\n\nReceive-only viewers (bots counting frames, not decoding) on a room of 4 participants. The viewer bots run in the bench process on the same 2 cores; a row where server + load exceed 90 % of the machine is saturated and not used for the per-viewer cost.\n\n| viewers | server CPU (% of machine) | load CPU (% of machine) | slowest viewer fps |\n|---|---|---|---|\n";
        for v in &r.viewers {
            s += &format!("| {} | {:.1} | {:.1} | {:.1} |\n", v.viewers, v.server_cpu_pct_of_machine, v.load_cpu_pct_of_machine, v.min_viewer_fps);
        }
        let unsaturated: Vec<&ViewerRow> = r.viewers.iter().filter(|v| v.server_cpu_pct_of_machine + v.load_cpu_pct_of_machine < 90.0).collect();
        if let (Some(a), Some(b)) = (unsaturated.first(), unsaturated.last()) {
            if b.viewers > a.viewers {
                s += &format!(
                    "\nServer CPU added per 10 viewers ({} → {} viewers): **{:.1} % of the machine**.\n",
                    a.viewers,
                    b.viewers,
                    (b.server_cpu_pct_of_machine - a.server_cpu_pct_of_machine) * 10.0 / (b.viewers - a.viewers) as f64
                );
            }
        }
    }
    if !r.bandwidth.is_empty() {
        s += "\n## Bandwidth against a mesh\n\nPer-client RTP kbps (headers included, before SRTP), measured over the same window. tessera: N load bots in one room, each following the server's `send_size` (tile-sized VP8 clip plus Opus) and receiving the one mixed stream. Mesh: the same clients connected pairwise with no server (N(N−1)/2 peer connections set up in-process over loopback), each sending its 640x360 clip and Opus to every other client and receiving every other client's. The clips show a moving zone plate, busy enough that every encoder reaches its bitrate as a camera would (640x360 at 500 kbps; tile-sized clips at the server's `send_size` bitrate; the mix at the top rung's 1.2 Mbps).\n\n| participants | tessera up | tessera down | mesh up | mesh down | mesh links up |\n|---|---|---|---|---|---|\n";
        for b in &r.bandwidth {
            s += &format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {}/{} |\n",
                b.participants, b.tessera_up_kbps, b.tessera_down_kbps, b.mesh_up_kbps, b.mesh_down_kbps, b.mesh_links_up, b.mesh_links
            );
        }
    }
    if !r.tls.is_empty() {
        let med = |tls: bool| median(r.tls.iter().filter(|x| x.tls == tls).map(|x| x.server_cpu_pct_of_machine).collect());
        let (plain, tls) = (med(false), med(true));
        s += &format!(
            "\n## HTTPS/WSS cost\n\nOne room of {} (tile inputs) served over plain HTTP/WS and over HTTPS/WSS (`--tls-cert/--tls-key`, the bots trusting the test certificate), alternating plain, TLS, plain, TLS in one run. TLS carries signaling only; media is DTLS-SRTP either way.\n\n| round | transport | server CPU (% of machine) | observer fps |\n|---|---|---|---|\n",
            r.tls[0].participants
        );
        for x in &r.tls {
            s += &format!("| {} | {} | {:.1} | {:.1} |\n", x.round + 1, if x.tls { "HTTPS/WSS" } else { "HTTP/WS" }, x.server_cpu_pct_of_machine, x.observer_fps);
        }
        s += &format!("\nMedian: plain **{plain:.1} %**, TLS **{tls:.1} %**; TLS − plain **{:+.1} points** (ratio {:.2}).\n", tls - plain, if plain > 0.0 { tls / plain } else { 0.0 });
    }
    if let Some(k) = &r.soak {
        s += &format!(
            "\n## Soak\n\n`./scripts/bench --scenario soak`: a room keeps two honest decoding bots while {} cycles run, each a load bot joining, connecting and leaving, a connection reset (TCP RST) after its offer, and two inputs of `tests/corpus/hostile.tsv` on their own connections ({} bot joins, {} resets, {} hostile inputs in {:.0} s). The server process before the cycles and {:.1} s after them (the wait ends once fds and threads are within 2 of before, at most 30 s):\n\n| | fds | threads | RSS MiB |\n|---|---|---|---|\n| before | {} | {} | {:.1} |\n| after | {} | {} | {:.1} |\n| change | {:+} | {:+} | {:+.1} |\n\nfds by kind, before → after: {}.\n\nRSS by cycles done: {} (the server hands freed heap back to the system after each participant's teardown, `malloc_trim`; a leak grows in a line, caches and arenas level off).\n\nThe honest bots' lowest one-second frame rate: **{:.1} fps**; longest stretch below 25 fps: **{} ms**.\n",
            k.cycles, k.bot_cycles, k.aborted, k.hostile, k.seconds, k.settle_s,
            k.before.fds, k.before.threads, k.before.rss_mib, k.after.fds, k.after.threads, k.after.rss_mib,
            k.after.fds as i64 - k.before.fds as i64, k.after.threads as i64 - k.before.threads as i64, k.after.rss_mib - k.before.rss_mib,
            fd_kinds_change(&k.fd_kinds_before, &k.fd_kinds_after),
            k.rss_by_cycle.iter().map(|(c, m)| format!("{c}: {m:.0} MiB")).collect::<Vec<_>>().join(", "),
            k.honest_min_fps_1s, k.honest_longest_below_25_ms
        );
    }
    if !r.codecs.is_empty() {
        s += "\n## One rung per codec\n\n`./scripts/bench --scenario codecs`: one rung encoder at the top rung's size, frame rate and bitrate, on the same grid (4 tile-sized VP8 inputs composed at the canvas size, `src/tools/rawmix.rs`), each candidate in turn and the grid without an encoder as the baseline, interleaved in rounds; medians. CPU is the encoder's own (run minus baseline), in % of one core; kbps is what a receiver on that rung downloads.\n\n| encoder | CPU (% of a core) | kbps | fps |\n|---|---|---|---|\n";
        for x in &r.codecs {
            s += &format!("| {} | {:.1} | {:.0} | {:.1} |\n", x.encoder, x.cpu_pct_of_core, x.kbps, x.fps);
        }
        if let Some(vp8) = r.codecs.iter().find(|x| x.encoder.starts_with("vp8")) {
            s += "\n";
            for h in r.codecs.iter().filter(|x| x.encoder.starts_with("h264")) {
                s += &format!(
                    "{} / VP8: CPU **{:.2}**, downlink **{:.2}**{}.\n",
                    h.encoder,
                    h.cpu_pct_of_core / vp8.cpu_pct_of_core.max(0.01),
                    h.kbps / vp8.kbps.max(0.01),
                    if h.fragment.starts_with(crate::layouts::DEFAULT_H264_ENCODER.split(' ').next().unwrap_or("")) { " (the shipped H.264 rung encoder)" } else { "" }
                );
            }
        }
    }
    if !r.raw.is_empty() {
        s += "\n## Efficiency against a plain pipeline\n\nThe same decode → compose → encode work as one GStreamer pipeline without WebRTC (`src/tools/rawmix.rs`): N pre-encoded VP8 inputs at their tile size and N Opus tones fed live in the packets a room asks senders for (`[audio] ptime_ms`), vp8dec → compositor → the room's 720p encoder, opusdec → audiomixer → the Opus encoders a room runs (one shared mix and one per talker slot: 4 with the default `[audio] talkers = 3`, as every load bot talks). What it leaves out is what WebRTC costs: ICE, DTLS/SRTP, RTP sessions and jitterbuffers, congestion control, per-participant pipelines and labels. tessera's figure is its capacity row with tile-sized inputs (capped by the machine when that row is saturated).\n\n| participants | plain pipeline CPU (% of machine) | plain pipeline fps | tessera CPU (% of machine) | tessera / plain |\n|---|---|---|---|---|\n";
        for x in &r.raw {
            s += &format!(
                "| {} | {:.1} | {:.1} | {} | {} |\n",
                x.participants,
                x.raw_cpu_pct_of_machine,
                x.raw_fps,
                x.tessera_cpu_pct_of_machine.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into()),
                x.ratio.map(|v| format!("**{v:.2}**")).unwrap_or_else(|| "–".into())
            );
        }
        if let Some(x) = r.raw.iter().filter(|x| !x.thread_cpu.is_empty()).min_by_key(|x| x.participants.abs_diff(16)) {
            s += &format!(
                "\nWhere the plain pipeline's time goes with {} inputs (% of one core, those over 1 %; compare with the server's above): {}.\n",
                x.participants,
                x.thread_cpu.iter().filter(|(_, p)| *p >= 1.0).map(|(k, p)| format!("`{k}` {p:.1}")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if !plots.is_empty() {
        s += "\n## Plots\n\n";
        for (title, png) in plots {
            s += &format!("![{title}]({png})\n\n");
        }
    }
    s
}

/// A "## `heading`" section: the rows of a room without and with
/// something (`on`), side by side, and the medians' difference.
fn with_and_without(s: &mut String, heading: &str, intro: &str, (column, thing): (&str, &str), rows: &[CapacityRow], on: fn(&CapacityRow) -> bool) {
    *s += &format!("\n## {heading}\n\n{intro}\n\n| participants | {column} | server CPU (% of a core) | server CPU (% of machine) | load CPU (% of machine) | RSS MiB | observer fps (decoded) |\n|---|---|---|---|---|---|---|\n");
    for c in rows {
        *s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |\n",
            c.participants, if on(c) { "yes" } else { "no" }, c.server_cpu_pct_of_core, c.server_cpu_pct_of_machine, c.load_cpu_pct_of_machine, c.rss_mib, c.observer_fps
        );
    }
    let med = |with: bool| median(rows.iter().filter(|c| on(c) == with).map(|c| c.server_cpu_pct_of_core).collect());
    let (off, with) = (med(false), med(true));
    let n = rows.first().map(|c| c.participants).unwrap_or(0);
    *s += &format!("\n{n} participants: without {thing} **{off:.1} %**, with one **{with:.1} %** of a core (median); {thing} costs **{:+.1} points** (ratio {:.2}).\n", with - off, with / off.max(0.01));
}

impl Default for Report {
    fn default() -> Report {
        Report {
            machine: Machine { cpus: 0, cpu_model: String::new(), kernel: String::new(), date: String::new() },
            quick: false,
            canvas: String::new(),
            capacity: Vec::new(),
            join: None,
            glass_to_glass: None,
            avsync: None,
            loss: Vec::new(),
            cluster: None,
            ladder: Vec::new(),
            viewers: Vec::new(),
            raw: Vec::new(),
            codecs: Vec::new(),
            mixed_codecs: Vec::new(),
            share: Vec::new(),
            outputs: Vec::new(),
            hls_viewers: Vec::new(),
            bandwidth: Vec::new(),
            tls: Vec::new(),
            reruns: Vec::new(),
            soak: None,
            capacity_limit: None,
            capacity_limit_360p: None,
        }
    }
}

impl Report {
    /// Fill the scenarios that did not run from the last report in `path`
    /// (same canvas and same --quick), so `--scenario X` updates X alone.
    fn keep_the_rest(&mut self, path: &Path, ran: &dyn Fn(&str) -> bool) {
        let Some(old) = std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str::<Report>(&t).ok()) else { return };
        if old.quick != self.quick || old.canvas != self.canvas {
            return;
        }
        // The header keeps the earlier run's machine; this run is listed.
        let ran_now: Vec<&str> = SCENARIOS.iter().copied().filter(|s| ran(s)).collect();
        let m = &self.machine;
        // An earlier rerun of scenarios that all ran again now is superseded.
        self.reruns = old
            .reruns
            .iter()
            .filter(|e| !e.split(" on ").next().unwrap_or("").split(", ").all(ran))
            .cloned()
            .collect();
        self.reruns.push(format!("{} on {} CPUs ({}), Linux {}, {}", ran_now.join(", "), m.cpus, m.cpu_model, m.kernel, m.date));
        self.machine = old.machine;
        if !ran("capacity") {
            self.capacity = old.capacity;
            self.capacity_limit = old.capacity_limit;
            self.capacity_limit_360p = old.capacity_limit_360p;
        }
        if !ran("join") {
            self.join = old.join;
        }
        if !ran("latency") {
            self.glass_to_glass = old.glass_to_glass;
        }
        if !ran("avsync") {
            self.avsync = old.avsync;
        }
        if !ran("loss") {
            self.loss = old.loss;
        }
        if !ran("ladder") {
            self.ladder = old.ladder;
        }
        if !ran("viewers") {
            self.viewers = old.viewers;
        }
        if !ran("codecs") {
            self.codecs = old.codecs;
        }
        if !ran("mixed-codecs") {
            self.mixed_codecs = old.mixed_codecs;
        }
        if !ran("share") {
            self.share = old.share;
        }
        if !ran("outputs") {
            self.outputs = old.outputs;
        }
        if !ran("hls-viewers") {
            self.hls_viewers = old.hls_viewers;
        }
        if !ran("raw") {
            self.raw = old.raw;
        }
        if !ran("mesh") {
            self.bandwidth = old.bandwidth;
        }
        if !ran("tls") {
            self.tls = old.tls;
        }
        if !ran("soak") {
            self.soak = old.soak;
        }
        if !ran("cluster") {
            self.cluster = old.cluster;
        }
    }
}

/// The server process's resources at one moment.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct ProcSnapshot {
    pub fds: usize,
    pub threads: usize,
    pub rss_mib: f64,
}

impl ProcSnapshot {
    fn of(p: &Proc) -> Result<ProcSnapshot> {
        Ok(ProcSnapshot { fds: p.fds()?, threads: p.threads()?, rss_mib: p.rss_mib()? })
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SoakResult {
    pub cycles: usize,
    /// Load bots that joined, connected and left.
    pub bot_cycles: usize,
    /// Connections reset (TCP RST) after their offer.
    pub aborted: usize,
    /// Inputs of tests/corpus/hostile.tsv, each on its own connection.
    pub hostile: usize,
    pub seconds: f64,
    /// The server with its two honest bots, before and after the cycles
    /// (once fds and threads are back within 2 of `before`, or 30 s after
    /// the last cycle, whichever comes first; `settle_s` says which).
    pub before: ProcSnapshot,
    pub after: ProcSnapshot,
    pub settle_s: f64,
    /// Open fds by kind before and after (tools::procinfo::Proc::fd_kinds).
    #[serde(default)]
    pub fd_kinds_before: std::collections::BTreeMap<String, usize>,
    #[serde(default)]
    pub fd_kinds_after: std::collections::BTreeMap<String, usize>,
    /// (cycles done, RSS MiB) every 50 cycles: a leak grows in a line,
    /// caches and allocator arenas level off.
    pub rss_by_cycle: Vec<(usize, f64)>,
    /// The honest bots' lowest frame rate over any one-second window, and
    /// the longest stretch they spent below 25 fps.
    pub honest_min_fps_1s: f64,
    pub honest_longest_below_25_ms: u64,
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw signaling connection; with `reset`, closing it sends a TCP RST.
async fn raw_ws(url: &str, reset: bool) -> Result<RawWs> {
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").trim_end_matches("/ws").parse().context("a ws:// URL")?;
    let sock = tokio::net::TcpSocket::new_v4()?;
    if reset {
        #[allow(deprecated)] // blocking on drop is harmless: linger 0 resets at once
        sock.set_linger(Some(Duration::ZERO))?;
    }
    let tcp = sock.connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    Ok(ws)
}

/// Read until a message of type `ty` (true) or `wait` passes (false).
async fn raw_until(ws: &mut RawWs, ty: &str, wait: Duration) -> bool {
    raw_next(ws, ty, wait).await.is_some()
}

/// The next message of type `ty` within `wait`.
async fn raw_next(ws: &mut RawWs, ty: &str, wait: Duration) -> Option<serde_json::Value> {
    use futures::StreamExt;
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                if v["type"] == ty {
                    return Some(v);
                }
            }
        }
    }
    None
}

async fn raw_send(ws: &mut RawWs, text: &str) -> Result<()> {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.to_string())).await?;
    Ok(())
}

/// One hostile input of the corpus, as the corpus says it is sent.
async fn hostile_once(url: &str, room: &str, stage: &str, frame: &str) -> Result<()> {
    let mut ws = raw_ws(url, false).await?;
    let join = serde_json::json!({"type": "join", "room": room, "name": "hostile"}).to_string();
    match stage {
        "frame" => {
            raw_send(&mut ws, frame).await?;
            raw_until(&mut ws, "error", Duration::from_secs(2)).await;
        }
        "answer" | "ice" => {
            raw_send(&mut ws, &join).await?;
            let Some(offer) = raw_next(&mut ws, "offer", Duration::from_secs(10)).await else {
                bail!("a hostile participant got no offer");
            };
            if stage == "ice" {
                let answer = crate::tools::hostile::fake_answer(offer["sdp"].as_str().unwrap_or_default());
                raw_send(&mut ws, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await?;
            }
            raw_send(&mut ws, frame).await?;
            raw_until(&mut ws, "never", Duration::from_millis(300)).await;
            raw_send(&mut ws, r#"{"type":"leave"}"#).await?;
        }
        other => bail!("unknown corpus stage `{other}`"),
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The longest run of consecutive one-second windows below `fps`, in
/// milliseconds, and the lowest window, from (time, frames) samples taken
/// every 250 ms.
fn below(samples: &[(Instant, u64)], fps: f64) -> (u64, f64) {
    let (mut longest, mut run, mut min) = (0u64, 0u64, f64::MAX);
    for w in samples.windows(5) {
        let secs = w[4].0.duration_since(w[0].0).as_secs_f64();
        let f = (w[4].1 - w[0].1) as f64 / secs.max(0.001);
        min = min.min(f);
        if f < fps {
            run += 250;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (longest, if min == f64::MAX { 0.0 } else { min })
}

/// "udp 12 → 14, eventfd 9 → 9, ..." for every kind seen before or after.
fn fd_kinds_change(before: &std::collections::BTreeMap<String, usize>, after: &std::collections::BTreeMap<String, usize>) -> String {
    let kinds: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    if kinds.is_empty() {
        return "not recorded".into();
    }
    kinds
        .into_iter()
        .map(|k| format!("{k} {} → {}", before.get(k).copied().unwrap_or(0), after.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The soak: `cycles` rounds (at most `limit` long) of a load bot joining
/// and leaving, a connection reset after its offer, and two inputs of the
/// hostile corpus, against a room that keeps two honest decoding bots.
async fn soak(o: &BenchOptions, cycles: usize, limit: Duration) -> Result<SoakResult> {
    use std::sync::atomic::{AtomicBool, Ordering};
    eprintln!("bench soak: {cycles} cycles");
    let server = ServerProc::start(&o.server_bin, &o.canvas)?;
    let proc_ = Proc(Some(server.pid()));
    let mut honest = Vec::new();
    for (name, color) in [("honest-a", 0xff0000), ("honest-b", 0x0000ff)] {
        honest.push(Bot::connect(BotOptions { color: Some(color), ..observer(&server.url, "soak", name) }).await?);
    }
    for b in &honest {
        if !wait_frames(b, Duration::from_secs(20)).await {
            bail!("an honest soak bot received no video");
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = ProcSnapshot::of(&proc_)?;
    let fd_kinds_before = proc_.fd_kinds()?;
    let corpus = crate::tools::hostile::corpus();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let url = server.url.clone();
    let cycles_run = async {
        let (mut done, mut bot_cycles, mut aborted, mut hostile) = (0, 0, 0, 0);
        let mut rss = Vec::new();
        for i in 0..cycles {
            if started.elapsed() > limit {
                break;
            }
            if i % 50 == 0 {
                rss.push((i, proc_.rss_mib()?));
            }
            let b = Bot::connect(BotOptions { decode: false, ..load_bot(&url, "soak", i, false) }).await?;
            b.wait_until(Duration::from_secs(5), |b| b.is_connected()).await;
            b.leave().await;
            bot_cycles += 1;
            let mut ws = raw_ws(&url, true).await?;
            raw_send(&mut ws, &serde_json::json!({"type": "join", "room": "soak", "name": "aborted"}).to_string()).await?;
            raw_until(&mut ws, "offer", Duration::from_secs(10)).await;
            drop(ws);
            aborted += 1;
            for k in 0..2 {
                let input = &corpus[(2 * i + k) % corpus.len()];
                hostile_once(&url, "soak", input.stage, input.frame).await?;
                hostile += 1;
            }
            done += 1;
        }
        anyhow::Ok((done, bot_cycles, aborted, hostile, rss))
    };
    // The sampling stops however the cycles end. Regression: a cycle that
    // failed (its server gone) returned before telling the sampler to stop,
    // and the bench smoke test hung for the rest of CI's time.
    let bound = limit + Duration::from_secs(60);
    let work = async {
        let r = tokio::time::timeout(bound, cycles_run).await;
        stop.store(true, Ordering::Relaxed);
        r.unwrap_or_else(|_| Err(anyhow::anyhow!("the soak's cycles did not end within {} s", bound.as_secs())))
    };
    let sample = async {
        let mut s: Vec<Vec<(Instant, u64)>> = vec![Vec::new(); honest.len()];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            for (i, b) in honest.iter().enumerate() {
                s[i].push((now, b.stats().frames));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        s
    };
    let (counts, samples) = tokio::join!(work, sample);
    let (done, bot_cycles, aborted, hostile, mut rss_by_cycle) = counts?;
    let seconds = started.elapsed().as_secs_f64();
    let (mut longest, mut min_fps) = (0, f64::MAX);
    for s in &samples {
        let (l, m) = below(s, 25.0);
        longest = longest.max(l);
        min_fps = min_fps.min(m);
    }
    // Let teardown finish (pipelines are stopped off the async workers).
    let settled = Instant::now();
    let mut after = ProcSnapshot::of(&proc_)?;
    while (after.fds > before.fds + 2 || after.threads > before.threads + 2) && settled.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = ProcSnapshot::of(&proc_)?;
    }
    let settle_s = settled.elapsed().as_secs_f64();
    let fd_kinds_after = proc_.fd_kinds()?;
    rss_by_cycle.push((done, after.rss_mib));
    for b in honest {
        b.disconnect().await;
    }
    drop(server);
    let r = SoakResult { cycles: done, bot_cycles, aborted, hostile, seconds, before, after, settle_s, fd_kinds_before, fd_kinds_after, rss_by_cycle, honest_min_fps_1s: min_fps, honest_longest_below_25_ms: longest };
    eprintln!(
        "  {} cycles in {:.0} s: fds {} -> {} ({}), threads {} -> {}, RSS {:.0} -> {:.0} MiB; honest bots: lowest 1-s window {:.1} fps, longest below 25 fps {} ms",
        r.cycles, r.seconds, before.fds, after.fds, fd_kinds_change(&r.fd_kinds_before, &r.fd_kinds_after), before.threads, after.threads, before.rss_mib, after.rss_mib, r.honest_min_fps_1s, r.honest_longest_below_25_ms
    );
    Ok(r)
}

/// `--scenario cluster`: Redis and three nodes on loopback. (1) The
/// proxy's cost: join to first decoded frame through the room's own node
/// and through another node that carries the signaling there, alternating,
/// `joins` of each. (2) A node's loss: three rejoining bots of a room
/// (each starting at a different node), the room's node killed with
/// SIGKILL, the time until the slowest receives the mix again; `kills`
/// times, the killed node started again between kills.
async fn cluster(o: &BenchOptions, joins: usize, kills: usize) -> Result<ClusterResult> {
    use crate::tools::rejoin::Rejoiner;
    eprintln!("bench cluster: Redis and three nodes; {joins} joins through the room's node and through another, {kills} kill(s) of the room's node");
    let redis = crate::tools::redis::RedisServer::start()?;
    let http_ports: Vec<u16> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port())).collect::<std::io::Result<_>>()?;
    // Each node on a fixed port, so a killed one comes back at its address.
    let node = |i: usize| -> Result<ServerProc> {
        let ports = format!("{}-{}", 43000 + i * 200, 43199 + i * 200);
        ServerProc::start_at(&o.server_bin, &o.canvas, "127.0.0.1", http_ports[i], &["--redis".into(), redis.url(), "--node-id".into(), format!("n{i}"), "--udp-ports".into(), ports])
    };
    let mut nodes: Vec<Option<ServerProc>> = (0..3).map(|i| node(i).map(Some)).collect::<Result<_>>()?;
    let urls: Vec<String> = nodes.iter().flatten().map(|n| n.url.clone()).collect();
    let addr = nodes.iter().flatten().next().map(|n| n.addr.clone()).context("a node")?;
    // The node that runs `room`, from the cluster's room list.
    let owner_of = |room: String| {
        let addr = addr.clone();
        let ids: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
        async move {
            let (_, body) = http_request(&addr, "GET", "/api/rooms", "").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let node = v["rooms"].as_array().and_then(|a| a.iter().find(|r| r["room"] == room.as_str())).and_then(|r| r["node"].as_str()).map(String::from);
            node.and_then(|n| ids.iter().position(|i| *i == n)).with_context(|| format!("no node lists room {room}: {v}"))
        }
    };
    let (mut direct, mut carried) = (Vec::new(), Vec::new());
    for k in 0..joins {
        let room = format!("carry{k}");
        let host = Bot::connect(observer(&urls[k % 3], &room, "host")).await?;
        if !wait_frames(&host, Duration::from_secs(20)).await {
            bail!("no video in {room}");
        }
        let owner = owner_of(room.clone()).await?;
        let other = (owner + 1 + k % 2) % 3;
        let order = if k % 2 == 0 { [(owner, true), (other, false)] } else { [(other, false), (owner, true)] };
        for (i, own) in order {
            let b = Bot::connect(observer(&urls[i], &room, if own { "direct" } else { "carried" })).await?;
            if !wait_frames(&b, Duration::from_secs(20)).await {
                bail!("a joiner of {room} got no video");
            }
            let ms = b.join_to_first_frame().map(|d| d.as_millis() as u64).context("no first frame time")?;
            if own { direct.push(ms) } else { carried.push(ms) }
            b.leave().await;
        }
        host.leave().await;
    }
    let mut kill_ms = Vec::new();
    for k in 0..kills {
        let room = format!("kill{k}");
        let mut bots = Vec::new();
        for i in 0..3 {
            let servers: Vec<String> = (0..3).map(|j| urls[(i + j) % 3].clone()).collect();
            bots.push(Rejoiner::connect(observer(&servers[0], &room, &format!("b{i}")), servers).await?);
        }
        for r in &bots {
            if !wait_frames(r.bot().context("in the room")?, Duration::from_secs(20)).await {
                bail!("no video in {room}");
            }
        }
        let owner = owner_of(room.clone()).await?;
        // Dropping the process kills it with SIGKILL.
        drop(nodes[owner].take());
        let killed = Instant::now();
        while killed.elapsed() < Duration::from_secs(30) {
            futures::future::join_all(bots.iter_mut().map(|r| r.tend(Duration::from_millis(200)))).await;
            if bots.iter().all(|r| r.history.last().is_some_and(|h| h.receiving.is_some_and(|t| t > killed))) {
                break;
            }
        }
        let slowest = bots.iter().map(|r| r.history.last().and_then(|h| h.receiving).map(|t| t.duration_since(killed).as_millis() as u64)).collect::<Option<Vec<u64>>>();
        let slowest = slowest.and_then(|v| v.into_iter().max()).context("a bot never received the mix again within 30 s of the kill")?;
        eprintln!("  kill {}: the mix again within {slowest} ms", k + 1);
        kill_ms.push(slowest);
        for r in bots {
            r.leave().await;
        }
        // Back, at the same address (its URL is in every bot's list).
        nodes[owner] = Some(node(owner)?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(nodes);
    drop(redis);
    let p50 = |v: &[u64]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        percentile(&s, 0.5)
    };
    let r = ClusterResult {
        lease_ms: 6000,
        direct_p50_ms: p50(&direct),
        carried_p50_ms: p50(&carried),
        kill_p50_ms: p50(&kill_ms),
        kill_max_ms: kill_ms.iter().copied().max().unwrap_or(0),
        direct_ms: direct,
        carried_ms: carried,
        kill_to_mix_ms: kill_ms,
    };
    eprintln!("  join to first frame p50: {} ms through the room's node, {} ms carried by another; kill to mix p50 {} ms, max {} ms", r.direct_p50_ms, r.carried_p50_ms, r.kill_p50_ms, r.kill_max_ms);
    Ok(r)
}

/// Every scenario `--scenario` accepts, besides `all`.
pub const SCENARIOS: [&str; 17] = ["capacity", "join", "latency", "avsync", "loss", "ladder", "viewers", "raw", "codecs", "mixed-codecs", "share", "outputs", "hls-viewers", "mesh", "tls", "soak", "cluster"];

pub async fn run(o: BenchOptions) -> Result<Report> {
    if let Some(bad) = o.scenarios.iter().find(|s| *s != "all" && !SCENARIOS.contains(&s.as_str())) {
        anyhow::bail!("unknown scenario `{bad}`; choose from all, {}", SCENARIOS.join(", "));
    }
    let all = o.scenarios.is_empty() || o.scenarios.iter().any(|s| s == "all");
    let want = |name: &str| all || o.scenarios.iter().any(|s| s == name);
    let (plan, warm, window, joins): (Vec<(Inputs, Vec<usize>)>, _, _, usize) = if o.quick {
        (vec![(Inputs::Tile, vec![2, 4]), (Inputs::Full360p, vec![2])], Duration::from_secs(2), Duration::from_secs(3), 3)
    } else {
        let all = vec![2, 4, 9, 16, 25];
        (vec![(Inputs::Tile, all.clone()), (Inputs::Full360p, all)], Duration::from_secs(5), Duration::from_secs(12), 20)
    };
    let plan: Vec<(Inputs, Vec<usize>)> = plan
        .into_iter()
        .filter(|(i, _)| o.inputs.is_empty() || o.inputs.iter().any(|x| x == i.label()))
        .map(|(i, sizes)| (i, if o.participants.is_empty() { sizes } else { o.participants.clone() }))
        .collect();
    let window = o.window.unwrap_or(window);
    let capacity = if want("capacity") { capacity(&o, &plan, warm, window).await? } else { Vec::new() };
    let join = if want("join") { Some(join_time(&o, 4, joins).await?) } else { None };
    let glass_to_glass = if want("latency") { Some(glass_to_glass(&o, if o.quick { 6 } else { 50 }).await?) } else { None };
    let avsync = if want("avsync") { Some(avsync(&o, if o.quick { 6 } else { 30 }).await?) } else { None };
    let loss = if want("loss") { loss(&o, if o.quick { Duration::from_secs(5) } else { Duration::from_secs(20) }).await? } else { Vec::new() };
    let ladder = if want("ladder") { ladder(&o, window).await? } else { Vec::new() };
    let viewers = if want("viewers") { viewers(&o, if o.quick { &[0, 2] } else { &[0, 10, 20] }, warm, window).await? } else { Vec::new() };
    let raw_sizes = if !o.participants.is_empty() { o.participants.clone() } else if o.quick { vec![2] } else { vec![4, 9, 16] };
    let raw = if want("raw") { raw_pipeline(&o, &raw_sizes, warm, window, &capacity).await? } else { Vec::new() };
    let codecs = if want("codecs") { codecs(&o, if o.quick { 1 } else { 3 }, warm, window).await? } else { Vec::new() };
    let mixed_sizes = if !o.participants.is_empty() { o.participants.clone() } else if o.quick { vec![4] } else { vec![9, 16] };
    let mixed_codecs = if want("mixed-codecs") { mixed_codecs(&o, &mixed_sizes, if o.quick { 1 } else { 2 }, warm, window).await? } else { Vec::new() };
    let share_size = o.participants.first().copied().unwrap_or(4);
    let share = if want("share") { share_cost(&o, share_size, if o.quick { 1 } else { 3 }, warm, window).await? } else { Vec::new() };
    let outputs_size = o.participants.first().copied().unwrap_or(if o.quick { 4 } else { 9 });
    let outputs = if want("outputs") { outputs_cost(&o, outputs_size, if o.quick { 1 } else { 3 }, warm, window).await? } else { Vec::new() };
    let hls_viewers = if want("hls-viewers") { hls_viewers(&o, outputs_size, if o.quick { &[0, 20] } else { &[0, 100, 400, 1000] }, window).await? } else { Vec::new() };
    let mesh_sizes = if !o.participants.is_empty() { o.participants.clone() } else if o.quick { vec![2] } else { vec![2, 4, 6, 9] };
    let bandwidth = if want("mesh") { bandwidth(&o, &mesh_sizes, warm, window).await? } else { Vec::new() };
    let tls_size = o.participants.first().copied().unwrap_or(if o.quick { 2 } else { 9 });
    let tls = if want("tls") { tls_cost(&o, tls_size, if o.quick { 1 } else { 2 }, warm, window).await? } else { Vec::new() };
    let cluster = if want("cluster") { Some(cluster(&o, if o.quick { 2 } else { 10 }, if o.quick { 1 } else { 5 }).await?) } else { None };
    let soak = if want("soak") { Some(soak(&o, if o.quick { 12 } else { 200 }, Duration::from_secs(if o.quick { 60 } else { 600 })).await?) } else { None };
    let limit = |inputs: Inputs| {
        capacity
            .iter()
            .filter(|c| c.inputs == inputs.label() && c.observer_fps >= 29.0 && c.server_cpu_pct_of_machine < 70.0)
            .map(|c| c.participants)
            .max()
    };
    let (capacity_limit, capacity_limit_360p) = (limit(Inputs::Tile), limit(Inputs::Full360p));
    let mut report = Report {
        machine: machine(),
        quick: o.quick,
        canvas: o.canvas.clone(),
        capacity,
        join,
        glass_to_glass,
        avsync,
        loss,
        cluster,
        ladder,
        viewers,
        raw,
        codecs,
        mixed_codecs,
        share,
        outputs,
        hls_viewers,
        bandwidth,
        tls,
        reruns: Vec::new(),
        soak,
        capacity_limit,
        capacity_limit_360p,
    };
    if !all {
        // Some scenarios only: keep the other scenarios' last results.
        report.keep_the_rest(&o.out_dir.join("results/latest.json"), &want);
    }
    std::fs::create_dir_all(o.out_dir.join("results"))?;
    std::fs::write(o.out_dir.join("results/latest.json"), serde_json::to_string_pretty(&report)?)?;
    let plots = write_plots(&report, &o.out_dir).context("drawing the plots")?;
    std::fs::write(o.out_dir.join("RESULTS.md"), markdown(&report, &plots))?;
    eprintln!("wrote {}/results/latest.json and {}/RESULTS.md", o.out_dir.display(), o.out_dir.display());
    Ok(report)
}
