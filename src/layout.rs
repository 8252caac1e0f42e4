//! Grid arithmetic shared by the layouts and the room: canvas rectangles,
//! the automatic grid's columns and rows, and the bitrate that suits a
//! tile. The slot geometry the mixer uses is [`crate::layouts::Slot::rect`].
//! No GStreamer here.

/// A rectangle in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn center(&self) -> (u32, u32) {
        (self.x + self.width / 2, self.y + self.height / 2)
    }
}

/// Columns and rows of the automatic grid for `n` participants:
/// 1, 2 side by side, 2x2, 3x2, 3x3, 4x3, 4x4, 5x5, then the smallest
/// square that holds everyone.
pub fn grid_dims(n: usize) -> (u32, u32) {
    match n {
        0 => (0, 0),
        1 => (1, 1),
        2 => (2, 1),
        3..=4 => (2, 2),
        5..=6 => (3, 2),
        7..=9 => (3, 3),
        10..=12 => (4, 3),
        13..=16 => (4, 4),
        17..=25 => (5, 5),
        _ => {
            let side = (n as f64).sqrt().ceil() as u32;
            (side, side)
        }
    }
}

/// A sending bitrate that suits a video of `width` x `height` at `fps`
/// (about 0.08 bit per pixel), between 60 kbps and 1.5 Mbps.
pub fn send_bitrate(width: u32, height: u32, fps: u32) -> u32 {
    let bits = width as u64 * height as u64 * fps as u64 * 8 / 100;
    bits.clamp(60_000, 1_500_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_follow_the_documented_steps() {
        let expect = [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)), (6, (3, 2)),
            (7, (3, 3)), (9, (3, 3)), (10, (4, 3)), (12, (4, 3)), (13, (4, 4)), (16, (4, 4)),
            (17, (5, 5)), (25, (5, 5)), (26, (6, 6))];
        for (n, d) in expect {
            assert_eq!(grid_dims(n), d, "n={n}");
        }
    }

    #[test]
    fn send_bitrate_shrinks_with_the_tile() {
        assert_eq!(send_bitrate(640, 360, 30), 552_960);
        assert!(send_bitrate(213, 120, 30) < send_bitrate(640, 360, 30) / 4);
        assert_eq!(send_bitrate(16, 16, 30), 60_000);
        assert_eq!(send_bitrate(1920, 1080, 30), 1_500_000);
    }

}
