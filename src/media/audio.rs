//! Mix-minus audio: every 20 ms the room sums each participant's decoded
//! audio ONCE, then gives each listener `total - own` (O(N), not O(N²)).
//!
//! Each participant's decoded audio (S16LE, 48 kHz, mono) is written into
//! an [`InputRing`] by its pipeline's appsink; one mixer thread per room
//! reads 20 ms from every ring, mixes, and pushes each listener's mix into
//! that listener's appsrc (which feeds its Opus encoder).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};


pub const RATE: usize = 48_000;
/// Samples per mixing period (20 ms).
pub const FRAME: usize = RATE / 50;
/// A ring starts playing once it holds this much (absorbs jitter), plus
/// the room's audio delay.
const PREBUFFER: usize = 2 * FRAME;
/// A ring never holds more than this; older samples are dropped (drift).
const MAX_BUFFERED: usize = 10 * FRAME;
/// A ring that holds more than its prebuffer plus one frame at every take
/// for this many ticks (half a second) runs late: the excess is dropped.
const LONG_TICKS: u32 = 25;

pub fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", RATE as i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}

/// Jitter-absorbing FIFO of one participant's decoded samples.
#[derive(Debug, Default)]
pub struct InputRing {
    buf: VecDeque<i16>,
    playing: bool,
    /// Takes in a row that found more than the prebuffer + one frame.
    long: u32,
    /// Samples held back on top of [`PREBUFFER`] (the room's audio delay).
    delay: usize,
}

impl InputRing {
    /// A ring that holds `delay_ms` more than the jitter prebuffer.
    pub fn with_delay(delay_ms: u32) -> InputRing {
        InputRing { delay: (delay_ms as usize * RATE / 1000).min(MAX_BUFFERED / 2), ..InputRing::default() }
    }

    fn prebuffer(&self) -> usize {
        PREBUFFER + self.delay
    }

    pub fn push(&mut self, samples: &[i16]) {
        self.buf.extend(samples.iter().copied());
        if self.buf.len() > MAX_BUFFERED {
            let excess = self.buf.len() - MAX_BUFFERED + self.prebuffer();
            self.buf.drain(..excess.min(self.buf.len()));
        }
    }

    /// Fill `out` with the next frame. Returns false (and leaves `out`
    /// silent) while prebuffering or after an underrun.
    pub fn take(&mut self, out: &mut [i16]) -> bool {
        out.iter_mut().for_each(|s| *s = 0);
        if !self.playing {
            if self.buf.len() < self.prebuffer() {
                return false;
            }
            self.playing = true;
        }
        if self.buf.is_empty() {
            self.playing = false;
            return false;
        }
        // Regression: a burst at start-up (a jitterbuffer releasing what it
        // held) left rings 60–100 ms fuller than the prebuffer for good,
        // and every listener heard that speaker that much late (the
        // lip-sync bench saw audio ~110 ms behind the picture). A ring
        // that stays long is brought back to the prebuffer.
        if self.buf.len() > self.prebuffer() + FRAME {
            self.long += 1;
            if self.long >= LONG_TICKS {
                let excess = self.buf.len() - self.prebuffer();
                self.buf.drain(..excess);
                self.long = 0;
            }
        } else {
            self.long = 0;
        }
        let n = out.len().min(self.buf.len());
        for (o, s) in out.iter_mut().zip(self.buf.drain(..n)) {
            *o = s;
        }
        if n < out.len() {
            self.playing = false;
        }
        true
    }
}

/// Sum every input once, then give each listener everything but itself.
/// `inputs[i]` is `None` for a participant with nothing to contribute.
/// `outputs[i]` receives `sum - inputs[i]`, clamped to i16.
pub fn mix_minus(inputs: &[Option<&[i16]>], total: &mut Vec<i32>, outputs: &mut [Vec<i16>]) {
    let len = outputs.first().map(|o| o.len()).unwrap_or(0);
    total.clear();
    total.resize(len, 0);
    for s in inputs.iter().flatten() {
        for (t, v) in total.iter_mut().zip(s.iter()) {
            *t += *v as i32;
        }
    }
    for (out, own) in outputs.iter_mut().zip(inputs.iter()) {
        match own {
            Some(own) => {
                for ((o, t), v) in out.iter_mut().zip(total.iter()).zip(own.iter()) {
                    *o = (*t - *v as i32).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                }
            }
            None => {
                for (o, t) in out.iter_mut().zip(total.iter()) {
                    *o = (*t).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                }
            }
        }
    }
}

/// One participant's place in the audio mix.
pub struct AudioPort {
    pub id: String,
    pub input: Mutex<InputRing>,
    output: gst_app::AppSrc,
    /// True once the participant's connection is up; no mix is pushed before.
    ready: Arc<AtomicBool>,
    /// A muted microphone is left out of the mix (its input is discarded).
    pub muted: AtomicBool,
}

impl AudioPort {
    pub fn push_input(&self, samples: &[i16]) {
        self.input.lock().push(samples);
    }
}

type Ports = Arc<RwLock<Arc<Vec<Arc<AudioPort>>>>>;
type Broadcast = Arc<RwLock<Option<(gst_app::AppSrc, Arc<AtomicBool>)>>>;
/// Receives (participant id, level dBFS) for everyone every 100 ms.
pub type Levels = Arc<dyn Fn(Vec<(String, f64)>) + Send + Sync>;
type LevelSlot = Arc<RwLock<Option<Levels>>>;

/// Level reported for silence, a muted microphone or no audio.
pub const SILENCE_DB: f64 = -100.0;

/// dBFS of a mean square over i16 samples (full-scale sine: about -3 dB).
pub fn level_db(sum_squares: f64, samples: usize) -> f64 {
    if samples == 0 || sum_squares <= 0.0 {
        return SILENCE_DB;
    }
    let ms = sum_squares / samples as f64 / (32768.0 * 32768.0);
    (10.0 * ms.log10()).max(SILENCE_DB)
}

/// The room's audio mixer: one thread, 20 ms ticks.
pub struct AudioMixer {
    /// Each input held back this long on top of the jitter prebuffer.
    delay_ms: u32,
    ports: Ports,
    levels: LevelSlot,
    /// The whole mix (everyone), for receive-only viewers: pushed only
    /// while `broadcast_on` is set.
    broadcast: Broadcast,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AudioMixer {
    pub fn new(room: &str, delay_ms: u32) -> std::io::Result<AudioMixer> {
        let ports: Ports = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let levels: LevelSlot = Arc::new(RwLock::new(None));
        let broadcast: Broadcast = Arc::new(RwLock::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, l, b, s) = (ports.clone(), levels.clone(), broadcast.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("mix-{}", room.chars().take(10).collect::<String>()))
            .spawn(move || run(p, l, b, s))?;
        Ok(AudioMixer { delay_ms, ports, levels, broadcast, stop, thread: Some(thread) })
    }

    /// Push the whole mix into `output` whenever `on` is set (viewers).
    pub fn set_broadcast(&self, output: gst_app::AppSrc, on: Arc<AtomicBool>) {
        *self.broadcast.write() = Some((output, on));
    }

    /// Report levels to `listener` every 100 ms (called on the mixer thread,
    /// with no lock held; it must be quick).
    pub fn set_level_listener(&self, listener: Levels) {
        *self.levels.write() = Some(listener);
    }

    pub fn add(&self, id: &str, output: gst_app::AppSrc, ready: Arc<AtomicBool>) -> Arc<AudioPort> {
        let port = Arc::new(AudioPort {
            id: id.to_string(),
            input: Mutex::new(InputRing::with_delay(self.delay_ms)),
            output,
            ready,
            muted: AtomicBool::new(false),
        });
        let mut w = self.ports.write();
        let mut v: Vec<_> = w.iter().cloned().collect();
        v.push(port.clone());
        *w = Arc::new(v);
        port
    }

    pub fn remove(&self, id: &str) {
        let mut w = self.ports.write();
        let v: Vec<_> = w.iter().filter(|p| p.id != id).cloned().collect();
        *w = Arc::new(v);
    }
}

impl Drop for AudioMixer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ticks between level reports (5 x 20 ms).
const LEVEL_TICKS: u32 = 5;

fn pcm_buffer(samples: &[i16]) -> gst::Buffer {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    if let Some(b) = buf.get_mut() {
        b.set_duration(gst::ClockTime::from_mseconds(20));
    }
    buf
}

fn run(ports: Ports, levels: LevelSlot, broadcast: Broadcast, stop: Arc<AtomicBool>) {
    let period = Duration::from_millis(20);
    let mut next = Instant::now();
    let mut energy: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    let mut ticks = 0u32;
    let mut frames: Vec<Vec<i16>> = Vec::new();
    let mut outs: Vec<Vec<i16>> = Vec::new();
    let mut total = Vec::with_capacity(FRAME);
    while !stop.load(Ordering::SeqCst) {
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_millis(200) {
            // Far behind (machine stalled): do not burst to catch up.
            next = now;
        }
        let snapshot = ports.read().clone();
        let n = snapshot.len();
        if n == 0 {
            continue;
        }
        frames.resize_with(n, || vec![0; FRAME]);
        // One more output: the whole mix (no input of its own), for viewers.
        outs.resize_with(n + 1, || vec![0; FRAME]);
        let mut active = vec![false; n];
        for (i, port) in snapshot.iter().enumerate() {
            let took = port.input.lock().take(&mut frames[i]);
            active[i] = took && !port.muted.load(Ordering::Relaxed);
        }
        let mut inputs: Vec<Option<&[i16]>> =
            frames.iter().zip(active.iter()).map(|(f, a)| if *a { Some(&f[..]) } else { None }).collect();
        inputs.push(None);
        mix_minus(&inputs, &mut total, &mut outs[..n + 1]);
        inputs.pop();
        if let Some((out, on)) = broadcast.read().as_ref() {
            if on.load(Ordering::Relaxed) {
                let _ = out.push_buffer(pcm_buffer(&outs[n]));
            }
        }
        for (port, input) in snapshot.iter().zip(inputs.iter()) {
            let e = energy.entry(port.id.clone()).or_insert(0.0);
            if let Some(samples) = input {
                *e += samples.iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>();
            }
        }
        ticks += 1;
        if ticks == LEVEL_TICKS {
            ticks = 0;
            let report: Vec<(String, f64)> = snapshot
                .iter()
                .map(|p| (p.id.clone(), level_db(energy.get(&p.id).copied().unwrap_or(0.0), FRAME * LEVEL_TICKS as usize)))
                .collect();
            energy.clear();
            let listener = levels.read().clone();
            if let Some(l) = listener {
                l(report);
            }
        }
        for (port, out) in snapshot.iter().zip(outs.iter()) {
            if !port.ready.load(Ordering::Relaxed) {
                continue;
            }
            // Flushing or EOS while the participant leaves: nothing to do.
            let _ = port.output.push_buffer(pcm_buffer(out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_gets_everyone_but_itself() {
        let a = vec![100i16; 4];
        let b = vec![10i16; 4];
        let c = vec![1i16; 4];
        let mut outs = vec![vec![0i16; 4]; 4];
        let mut total = Vec::new();
        mix_minus(&[Some(&a), Some(&b), Some(&c), None], &mut total, &mut outs);
        assert_eq!(outs[0], vec![11; 4]);
        assert_eq!(outs[1], vec![101; 4]);
        assert_eq!(outs[2], vec![110; 4]);
        assert_eq!(outs[3], vec![111; 4]);
    }

    #[test]
    fn levels_are_in_dbfs() {
        let full: Vec<i16> = (0..960).map(|i| ((i as f64 / 48000.0 * 440.0 * std::f64::consts::TAU).sin() * 32767.0) as i16).collect();
        let e: f64 = full.iter().map(|s| (*s as f64).powi(2)).sum();
        assert!((level_db(e, full.len()) + 3.0).abs() < 0.2);
        assert_eq!(level_db(0.0, 960), SILENCE_DB);
    }

    #[test]
    fn clipping_happens_after_subtraction() {
        let loud = vec![30000i16; 2];
        let mut outs = vec![vec![0i16; 2]; 3];
        let mut total = Vec::new();
        mix_minus(&[Some(&loud), Some(&loud), Some(&loud)], &mut total, &mut outs);
        // Each hears the other two clipped, but never itself.
        assert_eq!(outs[0], vec![i16::MAX; 2]);
    }

    #[test]
    fn a_ring_that_runs_long_comes_back_to_its_prebuffer_within_half_a_second() {
        let mut r = InputRing::default();
        let mut out = vec![0i16; FRAME];
        // 120 ms arrive at once, then one frame per tick.
        r.push(&vec![1; 6 * FRAME]);
        let mut levels = Vec::new();
        for _ in 0..40 {
            assert!(r.take(&mut out));
            r.push(&vec![1; FRAME]);
            levels.push(r.buf.len());
        }
        assert!(levels[..LONG_TICKS as usize - 1].iter().all(|l| *l == 6 * FRAME), "kept while it may be jitter");
        assert!(levels[LONG_TICKS as usize..].iter().all(|l| *l <= PREBUFFER), "back to the prebuffer: {levels:?}");
        // Jitter that comes and goes is left alone.
        let mut r = InputRing::default();
        r.push(&vec![1; PREBUFFER]);
        for i in 0..100 {
            assert!(r.take(&mut out));
            r.push(&vec![1; if i % 2 == 0 { 2 * FRAME } else { 0 }]);
        }
        assert!(r.buf.len() >= FRAME);
    }

    #[test]
    fn a_delayed_ring_holds_the_delay_on_top_of_the_prebuffer() {
        let mut r = InputRing::with_delay(40);
        let mut out = vec![0i16; FRAME];
        r.push(&vec![1; PREBUFFER]);
        assert!(!r.take(&mut out), "the prebuffer alone is not enough");
        r.push(&vec![1; 2 * FRAME]);
        assert!(r.take(&mut out));
        // Steady at prebuffer + delay: never cut as running long.
        for _ in 0..100 {
            r.push(&vec![1; FRAME]);
            assert!(r.take(&mut out));
        }
        assert_eq!(r.buf.len(), PREBUFFER + 2 * FRAME - FRAME);
    }

    #[test]
    fn ring_prebuffers_and_recovers_from_underrun() {
        let mut r = InputRing::default();
        let mut out = vec![0i16; FRAME];
        r.push(&vec![1; FRAME]);
        assert!(!r.take(&mut out), "must prebuffer");
        r.push(&vec![2; FRAME]);
        assert!(r.take(&mut out));
        assert_eq!(out[0], 1);
        assert!(r.take(&mut out));
        assert_eq!(out[0], 2);
        assert!(!r.take(&mut out), "underrun returns to prebuffering");
        r.push(&vec![3; MAX_BUFFERED * 2]);
        assert!(r.buf.len() <= MAX_BUFFERED);
    }
}
