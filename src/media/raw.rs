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
