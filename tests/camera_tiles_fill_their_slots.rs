//! Camera tiles fill their slots: in a 2-person room each tile is taller
//! than a 16:9 camera, and letterboxing left about half the canvas black.
//! The shipped layouts crop cameras to their tiles (centred), `send_size`
//! tells senders to cover the tile, and a slot marked `fit = "letterbox"`
//! still keeps the whole picture with bars.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};

/// Share of the mixed frame that is black (every channel under 40).
fn black_share(b: &Bot) -> f64 {
    let Some(f) = b.last_frame() else { return 1.0 };
    let (mut black, mut all) = (0usize, 0usize);
    for y in (0..f.height).step_by(2) {
        for x in (0..f.width).step_by(2) {
            all += 1;
            if f.pixel(x, y).iter().all(|&c| c < 40) {
                black += 1;
            }
        }
    }
    black as f64 / all.max(1) as f64
}

/// A 640x360 (16:9) camera that follows `send_size`.
fn camera(url: &str, name: &str, color: u32, tone: f64) -> BotOptions {
    BotOptions { width: 640, height: 360, ..bot_options(url, "fill", name, color, tone) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_tiles_fill_their_slots() {
    // The shipped pipelines plus a group whose slots letterbox.
    let dir = std::env::temp_dir().join(format!("tessera-fill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("layouts")).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    std::fs::copy(shipped.join("mixer.toml"), dir.join("mixer.toml")).unwrap();
    for f in std::fs::read_dir(shipped.join("layouts")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join("layouts").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("layouts/whole.toml"),
        r#"
[layouts.whole-2]
slots = [
  { x = 0.0, y = 0, w = 0.5, h = 1, fit = "letterbox" },
  { x = 0.5, y = 0, w = 0.5, h = 1, fit = "letterbox" },
]

[groups.whole]
"1" = "solo"
"2" = "whole-2"
"#,
    )
    .unwrap();
    let catalog = tessera::layouts::load_dir(&dir, &tessera::media::check_fragment).expect("valid pipelines");
    let server = start_server_with(catalog, None);
    let url = server.ws_url();
    let red = tessera::tools::bot::Bot::connect(camera(&url, "red", 0xff0000, 440.0)).await.unwrap();
    let green = tessera::tools::bot::Bot::connect(camera(&url, "green", 0x00ff00, 660.0)).await.unwrap();
    for b in [&red, &green] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let (canvas, tiles) = red.layout().unwrap();
    assert_eq!(tiles.len(), 2);
    assert!(tiles[0].height > tiles[0].width * 9 / 16 + 8, "tiles {}x{} are not taller than 16:9", tiles[0].width, tiles[0].height);
    // The tile's send_size asks to cover it: the 16:9 camera keeps its full height.
    let hint = red.send_size();
    assert_eq!(hint.map(|h| (h.0, h.1)), Some((tiles[0].width, tiles[0].height)), "{hint:?}");

    // Filled: under 10 % black, and each colour reaches near its tile's corners
    // (the bottom left has the name label).
    let filled = red.wait_until(Duration::from_secs(5), |b| black_share(b) < 0.10).await;
    assert!(filled, "{:.1} % of the 2-person mix is black", black_share(&red) * 100.0);
    let scale = |b: &Bot| b.last_frame().map(|f| f.width as f64 / canvas.width as f64).unwrap_or(1.0);
    // Every probe point of every tile that does not show its colour yet.
    // Waited for: under 10 % black is also true of a tile still showing its
    // name card (CI: the card's grey at a tile's corner; under three busy
    // loops one run in eight checked that moment).
    let wrong = |b: &Bot| {
        let s = scale(b);
        let mut wrong = Vec::new();
        for t in &tiles {
            let color = if t.name == "red" { 0xff0000 } else { 0x00ff00 };
            for (fx, fy) in [(0.1, 0.06), (0.9, 0.06), (0.5, 0.5), (0.9, 0.94)] {
                let (x, y) = (((t.x as f64 + fx * t.width as f64) * s) as u32, ((t.y as f64 + fy * t.height as f64) * s) as u32);
                let c = color_at(b, x, y);
                if !c.map(|c| color_close(c, color, 60)).unwrap_or(false) {
                    wrong.push(format!("{} tile at ({fx}, {fy}) of the tile shows {c:?}", t.name));
                }
            }
        }
        wrong
    };
    let covered = red.wait_until(Duration::from_secs(5), |b| wrong(b).is_empty()).await;
    assert!(covered, "{:?}", wrong(&red));

    // A letterboxed slot keeps the whole 16:9 picture: bars above and below.
    red.send_raw(r#"{"type":"set_layout","group":"whole"}"#.into()).await.unwrap();
    assert!(red.wait_until(Duration::from_secs(2), |b| b.layout_name().as_deref() == Some("whole-2")).await, "layout {:?}", red.layout_name());
    let barred = red.wait_until(Duration::from_secs(5), |b| black_share(b) > 0.35).await;
    assert!(barred, "letterboxed: only {:.1} % black", black_share(&red) * 100.0);
    // Each tile: a bar at the top, the colour in the middle (once the
    // senders have followed the new send_size, within the same 5 s).
    let t = red.layout().unwrap().1.into_iter().find(|t| t.name == "red").unwrap();
    let probe = |b: &Bot| {
        let s = scale(b);
        // An eighth down: inside the bar (a quarter of the tile), past the
        // active speaker's highlight border.
        let top = color_at(b, ((t.x + t.width / 2) as f64 * s) as u32, ((t.y + t.height / 8) as f64 * s) as u32);
        let mid = color_at(b, ((t.x + t.width / 2) as f64 * s) as u32, ((t.y + t.height / 2) as f64 * s) as u32);
        (top, mid)
    };
    let letterboxed = red
        .wait_until(Duration::from_secs(5), |b| match probe(b) {
            (Some(top), Some(mid)) => top.iter().all(|&c| c < 40) && color_close(mid, 0xff0000, 60),
            _ => false,
        })
        .await;
    assert!(letterboxed, "letterboxed red tile: (top, middle) {:?}", probe(&red));
    let _ = std::fs::remove_dir_all(&dir);
}
