//! Wiring: a configured media backend, a hub of rooms, and the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use crate::certs::Identity;
use crate::config::{Config, Tls};
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
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    tls_fingerprint: Option<String>,
    watcher: Option<(Debouncer<RecommendedWatcher>, tokio::task::JoinHandle<()>)>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn ws_url(&self) -> String {
        format!("{}://{}/ws", if self.server.tls { "wss" } else { "ws" }, self.server.addr)
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.server.tls { "https" } else { "http" }, self.server.addr)
    }

    /// SHA-256 fingerprint of the HTTPS certificate, when serving TLS.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls_fingerprint.as_deref()
    }

    pub async fn stop(self) {
        if let Some((debouncer, task)) = self.watcher {
            drop(debouncer);
            task.abort();
        }
        // Out of the cluster first: its leases go and no join is sent here.
        if let Some(c) = &self.cluster {
            c.leave().await;
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

/// Watch `dir` for changes (inotify, through `notify`, debounced by
/// 200 ms so an editor's write-rename-chmod is one change): a valid change
/// is applied to every running room; an invalid one is reported in the log
/// and the last good version stays. The returned debouncer must be kept:
/// dropping it stops the watch.
fn watch(dir: PathBuf, hub: Arc<Hub>) -> Result<(Debouncer<RecommendedWatcher>, tokio::task::JoinHandle<()>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(Duration::from_millis(200), move |res: DebounceEventResult| match res {
        // A full queue already holds a reload that will see this change too.
        Ok(events) if !events.is_empty() => {
            let _ = tx.try_send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("watching the pipelines folder: {e}"),
    })
    .context("cannot start watching the pipelines folder")?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let task = tokio::spawn(async move {
        // Reads and metadata-only events change nothing that is loaded.
        let mut last = fingerprint(&dir);
        while rx.recv().await.is_some() {
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
    });
    Ok((debouncer, task))
}

/// Start a server (must be called inside a tokio runtime).
pub fn start(cfg: ServerConfig) -> Result<Running> {
    let srtp = crate::media::srtp::choose(cfg.config.media.srtp_library.as_deref())?;
    match srtp {
        crate::media::srtp::Srtp::Loaded(_) => tracing::info!("SRTP: {srtp}"),
        crate::media::srtp::Srtp::System(_) => tracing::warn!("SRTP: {srtp}, about four times the CPU per packet of the OpenSSL build"),
    }
    let media = GstMedia::new(cfg.media.clone())?;
    let hub = Hub::with_config(Arc::new(media), cfg.config.rooms.clone(), cfg.catalog.clone(), cfg.config.network.ice_servers.clone());
    if let Some(w) = &cfg.config.webhook {
        hub.send_events_to(crate::webhook::spawn(crate::webhook::Target::new(&w.url, &w.secret)?));
        // Recording and stream status changes are found by looking, each second.
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                match weak.upgrade() {
                    Some(hub) => hub.report_outputs(),
                    None => return,
                }
            }
        });
        tracing::info!("webhook: events go to {}", w.url);
    }
    let identity = match &cfg.config.server.tls {
        None => None,
        Some(Tls::Files { cert, key }) => Some(Identity::from_files(cert, key)?),
        Some(Tls::SelfSigned { names }) => Some(Identity::generate(names).context("generating the self-signed HTTPS certificate")?),
    };
    let secret = cfg.config.auth.secret.as_deref().map(Arc::from);
    let mut shared = crate::signaling::Shared::new(secret, cfg.config.limits.clone());
    if cfg.config.cluster.is_some() {
        shared = shared.clustered();
    }
    let cluster_slot = shared.cluster.clone();
    let server = Server::start(hub.clone(), cfg.config.server.listen, cfg.config.server.web.clone(), identity.as_ref(), shared)?;
    let cluster = match &cfg.config.cluster {
        Some(c) => {
            let cluster = crate::cluster::Cluster::start(c.clone(), &hub, server.addr, server.tls).context("joining the cluster")?;
            let _ = cluster_slot.set(cluster.clone());
            Some(cluster)
        }
        None => None,
    };
    let tls_fingerprint = identity.map(|id| id.fingerprint());
    let watcher = if cfg.watch_pipelines { Some(watch(cfg.config.server.pipelines.clone(), hub.clone())?) } else { None };
    Ok(Running { server, hub, cluster, tls_fingerprint, watcher })
}
