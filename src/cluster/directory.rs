//! The cluster's directory in Redis: who is alive and how loaded, and
//! which node holds each room's lease. Every call is bounded in time; an
//! error means Redis is out of reach.
//!
//! Keys (all under `tessera:`):
//! - `node:<id>`: the node's [`NodeState`] as JSON, expiring after three
//!   heartbeats; `nodes`: the set of node ids ever seen (dead ones are
//!   dropped when found without their `node:` key).
//! - `room:<room>`: the id of the node holding the room's lease, expiring
//!   after `lease_ms` unless renewed.
//! - `node_rooms:<id>`: the rooms a node holds (for placement).
//! - `cluster_key`: a random secret the nodes share, set by the first
//!   node; it marks a WebSocket one node opens to another for a client.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use redis::aio::ConnectionManager;

use super::placement::NodeState;

const PREFIX: &str = "tessera:";
/// Longest wait for one Redis call.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// Claim a room for a node, and note it among the node's rooms.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
return 0";

/// Renew a lease this node holds: 1 renewed, 2 re-established (the key
/// was gone: Redis restarted, or the lease lapsed and no one took it), or
/// the holder's id when another node has it.
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return v";

/// Give a lease up if this node still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1";

/// What renewing a lease found.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewal {
    Renewed,
    /// The lease was gone and is this node's again.
    Reestablished,
    /// Another node holds the room.
    HeldBy(String),
}

#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    claim: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

fn key(kind: &str, id: &str) -> String {
    format!("{PREFIX}{kind}:{id}")
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| format!("Redis: {what}")),
        Err(_) => Err(anyhow!("Redis: {what}: no answer within {} ms", CALL_TIMEOUT.as_millis())),
    }
}

impl Directory {
    /// Check that Redis answers (a clear error at start if not) and read
    /// the cluster key (the first node sets it), then keep a connection
    /// that reconnects by itself. Blocks for at most a few seconds.
    pub fn connect(url: &str) -> Result<(Directory, String)> {
        let client = redis::Client::open(url).with_context(|| format!("Redis URL `{url}`"))?;
        let mut probe = client.get_connection_with_timeout(Duration::from_secs(3)).with_context(|| format!("cannot reach Redis at {url}"))?;
        probe.set_read_timeout(Some(Duration::from_secs(3))).context("Redis connection")?;
        redis::cmd("PING").query::<String>(&mut probe).with_context(|| format!("Redis at {url} does not answer PING"))?;
        let fresh: String = crate::room::random_secret().iter().map(|b| format!("{b:02x}")).collect();
        let k = format!("{PREFIX}cluster_key");
        redis::cmd("SET").arg(&k).arg(&fresh).arg("NX").query::<Option<String>>(&mut probe).context("Redis: setting the cluster key")?;
        let cluster_key: String = redis::cmd("GET").arg(&k).query(&mut probe).context("Redis: reading the cluster key")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).context("Redis connection")?;
        let dir = Directory { conn, claim: redis::Script::new(CLAIM), renew: redis::Script::new(RENEW), release: redis::Script::new(RELEASE) };
        Ok((dir, cluster_key))
    }

    /// Publish this node's state, alive for `ttl`; put the cluster key back
    /// if Redis lost it (a restart: it keeps nothing).
    pub async fn heartbeat(&self, state: &NodeState, ttl: Duration, cluster_key: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(state)?;
        bounded("heartbeat", async {
            redis::pipe()
                .cmd("SET")
                .arg(format!("{PREFIX}cluster_key"))
                .arg(cluster_key)
                .arg("NX")
                .ignore()
                .cmd("SET")
                .arg(key("node", &state.id))
                .arg(json)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore()
                .cmd("SADD")
                .arg(format!("{PREFIX}nodes"))
                .arg(&state.id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(key("node_rooms", &state.id))
                .arg(ttl.as_millis() as u64)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Take this node out at once (a clean stop).
    pub async fn leave(&self, id: &str) -> Result<()> {
        let mut c = self.conn.clone();
        bounded("leaving", async {
            redis::pipe().del(key("node", id)).ignore().srem(format!("{PREFIX}nodes"), id).ignore().query_async::<()>(&mut c).await
        })
        .await
    }

    /// The live nodes, with their room counts read now.
    pub async fn nodes(&self) -> Result<Vec<NodeState>> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = bounded("nodes", redis::cmd("SMEMBERS").arg(format!("{PREFIX}nodes")).query_async(&mut c)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("GET").arg(key("node", id)).cmd("SCARD").arg(key("node_rooms", id)).cmd("PTTL").arg(key("node", id));
        }
        let got: Vec<(Option<String>, usize, i64)> = bounded("node states", pipe.query_async(&mut c)).await?;
        let mut live = Vec::new();
        for (id, (json, rooms, pttl)) in ids.iter().zip(got) {
            match json.and_then(|j| serde_json::from_str::<NodeState>(&j).ok()) {
                Some(mut n) => {
                    n.rooms = n.rooms.max(rooms);
                    n.age_ms = n.ttl_ms.saturating_sub(pttl.max(0) as u64);
                    live.push(n);
                }
                None => {
                    let _ = bounded("dropping a dead node", redis::cmd("SREM").arg(format!("{PREFIX}nodes")).arg(id).query_async::<()>(&mut c)).await;
                }
            }
        }
        Ok(live)
    }

    /// One node's state, if it is alive.
    pub async fn node(&self, id: &str) -> Result<Option<NodeState>> {
        let mut c = self.conn.clone();
        let json: Option<String> = bounded("node state", redis::cmd("GET").arg(key("node", id)).query_async(&mut c)).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// The node holding `room`'s lease.
    pub async fn owner(&self, room: &str) -> Result<Option<String>> {
        let mut c = self.conn.clone();
        bounded("room owner", redis::cmd("GET").arg(key("room", room)).query_async(&mut c)).await
    }

    /// Claim `room` for `node` unless someone holds it: true if claimed.
    pub async fn claim(&self, room: &str, node: &str, lease: Duration, node_ttl: Duration) -> Result<bool> {
        let mut c = self.conn.clone();
        let mut inv = self.claim.key(key("room", room));
        inv.key(key("node_rooms", node)).arg(node).arg(lease.as_millis() as u64).arg(room).arg(node_ttl.as_millis() as u64);
        let won: i64 = bounded("claiming a room", inv.invoke_async(&mut c)).await?;
        Ok(won == 1)
    }

    pub async fn renew(&self, room: &str, node: &str, lease: Duration) -> Result<Renewal> {
        let mut c = self.conn.clone();
        let mut inv = self.renew.key(key("room", room));
        inv.arg(node).arg(lease.as_millis() as u64);
        let v: redis::Value = bounded("renewing a lease", inv.invoke_async(&mut c)).await?;
        Ok(match v {
            redis::Value::Int(1) => Renewal::Renewed,
            redis::Value::Int(_) => {
                let _ = bounded("noting a room", redis::cmd("SADD").arg(key("node_rooms", node)).arg(room).query_async::<()>(&mut c)).await;
                Renewal::Reestablished
            }
            other => Renewal::HeldBy(redis::from_redis_value::<String>(other).unwrap_or_default()),
        })
    }

    pub async fn release(&self, room: &str, node: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let mut inv = self.release.key(key("room", room));
        inv.key(key("node_rooms", node)).arg(node).arg(room);
        bounded("releasing a lease", inv.invoke_async::<i64>(&mut c)).await.map(|_| ())
    }
}
