use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use tessera::tools::bot::{parse_color, Bot, BotOptions};
use tessera::media::dtls::DtlsCertificate;
use tessera::media::MediaConfig;
use tessera::config::Settings;
use tessera::server::{self, ServerConfig};

#[derive(Parser)]
#[command(name = "tessera", version, about = "A WebRTC MCU: one peer connection per participant, one composed grid back")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve web/, the signaling endpoint GET /ws and GET /healthz.
    Serve(ServeArgs),
    /// A headless participant that sends a colour and a tone and reports what it receives.
    Bot(BotArgs),
    /// Validate a pipelines folder (mixer.toml, layouts/*.toml); exit 1 on any problem.
    Check(CheckArgs),
    /// Render a layout to a PNG as the mixer would, with test patterns and sample names.
    Preview(PreviewArgs),
    /// Run the benchmark scenarios; writes bench/results/latest.json and bench/RESULTS.md.
    Bench(BenchArgs),
    /// Write a new DTLS certificate (ECDSA P-256, with its key) for `serve --dtls-cert`.
    DtlsCert(DtlsCertArgs),
    /// Print a room token (a JWT signed with the server's auth secret).
    Token(TokenArgs),
}

#[derive(Parser)]
struct TokenArgs {
    /// The server's auth secret ([auth] secret).
    #[arg(long, conflicts_with = "secret_file", required_unless_present = "secret_file")]
    secret: Option<String>,
    /// A file holding the secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The room the token is for (`*` with --role admin: every room).
    #[arg(long)]
    room: String,
    /// Identity of the holder (the token's `sub`).
    #[arg(long)]
    identity: String,
    /// Display name (used instead of the name the client sends).
    #[arg(long)]
    name: Option<String>,
    /// participant, viewer or admin.
    #[arg(long, default_value = "participant")]
    role: String,
    /// How long it is valid: 45s, 30m, 2h, 1d.
    #[arg(long, default_value = "2h")]
    ttl: String,
    /// Receive only, even as a participant.
    #[arg(long)]
    no_publish: bool,
}

#[derive(Parser)]
struct DtlsCertArgs {
    /// PEM file to write (certificate and private key; created with mode 0600).
    #[arg(short = 'o', long)]
    out: PathBuf,
}

#[derive(Parser)]
struct BenchArgs {
    /// Small sizes for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run: capacity, join, latency, avsync, loss (root: network namespaces), ladder, viewers, raw, codecs, mixed-codecs, share, outputs, hls-viewers, mesh, tls, soak, all
    /// (repeatable). With some only, the others' last results are kept.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Room sizes for the capacity and raw scenarios instead of the defaults
    /// (comma-separated, e.g. 16 or 9,16).
    #[arg(long, value_delimiter = ',')]
    participants: Vec<usize>,
    /// Input kinds for the capacity scenario: tile, 360p (default both).
    #[arg(long, value_delimiter = ',')]
    inputs: Vec<String>,
    /// Measurement window per capacity row, seconds (e.g. longer for profiling).
    #[arg(long)]
    window: Option<f64>,
    /// Output folder.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Canvas of the server under test.
    #[arg(long, default_value = "1280x720")]
    canvas: String,
    /// The server under test (default: this binary), e.g. another build
    /// for a before/after comparison with the same load bots.
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[derive(Parser)]
struct CheckArgs {
    /// The pipelines folder.
    #[arg(default_value = "pipelines")]
    dir: PathBuf,
}

#[derive(Parser)]
struct PreviewArgs {
    /// A layouts file (its folder's parent is the pipelines folder) or a pipelines folder.
    file: PathBuf,
    /// Number of sample participants.
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// Layout to render (default: the file's first group, else its first layout).
    #[arg(long, conflicts_with = "group")]
    layout: Option<String>,
    /// Group to pick the layout from by participant count.
    #[arg(long)]
    group: Option<String>,
    /// Output PNG.
    #[arg(short = 'o', long, default_value = "preview.png")]
    output: PathBuf,
}

#[derive(Parser)]
struct ServeArgs {
    /// Settings file (docs/configuration.md; the repository's tessera.toml
    /// is a commented example). Flags win over it. Default: none.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Parser)]
struct BotArgs {
    /// Signaling URL of the server; repeat it to give the nodes of a
    /// cluster that --rejoin tries in turn.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server: Vec<String>,
    /// Join again when the room is lost (the WebSocket closed, or the join
    /// was refused): through the next --server, every 250 ms, as the web
    /// client does. The report lists each loss and when the mix came back.
    #[arg(long)]
    rejoin: bool,
    #[arg(long, default_value = "test")]
    room: String,
    #[arg(long, default_value = "bot")]
    name: String,
    /// Solid colour to send: a name or #rrggbb.
    #[arg(long, conflicts_with = "pattern")]
    color: Option<String>,
    /// videotestsrc pattern to send instead of a colour (smpte, ball, snow, ...).
    #[arg(long)]
    pattern: Option<String>,
    /// Tone to send, in Hz.
    #[arg(long, default_value_t = 440.0)]
    tone: f64,
    /// Size of the video sent, WIDTHxHEIGHT.
    #[arg(long, default_value = "320x240")]
    size: String,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds to stay in the room.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Write what was received as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Send no video (receive the grid only; audio is still sent).
    #[arg(long)]
    no_video: bool,
    /// Load mode: send media encoded once and looped, decode nothing (benchmarks).
    #[arg(long)]
    load: bool,
    /// Put every ICE candidate in the answer instead of trickling them.
    #[arg(long)]
    no_trickle: bool,
    /// Local address ICE may use (repeatable; default 127.0.0.1).
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
    /// Join as a receive-only viewer (no camera, no microphone, no tile).
    #[arg(long)]
    viewer: bool,
    /// Rung of the encoder ladder to ask for (high, medium, low, ...; default auto).
    #[arg(long)]
    quality: Option<String>,
    /// Do not decode received video: count frames and read sizes from keyframes.
    #[arg(long)]
    no_decode: bool,
    /// Ignore the server's send_size hint: always send the --size video.
    #[arg(long)]
    fixed_size: bool,
    /// Also print the report as one JSON line every SECONDS while running.
    #[arg(long)]
    report_every: Option<f64>,
    /// Jitterbuffer of what the bot receives, ms: the time a lost packet
    /// has to come again (NACK, RTX) before it counts as lost.
    #[arg(long, default_value_t = 50)]
    jitterbuffer_ms: u32,
    /// Never ask for lost video packets again (no NACK): every lost frame
    /// waits for a keyframe.
    #[arg(long)]
    no_nack: bool,
    /// Volume of the tone, 0..1.
    #[arg(long, default_value_t = 0.25)]
    volume: f64,
    /// Exit with status 1 if the mixed video was received below this frame rate.
    #[arg(long)]
    min_fps: Option<f64>,
    /// Use relay (TURN) candidates only: checks a TURN deployment.
    #[arg(long)]
    relay_only: bool,
    /// Also trust this PEM certificate for wss:// (a server's own certificate).
    #[arg(long)]
    tls_trust: Option<PathBuf>,
    /// Room token (`tessera token`), for a server with an auth secret.
    #[arg(long)]
    token: Option<String>,
    /// Hostile sender, for tests: random bytes after valid RTP headers in
    /// every packet sent (the server must keep it to this participant).
    #[arg(long)]
    corrupt_media: bool,
    /// Stop sending media after SECONDS while keeping the WebSocket open
    /// (a frozen sender: the server removes it after its media_timeout).
    #[arg(long)]
    media_for: Option<f64>,
    /// Video codec to send and to ask the server for: vp8 or h264.
    #[arg(long, default_value = "vp8", value_parser = parse_codec)]
    codec: tessera::protocol::Codec,
    /// Say this in the room's chat once joined (repeatable, in order);
    /// the report lists the chat received.
    #[arg(long)]
    say: Vec<String>,
    /// Also share a screen once joined: a second connection sending this
    /// videotestsrc pattern (smpte, checkers-8, ball, ...) at --share-size.
    #[arg(long)]
    share: Option<String>,
    /// Size of the shared screen, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    share_size: String,
}

fn parse_codec(s: &str) -> Result<tessera::protocol::Codec> {
    tessera::protocol::Codec::parse(s).with_context(|| format!("unknown codec `{s}` (vp8 or h264)"))
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    tessera::config::parse_size(s).map_err(|e| anyhow::anyhow!(e))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tessera::http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(a) => rt.block_on(serve(a)),
        Command::Bot(a) => rt.block_on(bot(a)),
        Command::Check(a) => check(a),
        Command::Bench(a) => rt.block_on(async {
            let o = tessera::tools::bench::BenchOptions {
                quick: a.quick,
                scenarios: a.scenarios,
                out_dir: a.out,
                server_bin: match a.server_bin {
                    Some(p) => p,
                    None => std::env::current_exe()?,
                },
                canvas: a.canvas,
                participants: a.participants,
                inputs: a.inputs,
                window: a.window.map(Duration::from_secs_f64),
            };
            tessera::tools::bench::run(o).await.map(|_| ())
        }),
        Command::Preview(a) => preview(a),
        Command::DtlsCert(a) => dtls_cert(a),
        Command::Token(a) => token(a),
    }
}

fn token(a: TokenArgs) -> Result<()> {
    use tessera::auth::{Claims, Grant, TokenRole};
    let secret = match (a.secret, a.secret_file) {
        (Some(s), _) => s,
        (None, Some(p)) => std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?.trim().to_string(),
        (None, None) => bail!("give --secret or --secret-file"),
    };
    let role = match a.role.as_str() {
        "participant" => TokenRole::Participant,
        "viewer" => TokenRole::Viewer,
        "admin" => TokenRole::Admin,
        r => bail!("--role {r}: choose participant, viewer or admin"),
    };
    if a.room == "*" && role != TokenRole::Admin {
        bail!("--room '*' is for admin tokens");
    }
    let ttl = tessera::auth::parse_ttl(&a.ttl).map_err(|e| anyhow::anyhow!(e))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: a.identity,
        name: a.name,
        exp: now + ttl,
        nbf: None,
        grant: Grant { room: a.room, role, can_publish: !a.no_publish && role != TokenRole::Viewer, can_subscribe: true },
    };
    println!("{}", tessera::auth::mint(&secret, &claims)?);
    Ok(())
}

fn dtls_cert(a: DtlsCertArgs) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let cert = DtlsCertificate::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", a.out.display()))?;
    f.write_all(cert.pem().as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}: {} sha-256 {}", a.out.display(), cert.key_type(), cert.fingerprint());
    Ok(())
}

fn load_catalog(dir: &std::path::Path) -> Result<tessera::layouts::Catalog, tessera::layouts::Problems> {
    tessera::layouts::load_dir(dir, &tessera::media::check_fragment)
}

fn check(a: CheckArgs) -> Result<()> {
    match load_catalog(&a.dir) {
        Ok(c) => {
            let mut groups: Vec<&String> = c.groups.keys().collect();
            groups.sort();
            println!(
                "{}: ok ({} layouts, groups: {}; default group `{}`)",
                a.dir.display(),
                c.layouts.len(),
                groups.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", "),
                c.mixer.default_group
            );
            Ok(())
        }
        Err(problems) => {
            eprint!("{problems}");
            eprintln!("{} problem(s) in {}", problems.0.len(), a.dir.display());
            std::process::exit(1);
        }
    }
}

fn preview(a: PreviewArgs) -> Result<()> {
    let (dir, file) = if a.file.is_dir() {
        (a.file.clone(), None)
    } else {
        let parent = a.file.parent().and_then(|p| p.parent()).map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from("."));
        (parent, Some(a.file.clone()))
    };
    let catalog = match load_catalog(&dir) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{p}");
            std::process::exit(1);
        }
    };
    let layout_name = match (&a.layout, &a.group) {
        (Some(l), _) => l.clone(),
        (None, Some(g)) => catalog
            .group(g)
            .and_then(|g| g.layout_for(a.participants))
            .map(str::to_string)
            .with_context(|| format!("no group `{g}`"))?,
        (None, None) => {
            let names = file.as_ref().map(|f| tessera::layouts::names_in_file(f)).transpose()?.unwrap_or_default();
            let from_group = names.groups.first().and_then(|g| catalog.group(g)).and_then(|g| g.layout_for(a.participants)).map(str::to_string);
            from_group
                .or_else(|| names.layouts.first().cloned())
                .unwrap_or_else(|| catalog.group(&catalog.mixer.default_group).and_then(|g| g.layout_for(a.participants)).unwrap_or("solo").to_string())
        }
    };
    let layout = catalog.layouts.get(&layout_name).with_context(|| format!("no layout `{layout_name}`"))?;
    tessera::media::preview::render(&catalog.mixer, layout, a.participants, &a.output)?;
    println!("{}: layout `{}` with {} participants, {}x{}", a.output.display(), layout.name, a.participants, catalog.mixer.width, catalog.mixer.height);
    Ok(())
}

async fn serve(a: ServeArgs) -> Result<()> {
    let file = match &a.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let cfg = a.settings.over(file).resolve()?;
    // First, before anything loads GStreamer's SRTP elements.
    tessera::media::srtp::choose(cfg.media.srtp_library.as_deref())?;
    let drain_timeout = cfg.server.drain_timeout;
    // The server refuses to start on an invalid default configuration.
    let catalog = match load_catalog(&cfg.server.pipelines) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("{problems}");
            bail!("{} problem(s) in {}; not starting", problems.0.len(), cfg.server.pipelines.display());
        }
    };
    let dtls = match &cfg.network.dtls_cert {
        Some(path) => DtlsCertificate::from_pem_file(path)?,
        None => DtlsCertificate::process()?,
    };
    tracing::info!("DTLS certificate: {}, sha-256 {}", dtls.key_type(), dtls.fingerprint());
    let media = MediaConfig::configured(&catalog.mixer, &cfg, dtls);
    let cfg = ServerConfig { config: cfg, media, catalog, watch_pipelines: true };
    if cfg.config.server.tls.is_none() && !cfg.config.server.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plain HTTP on {}: browsers give a page from another machine no camera or microphone without HTTPS; \
             use --tls-cert/--tls-key (or --tls-self-signed for a LAN demo), or a TLS reverse proxy (docs/deploy.md)",
            cfg.config.server.listen
        );
    }
    if cfg.config.auth.secret.is_none() {
        tracing::warn!("no auth secret: rooms are open, anyone who reaches this server can join any room (set [auth] secret or --auth-secret; docs/configuration.md)");
    } else {
        tracing::info!("room tokens required (mint them with `tessera token`)");
    }
    let running = server::start(cfg)?;
    // Tests and scripts read this line to find the port.
    println!("tessera listening on {}", running.url());
    if let Some(fp) = running.tls_fingerprint() {
        // On stderr: scripts read only the line above from stdout.
        tracing::info!("HTTPS certificate sha-256 {fp} (compare it with what the browser shows before accepting a self-signed one)");
    }
    tracing::info!("serving on {} (signaling {})", running.url(), running.ws_url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let hub = running.hub.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hub.drain_requested() => {}
    }
    // Drain: no new joins, /readyz fails; rooms run on until they empty or
    // the deadline ends them. A second signal exits at once.
    hub.start_drain();
    let deadline = std::time::Instant::now() + drain_timeout;
    tracing::info!("draining: {} room(s) open; ending them in at most {} s (a second SIGTERM exits now)", hub.room_count(), drain_timeout.as_secs());
    let mut ended: Option<std::time::Instant> = None;
    loop {
        if hub.room_count() == 0 {
            break;
        }
        let now = std::time::Instant::now();
        match ended {
            None if now >= deadline => {
                let n = hub.end_all();
                tracing::info!("drain deadline: {n} member(s) told to rejoin (server_draining)");
                ended = Some(now);
            }
            // Clients that do not go within 5 s of being told are cut off.
            Some(t) if now.duration_since(t) > Duration::from_secs(5) => break,
            _ => {}
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("second signal: exiting now");
                std::process::exit(0);
            }
            _ = term.recv() => {
                tracing::info!("second SIGTERM: exiting now");
                std::process::exit(0);
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    tracing::info!("drained; shutting down");
    // Idle connections (never joined) would hold a graceful shutdown.
    if tokio::time::timeout(Duration::from_secs(5), running.stop()).await.is_err() {
        tracing::warn!("connections still open after 5 s; exiting anyway");
    }
    Ok(())
}

/// `tessera bot --rejoin`: the bot in the room, joined again whenever it
/// loses it, for --duration; prints its report with the rejoins.
async fn rejoining_bot(opts: BotOptions, servers: Vec<String>, duration: f64, report_every: Option<f64>, report_to: Option<&std::path::Path>) -> Result<()> {
    let mut r = tessera::tools::rejoin::Rejoiner::connect(opts, servers).await?;
    let every = report_every.filter(|s| *s > 0.0).map(Duration::from_secs_f64).unwrap_or(Duration::from_secs(3600));
    let until = std::time::Instant::now() + Duration::from_secs_f64(duration.max(0.0));
    let report = |r: &tessera::tools::rejoin::Rejoiner| {
        let mut v = r.bot().map(|b| serde_json::to_value(b.report()).unwrap_or_default()).unwrap_or_else(|| serde_json::json!({}));
        v["rejoins"] = serde_json::to_value(&r.history).unwrap_or_default();
        v
    };
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            _ = r.tend(left.min(every)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if report_every.is_some() {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", report(&r))?;
            out.flush()?;
        }
    }
    let json = serde_json::to_string_pretty(&report(&r))?;
    match report_to {
        Some(path) => std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    r.leave().await;
    Ok(())
}

async fn bot(a: BotArgs) -> Result<()> {
    let (width, height) = parse_size(&a.size)?;
    let color = match (&a.color, &a.pattern) {
        (Some(c), _) => Some(parse_color(c)?),
        (None, Some(_)) => None,
        (None, None) => Some(0xff0000),
    };
    let servers = a.server.clone();
    let opts = BotOptions {
        server: servers.first().cloned().unwrap_or_default(),
        room: a.room,
        name: a.name,
        color,
        pattern: a.pattern.unwrap_or_else(|| "smpte".into()),
        tone_hz: a.tone,
        volume: a.volume.clamp(0.0, 1.0),
        send_video: !a.no_video,
        load: a.load,
        width,
        height,
        fps: a.fps,
        trickle: !a.no_trickle,
        ice_addresses: if a.ice_addresses.is_empty() { vec!["127.0.0.1".into()] } else { a.ice_addresses },
        viewer: a.viewer,
        quality: a.quality,
        decode: !a.no_decode,
        fixed_size: a.fixed_size,
        relay_only: a.relay_only,
        tls_trust: a.tls_trust.map(|p| std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))).transpose()?,
        token: a.token,
        corrupt_media: a.corrupt_media,
        media_for: a.media_for.map(|s| Duration::from_secs_f64(s.max(0.0))),
        codec: a.codec,
        share_of: None,
        jitterbuffer_ms: a.jitterbuffer_ms,
        nack: !a.no_nack,
    };
    if a.rejoin {
        return rejoining_bot(opts, servers, a.duration, a.report_every, a.report.as_deref()).await;
    }
    let bot = Bot::connect(opts).await?;
    let share = match &a.share {
        Some(pattern) => {
            let (w, h) = parse_size(&a.share_size)?;
            Some(bot.share(pattern, w, h).await?)
        }
        None => None,
    };
    if !a.say.is_empty() {
        if !bot.wait_until(Duration::from_secs(10), |b| b.id().is_some()).await {
            bail!("not joined within 10 s: nothing said");
        }
        for text in &a.say {
            bot.chat(text).await?;
        }
    }
    let every = a.report_every.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
    let until = tokio::time::sleep(Duration::from_secs_f64(a.duration.max(0.0)));
    tokio::pin!(until);
    loop {
        let tick = tokio::time::sleep(every.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            _ = &mut until => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick, if every.is_some() => {
                use std::io::Write;
                let line = serde_json::to_string(&bot.report())?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
    }
    bot.selected_pair().await;
    let report = bot.report();
    let json = serde_json::to_string_pretty(&report)?;
    match &a.report {
        Some(path) => std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    if let Some(s) = share {
        s.leave().await;
    }
    bot.leave().await;
    if let Some(min) = a.min_fps {
        if report.fps < min {
            bail!("received {:.1} fps, below --min-fps {min}", report.fps);
        }
    }
    Ok(())
}
