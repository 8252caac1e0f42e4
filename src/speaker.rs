//! Active speaker detection with hysteresis: pure logic fed with audio
//! levels (dBFS RMS) every ~100 ms.

use std::collections::HashMap;

/// How far (dB) a challenger must lead the current speaker.
const LEAD_DB: f64 = 3.0;

#[derive(Debug, Clone)]
pub struct SpeakerDetector {
    pub hold_ms: u64,
    pub threshold_db: f64,
    smoothed: HashMap<String, f64>,
    current: Option<String>,
    candidate: Option<(String, u64)>,
}

impl SpeakerDetector {
    pub fn new(hold_ms: u64, threshold_db: f64) -> Self {
        SpeakerDetector { hold_ms, threshold_db, smoothed: HashMap::new(), current: None, candidate: None }
    }

    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Feed the levels of everyone in the room at `now_ms`. Returns
    /// `Some(new speaker)` when the floor changes.
    pub fn update(&mut self, now_ms: u64, levels: &[(String, f64)]) -> Option<Option<String>> {
        self.smoothed.retain(|id, _| levels.iter().any(|(l, _)| l == id));
        for (id, db) in levels {
            let s = self.smoothed.entry(id.clone()).or_insert(*db);
            *s = 0.6 * *s + 0.4 * db;
        }
        if let Some(c) = &self.current {
            if !self.smoothed.contains_key(c) {
                self.current = None;
                self.candidate = None;
                return Some(None);
            }
        }
        let loudest = self
            .smoothed
            .iter()
            .filter(|(_, s)| **s > self.threshold_db)
            .max_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(std::cmp::Ordering::Equal).then_with(|| b.0.cmp(a.0)))
            .map(|(id, s)| (id.clone(), *s));
        let Some((id, level)) = loudest else {
            self.candidate = None;
            return None; // silence: the floor stays where it is
        };
        match &self.current {
            None => {
                self.current = Some(id.clone());
                self.candidate = None;
                Some(Some(id))
            }
            Some(cur) if *cur == id => {
                self.candidate = None;
                None
            }
            Some(cur) => {
                let cur_level = self.smoothed.get(cur).copied().unwrap_or(f64::MIN);
                if level < cur_level + LEAD_DB && cur_level > self.threshold_db {
                    self.candidate = None;
                    return None;
                }
                match &self.candidate {
                    Some((c, since)) if *c == id => {
                        if now_ms.saturating_sub(*since) >= self.hold_ms {
                            self.current = Some(id.clone());
                            self.candidate = None;
                            Some(Some(id))
                        } else {
                            None
                        }
                    }
                    _ => {
                        self.candidate = Some((id, now_ms));
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(a: f64, b: f64) -> Vec<(String, f64)> {
        vec![("a".into(), a), ("b".into(), b)]
    }

    #[test]
    fn first_voice_takes_the_floor_and_a_louder_one_needs_the_hold_time() {
        let mut d = SpeakerDetector::new(1000, -45.0);
        assert_eq!(d.update(0, &lv(-80.0, -80.0)), None);
        // The first voice takes the free floor as soon as its smoothed level counts.
        let first = (1..=5).find_map(|i| d.update(i * 100, &lv(-20.0, -80.0)).map(|c| (i, c)));
        assert_eq!(first.clone().map(|f| f.1), Some(Some("a".into())));
        assert!(first.unwrap().0 <= 3);
        // b gets much louder: not before the hold time.
        let mut changed_at = None;
        for t in (600..3400).step_by(100) {
            if let Some(Some(id)) = d.update(t, &lv(-30.0, -10.0)) {
                assert_eq!(id, "b");
                changed_at = Some(t);
                break;
            }
        }
        let t = changed_at.expect("b takes the floor");
        assert!((1600..=2200).contains(&t), "switched at {t} (b started at 600)");
    }

    #[test]
    fn short_bursts_and_silence_do_not_move_the_floor() {
        let mut d = SpeakerDetector::new(1000, -45.0);
        for t in 0..5 {
            d.update(t * 100, &lv(-20.0, -80.0));
        }
        assert_eq!(d.current(), Some("a"));
        for t in (500..3000).step_by(100) {
            // b coughs for 300 ms every second; a is silent in between.
            let b = if t % 1000 < 300 { -10.0 } else { -80.0 };
            assert_eq!(d.update(t, &lv(-80.0, b)).flatten(), None, "at {t}");
        }
        assert_eq!(d.current(), Some("a"));
    }

    #[test]
    fn a_leaving_speaker_frees_the_floor() {
        let mut d = SpeakerDetector::new(1000, -45.0);
        for t in 0..5 {
            d.update(t * 100, &lv(-20.0, -80.0));
        }
        assert_eq!(d.update(600, &[("b".into(), -80.0)]), Some(None));
    }
}
