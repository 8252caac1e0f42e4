//! A participant that sends `leave`, or whose WebSocket just closes, is
//! gone from everyone's layout and frames within 2 s, and the others keep
//! their media.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::Bot;

fn share_of_color(b: &Bot, color: u32) -> f64 {
    let Some(f) = b.last_frame() else { return 1.0 };
    let mut hits = 0usize;
    for y in (0..f.height).step_by(2) {
        for x in (0..f.width).step_by(2) {
            if color_close(f.pixel(x, y), color, 48) {
                hits += 1;
            }
        }
    }
    hits as f64 / ((f.width / 2) * (f.height / 2)) as f64
}

async fn gone_within_2s(stayers: &[&Bot], color: u32, tiles: usize) {
    for b in stayers {
        let ok = b
            .wait_until(Duration::from_secs(2), |b| {
                b.layout().map(|l| l.1.len()) == Some(tiles) && share_of_color(b, color) < 0.001
            })
            .await;
        assert!(
            ok,
            "within 2 s: layout has {:?} tiles, colour share {:.3}",
            b.layout().map(|l| l.1.len()),
            share_of_color(b, color)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_participant_leaves_the_grid() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let a = bot(&url, "r", "a", 0xff0000, 440.0).await;
    let b = bot(&url, "r", "b", 0x00ff00, 660.0).await;
    let c = bot(&url, "r", "c", 0x0000ff, 880.0).await;
    let d = bot(&url, "r", "d", 0xffff00, 550.0).await;
    for x in [&a, &b, &c, &d] {
        wait_receiving(x, Duration::from_secs(10)).await;
    }
    // c and d are visible before they go.
    for x in [&a, &b] {
        assert!(x.wait_until(Duration::from_secs(3), |x| share_of_color(x, 0x0000ff) > 0.05 && share_of_color(x, 0xffff00) > 0.05).await);
    }

    // 1. An orderly `leave`.
    c.leave().await;
    gone_within_2s(&[&a, &b, &d], 0x0000ff, 3).await;

    // 2. A WebSocket that closes without `leave`.
    d.disconnect().await;
    gone_within_2s(&[&a, &b], 0xffff00, 2).await;

    // The others still receive media at full rate.
    let f0 = a.stats().frames;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.stats().frames - f0 >= 20, "media stalled after the leaves");
    let (_, tiles) = a.layout().unwrap();
    let seen = a.tiles_seen();
    let bt = seen.iter().find(|t| Some(&t.id) == b.id().as_ref()).expect("b's tile");
    assert!(color_close(bt.center_rgb, 0x00ff00, 48), "b's tile shows {:?}", bt.center_rgb);
    assert_eq!(tiles.len(), 2);
    a.leave().await;
    b.leave().await;
    server.stop().await;
}
