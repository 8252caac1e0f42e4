//! Operator layouts: `pipelines/mixer.toml` and `pipelines/layouts/*.toml`.
//!
//! Parsing, validation with file/line/column, layout groups, and the pure
//! assignment of participants to slots. No GStreamer here: gst-launch
//! fragments are checked through a callback the caller supplies.
//! Every key is described in docs/layouts.md.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::ladder::Rung;
use crate::layout::Rect;

/// Default real-time encoder for the shared mixed video. GStreamer's vp8enc
/// defaults are offline settings; every one that matters is set here.
pub const DEFAULT_VIDEO_ENCODER: &str = "vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate=1200000 \
     lag-in-frames=0 keyframe-mode=auto keyframe-max-dist=90 error-resilient=default threads=1 \
     buffer-size=1000 buffer-initial-size=500 buffer-optimal-size=600 undershoot=95 max-quantizer=56";

/// The H.264 rungs' encoder: OpenH264 in real time (one thread like the
/// VP8 rungs), constrained baseline so every browser and phone decoder
/// takes it, a keyframe at least every 3 s. Chosen over x264enc
/// (`tune=zerolatency speed-preset=ultrafast`, [`X264_ENCODER`]) by
/// `./scripts/bench --scenario codecs`: on the same 720p grid it cost 9.8 %
/// of a core against 11.3 % and sent 200 kbps against 640 (x264's rate
/// control fills its target even on an easy picture; a weak link pays it).
pub const DEFAULT_H264_ENCODER: &str = "openh264enc complexity=low rate-control=bitrate bitrate=1200000 \
     gop-size=90 usage-type=camera multi-thread=1 \
     ! capsfilter caps=\"video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au\"";

/// The alternative H.264 rung encoder the codecs benchmark compares.
pub const X264_ENCODER: &str = "x264enc tune=zerolatency speed-preset=ultrafast bitrate=1200 \
     key-int-max=90 threads=1 sliced-threads=false bframes=0 b-adapt=false vbv-buf-capacity=600 \
     ! capsfilter caps=\"video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au\"";

/// Largest participant count a group may describe.
pub const MAX_GROUP_COUNT: usize = 64;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// Every problem found while loading a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| before[i + 1..].chars().count()).unwrap_or(before.chars().count()) + 1;
    (line, col)
}

/// An sRGB colour, written `"#rrggbb"` in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u32);

impl Color {
    pub fn parse(s: &str) -> Option<Color> {
        let hex = s.strip_prefix('#')?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(hex, 16).ok().map(Color)
    }
}

/// A slot's `fit`: `crop` (the default, cameras fill their tiles) or
/// `letterbox`.
pub use crate::protocol::Fit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Filled in join order.
    Any,
    /// The current active speaker.
    Floor,
    /// A participant pinned to this key.
    Reserved(String),
    /// A shared screen (always letterboxed); empty while nobody shares.
    Share,
}

// ---------- raw file shapes (serde) ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    x: Spanned<f64>,
    y: Spanned<f64>,
    w: Spanned<f64>,
    h: Spanned<f64>,
    #[serde(default)]
    z: Option<Spanned<i64>>,
    #[serde(default)]
    fit: Option<Spanned<Fit>>,
    #[serde(default)]
    border: Option<Spanned<i64>>,
    #[serde(default)]
    border_color: Option<Spanned<String>>,
    #[serde(default)]
    role: Option<Spanned<String>>,
    #[serde(default)]
    reserved: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    slots: Spanned<Vec<RawSlot>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayoutFile {
    #[serde(default)]
    layouts: BTreeMap<String, Spanned<RawLayout>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCanvas {
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    fps: Option<Spanned<i64>>,
    background: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    jitterbuffer_ms: Option<Spanned<i64>>,
    mixer_ms: Option<Spanned<i64>>,
    audio_delay_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVideo {
    encoder: Option<Spanned<String>>,
    h264_encoder: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRung {
    name: Spanned<String>,
    width: Spanned<i64>,
    height: Spanned<i64>,
    fps: Option<Spanned<i64>>,
    bitrate: Spanned<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    bitrate: Option<Spanned<i64>>,
    complexity: Option<Spanned<i64>>,
    talkers: Option<Spanned<i64>>,
    talker_threshold_db: Option<Spanned<f64>>,
    ptime_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLayoutSettings {
    default_group: Option<Spanned<String>>,
    speaker_hold_ms: Option<Spanned<i64>>,
    speaker_threshold_db: Option<Spanned<f64>>,
    highlight_color: Option<Spanned<String>>,
    highlight_width: Option<Spanned<i64>>,
    share_group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    names: Option<Spanned<bool>>,
    font: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawShare {
    focus_rung: Option<Spanned<String>>,
    focus_width: Option<Spanned<i64>>,
    focus_height: Option<Spanned<i64>>,
    focus_fps: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStream {
    aac_encoder: Option<Spanned<String>>,
    hls_segment_s: Option<Spanned<i64>>,
    hls_playlist_length: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMixer {
    #[serde(default)]
    canvas: RawCanvas,
    #[serde(default)]
    latency: RawLatency,
    #[serde(default)]
    video: RawVideo,
    #[serde(default)]
    audio: RawAudio,
    #[serde(default)]
    ladder: Vec<Spanned<RawRung>>,
    #[serde(default)]
    layout: RawLayoutSettings,
    #[serde(default)]
    overlay: RawOverlay,
    #[serde(default)]
    share: RawShare,
    #[serde(default)]
    stream: RawStream,
}

// ---------- validated model ----------

/// A slot in relative units (0..=1 of the canvas).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub z: i32,
    pub fit: Fit,
    /// Border width in canvas pixels (drawn inside the slot).
    pub border: u32,
    pub border_color: Color,
    pub role: Role,
}

impl Slot {
    /// The slot in canvas pixels: even, inside the canvas, at least 2x2.
    pub fn rect(&self, width: u32, height: u32) -> Rect {
        let even = |v: f64| ((v.round() as i64).max(0) as u32) & !1;
        let x = even(self.x * width as f64).min(width.saturating_sub(2));
        let y = even(self.y * height as f64).min(height.saturating_sub(2));
        let x2 = even((self.x + self.w) * width as f64).min(width & !1);
        let y2 = even((self.y + self.h) * height as f64).min(height & !1);
        Rect { x, y, width: x2.saturating_sub(x).max(2), height: y2.saturating_sub(y).max(2) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub name: String,
    pub slots: Vec<Slot>,
}

/// A group: which layout to use for each participant count 1..=max.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// `by_count[n - 1]` is the layout for n participants.
    pub by_count: Vec<String>,
}

impl Group {
    pub fn layout_for(&self, n: usize) -> Option<&str> {
        if self.by_count.is_empty() {
            return None;
        }
        let i = n.clamp(1, self.by_count.len()) - 1;
        Some(&self.by_count[i])
    }
}

/// Mixer settings from `mixer.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct MixerSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub background: Color,
    pub jitterbuffer_ms: u32,
    pub mixer_latency_ms: u32,
    /// Audio held back on top of the mix's 40 ms jitter prebuffer, to meet
    /// the picture, which takes longer through compose and encode.
    pub audio_delay_ms: u32,
    pub video_encoder: String,
    /// The same for receivers that chose H.264: raw video in, H.264
    /// (constrained baseline, byte-stream) out.
    pub h264_encoder: String,
    /// The encoder ladder, highest rung first; empty: derived from the canvas.
    pub ladder: Vec<Rung>,
    pub audio_bitrate: u32,
    /// Opus encoder complexity, 0 (cheapest) ..= 10.
    pub audio_complexity: u32,
    /// At most this many people are mixed at once, each with a personal
    /// mix-minus encoding; everyone else shares one encoding of the mix.
    pub audio_talkers: u32,
    /// A 20 ms frame at or above this level (dBFS) makes its sender a talker.
    pub audio_talker_threshold_db: f64,
    /// The audio packet time asked of senders (`a=ptime` in our SDP; 20,
    /// 40 or 60 ms). Longer packets: fewer to receive, decrypt and
    /// depacketize, and less header overhead on a sender's uplink, for that
    /// much more packetization delay at the sender. The mix itself goes
    /// out in 20 ms packets.
    pub audio_ptime_ms: u32,
    pub default_group: String,
    /// The group a room switches to while someone shares a screen (its
    /// layouts have a `share` slot); back to the room's own when it stops.
    pub share_group: String,
    pub speaker_hold_ms: u32,
    pub speaker_threshold_db: f64,
    pub highlight_color: Color,
    pub highlight_width: u32,
    pub names: bool,
    pub font: String,
    /// `[share]`: the rung that carries the shared screen alone.
    pub share_focus: ShareFocus,
    /// `[stream]`: live streams (RTMP, HLS).
    pub stream: StreamSettings,
}

/// Live streams (RTMP and HLS) reuse the top rung's H.264 and the full
/// mix; what is theirs alone is the AAC encoder and the HLS segmenting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// gst-launch fragment: raw audio (48 kHz) in, AAC out.
    pub aac_encoder: String,
    /// HLS segment length, seconds (a keyframe is asked for at each cut).
    pub hls_segment_s: u32,
    /// Segments listed in the live playlist (older files are deleted).
    pub hls_playlist_length: u32,
}

/// AAC for RTMP and HLS: Debian's voaacenc (plugins-bad); avenc_aac works too.
pub const DEFAULT_AAC_ENCODER: &str = "voaacenc bitrate=128000";

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { aac_encoder: DEFAULT_AAC_ENCODER.into(), hls_segment_s: 4, hls_playlist_length: 6 }
    }
}

/// While someone shares, one rung of the ladder (the lowest by default)
/// carries the share slot alone, cropped from the canvas, at its own size
/// and frame rate: on a phone's weak link the screen is readable, where
/// the whole canvas at 320x180 would make its text a blur. The rung keeps
/// its bitrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFocus {
    /// The rung by name; None: the lowest; `Some("")`: no rung changes.
    pub rung: Option<String>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for ShareFocus {
    fn default() -> Self {
        ShareFocus { rung: None, width: 640, height: 360, fps: 5 }
    }
}

impl Default for MixerSettings {
    fn default() -> Self {
        MixerSettings {
            width: 1280,
            height: 720,
            fps: 30,
            background: Color(0x000000),
            jitterbuffer_ms: 50,
            mixer_latency_ms: 0,
            audio_delay_ms: 0,
            video_encoder: DEFAULT_VIDEO_ENCODER.to_string(),
            h264_encoder: DEFAULT_H264_ENCODER.to_string(),
            ladder: Vec::new(),
            audio_bitrate: 32_000,
            audio_complexity: 5,
            audio_talkers: 3,
            audio_talker_threshold_db: -50.0,
            audio_ptime_ms: 20,
            default_group: "grid".into(),
            share_group: "presentation".into(),
            speaker_hold_ms: 1200,
            speaker_threshold_db: -45.0,
            highlight_color: Color(0xffc531),
            highlight_width: 4,
            names: true,
            font: "Sans Bold".into(),
            share_focus: ShareFocus::default(),
            stream: StreamSettings::default(),
        }
    }
}

/// Everything loaded from a pipelines directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub mixer: MixerSettings,
    pub layouts: HashMap<String, Layout>,
    pub groups: HashMap<String, Group>,
}

impl Catalog {
    /// The built-in automatic grid (used when no directory is configured).
    pub fn builtin() -> Catalog {
        let mut layouts = HashMap::new();
        let mut by_count = Vec::new();
        for n in 1..=25usize {
            let (cols, rows) = crate::layout::grid_dims(n);
            let name = format!("grid-{cols}x{rows}");
            layouts.entry(name.clone()).or_insert_with(|| Layout { name: name.clone(), slots: grid_slots(cols, rows) });
            by_count.push(name);
        }
        let mut groups = HashMap::new();
        groups.insert("grid".to_string(), Group { name: "grid".into(), by_count });
        let (share_layouts, share_group) = builtin_presentation();
        for l in share_layouts {
            layouts.insert(l.name.clone(), l);
        }
        groups.insert(share_group.name.clone(), share_group);
        Catalog { mixer: MixerSettings::default(), layouts, groups }
    }

    /// The layout while someone shares: the share group's layout for `n`
    /// cameras; the built-in presentation when the group is missing.
    pub fn pick_share(&self, n: usize) -> Option<&Layout> {
        let g = self.groups.get(&self.mixer.share_group)?;
        self.layouts.get(g.layout_for(n)?)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// The layout for `n` participants: an explicit layout wins over a group.
    pub fn pick(&self, group: &str, layout: Option<&str>, n: usize) -> Option<&Layout> {
        if let Some(l) = layout.and_then(|l| self.layouts.get(l)) {
            return Some(l);
        }
        let g = self.groups.get(group).or_else(|| self.groups.get(&self.mixer.default_group))?;
        self.layouts.get(g.layout_for(n)?)
    }
}

/// The built-in presentation layouts (the same as
/// `pipelines/layouts/presentation.toml`): the share large at the top left,
/// cameras around it on the right and along the bottom.
/// `presentation`: the share 1024x576 of a 1280x720 canvas and nine
/// 256x144 cameras, every slot 16:9; `presentation-many`: the share
/// 960x540 and 28 cameras of 160x90.
pub fn builtin_presentation() -> (Vec<Layout>, Group) {
    let slot = |x: f64, y: f64, w: f64, h: f64, role: Role| Slot {
        x,
        y,
        w,
        h,
        z: 0,
        fit: if role == Role::Share { Fit::Letterbox } else { Fit::Crop },
        border: 0,
        border_color: Color(0xffffff),
        role,
    };
    let mut few = vec![slot(0.0, 0.0, 0.8, 0.8, Role::Share)];
    // The column on the right, top down, then the row along the bottom
    // from the right: cameras gather at the corner.
    // Fifths as written in the file (0.6 is not 3 * 0.2 in binary).
    const FIFTHS: [f64; 5] = [0.0, 0.2, 0.4, 0.6, 0.8];
    few.extend(FIFTHS[..4].iter().map(|&y| slot(0.8, y, 0.2, 0.2, Role::Any)));
    few.extend(FIFTHS.iter().rev().map(|&x| slot(x, 0.8, 0.2, 0.2, Role::Any)));
    let mut many = vec![slot(0.0, 0.0, 0.75, 0.75, Role::Share)];
    for r in 0..6 {
        for c in 0..2 {
            many.push(slot(0.75 + c as f64 * 0.125, r as f64 * 0.125, 0.125, 0.125, Role::Any));
        }
    }
    for r in 0..2 {
        for c in (0..8).rev() {
            many.push(slot(c as f64 * 0.125, 0.75 + r as f64 * 0.125, 0.125, 0.125, Role::Any));
        }
    }
    let by_count = (1..=many.len() - 1).map(|n| if n <= 9 { "presentation" } else { "presentation-many" }.to_string()).collect();
    (
        vec![Layout { name: "presentation".into(), slots: few }, Layout { name: "presentation-many".into(), slots: many }],
        Group { name: "presentation".into(), by_count },
    )
}

/// Uniform cols x rows cells, row-major, role `any`.
pub fn grid_slots(cols: u32, rows: u32) -> Vec<Slot> {
    let mut v = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            v.push(Slot {
                x: c as f64 / cols as f64,
                y: r as f64 / rows as f64,
                w: 1.0 / cols as f64,
                h: 1.0 / rows as f64,
                z: 0,
                fit: Fit::Crop,
                border: 0,
                border_color: Color(0xffffff),
                role: Role::Any,
            });
        }
    }
    v
}

// ---------- assignment ----------

/// Put participants (in join order) into the slots of `layout`:
/// pinned participants into their reserved slots, the active speaker into
/// the floor slot(s), everyone else into the remaining slots in order
/// (`any` slots first, then unclaimed floor slots). Reserved slots without
/// their participant stay empty; participants beyond the slots are not
/// shown. Returns (participant index, slot index). Deterministic.
pub fn assign(layout: &Layout, participants: &[&str], floor: Option<&str>, pins: &BTreeMap<String, String>) -> Vec<(usize, usize)> {
    assign_with_shares(layout, participants, floor, pins, 0).0
}

/// (index, slot index) pairs, by index.
pub type Placed = Vec<(usize, usize)>;

/// [`assign`] with `shares` shared screens (in the order they started):
/// they take the `share` slots first; shares beyond them take `any` slots
/// ahead of the cameras. Returns the cameras' and the shares' (index,
/// slot index).
pub fn assign_with_shares(layout: &Layout, participants: &[&str], floor: Option<&str>, pins: &BTreeMap<String, String>, shares: usize) -> (Placed, Placed) {
    let mut out = Vec::new();
    let mut placed = vec![false; participants.len()];
    let mut used = vec![false; layout.slots.len()];
    let index_of = |id: &str| participants.iter().position(|p| *p == id);
    // 0. Shares: their slots, then `any` slots.
    let mut shown = Vec::new();
    let share_slots: Vec<usize> = layout.slots.iter().enumerate().filter(|(_, s)| s.role == Role::Share).map(|(i, _)| i).collect();
    let any_slots = layout.slots.iter().enumerate().filter(|(_, s)| s.role == Role::Any).map(|(i, _)| i);
    for (shi, si) in (0..shares).zip(share_slots.iter().copied().chain(any_slots)) {
        used[si] = true;
        shown.push((shi, si));
    }
    // 1. Reserved slots.
    for (si, slot) in layout.slots.iter().enumerate() {
        if let Role::Reserved(key) = &slot.role {
            if let Some(pi) = pins.get(key).and_then(|id| index_of(id)) {
                if !placed[pi] {
                    placed[pi] = true;
                    used[si] = true;
                    out.push((pi, si));
                }
            }
        }
    }
    // 2. Floor slots: the speaker, else the first one not placed.
    for (si, slot) in layout.slots.iter().enumerate() {
        if slot.role == Role::Floor && !used[si] {
            let speaker = floor.and_then(|id| index_of(id)).filter(|&pi| !placed[pi]);
            let pick = speaker.or_else(|| (0..participants.len()).find(|&pi| !placed[pi]));
            if let Some(pi) = pick {
                placed[pi] = true;
                used[si] = true;
                out.push((pi, si));
            }
        }
    }
    // 3. Everyone else in join order.
    let mut free = layout.slots.iter().enumerate().filter(|(si, s)| !used[*si] && s.role == Role::Any).map(|(si, _)| si);
    for (pi, done) in placed.iter_mut().enumerate() {
        if *done {
            continue;
        }
        match free.next() {
            Some(si) => {
                *done = true;
                out.push((pi, si));
            }
            None => break,
        }
    }
    out.sort_unstable();
    (out, shown)
}

// ---------- loading and validation ----------

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { file: self.file.to_path_buf(), line, column, message: message.into() });
    }

    fn int<T: TryFrom<i64>>(&mut self, v: &Option<Spanned<i64>>, name: &str, lo: i64, hi: i64, default: T) -> T {
        match v {
            None => default,
            Some(s) => {
                let x = *s.get_ref();
                if x < lo || x > hi {
                    self.at(s.span(), format!("{name} is {x}; it must be between {lo} and {hi}"));
                    default
                } else {
                    T::try_from(x).unwrap_or(default)
                }
            }
        }
    }

    /// An audio packet time: 20, 40 or 60 ms.
    fn ptime(&mut self, v: &Option<Spanned<i64>>, name: &str, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(ms) if crate::media::audio::PTIMES_MS.contains(&ms) => ms,
                _ => {
                    self.at(s.span(), format!("{name} is {}; it must be 20, 40 or 60", s.get_ref()));
                    default
                }
            },
        }
    }

    /// A level in dBFS, -100..=0.
    fn db(&mut self, v: &Option<Spanned<f64>>, name: &str, default: f64) -> f64 {
        match v {
            None => default,
            Some(s) if (-100.0..=0.0).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.at(s.span(), format!("{name} is {}; it must be between -100 and 0", s.get_ref()));
                default
            }
        }
    }

    fn color(&mut self, v: &Option<Spanned<String>>, name: &str, default: Color) -> Color {
        match v {
            None => default,
            Some(s) => match Color::parse(s.get_ref()) {
                Some(c) => c,
                None => {
                    self.at(s.span(), format!("{name} is \"{}\"; write a colour as \"#rrggbb\"", s.get_ref()));
                    default
                }
            },
        }
    }

    /// A gst-launch fragment, checked with `check` (kept as written, so a
    /// problem is reported once with its place).
    fn fragment(&mut self, v: &Option<Spanned<String>>, name: &str, default: &str, check: FragmentCheck) -> String {
        match v {
            None => default.to_string(),
            Some(f) => {
                if let Err(m) = check(f.get_ref()) {
                    self.at(f.span(), format!("{name} does not work: {m}"));
                }
                f.get_ref().clone()
            }
        }
    }
}

fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let message = e.message().trim().replace('\n', " ");
    Problem { file: file.to_path_buf(), line, column, message }
}

/// A gst-launch fragment checker: `Err(message)` when it does not parse or
/// names an element or property that does not exist.
pub type FragmentCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Parse `mixer.toml`.
pub fn parse_mixer(file: &Path, text: &str, check_fragment: FragmentCheck) -> Result<MixerSettings, Vec<Problem>> {
    let raw: RawMixer = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let mut c = Checker { file, text, problems: Vec::new() };
    let d = MixerSettings::default();
    let width: u32 = c.int(&raw.canvas.width, "`canvas.width`", 64, 3840, d.width);
    let height: u32 = c.int(&raw.canvas.height, "`canvas.height`", 64, 2160, d.height);
    for (v, n) in [(&raw.canvas.width, "canvas.width"), (&raw.canvas.height, "canvas.height")] {
        if let Some(s) = v {
            if s.get_ref() % 2 != 0 {
                c.at(s.span(), format!("`{n}` must be even (I420 video)"));
            }
        }
    }
    let s = MixerSettings {
        width,
        height,
        fps: c.int(&raw.canvas.fps, "`canvas.fps`", 1, 60, d.fps),
        background: c.color(&raw.canvas.background, "`canvas.background`", d.background),
        jitterbuffer_ms: c.int(&raw.latency.jitterbuffer_ms, "`latency.jitterbuffer_ms`", 0, 2000, d.jitterbuffer_ms),
        mixer_latency_ms: c.int(&raw.latency.mixer_ms, "`latency.mixer_ms`", 0, 1000, d.mixer_latency_ms),
        audio_delay_ms: c.int(&raw.latency.audio_delay_ms, "`latency.audio_delay_ms`", 0, 500, d.audio_delay_ms),
        video_encoder: c.fragment(&raw.video.encoder, "`video.encoder`", &d.video_encoder, check_fragment),
        h264_encoder: c.fragment(&raw.video.h264_encoder, "`video.h264_encoder`", &d.h264_encoder, check_fragment),
        ladder: Vec::new(),
        audio_bitrate: c.int(&raw.audio.bitrate, "`audio.bitrate`", 6_000, 510_000, d.audio_bitrate),
        audio_complexity: c.int(&raw.audio.complexity, "`audio.complexity`", 0, 10, d.audio_complexity),
        audio_talkers: c.int(&raw.audio.talkers, "`audio.talkers`", 1, 16, d.audio_talkers),
        audio_talker_threshold_db: c.db(&raw.audio.talker_threshold_db, "`audio.talker_threshold_db`", d.audio_talker_threshold_db),
        audio_ptime_ms: c.ptime(&raw.audio.ptime_ms, "`audio.ptime_ms`", d.audio_ptime_ms),
        default_group: raw.layout.default_group.as_ref().map(|g| g.get_ref().clone()).unwrap_or(d.default_group.clone()),
        share_group: raw.layout.share_group.as_ref().map(|g| g.get_ref().clone()).unwrap_or(d.share_group.clone()),
        speaker_hold_ms: c.int(&raw.layout.speaker_hold_ms, "`layout.speaker_hold_ms`", 0, 30_000, d.speaker_hold_ms),
        speaker_threshold_db: c.db(&raw.layout.speaker_threshold_db, "`layout.speaker_threshold_db`", d.speaker_threshold_db),
        highlight_color: c.color(&raw.layout.highlight_color, "`layout.highlight_color`", d.highlight_color),
        highlight_width: c.int(&raw.layout.highlight_width, "`layout.highlight_width`", 0, 32, d.highlight_width),
        names: raw.overlay.names.as_ref().map(|b| *b.get_ref()).unwrap_or(d.names),
        font: raw.overlay.font.as_ref().map(|f| f.get_ref().clone()).unwrap_or(d.font.clone()),
        share_focus: ShareFocus {
            rung: raw.share.focus_rung.as_ref().map(|r| r.get_ref().clone()).or(d.share_focus.rung.clone()),
            width: c.int(&raw.share.focus_width, "`share.focus_width`", 16, 3840, d.share_focus.width),
            height: c.int(&raw.share.focus_height, "`share.focus_height`", 16, 2160, d.share_focus.height),
            fps: c.int(&raw.share.focus_fps, "`share.focus_fps`", 1, 60, d.share_focus.fps),
        },
        stream: StreamSettings {
            aac_encoder: c.fragment(&raw.stream.aac_encoder, "`stream.aac_encoder`", &d.stream.aac_encoder, check_fragment),
            hls_segment_s: c.int(&raw.stream.hls_segment_s, "`stream.hls_segment_s`", 1, 60, d.stream.hls_segment_s),
            hls_playlist_length: c.int(&raw.stream.hls_playlist_length, "`stream.hls_playlist_length`", 2, 100, d.stream.hls_playlist_length),
        },
    };
    let mut s = s;
    s.ladder = parse_ladder(&mut c, &raw.ladder, &s);
    for (v, n) in [(&raw.share.focus_width, "share.focus_width"), (&raw.share.focus_height, "share.focus_height")] {
        if let Some(v) = v.as_ref().filter(|v| v.get_ref() % 2 != 0) {
            c.at(v.span(), format!("`{n}` must be even (I420 video)"));
        }
    }
    if let Some(r) = raw.share.focus_rung.as_ref().filter(|r| !r.get_ref().is_empty()) {
        let names: Vec<String> = if s.ladder.is_empty() {
            crate::ladder::default_ladder(s.width, s.height, s.fps).into_iter().map(|r| r.name).collect()
        } else {
            s.ladder.iter().map(|r| r.name.clone()).collect()
        };
        if !names.contains(r.get_ref()) {
            c.at(r.span(), format!("`share.focus_rung` is `{}`, which is not a rung of the ladder ({}); \"\" turns the focus off", r.get_ref(), names.join(", ")));
        }
    }
    if c.problems.is_empty() {
        Ok(s)
    } else {
        Err(c.problems)
    }
}

/// Most rungs in a ladder (each running rung is one encoder per room).
pub const MAX_RUNGS: usize = 4;

fn parse_ladder(c: &mut Checker, raw: &[Spanned<RawRung>], s: &MixerSettings) -> Vec<Rung> {
    if raw.len() > MAX_RUNGS {
        c.at(raw[MAX_RUNGS].span(), format!("at most {MAX_RUNGS} `[[ladder]]` rungs"));
    }
    let mut out: Vec<Rung> = Vec::new();
    for r in raw {
        let span = r.span();
        let r = r.get_ref();
        let name = r.name.get_ref().clone();
        let ok_name = !name.is_empty()
            && name.len() <= 16
            && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !ok_name {
            c.at(r.name.span(), format!("rung name `{name}` must be 1 to 16 of `a-z 0-9 -`"));
        } else if name == "auto" || name == "audio" {
            c.at(r.name.span(), format!("`{name}` is reserved; choose another rung name"));
        } else if out.iter().any(|o| o.name == name) {
            c.at(r.name.span(), format!("rung `{name}` is declared twice"));
        }
        let width: u32 = c.int(&Some(r.width.clone()), "`ladder.width`", 64, s.width as i64, s.width);
        let height: u32 = c.int(&Some(r.height.clone()), "`ladder.height`", 64, s.height as i64, s.height);
        for (v, n) in [(&r.width, "ladder.width"), (&r.height, "ladder.height")] {
            if v.get_ref() % 2 != 0 {
                c.at(v.span(), format!("`{n}` must be even (I420 video)"));
            }
        }
        let fps: u32 = c.int(&r.fps, "`ladder.fps`", 1, s.fps as i64, s.fps);
        let bitrate: u32 = c.int(&Some(r.bitrate.clone()), "`ladder.bitrate`", 30_000, 20_000_000, 1_000_000);
        if let Some(prev) = out.last() {
            if bitrate >= prev.bitrate {
                c.at(span.clone(), format!("rung `{name}` must have a lower bitrate than `{}` above it (highest first)", prev.name));
            }
        }
        out.push(Rung { name, width, height, fps, bitrate });
    }
    out
}

type ParsedLayouts = (Vec<(Layout, Range<usize>)>, Vec<(String, Range<usize>, Vec<(usize, usize, String, Range<usize>)>)>);

/// Parse one layouts file: its layouts and its groups (not yet cross-checked).
fn parse_layout_file(file: &Path, text: &str) -> Result<ParsedLayouts, Vec<Problem>> {
    let raw: RawLayoutFile = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let mut c = Checker { file, text, problems: Vec::new() };
    let mut layouts = Vec::new();
    for (name, l) in &raw.layouts {
        let span = l.span();
        let l = l.get_ref();
        if l.slots.get_ref().is_empty() {
            c.at(l.slots.span(), format!("layout `{name}` has no slots"));
        }
        let mut slots = Vec::new();
        let mut keys = Vec::new();
        for (i, s) in l.slots.get_ref().iter().enumerate() {
            let n = i + 1;
            for (v, k) in [(&s.x, "x"), (&s.y, "y"), (&s.w, "w"), (&s.h, "h")] {
                let x = *v.get_ref();
                if !(0.0..=1.0).contains(&x) || x.is_nan() {
                    c.at(v.span(), format!("slot {n} of `{name}`: `{k}` is {x}; it must be between 0 and 1"));
                }
            }
            if *s.w.get_ref() <= 0.0 || *s.h.get_ref() <= 0.0 {
                c.at(s.w.span(), format!("slot {n} of `{name}` has no area"));
            }
            if s.x.get_ref() + s.w.get_ref() > 1.0 + 1e-9 {
                c.at(s.w.span(), format!("slot {n} of `{name}` ends at x = {} (x + w), outside the canvas", s.x.get_ref() + s.w.get_ref()));
            }
            if s.y.get_ref() + s.h.get_ref() > 1.0 + 1e-9 {
                c.at(s.h.span(), format!("slot {n} of `{name}` ends at y = {} (y + h), outside the canvas", s.y.get_ref() + s.h.get_ref()));
            }
            let z: i32 = c.int(&s.z, &format!("slot {n} of `{name}`: `z`"), -100, 100, 0);
            let border: u32 = c.int(&s.border, &format!("slot {n} of `{name}`: `border`"), 0, 64, 0);
            let border_color = c.color(&s.border_color, &format!("slot {n} of `{name}`: `border_color`"), Color(0xffffff));
            let role = match s.role.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
                None | Some(("any", _)) => {
                    if let Some(r) = &s.reserved {
                        c.at(r.span(), format!("slot {n} of `{name}`: `reserved` needs `role = \"reserved\"`"));
                    }
                    Role::Any
                }
                Some(("floor", _)) => Role::Floor,
                Some(("share", _)) => {
                    if let Some(f) = s.fit.as_ref().filter(|f| *f.get_ref() == Fit::Crop) {
                        c.at(f.span(), format!("slot {n} of `{name}`: a share slot shows the whole screen; leave out `fit` or write `fit = \"letterbox\"`"));
                    }
                    Role::Share
                }
                Some(("reserved", span)) => match &s.reserved {
                    Some(k) if !k.get_ref().is_empty() => {
                        if keys.contains(k.get_ref()) {
                            c.at(k.span(), format!("slot {n} of `{name}`: reserved key `{}` is used twice", k.get_ref()));
                        }
                        keys.push(k.get_ref().clone());
                        Role::Reserved(k.get_ref().clone())
                    }
                    _ => {
                        c.at(span, format!("slot {n} of `{name}`: `role = \"reserved\"` needs `reserved = \"<key>\"`"));
                        Role::Any
                    }
                },
                Some((other, span)) => {
                    c.at(span, format!("slot {n} of `{name}`: unknown role `{other}`; use \"any\", \"floor\", \"reserved\" or \"share\""));
                    Role::Any
                }
            };
            slots.push(Slot {
                x: *s.x.get_ref(),
                y: *s.y.get_ref(),
                w: *s.w.get_ref(),
                h: *s.h.get_ref(),
                z,
                fit: if role == Role::Share { Fit::Letterbox } else { s.fit.as_ref().map(|f| *f.get_ref()).unwrap_or_default() },
                border,
                border_color,
                role,
            });
        }
        layouts.push((Layout { name: name.clone(), slots }, span));
    }
    let mut groups = Vec::new();
    for (gname, g) in &raw.groups {
        let mut entries = Vec::new();
        for (range, target) in g.get_ref() {
            // Keys: "3" or "3-4".
            let parsed = match range.split_once('-') {
                Some((a, b)) => a.trim().parse::<usize>().ok().zip(b.trim().parse::<usize>().ok()),
                None => range.trim().parse::<usize>().ok().map(|a| (a, a)),
            };
            match parsed {
                Some((a, b)) if a >= 1 && a <= b && b <= MAX_GROUP_COUNT => entries.push((a, b, target.get_ref().clone(), target.span())),
                _ => c.at(
                    target.span(),
                    format!("group `{gname}`: `{range}` is not a participant count (\"3\") or range (\"3-4\") within 1..={MAX_GROUP_COUNT}"),
                ),
            }
        }
        groups.push((gname.clone(), g.span(), entries));
    }
    if c.problems.is_empty() {
        Ok((layouts, groups))
    } else {
        Err(c.problems)
    }
}

/// Names of the layouts and groups a layouts file defines (sorted).
#[derive(Debug, Default)]
pub struct Names {
    pub layouts: Vec<String>,
    pub groups: Vec<String>,
}

pub fn names_in_file(file: &Path) -> anyhow::Result<Names> {
    use anyhow::Context;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let raw: RawLayoutFile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}", toml_error(file, &text, &e)))?;
    Ok(Names { layouts: raw.layouts.keys().cloned().collect(), groups: raw.groups.keys().cloned().collect() })
}

/// Load and validate a pipelines directory: `mixer.toml` (optional) and
/// `layouts/*.toml`. Returns every problem found, not just the first.
pub fn load_dir(dir: &Path, check_fragment: FragmentCheck) -> Result<Catalog, Problems> {
    let mut problems = Vec::new();
    let mixer_path = dir.join("mixer.toml");
    let mixer = if mixer_path.exists() {
        match std::fs::read_to_string(&mixer_path) {
            Ok(text) => match parse_mixer(&mixer_path, &text, check_fragment) {
                Ok(m) => m,
                Err(p) => {
                    problems.extend(p);
                    MixerSettings::default()
                }
            },
            Err(e) => {
                problems.push(Problem { file: mixer_path.clone(), line: 1, column: 1, message: format!("cannot read: {e}") });
                MixerSettings::default()
            }
        }
    } else {
        MixerSettings::default()
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir.join("layouts")) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().map(|x| x == "toml").unwrap_or(false)).collect(),
        Err(e) => {
            problems.push(Problem { file: dir.join("layouts"), line: 1, column: 1, message: format!("cannot read the layouts folder: {e}") });
            Vec::new()
        }
    };
    files.sort();
    let mut layouts: HashMap<String, Layout> = HashMap::new();
    let mut raw_groups = Vec::new();
    let mut texts = HashMap::new();
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem { file: f.clone(), line: 1, column: 1, message: format!("cannot read: {e}") });
                continue;
            }
        };
        match parse_layout_file(f, &text) {
            Ok((ls, gs)) => {
                for (l, span) in ls {
                    if layouts.contains_key(&l.name) {
                        let (line, column) = line_col(&text, span.start);
                        problems.push(Problem { file: f.clone(), line, column, message: format!("layout `{}` is defined twice", l.name) });
                    } else {
                        layouts.insert(l.name.clone(), l);
                    }
                }
                for g in gs {
                    raw_groups.push((f.clone(), g));
                }
            }
            Err(p) => problems.extend(p),
        }
        texts.insert(f.clone(), text);
    }
    let mut groups = HashMap::new();
    for (f, (gname, gspan, mut entries)) in raw_groups {
        let text = texts.get(&f).map(String::as_str).unwrap_or("");
        let at = |span: &Range<usize>| line_col(text, span.start);
        entries.sort_by_key(|e| e.0);
        let mut by_count = Vec::new();
        let mut ok = true;
        for (a, b, target, span) in &entries {
            if !layouts.contains_key(target) {
                let (line, column) = at(span);
                problems.push(Problem { file: f.clone(), line, column, message: format!("group `{gname}` names layout `{target}`, which no file defines") });
                ok = false;
            }
            let next = by_count.len() + 1;
            if *a != next {
                let (line, column) = at(span);
                let message = if *a > next {
                    format!("group `{gname}` has a gap: no layout for {} participant(s)", if *a - 1 > next { format!("{next}-{}", a - 1) } else { next.to_string() })
                } else {
                    format!("group `{gname}`: counts {a}-{b} overlap an earlier entry")
                };
                problems.push(Problem { file: f.clone(), line, column, message });
                ok = false;
                break;
            }
            for _ in *a..=*b {
                by_count.push(target.clone());
            }
        }
        if entries.is_empty() {
            let (line, column) = at(&gspan);
            problems.push(Problem { file: f.clone(), line, column, message: format!("group `{gname}` is empty") });
            ok = false;
        }
        if groups.contains_key(&gname) {
            let (line, column) = at(&gspan);
            problems.push(Problem { file: f.clone(), line, column, message: format!("group `{gname}` is defined twice") });
            ok = false;
        }
        if ok {
            groups.insert(gname.clone(), Group { name: gname, by_count });
        }
    }
    if problems.is_empty() && !groups.contains_key(&mixer.default_group) {
        problems.push(Problem {
            file: mixer_path.clone(),
            line: 1,
            column: 1,
            message: format!("`layout.default_group` is `{}`, which no file under layouts/ defines", mixer.default_group),
        });
    }
    if problems.is_empty() {
        check_share_group(&mixer, &mixer_path, &mut layouts, &mut groups, &mut problems);
    }
    if problems.is_empty() {
        Ok(Catalog { mixer, layouts, groups })
    } else {
        Err(Problems(problems))
    }
}

/// The share group must exist (the default one, `presentation`, is built
/// in when no file defines it) and each of its layouts needs a `share` slot.
fn check_share_group(mixer: &MixerSettings, mixer_path: &Path, layouts: &mut HashMap<String, Layout>, groups: &mut HashMap<String, Group>, problems: &mut Vec<Problem>) {
    let name = &mixer.share_group;
    let problem = |message: String| Problem { file: mixer_path.to_path_buf(), line: 1, column: 1, message };
    if !groups.contains_key(name) {
        let (builtin, group) = builtin_presentation();
        if *name != group.name {
            problems.push(problem(format!("`layout.share_group` is `{name}`, which no file under layouts/ defines")));
            return;
        }
        for l in builtin {
            if layouts.contains_key(&l.name) {
                problems.push(problem(format!("no file defines the group `{name}`, and the built-in one cannot be added: a file defines a layout `{}` of its own", l.name)));
                return;
            }
            layouts.insert(l.name.clone(), l);
        }
        groups.insert(group.name.clone(), group);
    }
    if let Some(g) = groups.get(name) {
        let mut missing: Vec<&str> = g.by_count.iter().map(String::as_str).filter(|l| layouts.get(*l).is_some_and(|l| !l.slots.iter().any(|s| s.role == Role::Share))).collect();
        missing.dedup();
        if !missing.is_empty() {
            problems.push(problem(format!("`layout.share_group` `{name}` uses layouts without a `role = \"share\"` slot: {}", missing.join(", "))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedLayouts, Vec<Problem>> {
        parse_layout_file(Path::new("t.toml"), text)
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn slots_outside_the_canvas_are_reported_where_they_are() {
        let text = "[layouts.bad]\nslots = [\n  { x = 0.5, y = 0, w = 0.6, h = 1 },\n]\n";
        let p = parse(text).unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].line, p[0].column), (3, 25));
        assert!(p[0].message.contains("outside the canvas"), "{}", p[0].message);
    }

    /// The geometry the server uses: the built-in grid's slots in canvas
    /// pixels, as the room places them.
    #[test]
    fn builtin_grid_matches_the_automatic_grid() {
        let c = Catalog::builtin();
        for (w, h) in [(1280u32, 720u32), (640, 360), (320, 180)] {
            for n in 1..=25usize {
                let l = c.pick("grid", None, n).unwrap();
                let (cols, rows) = crate::layout::grid_dims(n);
                assert_eq!(l.slots.len(), (cols * rows) as usize, "n={n}");
                let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let a = assign(l, &refs, None, &BTreeMap::new());
                assert_eq!(a.len(), n);
                // Participant i in join order is in row i / cols, column i % cols.
                for (p, slot) in a {
                    let r = l.slots[slot].rect(w, h);
                    let (col, row) = (p as u32 % cols, p as u32 / cols);
                    let x = ((col * w) as f64 / cols as f64).round() as u32 & !1;
                    let y = ((row * h) as f64 / rows as f64).round() as u32 & !1;
                    assert_eq!((r.x, r.y), (x, y), "{w}x{h} n={n} participant {p}");
                }
            }
        }
    }

    /// pipelines/layouts/presentation.toml is the built-in presentation.
    #[test]
    fn the_shipped_presentation_is_the_built_in_one() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let c = load_dir(&dir, &|_| Ok(())).unwrap();
        let (builtin, group) = builtin_presentation();
        for l in builtin {
            assert_eq!(c.layouts.get(&l.name), Some(&l), "{}", l.name);
        }
        assert_eq!(c.groups.get("presentation"), Some(&group));
        assert_eq!(c.mixer.share_group, "presentation");
    }

    #[test]
    fn shares_take_share_slots_then_any_slots_and_cameras_the_rest() {
        let (ls, _) = builtin_presentation();
        let l = &ls[0];
        let ids = ["a", "b", "c"];
        let (cams, shares) = assign_with_shares(l, &ids, Some("c"), &BTreeMap::new(), 1);
        assert_eq!(shares, vec![(0, 0)], "the share in the share slot");
        assert_eq!(cams, vec![(0, 1), (1, 2), (2, 3)], "cameras in the strip, in join order (no floor here)");
        let (cams, shares) = assign_with_shares(l, &ids, None, &BTreeMap::new(), 2);
        assert_eq!(shares, vec![(0, 0), (1, 1)], "a second share takes the first camera slot");
        assert_eq!(cams, vec![(0, 2), (1, 3), (2, 4)]);
        // A layout without a share slot still shows a share (in an `any` slot).
        let grid = Catalog::builtin().pick("grid", None, 4).unwrap().clone();
        let (cams, shares) = assign_with_shares(&grid, &ids, None, &BTreeMap::new(), 1);
        assert_eq!(shares, vec![(0, 0)]);
        assert_eq!(cams.len(), 3);
        let rect = l.slots[0].rect(1280, 720);
        assert_eq!((rect.width, rect.height), (1024, 576));
        assert!(l.slots[1..].iter().all(|s| { let r = s.rect(1280, 720); (r.width, r.height) == (256, 144) }), "cameras 16:9");
        assert_eq!(l.slots[0].fit, Fit::Letterbox);
    }

    #[test]
    fn the_share_focus_names_a_rung_and_an_even_size() {
        let m = |t: &str| parse_mixer(Path::new("mixer.toml"), t, &|_| Ok(()));
        assert_eq!(m("").unwrap().share_focus, ShareFocus { rung: None, width: 640, height: 360, fps: 5 });
        assert_eq!(m("[share]\nfocus_rung = \"\"\n").unwrap().share_focus.rung.as_deref(), Some(""), "off");
        assert_eq!(m("[share]\nfocus_rung = \"medium\"\nfocus_fps = 10\n").unwrap().share_focus, ShareFocus { rung: Some("medium".into()), width: 640, height: 360, fps: 10 });
        let p = m("[share]\nfocus_rung = \"tiny\"\nfocus_width = 641\n").unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("not a rung of the ladder (high, medium, low)") && (p.line, p.column) == (2, 14)), "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("`share.focus_width` must be even")), "{p:?}");
        let ladder = "[[ladder]]\nname = \"hd\"\nwidth = 1280\nheight = 720\nbitrate = 1000000\n[share]\nfocus_rung = \"low\"\n";
        assert!(m(ladder).unwrap_err()[0].message.contains("(hd)"));
    }

    #[test]
    fn a_share_slot_is_never_cropped_and_the_share_group_needs_share_slots() {
        let p = parse(r#"
[layouts.x]
slots = [{ x = 0, y = 0, w = 1, h = 1, role = "share", fit = "crop" }]
"#).unwrap_err();
        assert!(p[0].message.contains("share slot shows the whole screen"), "{}", p[0].message);
        let (ls, _) = parse("[layouts.x]\nslots = [{ x = 0, y = 0, w = 1, h = 1, role = \"share\" }]\n").unwrap();
        assert_eq!(ls[0].0.slots[0].fit, Fit::Letterbox);
        // A folder whose share group has a layout without a share slot.
        let dir = std::env::temp_dir().join(format!("tessera-share-group-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("layouts")).unwrap();
        std::fs::write(dir.join("mixer.toml"), "[layout]\nshare_group = \"talk\"\n").unwrap();
        std::fs::write(dir.join("layouts/a.toml"), "[layouts.solo]\nslots = [{ x = 0, y = 0, w = 1, h = 1 }]\n[groups.grid]\n\"1\" = \"solo\"\n[groups.talk]\n\"1\" = \"solo\"\n").unwrap();
        let e = load_dir(&dir, &|_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("without a `role = \"share\"` slot: solo"), "{e}");
        std::fs::write(dir.join("mixer.toml"), "[layout]\nshare_group = \"nope\"\n").unwrap();
        let e = load_dir(&dir, &|_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("`layout.share_group` is `nope`"), "{e}");
        // No share group named: the built-in presentation is added.
        std::fs::write(dir.join("mixer.toml"), "").unwrap();
        let c = load_dir(&dir, &|_| Ok(())).unwrap();
        assert!(c.pick_share(3).is_some_and(|l| l.name == "presentation"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_are_side_by_side_and_three_fill_a_2x2_grid_row_by_row() {
        let c = Catalog::builtin();
        let rects = |n: usize| c.pick("grid", None, n).unwrap().slots.iter().map(|s| s.rect(640, 360)).collect::<Vec<_>>();
        assert_eq!(rects(2), vec![Rect { x: 0, y: 0, width: 320, height: 360 }, Rect { x: 320, y: 0, width: 320, height: 360 }]);
        let r3 = rects(3);
        assert_eq!(&r3[..3], &[Rect { x: 0, y: 0, width: 320, height: 180 }, Rect { x: 320, y: 0, width: 320, height: 180 }, Rect { x: 0, y: 180, width: 320, height: 180 }]);
    }

    #[test]
    fn slot_rects_are_even_inside_the_canvas_and_disjoint() {
        let c = Catalog::builtin();
        for (w, h) in [(1280u32, 720u32), (640, 360), (320, 240), (100, 100), (64, 64)] {
            for n in 1..=25usize {
                let rects: Vec<Rect> = c.pick("grid", None, n).unwrap().slots.iter().map(|s| s.rect(w, h)).collect();
                for (i, r) in rects.iter().enumerate() {
                    assert!(r.x + r.width <= w && r.y + r.height <= h, "{w}x{h} n={n} {r:?}");
                    assert!(r.width % 2 == 0 && r.height % 2 == 0 && r.x % 2 == 0 && r.y % 2 == 0, "{r:?}");
                    for o in &rects[i + 1..] {
                        let overlap = r.x < o.x + o.width && o.x < r.x + r.width && r.y < o.y + o.height && o.y < r.y + r.height;
                        assert!(!overlap, "{w}x{h} n={n}: {r:?} overlaps {o:?}");
                    }
                }
            }
        }
    }

    fn speaker_layout() -> Layout {
        let mut slots = vec![Slot { x: 0.0, y: 0.0, w: 1.0, h: 0.75, z: 0, fit: Fit::Crop, border: 0, border_color: Color(0), role: Role::Floor }];
        for i in 0..4 {
            slots.push(Slot { x: i as f64 * 0.25, y: 0.75, w: 0.25, h: 0.25, z: 0, fit: Fit::Letterbox, border: 0, border_color: Color(0), role: Role::Any });
        }
        slots.push(Slot { x: 0.8, y: 0.0, w: 0.2, h: 0.2, z: 1, fit: Fit::Letterbox, border: 2, border_color: Color(0xffffff), role: Role::Reserved("guest".into()) });
        Layout { name: "speaker".into(), slots }
    }

    #[test]
    fn floor_goes_to_the_speaker_and_pins_to_their_slot() {
        let l = speaker_layout();
        let ids = ["a", "b", "c"];
        // No speaker yet: the first participant takes the floor.
        assert_eq!(assign(&l, &ids, None, &BTreeMap::new()), vec![(0, 0), (1, 1), (2, 2)]);
        // c speaks.
        assert_eq!(assign(&l, &ids, Some("c"), &BTreeMap::new()), vec![(0, 1), (1, 2), (2, 0)]);
        // b is pinned as the guest; c speaks.
        let pins = BTreeMap::from([("guest".to_string(), "b".to_string())]);
        assert_eq!(assign(&l, &ids, Some("c"), &pins), vec![(0, 1), (1, 5), (2, 0)]);
        // A pin to someone absent leaves the reserved slot empty.
        let pins = BTreeMap::from([("guest".to_string(), "zed".to_string())]);
        assert!(assign(&l, &ids, None, &pins).iter().all(|(_, s)| *s != 5));
    }

    #[test]
    fn assignment_never_panics_and_stays_inside_the_canvas() {
        let l = speaker_layout();
        let c = Catalog::builtin();
        for n in 0..=64usize {
            let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for layout in [&l, c.pick("grid", None, n).unwrap()] {
                let floor = refs.get(n / 2).copied();
                let a = assign(layout, &refs, floor, &BTreeMap::new());
                let b = assign(layout, &refs, floor, &BTreeMap::new());
                assert_eq!(a, b, "deterministic");
                let mut seen_p = std::collections::HashSet::new();
                let mut seen_s = std::collections::HashSet::new();
                for (p, s) in &a {
                    assert!(seen_p.insert(*p) && seen_s.insert(*s), "one slot per participant and vice versa");
                    for (w, h) in [(1280, 720), (640, 360), (320, 180)] {
                        let r = layout.slots[*s].rect(w, h);
                        assert!(r.x + r.width <= w && r.y + r.height <= h, "{r:?} outside {w}x{h}");
                    }
                }
                assert_eq!(a.len(), n.min(layout.slots.len() - if layout.name == "speaker" { 1 } else { 0 }));
            }
        }
    }
}
