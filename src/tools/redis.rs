//! Debian's `redis-server` on a free loopback port, without persistence
//! (`--save '' --appendonly no`), for the cluster tests and the `cluster`
//! bench. `scripts/deps.sh --browser` (tests) and `--rtmp` (bench)
//! install it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("a free TCP port")?.port();
        let mut r = RedisServer { child: None, port };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (scripts/deps.sh --browser or --rtmp installs it)")?;
        self.child = Some(child);
        let t0 = Instant::now();
        while !self.answers() {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("redis-server does not answer on port {} after 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// PING answered with PONG.
    pub fn answers(&self) -> bool {
        self.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One command as a raw RESP request; the raw reply (None: no answer).
    fn command(&self, args: &[&str]) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// GET `key` (None: no such key, or no answer).
    pub fn get(&self, key: &str) -> Option<String> {
        let reply = self.command(&["GET", key])?;
        if !reply.starts_with('$') || reply.starts_with("$-1") {
            return None;
        }
        reply.split("\r\n").nth(1).map(|v| v.to_string())
    }

    /// Kill it (SIGKILL: everything it held is lost, as it keeps nothing).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again, empty, on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
