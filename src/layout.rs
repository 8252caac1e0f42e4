//! Grid geometry: pure functions from a participant count and a canvas size
//! to tile rectangles. No GStreamer here.

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

/// Round down to an even number (I420 needs even sizes and offsets).
fn even(v: u32) -> u32 {
    v & !1
}

/// Cell rectangles for `n` participants on a `width` x `height` canvas (at
/// least 16x16, which holds 64 tiles), in
/// row-major join order. Cells are even-sized and lie inside the canvas; a
/// last, partly filled row is centred.
pub fn grid(width: u32, height: u32, n: usize) -> Vec<Rect> {
    let (cols, rows) = grid_dims(n);
    if n == 0 || cols == 0 || rows == 0 {
        return Vec::new();
    }
    let cell_w = even(width / cols).max(2);
    let cell_h = even(height / rows).max(2);
    // Centre the whole grid when the cells do not divide the canvas exactly.
    let off_x = even((width.saturating_sub(cell_w * cols)) / 2);
    let off_y = even((height.saturating_sub(cell_h * rows)) / 2);
    let used_rows = n.div_ceil(cols as usize) as u32;
    let off_y = off_y + even((rows - used_rows) * cell_h / 2);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row = i as u32 / cols;
        let col = i as u32 % cols;
        let in_row = if row == used_rows - 1 { n as u32 - row * cols } else { cols };
        let row_off = even((cols - in_row) * cell_w / 2);
        out.push(Rect {
            x: off_x + row_off + col * cell_w,
            y: off_y + row * cell_h,
            width: cell_w,
            height: cell_h,
        });
    }
    out
}

/// The largest rectangle with the source's aspect ratio inside `cell`,
/// centred (letterbox or pillarbox). Sizes are even and at least 2.
pub fn letterbox(src_w: u32, src_h: u32, cell: Rect) -> Rect {
    if src_w == 0 || src_h == 0 {
        return cell;
    }
    let (cw, ch) = (cell.width as u64, cell.height as u64);
    let (sw, sh) = (src_w as u64, src_h as u64);
    let (w, h) = if cw * sh <= ch * sw {
        (cw, cw * sh / sw)
    } else {
        (ch * sw / sh, ch)
    };
    let w = even(w as u32).max(2).min(cell.width);
    let h = even(h as u32).max(2).min(cell.height);
    Rect {
        x: cell.x + even((cell.width - w) / 2),
        y: cell.y + even((cell.height - h) / 2),
        width: w,
        height: h,
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
    fn two_are_side_by_side() {
        let g = grid(640, 360, 2);
        assert_eq!(g[0], Rect { x: 0, y: 0, width: 320, height: 360 });
        assert_eq!(g[1], Rect { x: 320, y: 0, width: 320, height: 360 });
    }

    #[test]
    fn three_in_a_2x2_grid_centre_the_last_row() {
        let g = grid(640, 360, 3);
        assert_eq!(g[0], Rect { x: 0, y: 0, width: 320, height: 180 });
        assert_eq!(g[1], Rect { x: 320, y: 0, width: 320, height: 180 });
        assert_eq!(g[2], Rect { x: 160, y: 180, width: 320, height: 180 });
    }

    #[test]
    fn every_tile_is_inside_the_canvas_and_disjoint() {
        for (w, h) in [(1280, 720), (640, 360), (320, 240), (100, 100), (16, 16)] {
            for n in 0..=64 {
                let g = grid(w, h, n);
                assert_eq!(g.len(), n);
                for (i, r) in g.iter().enumerate() {
                    assert!(r.x + r.width <= w && r.y + r.height <= h, "{w}x{h} n={n} {r:?}");
                    assert!(r.width % 2 == 0 && r.height % 2 == 0 && r.x % 2 == 0 && r.y % 2 == 0);
                    for o in &g[i + 1..] {
                        let overlap = r.x < o.x + o.width && o.x < r.x + r.width
                            && r.y < o.y + o.height && o.y < r.y + r.height;
                        assert!(!overlap, "{r:?} overlaps {o:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn send_bitrate_shrinks_with_the_tile() {
        assert_eq!(send_bitrate(640, 360, 30), 552_960);
        assert!(send_bitrate(213, 120, 30) < send_bitrate(640, 360, 30) / 4);
        assert_eq!(send_bitrate(16, 16, 30), 60_000);
        assert_eq!(send_bitrate(1920, 1080, 30), 1_500_000);
    }

    #[test]
    fn letterbox_keeps_aspect_ratio() {
        let cell = Rect { x: 320, y: 0, width: 320, height: 360 };
        let r = letterbox(320, 240, cell);
        assert_eq!(r, Rect { x: 320, y: 60, width: 320, height: 240 });
        let pill = letterbox(640, 360, Rect { x: 0, y: 0, width: 200, height: 200 });
        assert_eq!((pill.width, pill.height), (200, 112));
        assert_eq!(letterbox(0, 0, cell), cell);
    }
}
