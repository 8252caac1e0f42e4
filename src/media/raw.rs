//! Raw frame helpers: solid and placeholder I420 frames, colour conversion.

use anyhow::{Context, Result};
use gst_video::prelude::*;

/// BT.601 limited-range RGB -> YUV, as videoconvert does for I420.
pub fn rgb_to_yuv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
    let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
    let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
    (y.round().clamp(0.0, 255.0) as u8, u.round().clamp(0.0, 255.0) as u8, v.round().clamp(0.0, 255.0) as u8)
}

/// A solid I420 frame of colour 0xRRGGBB.
pub fn solid_i420(width: u32, height: u32, rgb: u32) -> Result<gst::Sample> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
        .fps(gst::Fraction::new(30, 1))
        .colorimetry(&super::CANVAS_COLORIMETRY.parse().context("colorimetry")?)
        .build()
        .context("frame size")?;
    let (y, u, v) = rgb_to_yuv((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8);
    let mut buffer = gst::Buffer::with_size(info.size()).context("frame buffer")?;
    {
        let buf = buffer.get_mut().context("new buffer is writable")?;
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
            .map_err(|_| anyhow::anyhow!("cannot map frame"))?;
        for (plane, value) in [(0u32, y), (1, u), (2, v)] {
            frame.plane_data_mut(plane).map_err(|_| anyhow::anyhow!("plane {plane}"))?.fill(value);
        }
    }
    Ok(gst::Sample::builder().buffer(&buffer).caps(&info.to_caps().context("frame caps")?).build())
}

/// The placeholder tile shown until a participant's video arrives: a dark
/// slate background with a lighter centred block (a "no video" card).
pub fn placeholder_i420(width: u32, height: u32) -> Result<gst::Sample> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
        .fps(gst::Fraction::new(30, 1))
        .colorimetry(&super::CANVAS_COLORIMETRY.parse().context("colorimetry")?)
        .build()
        .context("placeholder size")?;
    let mut buffer = gst::Buffer::with_size(info.size()).context("placeholder buffer")?;
    {
        let buf = buffer.get_mut().context("new buffer is writable")?;
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
            .map_err(|_| anyhow::anyhow!("cannot map placeholder frame"))?;
        let bg = rgb_to_yuv(0x30, 0x36, 0x44);
        let fg = rgb_to_yuv(0x5a, 0x64, 0x7a);
        let (bx0, bx1) = (width / 3, width - width / 3);
        let (by0, by1) = (height / 3, height - height / 3);
        for plane in 0..3u32 {
            let (pw, ph, sub) = if plane == 0 { (width, height, 1) } else { (width.div_ceil(2), height.div_ceil(2), 2) };
            let stride = frame.plane_stride()[plane as usize] as usize;
            let data = frame.plane_data_mut(plane).map_err(|_| anyhow::anyhow!("plane {plane}"))?;
            for y in 0..ph {
                for x in 0..pw {
                    let (fx, fy) = (x * sub, y * sub);
                    let c = if fx >= bx0 && fx < bx1 && fy >= by0 && fy < by1 { fg } else { bg };
                    data[y as usize * stride + x as usize] = match plane { 0 => c.0, 1 => c.1, _ => c.2 };
                }
            }
        }
    }
    Ok(gst::Sample::builder().buffer(&buffer).caps(&info.to_caps().context("placeholder caps")?).build())
}

/// Background of name cards (camera off, or no video yet).
pub const CARD_RGB: u32 = 0x303644;

/// The muted mark on labels and cards (its red is what tests look for).
pub const MUTED_MARK: &str = "<span foreground=\"#ff6b6b\">● muted</span>";

/// Width of one text column in ems, on the safe side for sans fonts
/// (Latin letters average a little over half an em, capitals and markup
/// characters more; CJK and emoji take two columns).
const EM_PER_COLUMN: f64 = 0.7;

/// A name as a label or card shows it: control and bidi-override
/// characters dropped, cut with an ellipsis to about `max_px` at a font
/// of `font_px` pixels, escaped for Pango markup (markup in names shows
/// literally) and isolated (U+2068 … U+2069) so a right-to-left name does
/// not reorder what follows it. Text that still runs long wraps (the
/// overlays wrap by word and character), so it never leaves its tile.
pub fn shown_name(name: &str, font_px: u32, max_px: u32) -> String {
    use unicode_width::UnicodeWidthChar;
    let clean = name.chars().filter(|c| !c.is_control() && !matches!(*c as u32, 0x202A..=0x202E | 0x2066..=0x2069));
    let max_cols = (max_px as f64 / (font_px.max(1) as f64 * EM_PER_COLUMN)).floor() as usize;
    let mut cols = 0;
    let mut out = String::new();
    let all: Vec<char> = clean.collect();
    let total: usize = all.iter().map(|c| c.width().unwrap_or(0)).sum();
    if total <= max_cols {
        out.extend(all.iter());
    } else {
        // Leave a column for the ellipsis.
        for c in &all {
            let w = c.width().unwrap_or(0);
            if cols + w + 1 > max_cols {
                break;
            }
            cols += w;
            out.push(*c);
        }
        let kept = out.trim_end().len();
        out.truncate(kept);
        out.push('…');
    }
    format!("\u{2068}{}\u{2069}", gst::glib::markup_escape_text(&out))
}

/// Font size of a name card's name: about an eighth of its height.
pub fn card_font_px(height: u32) -> u32 {
    (height / 8).clamp(8, 72)
}

/// Pango markup of a name card: the name on its first line, the muted
/// mark (smaller) on the second.
pub fn card_markup(name: &str, muted: bool, width: u32, height: u32) -> String {
    let mut s = shown_name(name, card_font_px(height), width * 9 / 10);
    if muted {
        s.push_str("\n<span size=\"smaller\">");
        s.push_str(MUTED_MARK);
        s.push_str("</span>");
    }
    s
}

/// A tile-sized card with the participant's name centred on a plain
/// background (and the muted mark under it), rendered by `textoverlay`
/// (pango) in a one-shot pipeline. Any Unicode renders or falls back to
/// pango's missing-glyph boxes.
pub fn name_card_i420(name: &str, muted: bool, width: u32, height: u32) -> Result<gst::Sample> {
    use gst::prelude::*;
    let pipeline = gst::Pipeline::new();
    let src = super::make("videotestsrc")?;
    src.set_property("num-buffers", 1i32);
    src.set_property_from_str("pattern", "solid-color");
    src.set_property("foreground-color", 0xff00_0000u32 | CARD_RGB);
    let caps = super::make("capsfilter")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .field("colorimetry", super::CANVAS_COLORIMETRY)
            .build(),
    );
    let text = super::make("textoverlay")?;
    text.set_property("text", card_markup(name, muted, width, height).as_str());
    text.set_property("font-desc", format!("Sans Bold {}px", card_font_px(height)));
    text.set_property_from_str("valignment", "center");
    text.set_property_from_str("halignment", "center");
    text.set_property_from_str("line-alignment", "center");
    text.set_property_from_str("wrap-mode", "wordchar");
    text.set_property("shaded-background", false);
    text.set_property("auto-resize", false);
    let convert = super::make("videoconvert")?;
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder("video/x-raw").field("format", "I420").field("colorimetry", super::CANVAS_COLORIMETRY).build())
        .sync(false)
        .build();
    pipeline.add_many([&src, &caps, &text, &convert, sink.upcast_ref()])?;
    gst::Element::link_many([&src, &caps, &text, &convert, sink.upcast_ref()])?;
    pipeline.set_state(gst::State::Playing).context("name card pipeline")?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(2));
    let _ = pipeline.set_state(gst::State::Null);
    sample.context("name card pipeline produced no frame")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_names_are_escaped_isolated_and_cut_with_an_ellipsis() {
        let iso = |s: &str| format!("\u{2068}{s}\u{2069}");
        assert_eq!(shown_name("Grace", 20, 400), iso("Grace"));
        assert_eq!(shown_name("<b>&", 20, 400), iso("&lt;b&gt;&amp;"));
        // Control and bidi-override characters go; the text stays.
        assert_eq!(shown_name("Gr\nace\u{202E}", 20, 400), iso("Grace"));
        // 100 px at 10 px a character (0.7 em each): 14 columns, 13 and "…".
        assert_eq!(shown_name("abcdefghijklmnopqrstuvwxyz", 10, 100), iso("abcdefghijklm…"));
        // Wide characters count twice; a space before the cut is dropped.
        assert_eq!(shown_name("山田太郎山田太郎山田", 10, 100), iso("山田太郎山田…"));
        assert_eq!(shown_name("abcdef ghijklmnopq", 10, 56), iso("abcdef…"));
    }

    #[test]
    fn name_card_renders_text_on_the_card_colour() {
        gst::init().unwrap();
        let t = std::time::Instant::now();
        let s = name_card_i420("Zoë 🎉 <b>&", false, 320, 180).expect("renders");
        eprintln!("rendered in {:?}", t.elapsed());
        let buf = s.buffer().unwrap();
        let map = buf.map_readable().unwrap();
        let (bg_y, _, _) = rgb_to_yuv((CARD_RGB >> 16) as u8, (CARD_RGB >> 8) as u8, CARD_RGB as u8);
        let luma = &map[..320 * 180];
        assert!((luma[0] as i32 - bg_y as i32).abs() <= 3, "corner luma {} vs {bg_y}", luma[0]);
        let bright = luma.iter().filter(|&&y| y > 180).count();
        assert!(bright > 100, "text pixels: {bright}");
    }
}
