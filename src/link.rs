//! Pure delivery rules with time passed in: what a receiver's TWCC feedback
//! says about its link, how often a rung may be asked for a keyframe, and
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

/// The TWCC feedback of one receiver: which packets were reported lost
/// (by when we learnt it, our clock) and what arrived (the receiver's clock).
#[derive(Debug, Default, Clone)]
pub struct LinkWindow {
    /// Received packets: (arrival on the receiver's clock in ns, bytes).
    received: VecDeque<(u64, u32)>,
    /// Every reported packet: (when reported, our ms, lost).
    reports: VecDeque<(u64, bool)>,
    /// Latest arrival seen (receiver's clock, ns).
    newest_ns: u64,
    any: bool,
}

impl LinkWindow {
    /// The packet reports of one TWCC feedback received at `now_ms`:
    /// (lost, arrival on the receiver's clock in ns, bytes).
    pub fn feedback(&mut self, now_ms: u64, packets: &[(bool, Option<u64>, u32)]) {
        self.any = true;
        for &(lost, remote_ns, size) in packets {
            self.reports.push_back((now_ms, lost));
            if let (false, Some(ts)) = (lost, remote_ns) {
                self.received.push_back((ts, size));
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
    }

    /// What the link carried, as of `now_ms`, with the estimator's figure.
    /// Without a report for a second the delivered rate is unknown (0).
    pub fn sample(&self, now_ms: u64, estimate_bps: u32) -> LinkSample {
        let recent = self.reports.iter().filter(|(t, _)| now_ms.saturating_sub(*t) <= LOSS_WINDOW_MS);
        let (n, lost) = recent.fold((0usize, 0usize), |(n, l), (_, lost)| (n + 1, l + *lost as usize));
        let loss = if n == 0 { 0.0 } else { lost as f64 / n as f64 };
        let bytes: u64 = self.received.iter().filter(|(t, _)| self.newest_ns.saturating_sub(*t) < RATE_WINDOW_NS).map(|(_, s)| *s as u64).sum();
        let stale = self.reports.back().map(|(t, _)| now_ms.saturating_sub(*t) > LOSS_WINDOW_MS).unwrap_or(true);
        LinkSample {
            estimate_bps,
            delivered_bps: if stale { 0 } else { (bytes * 8 * 1_000_000_000 / RATE_WINDOW_NS) as u32 },
            loss,
            has_feedback: self.any,
            rung_bps: 0,
        }
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

    #[test]
    fn delivered_rate_counts_the_newest_half_second_of_the_receivers_clock() {
        let mut w = LinkWindow::default();
        // 100 packets of 1000 bytes over 1 s of the receiver's clock, reported at once.
        let packets: Vec<(bool, Option<u64>, u32)> = (0..100).map(|i| (false, Some(i * 10_000_000), 1000)).collect();
        w.feedback(5_000, &packets);
        let s = w.sample(5_000, 300_000);
        // The newest 500 ms hold 50 packets: 50 kB in 0.5 s = 800 kbps.
        assert_eq!(s.delivered_bps, 800_000);
        assert_eq!((s.loss, s.estimate_bps, s.has_feedback), (0.0, 300_000, true));
    }

    #[test]
    fn loss_is_the_share_of_lost_reports_in_the_last_second() {
        let mut w = LinkWindow::default();
        let mut pk = vec![(false, Some(1_000_000), 1200); 9];
        pk.push((true, None, 0));
        w.feedback(1_000, &pk);
        assert!((w.sample(1_000, 0).loss - 0.1).abs() < 1e-9);
        // A second later with clean reports, the old loss has left the window.
        w.feedback(2_100, &[(false, Some(2_000_000_000), 1200); 10]);
        assert_eq!(w.sample(2_100, 0).loss, 0.0);
    }

    #[test]
    fn no_report_for_a_second_means_the_delivered_rate_is_unknown() {
        let mut w = LinkWindow::default();
        assert!(!w.sample(0, 0).has_feedback);
        w.feedback(1_000, &[(false, Some(1_000), 1200); 10]);
        assert!(w.sample(1_500, 0).delivered_bps > 0);
        assert_eq!(w.sample(2_001, 0).delivered_bps, 0, "stale");
    }
}
