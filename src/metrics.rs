//! `GET /metrics`: what the server does, in the Prometheus (OpenMetrics)
//! text format, every name prefixed `tessera_` (docs/api.md, Metrics).
//!
//! Counters of events the server sees pass through (joins by outcome,
//! leaves, errors by code) are kept here as they happen; the state of the
//! rooms and their media is read from the [`Hub`] at each scrape. Labels
//! go down to the room at most (never a participant): a server has at
//! most `max_rooms` rooms, so the series stay bounded. The receivers of a
//! room are summarised (`stat` = `min`, `median`, `max`) rather than
//! listed. No GStreamer and no warp here.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::room::RoomSnapshot;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Upper bounds (seconds) of the join-to-first-frame histogram.
pub const FIRST_FRAME_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0];

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: a scrape clears and refills the room families.
    render: Mutex<()>,
    joins: Family<Labels, Counter>,
    leaves: Counter,
    errors: Family<Labels, Counter>,
    rooms: Gauge,
    participants: Family<Labels, Gauge>,
    composed: Family<Labels, Counter>,
    canvas_fps: Family<Labels, Gauge>,
    keyframe_requests: Family<Labels, Counter>,
    keyframes_forced: Family<Labels, Counter>,
    rung_switches: Family<Labels, Counter>,
    rung_running: Family<Labels, Gauge>,
    rung_receivers: Family<Labels, Gauge>,
    rung_bitrate: Family<Labels, Gauge>,
    rung_frames: Family<Labels, Counter>,
    estimate: Family<Labels, Gauge>,
    loss: Family<Labels, FloatGauge>,
    rtt: Family<Labels, FloatGauge>,
    first_frame: Histogram,
    cpu: Counter<f64, AtomicU64>,
    rss: Gauge,
    threads: Gauge,
    fds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            render: Mutex::new(()),
            joins: Family::default(),
            leaves: Counter::default(),
            errors: Family::default(),
            rooms: Gauge::default(),
            participants: Family::default(),
            composed: Family::default(),
            canvas_fps: Family::default(),
            keyframe_requests: Family::default(),
            keyframes_forced: Family::default(),
            rung_switches: Family::default(),
            rung_running: Family::default(),
            rung_receivers: Family::default(),
            rung_bitrate: Family::default(),
            rung_frames: Family::default(),
            estimate: Family::default(),
            rtt: Family::default(),
            loss: Family::default(),
            first_frame: Histogram::new(FIRST_FRAME_BUCKETS),
            cpu: Counter::default(),
            rss: Gauge::default(),
            threads: Gauge::default(),
            fds: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register("tessera_joins", "Joins by outcome: ok, or the error code that refused them", m.joins.clone());
        r.register("tessera_leaves", "Participants, viewers and shares that left a room", m.leaves.clone());
        r.register("tessera_errors", "Error messages sent to clients, by code", m.errors.clone());
        r.register("tessera_rooms", "Rooms open", m.rooms.clone());
        r.register("tessera_participants", "Members of a room by role: participant, viewer, share", m.participants.clone());
        r.register("tessera_room_frames_composed", "Frames the room's compositor produced", m.composed.clone());
        r.register("tessera_room_canvas_fps", "The room's canvas frame rate (what the compositor should reach)", m.canvas_fps.clone());
        r.register("tessera_keyframe_requests", "Keyframe requests of the room's receivers (PLI, FIR, connects)", m.keyframe_requests.clone());
        r.register("tessera_keyframes_forced", "Keyframes a rung encoder was asked for", m.keyframes_forced.clone());
        r.register("tessera_rung_switches", "Receivers moved from one rung to another", m.rung_switches.clone());
        r.register("tessera_rung_running", "1 while the rung's encoder runs (someone receives it)", m.rung_running.clone());
        r.register("tessera_rung_receivers", "Receivers getting the rung's frames", m.rung_receivers.clone());
        r.register("tessera_rung_bitrate_bps", "The rung encoder's output over the last 2 s, bits per second", m.rung_bitrate.clone());
        r.register("tessera_rung_frames", "Frames the rung encoded", m.rung_frames.clone());
        r.register("tessera_receiver_estimate_bps", "Congestion-control estimates of the room's receivers' downlinks (stat: min, median, max)", m.estimate.clone());
        r.register("tessera_receiver_loss_ratio", "Video packet loss of the room's receivers, 0..1 (stat: median, max)", m.loss.clone());
        r.register("tessera_receiver_rtt_seconds", "Round trip to the room's receivers from their RTCP receiver reports (stat: median, max)", m.rtt.clone());
        r.register("tessera_join_to_first_frame_seconds", "From a receiver's join to the first frame the server hands it", m.first_frame.clone());
        r.register("tessera_process_cpu_seconds", "CPU time of the server process (user and system)", m.cpu.clone());
        r.register("tessera_process_resident_memory_bytes", "Resident memory of the server process", m.rss.clone());
        r.register("tessera_process_threads", "Threads of the server process", m.threads.clone());
        r.register("tessera_process_open_fds", "Open file descriptors of the server process", m.fds.clone());
        m
    }

    /// A join ended: `ok`, or the error code that refused it.
    pub fn join(&self, outcome: &str) {
        self.joins.get_or_create(&labels(&[("outcome", outcome)])).inc();
    }

    pub fn leave(&self) {
        self.leaves.inc();
    }

    /// An error message went to a client.
    pub fn error(&self, code: &str) {
        self.errors.get_or_create(&labels(&[("code", code)])).inc();
    }

    /// The text of a scrape: the counters, and `rooms` as they are now.
    pub fn render(&self, rooms: &[RoomSnapshot]) -> String {
        let _one = self.render.lock();
        for f in [&self.participants, &self.canvas_fps, &self.rung_running, &self.rung_receivers, &self.rung_bitrate, &self.estimate] {
            f.clear();
        }
        for f in [&self.composed, &self.keyframe_requests, &self.keyframes_forced, &self.rung_switches, &self.rung_frames] {
            f.clear();
        }
        self.loss.clear();
        self.rtt.clear();
        self.rooms.set(rooms.len() as i64);
        for r in rooms {
            let room = r.room.as_str();
            for (role, n) in [("participant", r.participants), ("viewer", r.viewers), ("share", r.shares)] {
                self.participants.get_or_create(&labels(&[("room", room), ("role", role)])).set(n as i64);
            }
            let m = &r.media;
            let by_room = labels(&[("room", room)]);
            self.composed.get_or_create(&by_room).inner().store(m.frames_composed, Ordering::Relaxed);
            self.canvas_fps.get_or_create(&by_room).set(m.canvas_fps as i64);
            self.keyframe_requests.get_or_create(&by_room).inner().store(m.keyframe_requests, Ordering::Relaxed);
            self.rung_switches.get_or_create(&by_room).inner().store(m.rung_switches, Ordering::Relaxed);
            for g in &m.rungs {
                let l = labels(&[("room", room), ("codec", &g.codec), ("rung", &g.rung)]);
                self.rung_running.get_or_create(&l).set(g.running as i64);
                self.rung_receivers.get_or_create(&l).set(g.receivers as i64);
                self.rung_bitrate.get_or_create(&l).set(g.bitrate_bps as i64);
                self.rung_frames.get_or_create(&l).inner().store(g.frames, Ordering::Relaxed);
                self.keyframes_forced.get_or_create(&l).inner().store(g.keyframes_forced, Ordering::Relaxed);
            }
            let mut est: Vec<u64> = m.receivers.iter().map(|x| x.estimate_bps).filter(|e| *e > 0).collect();
            est.sort_unstable();
            if let (Some(lo), Some(hi)) = (est.first(), est.last()) {
                for (stat, v) in [("min", *lo), ("median", est[est.len() / 2]), ("max", *hi)] {
                    self.estimate.get_or_create(&labels(&[("room", room), ("stat", stat)])).set(v as i64);
                }
            }
            let mut loss: Vec<f64> = m.receivers.iter().map(|x| x.loss).collect();
            loss.sort_by(|a, b| a.total_cmp(b));
            if let Some(hi) = loss.last() {
                for (stat, v) in [("median", loss[loss.len() / 2]), ("max", *hi)] {
                    self.loss.get_or_create(&labels(&[("room", room), ("stat", stat)])).set(v);
                }
            }
            let mut rtt: Vec<f64> = m.receivers.iter().filter_map(|x| x.rtt_s).collect();
            rtt.sort_by(|a, b| a.total_cmp(b));
            if let Some(hi) = rtt.last() {
                for (stat, v) in [("median", rtt[rtt.len() / 2]), ("max", *hi)] {
                    self.rtt.get_or_create(&labels(&[("room", room), ("stat", stat)])).set(v);
                }
            }
            for ms in &m.first_frames_ms {
                self.first_frame.observe(*ms as f64 / 1000.0);
            }
        }
        self.process();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics not encoded: {e}");
        }
        out
    }

    /// The server process as /proc shows it.
    fn process(&self) {
        let Ok(me) = procfs::process::Process::myself() else { return };
        if let Ok(stat) = me.stat() {
            let tps = procfs::ticks_per_second() as f64;
            self.cpu.inner().store(((stat.utime + stat.stime) as f64 / tps).to_bits(), Ordering::Relaxed);
            self.threads.set(stat.num_threads);
            self.rss.set(stat.rss as i64 * procfs::page_size() as i64);
        }
        if let Ok(n) = me.fd_count() {
            self.fds.set(n as i64);
        }
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{MediaMetrics, ReceiverMetrics, RungMetrics};

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
    }

    #[test]
    fn a_scrape_shows_the_rooms_as_they_are_and_counts_what_happened() {
        let m = Metrics::new();
        m.join("ok");
        m.join("ok");
        m.join("room_full");
        m.error("room_full");
        m.leave();
        let media = MediaMetrics {
            frames_composed: 300,
            canvas_fps: 30,
            keyframe_requests: 4,
            rung_switches: 1,
            rungs: vec![RungMetrics { codec: "vp8".into(), rung: "high".into(), running: true, receivers: 2, bitrate_bps: 900_000, frames: 290, keyframes_forced: 3 }],
            receivers: vec![
                ReceiverMetrics { estimate_bps: 2_000_000, delivered_bps: 900_000, loss: 0.0, rtt_s: Some(0.04), viewer: false },
                ReceiverMetrics { estimate_bps: 500_000, delivered_bps: 400_000, loss: 0.05, rtt_s: None, viewer: true },
            ],
            first_frames_ms: vec![400, 1500],
        };
        let rooms = vec![RoomSnapshot { room: "standup".into(), participants: 2, viewers: 1, shares: 0, media }];
        let t = m.render(&rooms);
        assert_eq!(value(&t, r#"tessera_joins_total{outcome="ok"}"#), Some(2.0), "{t}");
        assert_eq!(value(&t, r#"tessera_joins_total{outcome="room_full"}"#), Some(1.0));
        assert_eq!(value(&t, r#"tessera_errors_total{code="room_full"}"#), Some(1.0));
        assert_eq!(value(&t, "tessera_leaves_total"), Some(1.0));
        assert_eq!(value(&t, "tessera_rooms"), Some(1.0));
        assert_eq!(value(&t, r#"tessera_participants{room="standup",role="participant"}"#), Some(2.0));
        assert_eq!(value(&t, r#"tessera_participants{room="standup",role="viewer"}"#), Some(1.0));
        assert_eq!(value(&t, r#"tessera_room_frames_composed_total{room="standup"}"#), Some(300.0));
        assert_eq!(value(&t, r#"tessera_rung_frames_total{room="standup",codec="vp8",rung="high"}"#), Some(290.0));
        assert_eq!(value(&t, r#"tessera_rung_bitrate_bps{room="standup",codec="vp8",rung="high"}"#), Some(900_000.0));
        assert_eq!(value(&t, r#"tessera_receiver_estimate_bps{room="standup",stat="min"}"#), Some(500_000.0));
        assert_eq!(value(&t, r#"tessera_receiver_loss_ratio{room="standup",stat="max"}"#), Some(0.05));
        // Only receivers with a report count.
        assert_eq!(value(&t, r#"tessera_receiver_rtt_seconds{room="standup",stat="median"}"#), Some(0.04));
        assert_eq!(value(&t, "tessera_join_to_first_frame_seconds_count"), Some(2.0));
        assert_eq!(value(&t, r#"tessera_join_to_first_frame_seconds_bucket{le="0.5"}"#), Some(1.0));
        assert!(value(&t, "tessera_process_threads").is_some_and(|n| n >= 1.0));
        assert!(value(&t, "tessera_process_resident_memory_bytes").is_some_and(|n| n > 1e6));
        assert!(t.ends_with("# EOF\n"));
        // The room closed: its series go, the counters stay.
        let t = m.render(&[]);
        assert_eq!(value(&t, "tessera_rooms"), Some(0.0));
        assert!(!t.contains("standup"), "{t}");
        assert_eq!(value(&t, r#"tessera_joins_total{outcome="ok"}"#), Some(2.0));
        assert_eq!(value(&t, "tessera_join_to_first_frame_seconds_count"), Some(2.0), "observed once");
    }
}
