//! Network namespaces for the link tests and the `loss` bench: the bot's
//! host behind a router namespace whose interface towards it can be
//! shaped (tbf) or made lossy (nftables). Needs root, iproute2 and
//! nftables (scripts/deps.sh --browser installs them); without them
//! [`Netns::create`] and [`Netns::loss`] say why.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two namespaces: a router and, behind it, the bot's host. The link is
/// shaped on the router's interface towards the bot, as a bottleneck in
/// the network would be: the server's own sockets never feel it (a qdisc
/// on the server's interface would push back into its UDP socket and
/// queue seconds of media there, which real links do not). Removed on drop.
pub struct Netns {
    /// The bot's namespace and the router's.
    pub name: String,
    pub router: String,
    host_if: String,
    /// The router's interface towards the bot.
    pub shaped_if: String,
    /// The host's address (the server listens there) and the bot's.
    pub host_ip: String,
    pub ns_ip: String,
}

impl Netns {
    pub fn create() -> Result<Netns, String> {
        let id = std::process::id() % 200 + 20;
        let n = Netns {
            name: format!("tessera-lb{id}"),
            router: format!("tessera-rt{id}"),
            host_if: format!("tslb{id}h"),
            shaped_if: format!("tslb{id}s"),
            host_ip: format!("10.231.{id}.1"),
            ns_ip: format!("10.232.{id}.2"),
        };
        let (router_in, bot_if) = (format!("tslb{id}r"), format!("tslb{id}b"));
        let _ = sh(&["ip", "netns", "del", &n.name]);
        let _ = sh(&["ip", "netns", "del", &n.router]);
        let _ = sh(&["ip", "link", "del", &n.host_if]);
        let inr = |args: &[&str]| -> Result<(), String> {
            let mut v = vec!["ip", "netns", "exec", n.router.as_str()];
            v.extend_from_slice(args);
            sh(&v)
        };
        let inb = |args: &[&str]| -> Result<(), String> {
            let mut v = vec!["ip", "netns", "exec", n.name.as_str()];
            v.extend_from_slice(args);
            sh(&v)
        };
        sh(&["ip", "netns", "add", &n.router])?;
        sh(&["ip", "netns", "add", &n.name])?;
        // host <-> router
        sh(&["ip", "link", "add", &n.host_if, "type", "veth", "peer", "name", &router_in])?;
        sh(&["ip", "link", "set", &router_in, "netns", &n.router])?;
        sh(&["ip", "addr", "add", &format!("{}/24", n.host_ip), "dev", &n.host_if])?;
        sh(&["ip", "link", "set", &n.host_if, "up"])?;
        inr(&["ip", "addr", "add", &format!("10.231.{id}.2/24"), "dev", &router_in])?;
        inr(&["ip", "link", "set", &router_in, "up"])?;
        // router <-> bot
        inr(&["ip", "link", "add", &n.shaped_if, "type", "veth", "peer", "name", &bot_if])?;
        inr(&["ip", "link", "set", &bot_if, "netns", &n.name])?;
        inr(&["ip", "addr", "add", &format!("10.232.{id}.1/24"), "dev", &n.shaped_if])?;
        inr(&["ip", "link", "set", &n.shaped_if, "up"])?;
        inr(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        inb(&["ip", "addr", "add", &format!("{}/24", n.ns_ip), "dev", &bot_if])?;
        inb(&["ip", "link", "set", &bot_if, "up"])?;
        inb(&["ip", "link", "set", "lo", "up"])?;
        inb(&["ip", "route", "add", "default", "via", &format!("10.232.{id}.1")])?;
        sh(&["ip", "route", "add", &format!("10.232.{id}.0/24"), "via", &format!("10.231.{id}.2")])?;
        Ok(n)
    }

    /// Limit what the router forwards to the bot (the bot's downlink).
    pub fn limit(&self, rate: &str, op: &str) -> Result<(), String> {
        sh(&[
            "ip", "netns", "exec", &self.router, "tc", "qdisc", op, "dev", &self.shaped_if, "root", "tbf", "rate", rate, "burst", "32kbit",
            "latency", "400ms",
        ])
    }
}

impl Netns {
    /// Drop `percent` % of the packets the router forwards, at random
    /// (nftables `numgen random`; this kernel has no netem): towards the
    /// bot (its downlink) or from it (its uplink). 0 removes the rule.
    pub fn loss(&self, percent: u32, towards_bot: bool) -> Result<(), String> {
        let nft = |args: &[&str]| -> Result<(), String> {
            let mut v = vec!["ip", "netns", "exec", self.router.as_str(), "nft"];
            v.extend_from_slice(args);
            sh(&v)
        };
        let _ = nft(&["delete", "table", "ip", "tessera_loss"]);
        if percent == 0 {
            return Ok(());
        }
        nft(&["add", "table", "ip", "tessera_loss"])?;
        nft(&["add", "chain", "ip", "tessera_loss", "drops", "{ type filter hook forward priority 0 ; }"])?;
        let dir = if towards_bot { "oifname" } else { "iifname" };
        nft(&["add", "rule", "ip", "tessera_loss", "drops", dir, &self.shaped_if, "numgen", "random", "mod", "100", "<", &percent.to_string(), "drop"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.host_if]);
        let _ = sh(&["ip", "netns", "del", &self.name]);
        let _ = sh(&["ip", "netns", "del", &self.router]);
    }
}

/// A picture that changes everywhere in every frame (costly to encode, as
/// a camera is), for bots whose video should look like real video.
pub const BUSY_PATTERN: &str = "zone-plate kx2=20 ky2=20 kt=1";

/// `tessera bot` (the binary `bin`) run in the namespace behind the router,
/// sending a busy 320x240 picture and printing its report every 250 ms;
/// killed on drop.
pub struct NsBot {
    child: Child,
    last: Arc<Mutex<serde_json::Value>>,
}

impl NsBot {
    /// Join `room` at `url` as `weak`, with `extra` bot flags.
    pub fn start(bin: &Path, ns: &Netns, url: &str, room: &str, extra: &[&str]) -> Result<NsBot, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bin)
            .args(["bot", "--server", url, "--room", room, "--name", "weak", "--report-every", "0.25"])
            .args(["--pattern", BUSY_PATTERN, "--size", "320x240", "--duration", "600", "--ice-address", &ns.ns_ip])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("ip netns exec {} bot: {e}", bin.display()))?;
        let last = Arc::new(Mutex::new(serde_json::Value::Null));
        let stdout = child.stdout.take().ok_or("the namespaced bot has no stdout")?;
        let l = last.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Ok(mut last) = l.lock() {
                        *last = v;
                    }
                }
            }
        });
        Ok(NsBot { child, last })
    }

    /// Its last report (`null` before the first).
    pub fn report(&self) -> serde_json::Value {
        self.last.lock().map(|l| l.clone()).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for NsBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
