//! The cluster tests' parts: Debian's `redis-server` on a free loopback
//! port, and tessera nodes as child processes joined to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Debian's redis-server on a free port ([`tessera::tools::redis`]);
/// missing, the test fails here.
pub struct Redis(tessera::tools::redis::RedisServer);

impl Redis {
    pub fn start() -> Redis {
        Redis(tessera::tools::redis::RedisServer::start().unwrap_or_else(|e| panic!("{e:#}")))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key)
    }

    pub fn kill(&mut self) {
        self.0.kill()
    }

    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// `tessera serve` as a node of the cluster of `redis`: its own HTTP port
/// and media port range, node id `id`.
pub struct Node {
    child: Option<Child>,
    pub id: String,
    pub url: String,
    pub addr: std::net::SocketAddr,
    /// An admin token for the HTTP API, when the nodes have an auth secret.
    pub token: Option<String>,
}

impl Node {
    /// `index` picks the node's UDP port range (a hundred ports each).
    pub fn start(redis: &Redis, id: &str, index: u16, extra: &[&str]) -> Node {
        let udp = format!("{}-{}", 42000 + index * 100, 42099 + index * 100);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--listen", "127.0.0.1:0", "--canvas", "640x360", "--redis", &redis.url(), "--node-id", id, "--udp-ports", &udp])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tessera serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads the listening line");
        assert!(line.contains("listening"), "node {id} did not start: {line:?}");
        let addr: std::net::SocketAddr = line.trim().rsplit_once("://").map(|(_, a)| a).and_then(|a| a.parse().ok()).expect("an address on the listening line");
        Node { child: Some(child), id: id.to_string(), url: format!("ws://{addr}/ws"), addr, token: None }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM: the node drains (`--drain-timeout`), then exits.
    pub fn term(&self) {
        let pid = self.pid().expect("running");
        let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill -TERM {pid}");
    }

    /// Wait up to `timeout` for the node to exit: its status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < timeout {
            if let Some(status) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no goodbye to Redis, its leases lapse.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every room of the cluster as this node lists it (`GET /api/rooms`
    /// gathers the live nodes' lists): (node, room, participants).
    pub async fn rooms(&self) -> Vec<(String, String, usize)> {
        let path = match &self.token {
            Some(t) => format!("/api/rooms?token={t}"),
            None => "/api/rooms".to_string(),
        };
        let (status, body) = super::http(self.addr, "GET", &path, "").await;
        assert_eq!(status, 200, "GET /api/rooms on {}: {body}", self.id);
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["rooms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                        (s("node"), s("room"), r["participants"].as_array().map(|p| p.len()).unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which nodes run `room`, with how many participants each, as the first
/// live node lists them (and every live node lists the same).
pub async fn where_is(nodes: &[Node], room: &str) -> Vec<(String, usize)> {
    let live: Vec<&Node> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let mut lists = Vec::new();
    for n in &live {
        let mut l: Vec<(String, usize)> = n.rooms().await.into_iter().filter(|(_, r, _)| r == room).map(|(node, _, p)| (node, p)).collect();
        l.sort();
        lists.push(l);
    }
    let first = lists.first().cloned().unwrap_or_default();
    assert!(lists.iter().all(|l| *l == first), "the nodes list {room} differently: {lists:?}");
    first
}

/// A token signed with `secret` for `room` (`*` for every room), valid an hour.
pub fn token(secret: &str, room: &str, who: &str, role: tessera::auth::TokenRole) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = tessera::auth::Claims {
        sub: who.to_string(),
        name: None,
        exp: now + 3600,
        nbf: None,
        grant: tessera::auth::Grant { room: room.to_string(), role, can_publish: true, can_subscribe: true },
    };
    tessera::auth::mint(secret, &claims).expect("a token")
}
