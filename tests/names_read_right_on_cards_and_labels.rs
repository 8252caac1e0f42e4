//! Regression: a participant with the camera off and the microphone muted
//! showed as "Gracemuted" on the name card in everyone's mix (the card
//! text was "{name}\nmuted" and the newline was dropped as a control
//! character). Cards and tile labels must read right for any name: the
//! name on one line (cut with an ellipsis when long), the muted mark
//! present (on its own line on a card, after the name on a label), and
//! all text inside the tile.

use gst::prelude::*;
use gst_video::prelude::*;
use tessera::media::mixer::{label_font_px, label_markup, LABEL_OVERLAY};
use tessera::media::raw::{card_font_px, name_card_i420};

const NAMES: [&str; 6] = [
    "Grace",
    "Maximiliana Wolfeschlegelsteinhausenbergerdorff the Third of Her Name",
    "مريم الحسيني",
    "Zoë 🎉🎉 ✨",
    "<b>Bob</b> & \"Eve\" <script>",
    "山田太郎山田太郎山田太郎山田太郎山田太郎",
];

#[derive(Debug, Default)]
struct Ink {
    /// Rows and columns holding white text (the name).
    name_rows: Vec<u32>,
    name_cols: Vec<u32>,
    /// Rows and columns holding the muted mark's red.
    mark_rows: Vec<u32>,
    mark_cols: Vec<u32>,
}

/// Where white text and the red muted mark are in an I420 frame.
fn ink(sample: &gst::Sample) -> (Ink, u32, u32) {
    let caps = sample.caps().expect("caps");
    let info = gst_video::VideoInfo::from_caps(caps).expect("video caps");
    let buffer = sample.buffer().expect("buffer");
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).expect("readable frame");
    let (w, h) = (info.width(), info.height());
    let (ys, us, vs) = (frame.plane_stride()[0] as usize, frame.plane_stride()[1] as usize, frame.plane_stride()[2] as usize);
    let (yp, up, vp) = (frame.plane_data(0).unwrap(), frame.plane_data(1).unwrap(), frame.plane_data(2).unwrap());
    let mut out = Ink::default();
    for y in 0..h {
        for x in 0..w {
            let luma = yp[y as usize * ys + x as usize] as i32;
            let (cy, cx) = ((y / 2) as usize, (x / 2) as usize);
            let (u, v) = (up[cy * us + cx] as i32, vp[cy * vs + cx] as i32);
            if luma > 180 && (u - 128).abs() < 16 && (v - 128).abs() < 16 {
                out.name_rows.push(y);
                out.name_cols.push(x);
            } else if v > 165 && u < 120 && luma > 90 {
                out.mark_rows.push(y);
                out.mark_cols.push(x);
            }
        }
    }
    (out, w, h)
}

fn span(v: &[u32]) -> (u32, u32) {
    (v.iter().copied().min().unwrap_or(0), v.iter().copied().max().unwrap_or(0))
}

/// Text keeps `margin` pixels clear of every edge of its frame.
fn inside(cols: &[u32], rows: &[u32], w: u32, h: u32, margin: u32, what: &str) {
    let ((x0, x1), (y0, y1)) = (span(cols), span(rows));
    assert!(x0 >= margin && x1 + margin < w && y0 >= margin && y1 + margin < h, "{what}: text spans x {x0}..{x1}, y {y0}..{y1} in {w}x{h}");
}

#[test]
fn muted_card_shows_the_name_and_the_mark_on_separate_lines() {
    gst::init().unwrap();
    for (w, h) in [(640, 360), (320, 180), (426, 240)] {
        for name in NAMES {
            let what = format!("card {w}x{h} for {name:?}");
            let card = name_card_i420(name, true, w, h).expect("card renders");
            let (ink, w, h) = ink(&card);
            assert!(ink.name_rows.len() > 40, "{what}: no name ({} white pixels)", ink.name_rows.len());
            assert!(ink.mark_rows.len() > 20, "{what}: no muted mark ({} red pixels)", ink.mark_rows.len());
            let ((n0, n1), (m0, _)) = (span(&ink.name_rows), span(&ink.mark_rows));
            assert!(n1 < m0, "{what}: name rows {n0}..{n1} run into the mark from row {m0}");
            // One line of name: the ellipsis cut it, it did not wrap.
            let px = card_font_px(h);
            assert!(n1 - n0 < px * 3 / 2, "{what}: the name takes rows {n0}..{n1} at {px} px (more than one line)");
            inside(&ink.name_cols, &ink.name_rows, w, h, 2, &what);
            inside(&ink.mark_cols, &ink.mark_rows, w, h, 2, &what);
        }
        // Unmuted: the name alone, no mark.
        let (ink, _, _) = ink(&name_card_i420("Grace", false, w, h).unwrap());
        assert!(ink.name_rows.len() > 40 && ink.mark_rows.is_empty(), "unmuted card {w}x{h}: {} red pixels", ink.mark_rows.len());
    }
}

/// A tile of `w`x`h` (solid green, as a camera) through the label overlay
/// the participant pipelines use.
fn labelled_tile(name: &str, muted: bool, w: u32, h: u32) -> gst::Sample {
    let px = label_font_px(h);
    let desc = format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff208020 ! video/x-raw,format=I420,width={w},height={h} \
         ! {LABEL_OVERLAY} name=label font-desc=\"Sans {px}px\" ! appsink name=out sync=false"
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    pipeline.by_name("label").unwrap().set_property("text", label_markup(name, true, muted, w, px));
    let sink = pipeline.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(5)).expect("a labelled frame");
    pipeline.set_state(gst::State::Null).unwrap();
    sample
}

#[test]
fn tile_labels_stay_on_one_line_inside_the_tile() {
    gst::init().unwrap();
    for (w, h) in [(640, 720), (320, 180), (213, 240)] {
        let px = label_font_px(h);
        for name in NAMES {
            for muted in [false, true] {
                let what = format!("label {w}x{h} for {name:?}, muted {muted}");
                let (ink, w, h) = ink(&labelled_tile(name, muted, w, h));
                assert!(ink.name_rows.len() > 20, "{what}: no name ({} white pixels)", ink.name_rows.len());
                let mut rows = ink.name_rows.clone();
                let mut cols = ink.name_cols.clone();
                if muted {
                    assert!(ink.mark_rows.len() > 10, "{what}: no muted mark");
                    // On the name's line, after it.
                    let ((n0, n1), (m0, m1)) = (span(&ink.name_rows), span(&ink.mark_rows));
                    assert!(m0 <= n1 && n0 <= m1, "{what}: mark rows {m0}..{m1}, name rows {n0}..{n1}: not one line");
                    assert!(span(&ink.mark_cols).0 > span(&ink.name_cols).0, "{what}: the mark is not after the name");
                    rows.extend(&ink.mark_rows);
                    cols.extend(&ink.mark_cols);
                } else {
                    assert!(ink.mark_rows.is_empty(), "{what}: a mark while unmuted");
                }
                let (r0, r1) = span(&rows);
                assert!(r1 - r0 < px * 3 / 2, "{what}: rows {r0}..{r1} at {px} px (more than one line)");
                assert!(r0 > h / 2, "{what}: the label is not at the bottom (from row {r0})");
                inside(&cols, &rows, w, h, 2, &what);
            }
        }
    }
}
