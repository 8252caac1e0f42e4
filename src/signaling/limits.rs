//! How much one client may take: token buckets for message and join rates,
//! and the count of open connections per client address. Pure rules: time
//! is a parameter, and nothing here does I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Limits;

/// A token bucket: `burst` at once, then `rate` a second.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Full at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Bucket {
        Bucket { rate: rate as f64, burst: burst.max(1) as f64, tokens: burst.max(1) as f64, last: now }
    }

    /// Full at `now`: `burst` at once, then `per_minute` a minute.
    pub fn per_minute(per_minute: u32, burst: u32, now: Instant) -> Bucket {
        Bucket { rate: per_minute as f64 / 60.0, ..Bucket::new(0, burst, now) }
    }

    /// Take one token at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Full again (no token taken for long enough)?
    fn idle(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate >= self.burst
    }
}

/// The messages of one connection: over the rate they are dropped, and the
/// client hears about it at most once a second.
#[derive(Debug, Clone)]
pub struct MessageRate {
    bucket: Bucket,
    last_told: Option<Instant>,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Take,
    /// Drop it and tell the client (`rate_limited`).
    DropAndTell,
    /// Drop it silently (told less than a second ago).
    Drop,
}

impl MessageRate {
    pub fn new(limits: &Limits, now: Instant) -> MessageRate {
        MessageRate { bucket: Bucket::new(limits.messages_per_second, limits.message_burst, now), last_told: None }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now) {
            return Verdict::Take;
        }
        match self.last_told {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(1) => Verdict::Drop,
            _ => {
                self.last_told = Some(now);
                Verdict::DropAndTell
            }
        }
    }
}

#[derive(Debug)]
struct PerIp {
    connections: usize,
    joins: Bucket,
}

/// Connections and joins per client address, shared by every connection.
#[derive(Debug)]
pub struct PerIpLimits {
    limits: Limits,
    table: Mutex<HashMap<IpAddr, PerIp>>,
}

/// One open connection of an address; dropping it gives the place back.
#[derive(Debug)]
pub struct Connection {
    owner: Arc<PerIpLimits>,
    ip: IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut t = self.owner.table.lock();
        if let Some(e) = t.get_mut(&self.ip) {
            e.connections = e.connections.saturating_sub(1);
        }
    }
}

impl PerIpLimits {
    pub fn new(limits: Limits) -> Arc<PerIpLimits> {
        Arc::new(PerIpLimits { limits, table: Mutex::new(HashMap::new()) })
    }

    /// A new connection from `ip` at `now`: it takes one of the address's places,
    /// None when they are all taken (`too_many_connections`). Its joins
    /// are counted by [`join`].
    ///
    /// [`join`]: PerIpLimits::join
    pub fn connect(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<Connection> {
        let mut t = self.table.lock();
        let l = &self.limits;
        let e = t.entry(ip).or_insert_with(|| PerIp { connections: 0, joins: Bucket::new(l.joins_per_second_per_ip, l.join_burst_per_ip, now) });
        if e.connections >= l.connections_per_ip {
            return None;
        }
        e.connections += 1;
        Some(Connection { owner: self.clone(), ip })
    }

    /// A `join` from `ip` at `now`: false when the address joins too fast.
    pub fn join(&self, ip: IpAddr, now: Instant) -> bool {
        let mut t = self.table.lock();
        // Forget addresses with nothing open and a full bucket.
        if t.len() > 1024 {
            t.retain(|_, e| e.connections > 0 || !e.joins.idle(now));
        }
        let l = &self.limits;
        t.entry(ip).or_insert_with(|| PerIp { connections: 0, joins: Bucket::new(l.joins_per_second_per_ip, l.join_burst_per_ip, now) }).joins.take(now)
    }

    /// Open connections of `ip`.
    pub fn connections(&self, ip: IpAddr) -> usize {
        self.table.lock().get(&ip).map(|e| e.connections).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| b.take(t0)).count(), 5, "the burst");
        assert!(!b.take(ms(t0, 50)), "half a token after 50 ms");
        assert!(b.take(ms(t0, 100)), "one token after 100 ms at 10/s");
        assert!(!b.take(ms(t0, 100)));
        // A long pause refills to the burst, no more.
        assert_eq!((0..10).filter(|_| b.take(ms(t0, 60_000))).count(), 5);
    }

    #[test]
    fn a_flood_is_told_once_a_second() {
        let t0 = Instant::now();
        let limits = Limits { messages_per_second: 2, message_burst: 2, ..Limits::default() };
        let mut r = MessageRate::new(&limits, t0);
        let verdicts: Vec<Verdict> = (0..6).map(|i| r.check(ms(t0, i))).collect();
        assert_eq!(verdicts, [Verdict::Take, Verdict::Take, Verdict::DropAndTell, Verdict::Drop, Verdict::Drop, Verdict::Drop]);
        assert_eq!(r.check(ms(t0, 600)), Verdict::Take, "a token came back after 500 ms");
        assert_eq!(r.check(ms(t0, 700)), Verdict::Drop, "told 700 ms ago");
        assert_eq!(r.check(ms(t0, 1_010)), Verdict::Take, "0.4 + 0.62 tokens");
        assert_eq!(r.check(ms(t0, 1_011)), Verdict::DropAndTell, "told more than a second ago");
    }

    #[test]
    fn connections_per_address_are_counted_and_given_back() {
        let t0 = Instant::now();
        let limits = Limits { connections_per_ip: 2, join_burst_per_ip: 100, ..Limits::default() };
        let per_ip = PerIpLimits::new(limits);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let c1 = per_ip.connect(a, t0).unwrap();
        let _c2 = per_ip.connect(a, t0).unwrap();
        assert!(per_ip.connect(a, t0).is_none(), "the third is over the limit");
        assert!(per_ip.connect(b, t0).is_some(), "another address is not affected");
        drop(c1);
        assert_eq!(per_ip.connections(a), 1);
        assert!(per_ip.connect(a, t0).is_some(), "a closed connection gives its place back");
    }

    #[test]
    fn joins_per_address_are_rate_limited() {
        let t0 = Instant::now();
        let limits = Limits { joins_per_second_per_ip: 1, join_burst_per_ip: 3, ..Limits::default() };
        let per_ip = PerIpLimits::new(limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _c = per_ip.connect(a, t0).unwrap();
        assert!(per_ip.join(a, t0) && per_ip.join(a, t0) && per_ip.join(a, t0));
        assert!(!per_ip.join(a, t0), "the burst of 3 is spent");
        assert!(per_ip.connect(a, t0).is_some(), "connections are counted, not rated");
        assert!(!per_ip.join(a, ms(t0, 900)));
        assert!(per_ip.join(a, ms(t0, 1_000)));
        assert!(per_ip.join("10.0.0.9".parse().unwrap(), t0), "others are not affected");
    }
}
