//! More than one node (docs/cluster.md). A room lives on one node (its
//! mixer is one pipeline); Redis is the directory of nodes and of which
//! node holds each room's lease ([`directory`]). A join that arrives at a
//! node other than the room's is carried to the owner over a WebSocket of
//! its own ([`proxy`]); the media goes straight to the owner. Where a new
//! room goes is a pure rule ([`placement`]).
//!
//! A room's lease is claimed with `SET NX PX` by the node the first join
//! arrives at, for the node placement chose (itself or another), renewed
//! by the owner every heartbeat while the room runs and released when it
//! closes; a dead node's leases lapse and the next join places the room
//! anew. Redis out of reach: running rooms keep running and take joins
//! that reach their node; new rooms are refused (`cluster_unavailable`).

pub mod directory;
pub mod placement;
pub mod proxy;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use parking_lot::Mutex;

use crate::protocol::{ErrorCode, ProtocolError};
use crate::room::Hub;
use directory::{Directory, Renewal};
use placement::NodeState;

/// Proxy hops a join may take: the first node forwards to the owner it
/// claimed the room for; that one may forward once more if the room moved
/// in between.
pub const MAX_HOPS: u8 = 2;

/// Where a join goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// The room is (or now will be) on this node.
    Local,
    /// The room is on another node: carry the connection there.
    Remote { node: String, url: String },
}

/// This node's membership of a cluster.
pub struct Cluster {
    dir: Directory,
    cfg: crate::config::Cluster,
    id: String,
    url: String,
    /// Marks WebSockets opened by a node for a client (docs/cluster.md).
    key: String,
    /// Rooms whose lease this node holds, and when each last ran here
    /// (or was claimed: the join that claimed it is on its way).
    leased: Mutex<HashMap<String, Instant>>,
    /// Redis answered the last heartbeat.
    up: AtomicBool,
    stop: AtomicBool,
}

fn unavailable(e: &anyhow::Error) -> ProtocolError {
    ProtocolError::new(ErrorCode::ClusterUnavailable, format!("the cluster's directory is out of reach, so no new room can be placed: {e:#}; try again in a moment"))
}

impl Cluster {
    /// Join the cluster: Redis must answer now (a clear error if not).
    /// Heartbeats start at once, in a task of their own (inside a tokio
    /// runtime).
    /// `bound`: the address the server listens on (the default node id
    /// and URL are made from it).
    pub fn start(cfg: crate::config::Cluster, hub: &Arc<Hub>, bound: std::net::SocketAddr, tls: bool) -> Result<Arc<Cluster>> {
        let (dir, key) = Directory::connect(&cfg.redis)?;
        let (id, url) = (cfg.id_for(&bound), cfg.url_for(&bound, tls));
        let cluster = Arc::new(Cluster { dir, cfg, id, url, key, leased: Mutex::new(HashMap::new()), up: AtomicBool::new(true), stop: AtomicBool::new(false) });
        let (weak_c, weak_h) = (Arc::downgrade(&cluster), Arc::downgrade(hub));
        tokio::spawn(async move {
            let mut cpu = CpuShare::new();
            loop {
                let (Some(c), Some(hub)) = (weak_c.upgrade(), weak_h.upgrade()) else { return };
                if c.stop.load(Ordering::SeqCst) {
                    return;
                }
                c.beat(&hub, cpu.sample()).await;
                let period = c.cfg.heartbeat;
                drop((c, hub));
                tokio::time::sleep(period).await;
            }
        });
        tracing::info!(node = %cluster.id, url = %cluster.url, "in the cluster of {}", cluster.cfg.redis);
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.id
    }

    /// The secret that marks a node-to-node WebSocket.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn node_ttl(&self) -> Duration {
        self.cfg.heartbeat * 3
    }

    fn state(&self, hub: &Hub, cpu: f64) -> NodeState {
        NodeState {
            id: self.id.clone(),
            url: self.url.clone(),
            rooms: hub.room_count(),
            max_rooms: hub.max_rooms(),
            participants: hub.participant_count(),
            capacity: self.cfg.capacity,
            cpu,
            draining: hub.is_draining(),
            ttl_ms: self.node_ttl().as_millis() as u64,
            age_ms: 0,
        }
    }

    /// One heartbeat: publish the load, renew the leases of the rooms
    /// running here, release those of rooms that closed.
    async fn beat(&self, hub: &Arc<Hub>, cpu: f64) {
        let result: Result<()> = async {
            self.dir.heartbeat(&self.state(hub, cpu), self.node_ttl(), &self.key).await?;
            let running: HashSet<String> = hub.room_ids().into_iter().collect();
            // A room gone for a heartbeat is given up (not at once: the
            // join that claimed a room may not have opened it yet).
            let gone: Vec<String> = self
                .leased
                .lock()
                .iter()
                .filter(|(room, seen)| !running.contains(*room) && seen.elapsed() >= self.cfg.heartbeat)
                .map(|(room, _)| room.clone())
                .collect();
            for room in &gone {
                self.dir.release(room, &self.id).await?;
                self.leased.lock().remove(room);
            }
            for room in &running {
                match self.dir.renew(room, &self.id, self.cfg.lease).await? {
                    Renewal::Renewed => {}
                    Renewal::Reestablished => tracing::info!(room = %room, "lease re-established (Redis had lost it)"),
                    Renewal::HeldBy(other) => {
                        // Another node took the room while this one could
                        // not renew: the copy here ends, its members rejoin
                        // and are carried to the other.
                        tracing::warn!(room = %room, "node `{other}` holds this room's lease now: ending the copy here");
                        let h = hub.clone();
                        let r = room.clone();
                        let _ = tokio::task::spawn_blocking(move || h.end_room(&r, ErrorCode::RoomMoved, "the room moved to another node: join again")).await;
                        continue;
                    }
                }
                self.leased.lock().insert(room.clone(), Instant::now());
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if !self.up.swap(true, Ordering::SeqCst) {
                    tracing::info!("the cluster's Redis answers again");
                }
            }
            Err(e) => {
                if self.up.swap(false, Ordering::SeqCst) {
                    tracing::warn!("the cluster's Redis is out of reach; running rooms go on, new ones are refused: {e:#}");
                }
            }
        }
    }

    /// Where a join for `room` goes. `hops`: how many nodes carried it
    /// here already.
    pub async fn route(&self, hub: &Hub, room: &str, hops: u8) -> Result<Route, ProtocolError> {
        if hub.room(room).is_some() {
            return Ok(Route::Local);
        }
        let me = self.id.as_str();
        let owner = self.dir.owner(room).await.map_err(|e| unavailable(&e))?;
        let owner = match owner {
            Some(o) => o,
            None => {
                // A new room: place it, and claim it for the chosen node.
                let target = if hops > 0 {
                    me.to_string()
                } else {
                    let nodes = self.dir.nodes().await.map_err(|e| unavailable(&e))?;
                    match placement::pick(&nodes) {
                        Some(n) => n.id.clone(),
                        None => return Err(ProtocolError::new(ErrorCode::TooManyRooms, "every node of the cluster is full or draining: no room for a new room")),
                    }
                };
                if self.dir.claim(room, &target, self.cfg.lease, self.node_ttl()).await.map_err(|e| unavailable(&e))? {
                    target
                } else {
                    // Someone claimed it first: go where it went.
                    self.dir.owner(room).await.map_err(|e| unavailable(&e))?.unwrap_or(target)
                }
            }
        };
        if owner == me {
            self.leased.lock().insert(room.to_string(), Instant::now());
            return Ok(Route::Local);
        }
        if hops >= MAX_HOPS {
            return Err(ProtocolError::new(ErrorCode::ClusterUnavailable, format!("room `{room}` kept moving between nodes; try again in a moment")));
        }
        match self.dir.node(&owner).await.map_err(|e| unavailable(&e))? {
            Some(n) => Ok(Route::Remote { node: n.id, url: n.url }),
            None => Err(ProtocolError::new(
                ErrorCode::ClusterUnavailable,
                format!("room `{room}` is on node `{owner}`, which has stopped answering; its lease lapses within {} s and the room moves: try again then", self.cfg.lease.as_secs()),
            )),
        }
    }

    /// The HTTP base of the node running `room`, when that is another live
    /// node (the room's HTTP API is carried there); None: answer here.
    pub async fn api_owner(&self, hub: &Hub, room: &str) -> Option<String> {
        if hub.room(room).is_some() {
            return None;
        }
        let owner = self.dir.owner(room).await.ok()??;
        if owner == self.id {
            return None;
        }
        let node = self.dir.node(&owner).await.ok()??;
        proxy::http_base(&node.url)
    }

    /// Every other live node: (id, HTTP base).
    pub async fn other_nodes(&self) -> Vec<(String, String)> {
        let nodes = self.dir.nodes().await.unwrap_or_default();
        nodes.into_iter().filter(|n| n.id != self.id).filter_map(|n| proxy::http_base(&n.url).map(|b| (n.id, b))).collect()
    }

    /// Leave the cluster at once (a clean stop): release every lease.
    pub async fn leave(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let rooms: Vec<String> = self.leased.lock().drain().map(|(room, _)| room).collect();
        for room in rooms {
            let _ = self.dir.release(&room, &self.id).await;
        }
        let _ = self.dir.leave(&self.id).await;
    }
}

/// The process's share of the machine's CPU between two samples
/// (`/proc/self/stat`); 0 where it cannot be read.
struct CpuShare {
    last: Option<(Instant, u64)>,
    cores: f64,
}

impl CpuShare {
    fn new() -> CpuShare {
        CpuShare { last: None, cores: std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0) }
    }

    fn ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from field 3.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn sample(&mut self) -> f64 {
        let now = Instant::now();
        let Some(t) = CpuShare::ticks() else { return 0.0 };
        let share = match self.last {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    // 100 clock ticks a second (USER_HZ on Linux).
                    ((t.saturating_sub(before)) as f64 / 100.0 / secs / self.cores).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, t));
        share
    }
}
