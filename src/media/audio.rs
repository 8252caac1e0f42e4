//! Mix-minus audio, encoded by who talks (the scheme Intel's OWT MCU
//! used): every 20 ms the room sums the frames of its talkers (at most a
//! few, see [`Talkers`]) once. Everyone who is not talking hears that sum
//! whole, so they all share ONE Opus encoding of it (viewers and
//! recordings too); each talker hears the sum minus itself from the
//! encoder of its talker slot. A room where two people talk runs the
//! shared encoder and one per slot, whatever its size, where it ran one
//! per participant before.
//!
//! Each participant's decoded audio (S16LE, 48 kHz, mono) is written into
//! an [`InputRing`] by its pipeline's appsink; one mixer thread per room
//! reads 20 ms from every ring, mixes, encodes (its [`OpusEncoder`]s run on
//! this thread), and pushes each listener's packet into that listener's
//! appsrc, which feeds its RTP payloader. Every listener gets exactly one
//! packet per tick, stamped with the tick's time, so moving between the
//! shared and a personal encoding leaves no gap in its RTP timestamps or
//! sequence numbers; a free slot's encoder is fed the shared mix, so its
//! state matches the shared encoder's when a new talker takes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::opus::OpusEncoder;

pub const RATE: usize = 48_000;
/// Samples per mixing period (20 ms).
pub const FRAME: usize = RATE / 50;
/// The packet times a room can ask senders for (`[audio] ptime_ms`).
pub const PTIMES_MS: [u32; 3] = [20, 40, 60];
/// The longest packet a ring plans for (60 ms).
const MAX_PACKET: usize = 3 * FRAME;
/// A ring never holds more than this; older samples are dropped (drift).
const MAX_BUFFERED: usize = 10 * FRAME;
/// A ring that holds more than its low (see `InputRing::low`) plus a
/// tick's worth at every take for this many ticks (half a second) runs
/// late: the least excess it held is dropped.
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
///
/// It starts playing one tick after it first holds a tick's worth (plus
/// the room's delay), or at once when it holds a packet and a tick's
/// worth: either way the first packet is a tick (20 ms) old when it is
/// mixed, which is the margin for the next one to be late, whatever the
/// sender's packet time. (Waiting for two packets, as it did when every
/// packet was 20 ms, would hold 40 ms packets 20 ms longer.) The delay
/// is counted in whole packets: with 40 ms packets a delay under 40 ms
/// holds back between nothing and a packet, depending on how the packets
/// fall against the ticks.
#[derive(Debug, Default)]
pub struct InputRing {
    buf: VecDeque<i16>,
    playing: bool,
    /// The last take found a tick's worth but not a packet and a tick's:
    /// the next take that finds a tick's worth starts playing.
    armed: bool,
    /// Takes in a row that found more than [`InputRing::low`] + a tick's
    /// worth, and the least any of them found.
    long: u32,
    least: Option<usize>,
    /// Samples held back on top of the jitter prebuffer (the room's audio
    /// delay).
    delay: usize,
    /// Samples in the sender's last packet (its decoded buffer), at most
    /// [`MAX_PACKET`]; 0 before the first.
    packet: usize,
}

impl InputRing {
    /// A ring that holds `delay_ms` more than the jitter prebuffer.
    pub fn with_delay(delay_ms: u32) -> InputRing {
        InputRing { delay: (delay_ms as usize * RATE / 1000).min(MAX_BUFFERED / 2), ..InputRing::default() }
    }

    /// The least a ring holds just before a take once it plays with packets
    /// on time, whatever their length: two ticks' worth and the delay (the
    /// take's own and a tick of margin).
    fn low(&self) -> usize {
        2 * FRAME + self.delay
    }

    /// The most a ring holds just before a take when packets come on time:
    /// a packet, a tick's worth and the delay (40 ms + delay for 20 ms
    /// packets, 60 ms + delay for 40 ms ones).
    fn steady(&self) -> usize {
        self.packet.max(FRAME) + FRAME + self.delay
    }

    pub fn push(&mut self, samples: &[i16]) {
        if !samples.is_empty() {
            self.packet = samples.len().min(MAX_PACKET);
        }
        self.buf.extend(samples.iter().copied());
        if self.buf.len() > MAX_BUFFERED {
            let excess = self.buf.len() - MAX_BUFFERED + self.steady();
            self.buf.drain(..excess.min(self.buf.len()));
        }
    }

    /// Forget what it holds and start over (prebuffering again).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.playing = false;
        self.armed = false;
        self.long = 0;
        self.least = None;
    }

    /// Fill `out` with the next frame. Returns false (and leaves `out`
    /// silent) while prebuffering or after an underrun.
    pub fn take(&mut self, out: &mut [i16]) -> bool {
        out.iter_mut().for_each(|s| *s = 0);
        if !self.playing {
            if self.buf.len() < FRAME + self.delay {
                self.armed = false;
                return false;
            }
            if self.buf.len() < self.steady() && !self.armed {
                self.armed = true;
                return false;
            }
            self.playing = true;
            self.armed = false;
        }
        if self.buf.is_empty() {
            self.playing = false;
            return false;
        }
        // Regression: a burst at start-up (a jitterbuffer releasing what it
        // held) left rings 60–100 ms fuller than the prebuffer for good,
        // and every listener heard that speaker that much late (the
        // lip-sync bench saw audio ~110 ms behind the picture). A ring
        // that stays long is brought back. What it holds before a take
        // swings by a packet (40 ms packets: 40 and 60 ms), so "long" is
        // the least it held over those takes, against the least it holds
        // on time (a start-up burst once left 40 ms packets 40 ms late for
        // good: their level swung 80/100 and never stayed over 60).
        if self.buf.len() > self.low() + FRAME {
            self.long += 1;
            let least = self.least.map_or(self.buf.len(), |l| l.min(self.buf.len()));
            self.least = Some(least);
            if self.long >= LONG_TICKS {
                self.buf.drain(..least - self.low());
                self.long = 0;
                self.least = None;
            }
        } else {
            self.long = 0;
            self.least = None;
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

/// A talker stays one this long after its last loud frame (1 s of 20 ms
/// ticks): pauses between words keep the slot.
pub const TALKER_HANG_TICKS: u32 = 50;

/// How far (dB) a new talker's smoothed level must lead the quietest
/// talker's to take its slot while every talker is talking.
pub const TALKER_LEAD_DB: f64 = 6.0;

/// Who is mixed: at most `capacity` talkers, each in a slot it keeps while
/// it talks (its personal mix-minus encoder is the slot's). A participant
/// becomes a talker on a frame above the threshold and stays one until
/// [`TALKER_HANG_TICKS`] frames in a row were below it. When every slot is
/// taken, a new talker takes the slot of the talker that has been quiet
/// longest; if all of them are talking now, the slot of the one whose
/// level (smoothed over about 100 ms) is lowest, when the newcomer's leads
/// it by [`TALKER_LEAD_DB`]. Otherwise the newcomer waits (is not heard):
/// a steady noise cannot hold a slot against someone speaking up.
///
/// A taken slot changes hands over two ticks. On the first the old talker
/// is no longer mixed but still hears the slot's encoder (which now
/// encodes the shared mix); on the second the newcomer has the slot and the
/// old talker hears the shared encoder. An Opus packet carries the last
/// 6.5 ms of the previous tick's input (the encoder's lookahead), so had
/// the old talker moved to the shared encoder at once, its packet would
/// have carried the end of its own last frame.
/// Pure: one call per 20 ms tick, the tick is the clock.
#[derive(Debug, Clone)]
pub struct Talkers {
    slots: Vec<Option<Slot>>,
    /// Everyone's level, smoothed over about 100 ms (dBFS).
    smoothed: std::collections::HashMap<String, f64>,
    threshold_db: f64,
}

#[derive(Debug, Clone)]
struct Slot {
    id: String,
    /// Frames in a row below the threshold.
    quiet: u32,
    /// Who takes the slot next tick; while set, `id` is not mixed.
    heir: Option<String>,
}

impl Talkers {
    pub fn new(capacity: usize, threshold_db: f64) -> Talkers {
        Talkers { slots: vec![None; capacity.max(1)], smoothed: Default::default(), threshold_db }
    }

    /// One tick: the level (dBFS) of this tick's frame of everyone in the
    /// room ([`SILENCE_DB`] for no audio or a muted microphone). A talker
    /// missing from `levels` has left: its slot is free at once.
    pub fn tick(&mut self, levels: &[(&str, f64)]) {
        let threshold = self.threshold_db;
        let present = |id: &str| levels.iter().any(|(l, _)| *l == id);
        self.smoothed.retain(|id, _| present(id));
        for (id, db) in levels {
            let s = self.smoothed.entry(id.to_string()).or_insert(*db);
            *s = 0.8 * *s + 0.2 * db;
        }
        for slot in self.slots.iter_mut() {
            // Hand over the slots taken last tick.
            if let Some(heir) = slot.as_mut().and_then(|s| s.heir.take()) {
                if present(&heir) {
                    *slot = Some(Slot { id: heir, quiet: 0, heir: None });
                }
            }
            let Some(s) = slot.as_mut() else { continue };
            match levels.iter().find(|(l, _)| *l == s.id.as_str()) {
                None => *slot = None,
                Some((_, db)) if *db >= threshold => s.quiet = 0,
                Some(_) => {
                    s.quiet += 1;
                    if s.quiet >= TALKER_HANG_TICKS {
                        *slot = None;
                    }
                }
            }
        }
        let level = |id: &str| self.smoothed.get(id).copied().unwrap_or(SILENCE_DB);
        let mut loud: Vec<(&str, f64)> = levels
            .iter()
            .filter(|(id, db)| *db >= threshold && self.listens_to(id).is_none() && !self.is_heir(id))
            .map(|(id, _)| (*id, level(id)))
            .collect();
        loud.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        for (id, lead) in loud {
            if let Some(i) = self.slots.iter().position(|s| s.is_none()) {
                self.slots[i] = Some(Slot { id: id.to_string(), quiet: 0, heir: None });
                continue;
            }
            let held = || self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().filter(|s| s.heir.is_none()).map(|s| (i, s)));
            let quiet_longest = held().filter(|(_, s)| s.quiet > 0).max_by_key(|(_, s)| s.quiet).map(|(i, _)| i);
            let weakest = || {
                held()
                    .map(|(i, s)| (i, level(&s.id)))
                    .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
                    .filter(|(_, l)| lead >= l + TALKER_LEAD_DB)
                    .map(|(i, _)| i)
            };
            match quiet_longest.or_else(weakest) {
                Some(i) => {
                    if let Some(s) = self.slots[i].as_mut() {
                        s.heir = Some(id.to_string());
                    }
                }
                None => break,
            }
        }
    }

    /// The slot `id` talks in (is mixed in), if it is a talker.
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.id == id && s.heir.is_none()))
    }

    /// The slot whose encoder `id` hears: its own while it talks, and for
    /// one tick more while it hands the slot over.
    pub fn listens_to(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.id == id))
    }

    pub fn is_heir(&self, id: &str) -> bool {
        self.slots.iter().flatten().any(|s| s.heir.as_deref() == Some(id))
    }

    /// The level (dBFS) from which someone who is not a talker could take
    /// a slot at the next tick: the threshold while a slot is free or its
    /// talker pauses, else the weakest talker's smoothed level and the
    /// lead ([`TALKER_LEAD_DB`]); infinite while every slot changes hands.
    /// Below it, a participant's audio is not heard, so a transport that
    /// knows a packet's level before decoding it (RFC 6464) need not
    /// decode it.
    pub fn admission_db(&self) -> f64 {
        let held = || self.slots.iter().flatten().filter(|s| s.heir.is_none());
        if self.slots.iter().any(|s| s.is_none()) || held().any(|s| s.quiet > 0) {
            return self.threshold_db;
        }
        held()
            .map(|s| self.smoothed.get(&s.id).copied().unwrap_or(SILENCE_DB))
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .map_or(f64::INFINITY, |weakest| (weakest + TALKER_LEAD_DB).max(self.threshold_db))
    }

    pub fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// Mix one tick. `frames[i]` is participant i's frame, `talking[i]` the
/// talker slot of participant i, if any. Only talkers are summed: the
/// shared mix (`shared`) is everyone's who talks, and slot k's mix
/// (`slots[k]`) is that minus its talker, or the shared mix while the slot
/// is free (so an idle slot's encoder stays in step with the shared one
/// and the next talker's switch to it is seamless). Clipping happens after
/// the subtraction.
pub fn mix_talkers(frames: &[Vec<i16>], talking: &[Option<usize>], total: &mut Vec<i32>, shared: &mut [i16], slots: &mut [Vec<i16>]) {
    total.clear();
    total.resize(shared.len(), 0);
    for (frame, t) in frames.iter().zip(talking) {
        if t.is_some() {
            for (acc, v) in total.iter_mut().zip(frame.iter()) {
                *acc += *v as i32;
            }
        }
    }
    let clip = |v: i32| v.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    for (o, t) in shared.iter_mut().zip(total.iter()) {
        *o = clip(*t);
    }
    for (k, out) in slots.iter_mut().enumerate() {
        match talking.iter().position(|t| *t == Some(k)) {
            Some(i) => {
                for ((o, t), v) in out.iter_mut().zip(total.iter()).zip(frames[i].iter()) {
                    *o = clip(*t - *v as i32);
                }
            }
            None => out.copy_from_slice(shared),
        }
    }
}

/// One participant's place in the audio mix.
pub struct AudioPort {
    pub id: String,
    pub input: Mutex<InputRing>,
    /// Opus packets (the shared mix or its talker slot's mix-minus) to the
    /// participant's payloader or transport.
    output: super::Outlet,
    /// True once the participant's connection is up; no mix is pushed before.
    ready: Arc<AtomicBool>,
    /// A muted microphone is left out of the mix (its input is discarded).
    pub muted: AtomicBool,
    /// The level its sender put on its last packet (RFC 6464, dBFS) and
    /// when, for a transport that reads it before decoding.
    told: Mutex<Option<(Instant, f64)>>,
    /// Packets told below this level (dBFS, as f64 bits) need not be
    /// decoded: set by the mixer every tick (see [`Talkers::admission_db`];
    /// minus infinity for talkers and before the first tick).
    admit_db: AtomicU64,
    /// Its last packet was decoded.
    decoding: AtomicBool,
}

/// A level told in a packet's header stands for this long (the longest
/// packet, 60 ms, and three ticks).
const TOLD_LEVEL_MS: u64 = 120;

impl AudioPort {
    pub fn push_input(&self, samples: &[i16]) {
        self.input.lock().push(samples);
    }

    /// A packet's sender told its level (RFC 6464, dBFS): should it be
    /// decoded? Not when it is too quiet to be heard (below the room's
    /// admission level, see [`Talkers::admission_db`]) or muted; decoding that
    /// starts again starts from an empty ring (what it held is old).
    pub fn told_level(&self, db: f64) -> bool {
        *self.told.lock() = Some((Instant::now(), db));
        let decode = db >= f64::from_bits(self.admit_db.load(Ordering::Relaxed)) && !self.muted.load(Ordering::Relaxed);
        if decode && !self.decoding.swap(true, Ordering::Relaxed) {
            self.input.lock().clear();
        }
        if !decode {
            self.decoding.store(false, Ordering::Relaxed);
        }
        decode
    }

    /// A packet with no level told: decoded.
    pub fn untold(&self) {
        self.decoding.store(true, Ordering::Relaxed);
    }

    /// The level last told, while it stands.
    fn told(&self, now: Instant) -> Option<f64> {
        self.told.lock().filter(|(at, _)| now.saturating_duration_since(*at) <= Duration::from_millis(TOLD_LEVEL_MS)).map(|(_, db)| db)
    }
}

/// A receiver of the shared mix only: a viewer or a recording.
#[derive(Clone)]
pub struct MixListener {
    pub id: String,
    pub output: gst_app::AppSrc,
    pub ready: Arc<AtomicBool>,
    /// A recording, not a person (not counted as a viewer).
    pub recording: bool,
}

type Ports = Arc<RwLock<Arc<Vec<Arc<AudioPort>>>>>;
type Listeners = Arc<RwLock<Arc<Vec<MixListener>>>>;
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

/// How a room's audio is mixed and encoded.
#[derive(Debug, Clone)]
pub struct MixSettings {
    /// Each input held back this long on top of the jitter prebuffer.
    pub delay_ms: u32,
    /// Talkers mixed at most (each with a personal mix-minus encoder).
    pub talkers: usize,
    /// A frame at or above this level (dBFS) makes its sender a talker.
    pub talker_threshold_db: f64,
    pub bitrate: u32,
    pub complexity: u32,
}

/// What the mixer did, for stats and the bench.
#[derive(Debug, Default)]
pub struct MixCounters {
    /// Opus encoders running (the shared one and one per talker slot).
    pub encoders: AtomicUsize,
    /// Talkers in the mix at the last tick.
    pub talkers: AtomicUsize,
    /// Participants whose audio is being decoded (the rest told, in their
    /// packets' headers, a level too low to be heard).
    pub decoding: AtomicUsize,
}

/// The room's audio mixer: one thread, 20 ms ticks. Each tick it sums the
/// talkers, encodes the shared mix once and each talker slot's mix-minus
/// once, and hands every participant and viewer its packet.
pub struct AudioMixer {
    delay_ms: u32,
    ports: Ports,
    listeners: Listeners,
    levels: LevelSlot,
    counters: Arc<MixCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AudioMixer {
    pub fn new(room: &str, settings: &MixSettings) -> anyhow::Result<AudioMixer> {
        use anyhow::Context;
        let ports: Ports = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let listeners: Listeners = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let levels: LevelSlot = Arc::new(RwLock::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(MixCounters::default());
        let talkers = settings.talkers.max(1);
        let mut encoders = Vec::with_capacity(talkers + 1);
        for _ in 0..=talkers {
            encoders.push(OpusEncoder::new(settings.bitrate, settings.complexity).context("audio mix encoder")?);
        }
        counters.encoders.store(encoders.len(), Ordering::Relaxed);
        let state = MixThread {
            ports: ports.clone(),
            listeners: listeners.clone(),
            levels: levels.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            talkers: Talkers::new(talkers, settings.talker_threshold_db),
            encoders,
        };
        let thread = std::thread::Builder::new()
            .name(format!("mix-{}", room.chars().take(10).collect::<String>()))
            .spawn(move || state.run())
            .context("cannot start the audio mixer thread")?;
        Ok(AudioMixer { delay_ms: settings.delay_ms, ports, listeners, levels, counters, stop, thread: Some(thread) })
    }

    /// Report levels to `listener` every 100 ms (called on the mixer thread,
    /// with no lock held; it must be quick).
    pub fn set_level_listener(&self, listener: Levels) {
        *self.levels.write() = Some(listener);
    }

    pub fn counters(&self) -> &MixCounters {
        &self.counters
    }

    pub fn add(&self, id: &str, output: super::Outlet, ready: Arc<AtomicBool>) -> Arc<AudioPort> {
        let port = Arc::new(AudioPort {
            id: id.to_string(),
            input: Mutex::new(InputRing::with_delay(self.delay_ms)),
            output,
            ready,
            muted: AtomicBool::new(false),
            told: Mutex::new(None),
            admit_db: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            decoding: AtomicBool::new(true),
        });
        let mut w = self.ports.write();
        let mut v: Vec<_> = w.iter().cloned().collect();
        v.push(port.clone());
        *w = Arc::new(v);
        port
    }

    /// One more receiver of the shared mix (a viewer, a recording).
    pub fn add_listener(&self, l: MixListener) {
        let mut w = self.listeners.write();
        let mut v: Vec<MixListener> = w.iter().cloned().collect();
        v.push(l);
        *w = Arc::new(v);
    }

    pub fn listeners(&self) -> Arc<Vec<MixListener>> {
        self.listeners.read().clone()
    }

    /// Remove participant or listener `id`. Safe to call twice.
    pub fn remove(&self, id: &str) {
        {
            let mut w = self.ports.write();
            if w.iter().any(|p| p.id == id) {
                let v: Vec<_> = w.iter().filter(|p| p.id != id).cloned().collect();
                *w = Arc::new(v);
            }
        }
        let mut w = self.listeners.write();
        if w.iter().any(|l| l.id == id) {
            let v: Vec<_> = w.iter().filter(|l| l.id != id).cloned().collect();
            *w = Arc::new(v);
        }
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

/// Hand `packet` to `out`, stamped with the tick's time in `out`'s
/// pipeline (its running time): the RTP timestamps of a listener's audio
/// advance by exactly 20 ms a tick whichever encoder its packets come
/// from, and a late wake-up of the mixer thread does not show in them.
fn push_packet(out: &gst_app::AppSrc, packet: &gst::Buffer, caps: &Option<gst::Caps>, tick_clock: gst::ClockTime) {
    if out.caps().is_none() {
        match caps {
            Some(c) => out.set_caps(Some(c)),
            None => return,
        }
    }
    let Some(base) = out.base_time() else { return };
    let mut b = packet.clone();
    {
        let m = b.make_mut();
        m.set_pts(tick_clock.checked_sub(base));
        m.set_duration(gst::ClockTime::from_mseconds(20));
    }
    // Flushing or EOS while the listener leaves: nothing to do.
    let _ = out.push_buffer(b);
}

struct MixThread {
    ports: Ports,
    listeners: Listeners,
    levels: LevelSlot,
    counters: Arc<MixCounters>,
    stop: Arc<AtomicBool>,
    talkers: Talkers,
    /// `[0]` the shared mix, `[1 + k]` talker slot k.
    encoders: Vec<OpusEncoder>,
}

impl MixThread {
    fn run(mut self) {
        let period = Duration::from_millis(20);
        let clock = gst::SystemClock::obtain();
        let mut next = Instant::now();
        // The tick's time on the pipelines' clock (every pipeline uses the
        // system clock), advanced by exactly 20 ms a tick.
        let mut tick_clock = clock.time();
        let mut energy: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        let mut ticks = 0u32;
        let mut frames: Vec<Vec<i16>> = Vec::new();
        let mut shared = vec![0i16; FRAME];
        let mut slots: Vec<Vec<i16>> = vec![vec![0; FRAME]; self.encoders.len() - 1];
        let mut total = Vec::with_capacity(FRAME);
        while !self.stop.load(Ordering::SeqCst) {
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
                tick_clock += gst::ClockTime::from_mseconds(20);
            } else if now - next > Duration::from_millis(200) {
                // Far behind (machine stalled): do not burst to catch up.
                next = now;
                tick_clock = clock.time();
            } else {
                tick_clock += gst::ClockTime::from_mseconds(20);
            }
            let ports = self.ports.read().clone();
            let listeners = self.listeners.read().clone();
            let n = ports.len();
            if n == 0 && listeners.is_empty() {
                continue;
            }
            frames.resize_with(n, || vec![0; FRAME]);
            let mut levels: Vec<(&str, f64)> = Vec::with_capacity(n);
            let at = Instant::now();
            for (i, port) in ports.iter().enumerate() {
                let took = port.input.lock().take(&mut frames[i]);
                let muted = port.muted.load(Ordering::Relaxed);
                let heard = took && !muted;
                let mut sum_squares = if heard { frames[i].iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>() } else { 0.0 };
                if !took && !muted {
                    // Not decoded (or not yet playing): the level its
                    // sender told, so that it can still take the floor.
                    if let Some(db) = port.told(at) {
                        sum_squares = 10f64.powf(db / 10.0) * FRAME as f64 * 32768.0 * 32768.0;
                    }
                }
                if sum_squares > 0.0 {
                    *energy.entry(port.id.clone()).or_insert(0.0) += sum_squares;
                }
                levels.push((port.id.as_str(), level_db(sum_squares, FRAME)));
            }
            self.talkers.tick(&levels);
            let admission = self.talkers.admission_db();
            let mut decoding = 0;
            for port in ports.iter() {
                let talks = self.talkers.listens_to(&port.id).is_some() || self.talkers.is_heir(&port.id);
                port.admit_db.store(if talks { f64::NEG_INFINITY } else { admission }.to_bits(), Ordering::Relaxed);
                decoding += port.decoding.load(Ordering::Relaxed) as usize;
            }
            self.counters.decoding.store(decoding, Ordering::Relaxed);
            let talking: Vec<Option<usize>> = ports.iter().map(|p| self.talkers.slot_of(&p.id)).collect();
            let hears: Vec<Option<usize>> = ports.iter().map(|p| self.talkers.listens_to(&p.id)).collect();
            self.counters.talkers.store(self.talkers.count(), Ordering::Relaxed);
            mix_talkers(&frames, &talking, &mut total, &mut shared, &mut slots);
            let mut packets: Vec<Option<gst::Buffer>> = Vec::with_capacity(self.encoders.len());
            packets.push(self.encoders[0].encode(&shared));
            for (k, pcm) in slots.iter().enumerate() {
                packets.push(self.encoders[1 + k].encode(pcm));
            }
            let caps = self.encoders[0].caps();
            let tick = tick_clock;
            for (port, slot) in ports.iter().zip(hears.iter()) {
                if !port.ready.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(p) = &packets[slot.map(|k| k + 1).unwrap_or(0)] {
                    match &port.output {
                        super::Outlet::AppSrc(out) => push_packet(out, p, &caps, tick),
                        super::Outlet::Direct(send) => send(p, tick),
                    }
                }
            }
            if let Some(p) = &packets[0] {
                for l in listeners.iter().filter(|l| l.ready.load(Ordering::Relaxed)) {
                    push_packet(&l.output, p, &caps, tick);
                }
            }
            ticks += 1;
            if ticks == LEVEL_TICKS {
                ticks = 0;
                let report: Vec<(String, f64)> =
                    ports.iter().map(|p| (p.id.clone(), level_db(energy.get(&p.id).copied().unwrap_or(0.0), FRAME * LEVEL_TICKS as usize))).collect();
                energy.clear();
                let listener = self.levels.read().clone();
                if let Some(l) = listener {
                    l(report);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_is_admitted_at_the_threshold_while_a_slot_is_free_and_past_the_weakest_talker_when_none_is() {
        let mut t = Talkers::new(2, -50.0);
        assert_eq!(t.admission_db(), -50.0, "free slots");
        for _ in 0..20 {
            t.tick(&[("a", -20.0), ("b", -30.0), ("c", -60.0)]);
        }
        assert!(t.slot_of("a").is_some() && t.slot_of("b").is_some());
        let weakest = t.admission_db();
        assert!((weakest - (-30.0 + TALKER_LEAD_DB)).abs() < 0.1, "both talk: b's level and the lead ({weakest})");
        // b pauses: its slot can go to anyone over the threshold.
        t.tick(&[("a", -20.0), ("b", SILENCE_DB), ("c", -60.0)]);
        assert_eq!(t.admission_db(), -50.0);
        // Whoever the admission lets in does take the slot.
        t.tick(&[("a", -20.0), ("b", SILENCE_DB), ("c", -45.0)]);
        t.tick(&[("a", -20.0), ("b", SILENCE_DB), ("c", -45.0)]);
        assert!(t.slot_of("c").is_some(), "c, at -45 over an admission of -50, took b's slot");
    }

    #[test]
    fn talkers_hear_everyone_but_themselves_and_the_rest_hear_all_talkers() {
        let frames = vec![vec![100i16; 4], vec![10; 4], vec![1; 4], vec![1000; 4]];
        // a in slot 1, b in slot 0, c talks in none (not mixed), d left out.
        let talking = [Some(1), Some(0), None, None];
        let (mut total, mut shared) = (Vec::new(), vec![0i16; 4]);
        let mut slots = vec![vec![0i16; 4]; 3];
        mix_talkers(&frames, &talking, &mut total, &mut shared, &mut slots);
        assert_eq!(shared, vec![110; 4], "the shared mix is the talkers'");
        assert_eq!(slots[0], vec![100; 4], "b hears a");
        assert_eq!(slots[1], vec![10; 4], "a hears b");
        assert_eq!(slots[2], shared, "a free slot encodes the shared mix");
    }

    fn tick(t: &mut Talkers, levels: &[(&str, f64)], n: u32) {
        for _ in 0..n {
            t.tick(levels);
        }
    }

    #[test]
    fn a_talker_keeps_its_slot_through_pauses_and_leaves_it_after_a_second_of_silence() {
        let mut t = Talkers::new(2, -50.0);
        tick(&mut t, &[("a", -20.0), ("b", SILENCE_DB)], 1);
        assert_eq!((t.slot_of("a"), t.slot_of("b")), (Some(0), None), "the first loud frame makes a talker");
        tick(&mut t, &[("a", -70.0), ("b", SILENCE_DB)], TALKER_HANG_TICKS - 1);
        assert_eq!(t.slot_of("a"), Some(0), "a pause keeps the slot");
        tick(&mut t, &[("a", -20.0), ("b", -30.0)], 1);
        assert_eq!((t.slot_of("a"), t.slot_of("b")), (Some(0), Some(1)), "talking again resets the pause; b takes the free slot");
        tick(&mut t, &[("a", -70.0), ("b", -30.0)], TALKER_HANG_TICKS);
        assert_eq!((t.slot_of("a"), t.slot_of("b")), (None, Some(1)), "a second of silence frees the slot; b keeps its own");
        tick(&mut t, &[("b", -30.0)], 1);
        tick(&mut t, &[], 1);
        assert_eq!(t.count(), 0, "a talker who left frees its slot at once");
    }

    #[test]
    fn a_new_talker_takes_the_slot_of_the_one_quiet_longest_or_of_one_6_db_quieter() {
        let mut t = Talkers::new(2, -50.0);
        tick(&mut t, &[("a", -20.0), ("b", -20.0), ("c", -20.0)], 1);
        assert_eq!(t.count(), 2);
        let waiting = ["a", "b", "c"].into_iter().find(|id| t.slot_of(id).is_none()).unwrap();
        tick(&mut t, &[("a", -20.0), ("b", -20.0), ("c", -20.0)], 10);
        assert_eq!(t.slot_of(waiting), None, "all slots talking as loud: the third waits");
        // A steady noise at -45 dBFS holds a slot until someone speaks up.
        let mut t = Talkers::new(2, -50.0);
        tick(&mut t, &[("a", -20.0), ("noise", -45.0), ("c", SILENCE_DB)], 20);
        tick(&mut t, &[("a", -20.0), ("noise", -45.0), ("c", -44.0)], 20);
        assert_eq!((t.slot_of("a").is_some(), t.slot_of("noise").is_some(), t.slot_of("c")), (true, true, None), "c leads the noise by 1 dB only");
        tick(&mut t, &[("a", -20.0), ("noise", -45.0), ("c", -25.0)], 20);
        assert!(t.slot_of("c").is_some() && t.slot_of("noise").is_none(), "c, 20 dB over the noise, takes its slot");
        assert!(t.slot_of("a").is_some(), "the louder talker keeps its own");
        // a pauses for 5 ticks, b for 3: c takes a's slot.
        let mut t = Talkers::new(2, -50.0);
        tick(&mut t, &[("a", -20.0), ("b", -20.0)], 1);
        tick(&mut t, &[("a", -80.0), ("b", -20.0)], 2);
        tick(&mut t, &[("a", -80.0), ("b", -80.0)], 3);
        let a_slot = t.slot_of("a");
        tick(&mut t, &[("a", -80.0), ("b", -80.0), ("c", -25.0)], 2);
        assert_eq!((t.slot_of("c"), t.slot_of("a"), t.slot_of("b").is_some()), (a_slot, None, true));
    }

    /// What broke: a talker whose slot was taken moved to the shared
    /// encoder on the same tick. That encoder's packet carries the last
    /// 6.5 ms of the previous tick's shared mix, which still held the old
    /// talker's last loud frame: in CI it heard itself at -43 dBFS.
    #[test]
    fn a_talker_losing_its_slot_is_unmixed_a_tick_before_it_hears_the_shared_encoder() {
        let mut t = Talkers::new(1, -50.0);
        tick(&mut t, &[("a", -20.0), ("c", SILENCE_DB)], 5);
        tick(&mut t, &[("a", -80.0), ("c", -20.0)], 1);
        assert_eq!((t.slot_of("a"), t.listens_to("a"), t.slot_of("c"), t.listens_to("c")), (None, Some(0), None, None), "handover: a unmixed, still on its slot's encoder; c not yet mixed");
        tick(&mut t, &[("a", -80.0), ("c", -20.0)], 1);
        assert_eq!((t.listens_to("a"), t.slot_of("c"), t.listens_to("c")), (None, Some(0), Some(0)), "c has the slot, a hears the shared encoder");
        // The same while the old talker still talks (taken by a 6 dB lead).
        let mut t = Talkers::new(1, -50.0);
        tick(&mut t, &[("a", -45.0), ("c", SILENCE_DB)], 5);
        tick(&mut t, &[("a", -45.0), ("c", -10.0)], 10);
        assert_eq!((t.slot_of("c"), t.listens_to("a")), (Some(0), None));
        // An heir who leaves before the handover leaves the slot as it was.
        let mut t = Talkers::new(1, -50.0);
        tick(&mut t, &[("a", -20.0), ("c", SILENCE_DB)], 5);
        tick(&mut t, &[("a", -80.0), ("c", -20.0)], 1);
        tick(&mut t, &[("a", -80.0)], 1);
        assert_eq!(t.slot_of("a"), Some(0));
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
        let loud = vec![vec![30000i16; 2]; 3];
        let (mut total, mut shared) = (Vec::new(), vec![0i16; 2]);
        let mut slots = vec![vec![0i16; 2]; 3];
        mix_talkers(&loud, &[Some(0), Some(1), Some(2)], &mut total, &mut shared, &mut slots);
        // Each hears the other two clipped, but never itself.
        assert_eq!(slots[0], vec![i16::MAX; 2]);
        assert_eq!(shared, vec![i16::MAX; 2]);
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
        assert!(levels[LONG_TICKS as usize..].iter().all(|l| *l <= 2 * FRAME), "back to the prebuffer: {levels:?}");
        // Jitter that comes and goes is left alone.
        let mut r = InputRing::default();
        r.push(&vec![1; 2 * FRAME]);
        assert!(!r.take(&mut out), "plays a tick after its first packet");
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
        r.push(&vec![1; FRAME]);
        r.push(&vec![1; FRAME]);
        assert!(!r.take(&mut out), "the prebuffer alone is not enough");
        r.push(&vec![1; FRAME]);
        r.push(&vec![1; FRAME]);
        assert!(r.take(&mut out));
        // Steady at prebuffer + delay: never cut as running long.
        for _ in 0..100 {
            r.push(&vec![1; FRAME]);
            assert!(r.take(&mut out));
        }
        assert_eq!(r.buf.len(), 2 * FRAME + 2 * FRAME - FRAME);
    }

    /// One tick (20 ms) of the mixer against a sender of `ptime` packets
    /// whose packet `k` arrives at `arrival(k)` ms: whether each take
    /// played, and the ring's level after it.
    fn feed(ptime: usize, arrival: impl Fn(usize) -> f64, ticks: usize, tick_phase_ms: f64) -> Vec<(bool, usize)> {
        let mut r = InputRing::default();
        let mut out = vec![0i16; FRAME];
        let mut next = 0;
        (0..ticks)
            .map(|t| {
                let now = tick_phase_ms + 20.0 * t as f64;
                while arrival(next) <= now {
                    r.push(&vec![1; ptime * FRAME / 20]);
                    next += 1;
                }
                (r.take(&mut out), r.buf.len())
            })
            .collect()
    }

    #[test]
    fn packets_of_40_ms_play_a_tick_after_the_first_arrives_and_survive_one_late_by_almost_a_tick() {
        for phase in [0.5, 5.0, 10.0, 19.5] {
            // On time: the first take after the first packet arms, the next plays.
            let on_time = feed(40, |k| 40.0 * k as f64, 200, phase);
            assert_eq!(on_time[0], (false, 2 * FRAME), "phase {phase}");
            assert!(on_time[1..].iter().all(|(played, _)| *played), "phase {phase}: {on_time:?}");
            // Never more than a packet and a tick (60 ms) before a take,
            // so never cut as running long.
            assert!(on_time.iter().all(|(_, level)| *level <= 2 * FRAME), "phase {phase}");
            // Every packet after the first 19 ms late: still no gap.
            let late = feed(40, |k| if k == 0 { 0.0 } else { 40.0 * k as f64 + 19.0 }, 200, phase);
            assert!(late[1..].iter().all(|(played, _)| *played), "phase {phase}: {late:?}");
        }
    }

    #[test]
    fn packets_of_40_ms_held_late_by_a_burst_come_back_within_half_a_second() {
        // Regression: the lip-sync bench found a sender's audio 40 ms late
        // for good; its ring swung between 80 and 100 ms before each take.
        let mut r = InputRing::default();
        let mut out = vec![0i16; FRAME];
        // Three packets at once (a jitterbuffer releasing what it held),
        // then one every other tick.
        for _ in 0..3 {
            r.push(&vec![1; 2 * FRAME]);
        }
        let mut before = Vec::new();
        for t in 0..100 {
            if t % 2 == 1 {
                r.push(&vec![1; 2 * FRAME]);
            }
            before.push(r.buf.len());
            assert!(r.take(&mut out), "tick {t}: {before:?}");
        }
        assert!(before[..20].iter().all(|l| *l >= 4 * FRAME), "kept while it may be jitter: {before:?}");
        assert!(before[LONG_TICKS as usize + 2..].iter().all(|l| *l <= 3 * FRAME), "back to 40 and 60 ms: {before:?}");
    }

    #[test]
    fn packets_of_20_ms_start_as_they_always_did() {
        for phase in [0.5, 10.0, 19.5] {
            let on_time = feed(20, |k| 20.0 * k as f64, 100, phase);
            assert_eq!(on_time[0].0, false, "phase {phase}");
            assert!(on_time[1..].iter().all(|(played, level)| *played && *level == FRAME), "phase {phase}: {on_time:?}");
        }
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
