use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use tessera::bot::{parse_color, Bot, BotOptions};
use tessera::media::MediaConfig;
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
}

#[derive(Parser)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder of static files for the web client.
    #[arg(long)]
    web: Option<PathBuf>,
    /// Canvas of the composed grid, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    canvas: String,
    /// Frame rate of the composed grid.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Jitterbuffer latency for incoming RTP, in milliseconds.
    #[arg(long, default_value_t = 50)]
    jitterbuffer_ms: u32,
    /// Extra compositor latency, in milliseconds.
    #[arg(long, default_value_t = 20)]
    mixer_latency_ms: u32,
    /// gst-launch fragment for the shared VP8 encoder.
    #[arg(long)]
    video_encoder: Option<String>,
    /// Participants per room.
    #[arg(long, default_value_t = 25)]
    max_participants: usize,
    /// Local address ICE may use (repeatable). Default: 127.0.0.1 when
    /// listening on loopback, otherwise every interface.
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
}

#[derive(Parser)]
struct BotArgs {
    /// Signaling URL of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
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
    /// Put every ICE candidate in the answer instead of trickling them.
    #[arg(long)]
    no_trickle: bool,
    /// Local address ICE may use (repeatable; default 127.0.0.1).
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
    /// Exit with status 1 if the mixed video was received below this frame rate.
    #[arg(long)]
    min_fps: Option<f64>,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once('x').with_context(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let (w, h): (u32, u32) = (w.parse()?, h.parse()?);
    if w < 16 || h < 16 || w > 7680 || h > 4320 || w % 2 != 0 || h % 2 != 0 {
        bail!("`{s}`: sizes must be even, between 16x16 and 7680x4320");
    }
    Ok((w, h))
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
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
    let (w, h) = parse_size(&a.canvas)?;
    let mut media = MediaConfig {
        canvas_width: w,
        canvas_height: h,
        fps: a.fps,
        jitterbuffer_ms: a.jitterbuffer_ms,
        mixer_latency_ms: a.mixer_latency_ms,
        ice_addresses: if a.ice_addresses.is_empty() { server::default_ice_addresses(&a.listen.ip()) } else { a.ice_addresses },
        ..MediaConfig::default()
    };
    if let Some(enc) = a.video_encoder {
        media.video_encoder = enc;
    }
    if a.fps == 0 || a.fps > 60 {
        bail!("--fps must be between 1 and 60");
    }
    let cfg = ServerConfig {
        listen: a.listen,
        web_dir: a.web.unwrap_or_else(server::default_web_dir),
        media,
        max_participants: a.max_participants.max(1),
    };
    let running = server::start(cfg)?;
    // Tests and scripts read this line to find the port.
    println!("tessera listening on http://{}", running.addr());
    tracing::info!("serving on http://{} (signaling ws://{}/ws)", running.addr(), running.addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn bot(a: BotArgs) -> Result<()> {
    let (width, height) = parse_size(&a.size)?;
    let color = match (&a.color, &a.pattern) {
        (Some(c), _) => Some(parse_color(c)?),
        (None, Some(_)) => None,
        (None, None) => Some(0xff0000),
    };
    let opts = BotOptions {
        server: a.server,
        room: a.room,
        name: a.name,
        color,
        pattern: a.pattern.unwrap_or_else(|| "smpte".into()),
        tone_hz: a.tone,
        send_video: !a.no_video,
        width,
        height,
        fps: a.fps,
        trickle: !a.no_trickle,
        ice_addresses: if a.ice_addresses.is_empty() { vec!["127.0.0.1".into()] } else { a.ice_addresses },
    };
    let bot = Bot::connect(opts).await?;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(a.duration.max(0.0))) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let report = bot.report();
    let json = serde_json::to_string_pretty(&report)?;
    match &a.report {
        Some(path) => std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    bot.leave().await;
    if let Some(min) = a.min_fps {
        if report.fps < min {
            bail!("received {:.1} fps, below --min-fps {min}", report.fps);
        }
    }
    Ok(())
}
