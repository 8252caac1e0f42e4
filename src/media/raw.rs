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

/// A tile-sized card with the participant's name centred on a plain
/// background, rendered by `textoverlay` (pango) in a one-shot pipeline.
/// Any Unicode renders or falls back to pango's missing-glyph boxes; the
/// text is escaped, so markup in names is shown literally.
pub fn name_card_i420(name: &str, width: u32, height: u32) -> Result<gst::Sample> {
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
            .build(),
    );
    let text = super::make("textoverlay")?;
    let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    text.set_property("text", gst::glib::markup_escape_text(&shown).as_str());
    // Font size follows the tile: about an eighth of its height.
    let px = (height / 8).clamp(8, 72);
    text.set_property("font-desc", format!("Sans Bold {px}px"));
    text.set_property_from_str("valignment", "center");
    text.set_property_from_str("halignment", "center");
    text.set_property_from_str("wrap-mode", "wordchar");
    text.set_property("shaded-background", false);
    text.set_property("auto-resize", false);
    let convert = super::make("videoconvert")?;
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder("video/x-raw").field("format", "I420").build())
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
    fn name_card_renders_text_on_the_card_colour() {
        gst::init().unwrap();
        let t = std::time::Instant::now();
        let s = name_card_i420("Zoë 🎉 <b>&", 320, 180).expect("renders");
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
