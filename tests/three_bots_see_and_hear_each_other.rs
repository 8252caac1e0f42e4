//! The core promise of the MCU: three participants each receive ONE mixed
//! stream in which every other participant's video sits in its tile, at
//! full frame rate, and an audio mix of everyone except themselves.

mod common;

use std::time::Duration;

use common::*;

const BOTS: [(&str, u32, f64); 3] = [("red", 0xff0000, 440.0), ("green", 0x00ff00, 660.0), ("blue", 0x0000ff, 880.0)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bots_see_and_hear_each_other() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let mut bots = Vec::new();
    for (name, color, tone) in BOTS {
        bots.push(bot(&url, "room1", name, color, tone).await);
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(10)).await;
        assert!(b.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(3)).await, "layout never had 3 tiles");
    }
    // Let audio buffers fill and the picture settle.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Frame rate over 3 s, measured at every receiver.
    let before: Vec<u64> = bots.iter().map(|b| b.stats().frames).collect();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = t0.elapsed().as_secs_f64();
    for (b, f0) in bots.iter().zip(before) {
        let fps = (b.stats().frames - f0) as f64 / secs;
        let s = b.stats();
        assert!(fps >= 25.0, "a bot received only {fps:.1} fps: {s:?}");
        assert_eq!((s.width, s.height), CANVAS, "mixed video is not at canvas size");
    }

    for (i, b) in bots.iter().enumerate() {
        let me = b.id().expect("joined");
        let (canvas, tiles) = b.layout().expect("layout");
        assert_eq!((canvas.width, canvas.height), CANVAS);
        assert_eq!(tiles.len(), 3);
        let seen = b.tiles_seen();
        // Every OTHER bot's colour is at the centre of that bot's tile.
        for (j, b2) in bots.iter().enumerate() {
            let id = b2.id().expect("joined");
            let tile = seen.iter().find(|t| t.id == id).expect("tile for every participant");
            if i != j {
                assert!(
                    color_close(tile.center_rgb, BOTS[j].1, 48),
                    "bot {} sees {:?} at the centre of {}'s tile, expected {:06x}",
                    BOTS[i].0, tile.center_rgb, BOTS[j].0, BOTS[j].1
                );
            }
        }
        assert!(seen.iter().any(|t| t.id == me));
        // Hears the others, not itself (mix-minus).
        let own = b.level_db(BOTS[i].2).expect("audio received");
        for (j, (_, _, tone)) in BOTS.iter().enumerate() {
            if i == j {
                continue;
            }
            let other = b.level_db(*tone).expect("audio received");
            assert!(other > -40.0, "bot {} hears {} Hz at only {other:.1} dBFS", BOTS[i].0, tone);
            assert!(own <= other - 20.0, "bot {} hears itself at {own:.1} dBFS vs {other:.1} dBFS for {tone} Hz", BOTS[i].0);
        }
        assert!(b.errors().is_empty(), "errors: {:?}", b.errors());
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
