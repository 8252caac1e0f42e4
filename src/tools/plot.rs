//! Benchmark plots rendered as standalone SVG documents (rasterised to PNG
//! elsewhere, e.g. with `rsvg-convert`).
//!
//! Pure std, no dependencies: [`line_chart`] draws named series over "nice"
//! axes, [`cdf_chart`] draws latency distributions as empirical CDFs with p50
//! and p95 marked. The output sticks to plain presentation attributes (no CSS,
//! no `foreignObject`) so librsvg 2.54 renders it as intended. Non-finite
//! values are skipped and degenerate ranges padded; no input makes these panic.

use std::fmt::Write as _;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 60.0;
const PW: f64 = W - LEFT - RIGHT;
const PH: f64 = H - TOP - BOTTOM;
const FONT: &str = "DejaVu Sans, sans-serif";
const DASH: &str = r#" stroke-dasharray="6,4""#;

/// One named series of (x, y) points, drawn as a polyline with circle markers.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Any SVG colour, e.g. `"#1f77b4"`.
    pub color: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// Escapes text for XML content and attribute values; drops control
/// characters XML 1.0 does not allow.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Formats a number without needless decimals: 25, 2.5, 150, 0.3.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Nearest-rank percentile of already sorted data: `sorted[round((len-1)*p)]`.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    if p.is_nan() {
        return None;
    }
    let idx = (last as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(idx.min(last)).copied()
}

/// A "nice" tick step (1, 2, 2.5 or 5 × 10^k) giving about `target` intervals.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

/// Axis over `lo..hi`; ends that are not fixed are rounded out to a tick.
/// Guarantees `hi > lo` for finite input.
fn axis(mut lo: f64, mut hi: f64, fix_lo: bool, fix_hi: bool) -> Axis {
    if !lo.is_finite() {
        lo = 0.0;
    }
    if !hi.is_finite() {
        hi = lo + 1.0;
    }
    if hi < lo && fix_lo && fix_hi {
        std::mem::swap(&mut lo, &mut hi);
    }
    if hi <= lo {
        let m = lo.abs().max(hi.abs());
        let pad = if m > 0.0 { m * 0.1 } else { 1.0 };
        if fix_hi {
            lo = hi - pad;
        } else {
            hi = lo + pad;
            if !fix_lo {
                lo -= pad;
            }
        }
    }
    let step = nice_step(hi - lo, 5);
    if !fix_lo {
        lo = (lo / step + 1e-9).floor() * step;
    }
    if !fix_hi {
        hi = (hi / step - 1e-9).ceil() * step;
    }
    let k0 = (lo / step - 1e-9).ceil();
    let k1 = (hi / step + 1e-9).floor();
    let mut ticks = Vec::new();
    if (0.0..=100.0).contains(&(k1 - k0)) {
        let n = (k1 - k0) as i64;
        ticks.extend((0..=n).map(|i| (k0 + i as f64) * step));
    }
    Axis { lo, hi, ticks }
}

fn min_max(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    it.filter(|v| v.is_finite()).fold(None, |acc, v| {
        Some(match acc {
            None => (v, v),
            Some((a, b)) => (a.min(v), b.max(v)),
        })
    })
}

fn text(o: &mut String, x: f64, y: f64, size: u32, anchor: &str, fill: &str, s: &str) {
    let _ = writeln!(
        o,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" fill="{}">{}</text>"#,
        escape(fill),
        escape(s)
    );
}

fn line(o: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), color: &str, width: f64, dashed: bool) {
    let _ = writeln!(
        o,
        r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{}" stroke-width="{width}"{}/>"#,
        escape(color),
        if dashed { DASH } else { "" }
    );
}

/// Legend box at the top left inside the plot: (label, colour, dashed).
fn legend(o: &mut String, entries: &[(String, String, bool)]) {
    if entries.is_empty() {
        return;
    }
    let chars = entries.iter().map(|e| e.0.chars().count()).max().unwrap_or(0);
    let w = (chars as f64 * 7.2 + 40.0).min(PW - 16.0);
    let h = entries.len() as f64 * 18.0 + 8.0;
    let (x, y) = (LEFT + 8.0, TOP + 8.0);
    let _ = writeln!(
        o,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="white" fill-opacity="0.85" stroke="#cccccc"/>"##
    );
    for (i, (name, color, dashed)) in entries.iter().enumerate() {
        let cy = y + 13.0 + i as f64 * 18.0;
        line(o, (x + 6.0, cy), (x + 26.0, cy), color, 2.0, *dashed);
        text(o, x + 32.0, cy + 4.0, 12, "start", "#222222", name);
    }
}

struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    fn sx(&self, v: f64) -> f64 {
        LEFT + (v - self.x.lo) / (self.x.hi - self.x.lo) * PW
    }

    fn sy(&self, v: f64) -> f64 {
        TOP + PH - (v - self.y.lo) / (self.y.hi - self.y.lo) * PH
    }

    /// Document head: background, title, grid, tick labels, axes, axis titles.
    fn open(&self, title: &str, x_label: &str, y_label: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="{FONT}">"#
        );
        let _ = writeln!(o, r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<defs><clipPath id="plot-area"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/></clipPath></defs>"#,
            LEFT - 6.0,
            TOP - 6.0,
            PW + 12.0,
            PH + 12.0
        );
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="28" font-size="16" font-weight="bold" text-anchor="middle" fill="#222222">{}</text>"##,
            W / 2.0,
            escape(title)
        );
        for &t in &self.x.ticks {
            let px = self.sx(t);
            line(&mut o, (px, TOP), (px, TOP + PH), "#e6e6e6", 1.0, false);
            text(&mut o, px, TOP + PH + 18.0, 12, "middle", "#333333", &fmt_num(t));
        }
        for &t in &self.y.ticks {
            let py = self.sy(t);
            line(&mut o, (LEFT, py), (LEFT + PW, py), "#e6e6e6", 1.0, false);
            text(&mut o, LEFT - 8.0, py + 4.0, 12, "end", "#333333", &fmt_num(t));
        }
        let _ = writeln!(
            o,
            r##"<path d="M{LEFT},{TOP} V{} H{}" fill="none" stroke="#333333" stroke-width="1"/>"##,
            TOP + PH,
            LEFT + PW
        );
        text(&mut o, LEFT + PW / 2.0, H - 16.0, 13, "middle", "#222222", x_label);
        let _ = writeln!(
            o,
            r##"<text transform="translate(18,{:.1}) rotate(-90)" font-size="13" text-anchor="middle" fill="#222222">{}</text>"##,
            TOP + PH / 2.0,
            escape(y_label)
        );
        o
    }
}

/// A line chart: nice x/y axes with tick labels and titles, a legend at the
/// top left, and optional dashed horizontal reference lines `(value, label,
/// colour)` labelled at their right end. `y_min`/`y_max` fix the y range;
/// otherwise y starts at 0 (when all data ≥ 0) and ends at a nice value.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    hlines: &[(f64, String, String)],
    y_min: Option<f64>,
    y_max: Option<f64>,
) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let pts = || series.iter().flat_map(|s| s.points.iter()).filter(finite);
    let (x_lo, x_hi) = min_max(pts().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let ys = pts().map(|p| p.1).chain(hlines.iter().map(|h| h.0));
    let (yd_lo, yd_hi) = min_max(ys).unwrap_or((0.0, 1.0));
    let y_min = y_min.filter(|v| v.is_finite());
    let y_max = y_max.filter(|v| v.is_finite());
    let lo = y_min.unwrap_or(if yd_lo >= 0.0 { 0.0 } else { yd_lo });
    let hi = y_max.unwrap_or(yd_hi);
    let f = Frame {
        x: axis(x_lo, x_hi, false, false),
        y: axis(lo, hi, y_min.is_some() || lo == 0.0, y_max.is_some()),
    };
    let mut o = f.open(title, x_label, y_label);
    for (v, label, color) in hlines {
        if !v.is_finite() || *v < f.y.lo || *v > f.y.hi {
            continue;
        }
        let py = f.sy(*v);
        line(&mut o, (LEFT, py), (LEFT + PW, py), color, 1.5, true);
        text(&mut o, LEFT + PW - 4.0, py - 5.0, 12, "end", color, label);
    }
    o.push_str("<g clip-path=\"url(#plot-area)\">\n");
    for s in series {
        let px: Vec<(f64, f64)> = s.points.iter().filter(finite).map(|&(x, y)| (f.sx(x), f.sy(y))).collect();
        let color = escape(&s.color);
        if px.len() >= 2 {
            let coords: Vec<String> = px.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"{}/>"#,
                coords.join(" "),
                if s.dashed { DASH } else { "" }
            );
        }
        for (x, y) in &px {
            let _ = writeln!(o, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#);
        }
    }
    o.push_str("</g>\n");
    let entries: Vec<_> = series.iter().map(|s| (s.name.clone(), s.color.clone(), s.dashed)).collect();
    legend(&mut o, &entries);
    o.push_str("</svg>\n");
    o
}

/// Latency distributions: one empirical CDF step line per `(name, colour,
/// samples in ms)`, p50/p95 marked and given in the legend, plus optional
/// dashed vertical reference lines `(value, label, colour)`.
pub fn cdf_chart(title: &str, x_label: &str, sets: &[(String, String, Vec<u64>)], vlines: &[(f64, String, String)]) -> String {
    let sorted: Vec<Vec<u64>> = sets
        .iter()
        .map(|s| {
            let mut v = s.2.clone();
            v.sort_unstable();
            v
        })
        .collect();
    let ends = sorted.iter().flat_map(|v| v.first().into_iter().chain(v.last())).map(|&v| v as f64);
    let (lo, hi) = min_max(ends.chain(vlines.iter().map(|l| l.0))).unwrap_or((0.0, 1.0));
    let f = Frame { x: axis(lo, hi, false, false), y: axis(0.0, 1.0, true, true) };
    let mut o = f.open(title, x_label, "cumulative fraction");
    for (v, label, color) in vlines {
        if !v.is_finite() || *v < f.x.lo || *v > f.x.hi {
            continue;
        }
        let px = f.sx(*v);
        line(&mut o, (px, TOP), (px, TOP + PH), color, 1.5, true);
        let (tx, anchor) = if px > LEFT + PW * 0.8 { (px - 4.0, "end") } else { (px + 4.0, "start") };
        text(&mut o, tx, TOP + PH - 8.0, 12, anchor, color, label);
    }
    o.push_str("<g clip-path=\"url(#plot-area)\">\n");
    let mut marks = String::new();
    let mut entries = Vec::new();
    for ((name, color, _), v) in sets.iter().zip(&sorted) {
        let (Some(p50), Some(p95)) = (percentile(v, 0.5), percentile(v, 0.95)) else {
            entries.push((format!("{name} (no samples)"), color.clone(), false));
            continue;
        };
        let n = v.len() as f64;
        let mut d = format!("M{:.1},{:.1}", f.sx(f.x.lo), f.sy(0.0));
        for (i, &x) in v.iter().enumerate() {
            // One vertical step per distinct value, at its last occurrence.
            if v.get(i + 1) != Some(&x) {
                let _ = write!(d, " H{:.1} V{:.1}", f.sx(x as f64), f.sy((i + 1) as f64 / n));
            }
        }
        let _ = write!(d, " H{:.1}", f.sx(f.x.hi));
        let _ = writeln!(o, r#"<path d="{d}" fill="none" stroke="{}" stroke-width="2"/>"#, escape(color));
        for (label, q, val) in [("p50", 0.5, p50), ("p95", 0.95, p95)] {
            let (px, py) = (f.sx(val as f64), f.sy(q));
            line(&mut marks, (px, TOP + PH), (px, TOP + PH - 8.0), color, 2.0, false);
            let _ = writeln!(
                marks,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="white" stroke="{}" stroke-width="2"/>"#,
                escape(color)
            );
            let (tx, anchor) = if px - LEFT < 48.0 { (px + 8.0, "start") } else { (px - 8.0, "end") };
            text(&mut marks, tx, py + 4.0, 12, anchor, color, label);
        }
        entries.push((format!("{name} (p50 {p50} ms, p95 {p95} ms)"), color.clone(), false));
    }
    o.push_str("</g>\n");
    o.push_str(&marks);
    legend(&mut o, &entries);
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), color: "#1f77b4".into(), points, dashed: false }
    }

    fn assert_svg(s: &str) {
        assert!(s.starts_with("<svg"), "{s}");
        assert!(s.ends_with("</svg>\n"), "{s}");
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
        assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
    }

    #[test]
    fn line_chart_has_title_names_and_lines() {
        let s = [series("640x360", vec![(1.0, 10.0), (2.0, 25.0), (4.0, 73.0)]), series("1280x720", vec![(1.0, 5.0)])];
        let hl = [(60.0, "target".to_string(), "#d62728".to_string())];
        let svg = line_chart("CPU vs peers", "peers", "CPU %", &s, &hl, None, None);
        assert_svg(&svg);
        for want in ["CPU vs peers", "640x360", "1280x720", "target", "<polyline", "stroke-dasharray"] {
            assert!(svg.contains(want), "missing {want}");
        }
    }

    #[test]
    fn text_is_escaped() {
        let svg = line_chart("a<b & 'c'", "x", "y\"", &[series("a<b", vec![(0.0, 1.0)])], &[], None, None);
        assert_svg(&svg);
        assert!(svg.contains("a&lt;b &amp; &apos;c&apos;"));
        assert!(svg.contains("y&quot;"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_svg(&line_chart("", "", "", &[], &[], None, None));
        assert_svg(&line_chart("t", "x", "y", &[series("e", vec![])], &[], None, None));
        assert_svg(&line_chart("t", "x", "y", &[series("one", vec![(3.0, 7.0)])], &[], None, None));
        assert_svg(&line_chart("t", "x", "y", &[series("flat", vec![(1.0, 0.0), (2.0, 0.0)])], &[], None, None));
        assert_svg(&line_chart("t", "x", "y", &[series("neg", vec![(1.0, -4.0), (1.0, -4.0)])], &[], None, None));
        let bad = series("bad", vec![(f64::NAN, 1.0), (2.0, f64::INFINITY), (3.0, 4.0)]);
        assert_svg(&line_chart("t", "x", "y", &[bad], &[], Some(5.0), Some(f64::NAN)));
        assert_svg(&line_chart("t", "x", "y", &[], &[], Some(3.0), Some(3.0)));
        assert_svg(&cdf_chart("t", "ms", &[], &[]));
        assert_svg(&cdf_chart("t", "ms", &[("none".to_string(), "red".to_string(), vec![])], &[(f64::NAN, "x".to_string(), "red".to_string())]));
        assert_svg(&cdf_chart("t", "ms", &[("one".to_string(), "red".to_string(), vec![42])], &[(50.0, "SLO".to_string(), "red".to_string())]));
    }

    #[test]
    fn nice_ticks() {
        assert_eq!(axis(0.0, 73.0, false, false).ticks, vec![0.0, 20.0, 40.0, 60.0, 80.0]);
        for (lo, hi) in [(0.0, 73.0), (0.0, 1.0), (-3.0, 17.0), (120.0, 480.0), (0.001, 0.0042), (5.0, 5.0), (0.0, 12_345.0)] {
            let a = axis(lo, hi, false, false);
            assert!(a.ticks.len() >= 2 && a.ticks.len() <= 12, "{lo}..{hi}: {:?}", a.ticks);
            let (first, last) = (a.ticks[0], a.ticks[a.ticks.len() - 1]);
            assert!(first <= lo && last >= hi, "{lo}..{hi}: {:?}", a.ticks);
            let step = a.ticks[1] - a.ticks[0];
            let norm = step / 10f64.powf(step.log10().floor());
            assert!([1.0, 2.0, 2.5, 5.0, 10.0].iter().any(|m| (norm - m).abs() < 1e-6), "step {step}");
            for w in a.ticks.windows(2) {
                assert!(((w[1] - w[0]) - step).abs() < step * 1e-6);
            }
        }
    }

    #[test]
    fn numbers_and_percentiles() {
        assert_eq!(fmt_num(25.0), "25");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(150.0), "150");
        assert_eq!(fmt_num(0.1 * 3.0), "0.3");
        assert_eq!(fmt_num(-0.0), "0");
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(51));
        assert_eq!(percentile(&v, 0.95), Some(95));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn cdf_labels_show_percentiles() {
        let samples: Vec<u64> = (1..=100).rev().collect();
        let svg = cdf_chart("Glass-to-glass", "ms", &[("a<b".to_string(), "#ff7f0e".to_string(), samples)], &[(80.0, "budget".to_string(), "#d62728".to_string())]);
        assert_svg(&svg);
        assert!(svg.contains("a&lt;b (p50 51 ms, p95 95 ms)"), "{svg}");
        assert!(svg.contains("Glass-to-glass") && svg.contains("budget") && svg.contains(">p95<"));
    }
}
