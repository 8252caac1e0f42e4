//! Wiring: a configured media backend, a hub of rooms, and the HTTP server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::media::{GstMedia, MediaConfig};
use crate::room::Hub;
use crate::signaling::Server;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub web_dir: PathBuf,
    pub media: MediaConfig,
    pub max_participants: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_dir: default_web_dir(),
            media: MediaConfig::default(),
            max_participants: 25,
        }
    }
}

/// `./web` if it exists, else the `web/` folder of the source tree.
pub fn default_web_dir() -> PathBuf {
    let local = PathBuf::from("web");
    if local.join("index.html").exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// ICE addresses to use when none are configured: a server listening on
/// loopback only offers loopback candidates; otherwise every interface.
pub fn default_ice_addresses(listen: &IpAddr) -> Vec<String> {
    if listen.is_loopback() {
        vec![if listen.is_ipv4() { "127.0.0.1".into() } else { "::1".into() }]
    } else {
        Vec::new()
    }
}

pub struct Running {
    pub server: Server,
    pub hub: Arc<Hub>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.server.addr)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Start a server (must be called inside a tokio runtime).
pub fn start(cfg: ServerConfig) -> Result<Running> {
    let media = GstMedia::new(cfg.media.clone())?;
    let hub = Hub::new(Arc::new(media), cfg.max_participants);
    let server = Server::start(hub.clone(), cfg.listen, cfg.web_dir.clone())?;
    Ok(Running { server, hub })
}
