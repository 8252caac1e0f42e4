//! Pure delivery rules with time passed in: what a receiver's TWCC feedback
//! says about its link (and the congestion estimate made from it, see
//! [`Estimator`]), how often a rung may be asked for a keyframe, and
//! when a receiver moves from one rung to another ([`RungSwitch`]).
//! No clocks, no GStreamer: `media::delivery` is the thin adapter that
//! feeds them from the streaming threads and reads them from its
//! controller. The rung controller itself is [`crate::ladder`].

use std::collections::VecDeque;

use crate::ladder::{LinkSample, Target};

/// Minimum spacing of forced keyframes on one rung's encoder.
pub const KEYFRAME_MIN_INTERVAL_MS: u64 = 500;
/// Loss is measured over the reports of the last second.
const LOSS_WINDOW_MS: u64 = 1_000;
/// The delivered rate is measured over the newest 500 ms of the receiver's clock.
const RATE_WINDOW_NS: u64 = 500_000_000;
/// Arrivals kept: one second of the receiver's clock.
const KEEP_NS: u64 = 1_000_000_000;

/// Keyframe requests for one rung: the first is served at once, a request
/// inside the 500 ms window after a forced keyframe is kept pending and
/// served by the first encoded frame after the window.
#[derive(Debug, Default, Clone)]
pub struct KeyframeThrottle {
    last_forced_ms: Option<u64>,
    pending: bool,
    forced: u64,
}

impl KeyframeThrottle {
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Called per encoded frame at `now_ms`; true when a keyframe must be
    /// forced now.
    pub fn due(&mut self, now_ms: u64) -> bool {
        if !self.pending {
            return false;
        }
        if self.last_forced_ms.is_some_and(|last| now_ms < last + KEYFRAME_MIN_INTERVAL_MS) {
            return false;
        }
        self.pending = false;
        self.last_forced_ms = Some(now_ms);
        self.forced += 1;
        true
    }

    /// Keyframes forced so far.
    pub fn forced(&self) -> u64 {
        self.forced
    }
}

/// One packet of a TWCC feedback, as rtpsession reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketReport {
    /// When we sent it (our clock, ns), when rtpsession knows.
    pub sent_ns: Option<u64>,
    /// When it arrived (the receiver's clock, ns); None: lost.
    pub arrived_ns: Option<u64>,
    /// Bytes on the wire.
    pub bytes: u32,
}

impl PacketReport {
    pub fn lost(&self) -> bool {
        self.arrived_ns.is_none()
    }
}

/// The TWCC feedback of one receiver: which packets were reported lost
/// (by when we learnt it, our clock) and what arrived (the receiver's
/// clock), and the congestion [`Estimator`] fed from the same reports.
#[derive(Debug, Clone)]
pub struct LinkWindow {
    /// Received packets: (arrival on the receiver's clock in ns, bytes).
    received: VecDeque<(u64, u32)>,
    /// Every reported packet: (when reported, our ms, lost).
    reports: VecDeque<(u64, bool)>,
    /// Latest arrival seen (receiver's clock, ns).
    newest_ns: u64,
    any: bool,
    pub estimator: Estimator,
}

impl Default for LinkWindow {
    fn default() -> Self {
        LinkWindow::new(Estimator::new(DEFAULT_START_BPS, DEFAULT_MIN_BPS, DEFAULT_MAX_BPS))
    }
}

impl LinkWindow {
    pub fn new(estimator: Estimator) -> LinkWindow {
        LinkWindow { received: VecDeque::new(), reports: VecDeque::new(), newest_ns: 0, any: false, estimator }
    }

    /// The packet reports of one TWCC feedback received at `now_ms`; the
    /// estimate after it.
    pub fn feedback(&mut self, now_ms: u64, packets: &[PacketReport]) -> u32 {
        self.any = true;
        for p in packets {
            self.reports.push_back((now_ms, p.lost()));
            if let Some(ts) = p.arrived_ns {
                self.received.push_back((ts, p.bytes));
                self.newest_ns = self.newest_ns.max(ts);
            }
        }
        while self.reports.front().is_some_and(|(t, _)| now_ms.saturating_sub(*t) > LOSS_WINDOW_MS) {
            self.reports.pop_front();
        }
        let newest = self.newest_ns;
        while self.received.front().is_some_and(|(t, _)| newest.saturating_sub(*t) > KEEP_NS) {
            self.received.pop_front();
        }
        let s = self.sample(now_ms);
        self.estimator.feedback(now_ms, packets, s.delivered_bps, s.loss)
    }

    /// What the link carried, as of `now_ms`, with the estimate.
    /// Without a report for a second the delivered rate is unknown (0).
    pub fn sample(&self, now_ms: u64) -> LinkSample {
        let recent = self.reports.iter().filter(|(t, _)| now_ms.saturating_sub(*t) <= LOSS_WINDOW_MS);
        let (n, lost) = recent.fold((0usize, 0usize), |(n, l), (_, lost)| (n + 1, l + *lost as usize));
        let loss = if n == 0 { 0.0 } else { lost as f64 / n as f64 };
        let bytes: u64 = self.received.iter().filter(|(t, _)| self.newest_ns.saturating_sub(*t) < RATE_WINDOW_NS).map(|(_, s)| *s as u64).sum();
        let stale = self.reports.back().map(|(t, _)| now_ms.saturating_sub(*t) > LOSS_WINDOW_MS).unwrap_or(true);
        LinkSample {
            estimate_bps: self.estimator.estimate(),
            delivered_bps: if stale { 0 } else { (bytes * 8 * 1_000_000_000 / RATE_WINDOW_NS) as u32 },
            loss,
            has_feedback: self.any,
            rung_bps: 0,
        }
    }
}

/// Estimator defaults when the delivery gives none.
const DEFAULT_START_BPS: u32 = 1_000_000;
const DEFAULT_MIN_BPS: u32 = 30_000;
const DEFAULT_MAX_BPS: u32 = 10_000_000;
/// A standing queue longer than this is congestion: the estimate drops.
pub const OVERUSE_QUEUE_MS: f64 = 30.0;
/// Below this the link is not queuing: the estimate may grow.
pub const NORMAL_QUEUE_MS: f64 = 10.0;
/// The standing queue is the shortest one-way delay over this much of the
/// receiver's clock: a burst (a keyframe) that drains inside it is not one.
const STANDING_WINDOW_NS: u64 = 150_000_000;
/// The base one-way delay is the shortest seen over this long (our ms).
const BASE_WINDOW_MS: u64 = 30_000;
/// After a decrease, the queue gets this long to drain before another.
const DECREASE_HOLD_MS: u64 = 300;
/// A decrease takes the estimate to this share of what was delivered.
const DECREASE_FACTOR: f64 = 0.85;
/// Growth per second while the link does not queue.
const INCREASE_PER_S: f64 = 1.08;
/// The estimate grows to at most this many times what was delivered.
const DELIVERED_HEADROOM: f64 = 1.5;
/// Random loss below this is left to retransmission; above it the
/// estimate drops by half the loss (GCC's loss controller uses 10 %; the
/// delay signal sees a congested queue long before it drops).
pub const LOSS_DECREASE: f64 = 0.12;

/// Delay-gradient and loss congestion control on one receiver's TWCC
/// feedback, after GCC (draft-ietf-rmcat-gcc): the one-way delay of each
/// reported packet (receiver's arrival minus our send time, offset by the
/// clocks) less its minimum over the last 30 s is the queue on the path;
/// a standing queue over [`OVERUSE_QUEUE_MS`] cuts the estimate to 85 %
/// of the delivered rate, heavy loss cuts it by half the loss, and a link
/// that does not queue lets it grow 8 % a second up to 1.5 times what it
/// delivered. It runs on the feedback as it arrives: no thread, no timer,
/// no pacer (rtpgccbwe ran a 5 ms loop per receiver).
#[derive(Debug, Clone)]
pub struct Estimator {
    estimate: f64,
    min_bps: f64,
    max_bps: f64,
    /// Sliding minimum of the one-way delay: (our ms, delay ns), increasing delays.
    base: VecDeque<(u64, i64)>,
    /// Recent arrivals: (arrival on the receiver's clock, one-way delay ns).
    recent: VecDeque<(u64, i64)>,
    last_decrease_ms: Option<u64>,
    last_update_ms: Option<u64>,
    /// The last standing queue seen, for the stats and the log.
    queue_ms: f64,
}

impl Estimator {
    pub fn new(start_bps: u32, min_bps: u32, max_bps: u32) -> Estimator {
        Estimator {
            estimate: start_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps.max(min_bps) as f64,
            base: VecDeque::new(),
            recent: VecDeque::new(),
            last_decrease_ms: None,
            last_update_ms: None,
            queue_ms: 0.0,
        }
    }

    pub fn estimate(&self) -> u32 {
        self.estimate as u32
    }

    /// The standing queue on the path at the last feedback (ms).
    pub fn queue_ms(&self) -> f64 {
        self.queue_ms
    }

    /// A rate proven by the rung controller's probe.
    pub fn set(&mut self, bps: u32) {
        self.estimate = (bps as f64).clamp(self.min_bps, self.max_bps);
    }

    /// One feedback at `now_ms`, with what the link delivered over the
    /// last half second and lost over the last second; the new estimate.
    pub fn feedback(&mut self, now_ms: u64, packets: &[PacketReport], delivered_bps: u32, loss: f64) -> u32 {
        let mut newest = None;
        for p in packets {
            let (Some(sent), Some(arrived)) = (p.sent_ns, p.arrived_ns) else { continue };
            let delay = arrived as i64 - sent as i64;
            while self.base.back().is_some_and(|(_, d)| *d >= delay) {
                self.base.pop_back();
            }
            self.base.push_back((now_ms, delay));
            self.recent.push_back((arrived, delay));
            newest = Some(newest.map_or(arrived, |n: u64| n.max(arrived)));
        }
        while self.base.len() > 1 && self.base.front().is_some_and(|(t, _)| now_ms.saturating_sub(*t) > BASE_WINDOW_MS) {
            self.base.pop_front();
        }
        if let Some(newest) = newest {
            while self.recent.front().is_some_and(|(t, _)| newest.saturating_sub(*t) > STANDING_WINDOW_NS) {
                self.recent.pop_front();
            }
        }
        let dt_ms = self.last_update_ms.map_or(0, |t| now_ms.saturating_sub(t)).min(1_000);
        self.last_update_ms = Some(now_ms);
        let (Some(base), Some(standing)) = (self.base.front().map(|b| b.1), self.recent.iter().map(|r| r.1).min()) else {
            return self.estimate();
        };
        self.queue_ms = (standing - base).max(0) as f64 / 1e6;
        let may_decrease = self.last_decrease_ms.is_none_or(|t| now_ms >= t + DECREASE_HOLD_MS);
        if self.queue_ms > OVERUSE_QUEUE_MS {
            if may_decrease {
                let delivered = if delivered_bps > 0 { delivered_bps as f64 } else { self.estimate };
                self.estimate = self.estimate.min(delivered * DECREASE_FACTOR);
                self.last_decrease_ms = Some(now_ms);
            }
        } else if loss > LOSS_DECREASE {
            if may_decrease {
                self.estimate *= 1.0 - 0.5 * loss;
                self.last_decrease_ms = Some(now_ms);
            }
        } else if self.queue_ms < NORMAL_QUEUE_MS && may_decrease {
            let grown = self.estimate * INCREASE_PER_S.powf(dt_ms as f64 / 1000.0);
            let cap = if delivered_bps > 0 { delivered_bps as f64 * DELIVERED_HEADROOM + 10_000.0 } else { grown };
            self.estimate = self.estimate.max(grown.min(cap));
        }
        self.estimate = self.estimate.clamp(self.min_bps, self.max_bps);
        self.estimate()
    }
}

/// Which rung's frames one receiver gets. `target` is where it is going
/// (chosen by the receiver or the rung controller), `current` the rung
/// whose frames it gets now. A move happens at the target's next keyframe;
/// until then the receiver keeps the frames of the rung it is on, so a
/// switch never shows a broken picture, and a new receiver gets nothing
/// before a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungSwitch {
    pub target: Target,
    pub current: Option<usize>,
}

/// What to do with one encoded frame for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFor {
    /// Not this receiver's rung (or not a keyframe to start on).
    Skip,
    /// Hand it over; `switched`: this keyframe completed a move.
    Deliver { switched: bool },
}

/// What pointing a receiver at a target asks of the rungs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointed {
    /// It is there already: nothing changes.
    AlreadyThere,
    /// The target rung owes it a keyframe; the move happens then.
    Moving(usize),
    /// Video paused at once (audio only).
    Paused,
}

impl RungSwitch {
    pub fn new(target: Target) -> RungSwitch {
        RungSwitch { target, current: None }
    }

    /// One frame of rung `rung` was encoded (`key`: a keyframe).
    pub fn frame(&mut self, rung: usize, key: bool) -> FrameFor {
        match self.target {
            Target::Rung(t) if t == rung && self.current != Some(rung) => {
                if key {
                    self.current = Some(rung);
                    FrameFor::Deliver { switched: true }
                } else {
                    FrameFor::Skip
                }
            }
            _ if self.current == Some(rung) => FrameFor::Deliver { switched: false },
            _ => FrameFor::Skip,
        }
    }

    /// Go to `target`.
    pub fn point(&mut self, target: Target) -> Pointed {
        self.target = target;
        match target {
            Target::AudioOnly => {
                self.current = None;
                Pointed::Paused
            }
            Target::Rung(i) if self.current == Some(i) => Pointed::AlreadyThere,
            Target::Rung(i) => Pointed::Moving(i),
        }
    }

    /// Mark the rungs this receiver needs encoded: the one it is on and the
    /// one it is going to.
    pub fn mark_used(&self, used: &mut [bool]) {
        for i in [self.current, if let Target::Rung(t) = self.target { Some(t) } else { None }].into_iter().flatten() {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_receiver_starts_on_its_rungs_first_keyframe() {
        let mut s = RungSwitch::new(Target::Rung(1));
        assert_eq!(s.frame(1, false), FrameFor::Skip, "no delta frame before a keyframe");
        assert_eq!(s.frame(0, true), FrameFor::Skip, "another rung's keyframe is not for it");
        assert_eq!(s.frame(1, true), FrameFor::Deliver { switched: true });
        assert_eq!(s.frame(1, false), FrameFor::Deliver { switched: false });
        assert_eq!(s.current, Some(1));
    }

    #[test]
    fn a_moving_receiver_keeps_its_rung_until_the_targets_keyframe() {
        let mut s = RungSwitch { target: Target::Rung(0), current: Some(0) };
        assert_eq!(s.point(Target::Rung(2)), Pointed::Moving(2));
        assert_eq!(s.frame(0, false), FrameFor::Deliver { switched: false }, "still on the old rung");
        assert_eq!(s.frame(2, false), FrameFor::Skip, "the new rung's delta frames are not decodable");
        assert_eq!(s.frame(2, true), FrameFor::Deliver { switched: true });
        assert_eq!(s.frame(0, false), FrameFor::Skip, "the old rung is left");
        assert_eq!(s.point(Target::Rung(2)), Pointed::AlreadyThere);
    }

    #[test]
    fn audio_only_pauses_at_once_and_frees_every_rung() {
        let mut s = RungSwitch { target: Target::Rung(1), current: Some(1) };
        assert_eq!(s.point(Target::AudioOnly), Pointed::Paused);
        assert_eq!(s.frame(1, true), FrameFor::Skip);
        let mut used = [false; 3];
        s.mark_used(&mut used);
        assert_eq!(used, [false; 3]);
    }

    #[test]
    fn rungs_in_use_are_the_current_and_the_target() {
        let mut used = [false; 3];
        RungSwitch { target: Target::Rung(2), current: Some(0) }.mark_used(&mut used);
        RungSwitch::new(Target::Rung(0)).mark_used(&mut used);
        assert_eq!(used, [true, false, true], "rung 1 encodes nothing");
    }

    #[test]
    fn the_first_keyframe_request_is_served_at_once_and_the_next_after_500_ms() {
        let mut k = KeyframeThrottle::default();
        assert!(!k.due(0), "nothing asked");
        k.request();
        assert!(k.due(10));
        k.request();
        k.request();
        assert!(!k.due(100) && !k.due(509), "inside the window");
        assert!(k.due(510), "served by the first frame after the window");
        assert!(!k.due(2000), "two requests in the window make one keyframe");
        assert_eq!(k.forced(), 2);
    }

    fn got(arrived_ns: u64, bytes: u32) -> PacketReport {
        PacketReport { sent_ns: Some(arrived_ns), arrived_ns: Some(arrived_ns), bytes }
    }

    fn lost() -> PacketReport {
        PacketReport { sent_ns: Some(0), arrived_ns: None, bytes: 1200 }
    }

    #[test]
    fn delivered_rate_counts_the_newest_half_second_of_the_receivers_clock() {
        let mut w = LinkWindow::default();
        // 100 packets of 1000 bytes over 1 s of the receiver's clock, reported at once.
        let packets: Vec<PacketReport> = (0..100).map(|i| got(i * 10_000_000, 1000)).collect();
        w.feedback(5_000, &packets);
        let s = w.sample(5_000);
        // The newest 500 ms hold 50 packets: 50 kB in 0.5 s = 800 kbps.
        assert_eq!(s.delivered_bps, 800_000);
        assert_eq!((s.loss, s.has_feedback), (0.0, true));
    }

    #[test]
    fn loss_is_the_share_of_lost_reports_in_the_last_second() {
        let mut w = LinkWindow::default();
        let mut pk = vec![got(1_000_000, 1200); 9];
        pk.push(lost());
        w.feedback(1_000, &pk);
        assert!((w.sample(1_000).loss - 0.1).abs() < 1e-9);
        // A second later with clean reports, the old loss has left the window.
        w.feedback(2_100, &[got(2_000_000_000, 1200); 10]);
        assert_eq!(w.sample(2_100).loss, 0.0);
    }

    #[test]
    fn no_report_for_a_second_means_the_delivered_rate_is_unknown() {
        let mut w = LinkWindow::default();
        assert!(!w.sample(0).has_feedback);
        w.feedback(1_000, &[got(1_000, 1200); 10]);
        assert!(w.sample(1_500).delivered_bps > 0);
        assert_eq!(w.sample(2_001).delivered_bps, 0, "stale");
    }

    /// A path of `capacity_bps` with a FIFO queue, fed `rate_bps` of
    /// 1200-byte packets in 30 bursts a second; feedback every 100 ms.
    /// Returns the estimate after each feedback and the queue each saw.
    fn run(w: &mut LinkWindow, from_ms: u64, secs: u64, rate_bps: f64, capacity_bps: f64, drop_every: Option<u64>, queue_free_at: &mut f64) -> Vec<(u32, f64)> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut owed = 0.0;
        let mut n = 0u64;
        for frame in 0..secs * 30 {
            let t_ms = from_ms + frame * 1000 / 30;
            owed += rate_bps / 30.0;
            while owed >= 9600.0 {
                owed -= 9600.0;
                n += 1;
                let sent = t_ms as f64 * 1e6;
                let start = queue_free_at.max(sent);
                let done = start + 9600.0 / capacity_bps * 1e9;
                *queue_free_at = done;
                // 20 ms of propagation, a receiver clock 7 s ahead of ours.
                let arrived = (done + 20e6 + 7e9) as u64;
                let dropped = drop_every.is_some_and(|k| n % k == 0);
                pending.push(PacketReport { sent_ns: Some(sent as u64), arrived_ns: (!dropped).then_some(arrived), bytes: 1200 });
            }
            if frame % 3 == 2 {
                let now = t_ms + 40;
                let est = w.feedback(now, &pending);
                out.push((est, w.estimator.queue_ms()));
                pending.clear();
            }
        }
        out
    }

    #[test]
    fn a_link_that_does_not_queue_grows_the_estimate_up_to_one_and_a_half_times_what_it_delivers() {
        let mut w = LinkWindow::new(Estimator::new(300_000, 30_000, 5_000_000));
        let mut free = 0.0;
        let out = run(&mut w, 0, 20, 500_000.0, 5_000_000.0, None, &mut free);
        let last = out.last().unwrap().0;
        assert!(out.iter().all(|(_, q)| *q < NORMAL_QUEUE_MS), "no queue on a link ten times the rate");
        assert!((700_000..=800_000).contains(&last), "grows to about 1.5 x 500 kbps delivered, got {last}");
        assert!(out.windows(2).all(|p| p[1].0 >= p[0].0), "never decreases");
    }

    #[test]
    fn a_standing_queue_cuts_the_estimate_below_the_links_capacity_within_a_second() {
        let mut w = LinkWindow::new(Estimator::new(1_000_000, 30_000, 5_000_000));
        let mut free = 0.0;
        // 800 kbps into a 250 kbps bottleneck.
        let out = run(&mut w, 0, 3, 800_000.0, 250_000.0, None, &mut free);
        let first_cut = out.iter().position(|(est, _)| *est < 1_000_000).expect("the estimate drops");
        assert!(first_cut <= 10, "dropped after {first_cut} feedbacks (100 ms each)");
        let last = out.last().unwrap().0;
        assert!(last <= 250_000, "ends at or under the 250 kbps capacity, got {last}");
        let cuts = out.windows(2).filter(|p| p[1].0 < p[0].0).count();
        assert!(cuts <= 10, "one cut per 300 ms at most: {cuts} in 3 s");
    }

    #[test]
    fn a_keyframe_burst_that_drains_is_not_congestion() {
        let mut w = LinkWindow::new(Estimator::new(600_000, 30_000, 5_000_000));
        let mut free = 0.0;
        let mut now_ms = 0;
        for second in 0..5u64 {
            for frame in 0..30u64 {
                let t = second * 1000 + frame * 33;
                // 40 kB keyframe at the start of each second, 2 kB frames otherwise, on 5 Mbit/s.
                let bytes = if frame == 0 { 40_000.0 } else { 2_000.0 };
                let packets: Vec<PacketReport> = (0..(bytes / 1200.0f64).ceil() as u64)
                    .map(|_| {
                        let sent = t as f64 * 1e6;
                        free = f64::max(free, sent) + 9600.0 / 5e6 * 1e9;
                        PacketReport { sent_ns: Some(sent as u64), arrived_ns: Some((free + 20e6) as u64), bytes: 1200 }
                    })
                    .collect();
                now_ms = t + 40;
                w.feedback(now_ms, &packets);
            }
        }
        assert!(w.estimator.estimate() >= 600_000, "a 64 ms burst queue that drains cut the estimate to {}", w.estimator.estimate());
        let _ = now_ms;
    }

    #[test]
    fn random_loss_under_the_threshold_keeps_the_estimate_and_heavy_loss_cuts_it() {
        let mut w = LinkWindow::new(Estimator::new(500_000, 30_000, 5_000_000));
        let mut free = 0.0;
        // One packet in 12 lost (8 %): left to retransmission.
        let out = run(&mut w, 0, 5, 400_000.0, 5_000_000.0, Some(12), &mut free);
        assert!(out.last().unwrap().0 >= 500_000, "8 % random loss cut the estimate: {:?}", out.last());
        // One in 4 (25 %): congestion or not, the rate must come down.
        let out = run(&mut w, 5_000, 2, 400_000.0, 5_000_000.0, Some(4), &mut free);
        assert!(out.last().unwrap().0 < 400_000, "25 % loss kept the estimate at {:?}", out.last());
    }

    #[test]
    fn a_proven_rate_replaces_the_estimate_within_its_bounds() {
        let mut e = Estimator::new(300_000, 30_000, 2_000_000);
        e.set(1_500_000);
        assert_eq!(e.estimate(), 1_500_000);
        e.set(9_000_000);
        assert_eq!(e.estimate(), 2_000_000);
    }
}
