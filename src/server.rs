//! Wiring: a configured media backend, a hub of rooms, and the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::config::Config;
use crate::layouts::{self, Catalog};
use crate::media::{GstMedia, MediaConfig};
use crate::room::Hub;
use crate::signaling::Server;

/// What a server starts with: the resolved configuration, the media
/// settings made from it and mixer.toml, and the layouts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub config: Config,
    pub media: MediaConfig,
    pub catalog: Catalog,
    /// Watch `config.server.pipelines` for changes (`catalog` was loaded from it).
    pub watch_pipelines: bool,
}

impl Default for ServerConfig {
    /// The default configuration with the built-in layouts, not watched.
    fn default() -> Self {
        ServerConfig { config: Config::default(), media: MediaConfig::default(), catalog: Catalog::builtin(), watch_pipelines: false }
    }
}

pub struct Running {
    pub server: Server,
    pub hub: Arc<Hub>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.server.addr)
    }

    pub async fn stop(self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
        self.server.stop().await;
    }
}

/// What identifies the state of a pipelines folder: every file's path,
/// size and modification time.
fn fingerprint(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut v = Vec::new();
    let mut visit = |p: PathBuf| {
        if let Ok(md) = std::fs::metadata(&p) {
            v.push((p, md.len(), md.modified().ok()));
        }
    };
    visit(dir.join("mixer.toml"));
    if let Ok(rd) = std::fs::read_dir(dir.join("layouts")) {
        for e in rd.flatten() {
            visit(e.path());
        }
    }
    v.sort();
    v
}

/// Watch `dir` (polling every 250 ms): a valid change is applied to every
/// running room; an invalid one is reported in the log and the last good
/// version stays.
fn watch(dir: PathBuf, hub: Arc<Hub>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = fingerprint(&dir);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let now = fingerprint(&dir);
            if now == last {
                continue;
            }
            last = now;
            let d = dir.clone();
            let loaded = tokio::task::spawn_blocking(move || layouts::load_dir(&d, &crate::media::check_fragment)).await;
            match loaded {
                Ok(Ok(catalog)) => {
                    let h = hub.clone();
                    let _ = tokio::task::spawn_blocking(move || h.set_catalog(catalog)).await;
                    tracing::info!("{}: reloaded; running rooms use it now", dir.display());
                }
                Ok(Err(problems)) => {
                    tracing::error!("{}: change rejected, keeping the last good version:\n{problems}", dir.display());
                }
                Err(e) => tracing::error!("reloading {}: {e}", dir.display()),
            }
        }
    })
}

/// Start a server (must be called inside a tokio runtime).
pub fn start(cfg: ServerConfig) -> Result<Running> {
    let media = GstMedia::new(cfg.media.clone())?;
    let hub = Hub::with_catalog(Arc::new(media), cfg.config.rooms.max_participants, cfg.catalog.clone());
    let server = Server::start(hub.clone(), cfg.config.server.listen, cfg.config.server.web.clone())?;
    let watcher = cfg.watch_pipelines.then(|| watch(cfg.config.server.pipelines.clone(), hub.clone()));
    Ok(Running { server, hub, watcher })
}
