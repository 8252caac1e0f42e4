//! The encoder ladder, explicit choice: a receiver that joins with
//! `"quality":"low"` gets the low rung's size, frame rate and bitrate
//! (±20 %) while another receiver in the same room keeps the high rung;
//! `set_quality` moves it; only the rungs in use are encoded; an unknown
//! rung is refused with `unknown_quality`. The same for H.264 receivers,
//! on the H.264 rungs (whose encoder may stay under the rung's bitrate).

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};
use tessera::ladder::Rung;
use tessera::protocol::Codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_gets_the_rung_it_asks_for() {
    gets_the_rung_it_asks_for(Codec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_receiver_gets_the_rung_it_asks_for() {
    gets_the_rung_it_asks_for(Codec::H264).await;
}

async fn gets_the_rung_it_asks_for(codec: Codec) {
    let rung = |name: &str| format!("{}:{name}", codec.name());
    let server = start_server(media_config());
    let url = server.ws_url();
    // The default ladder of the 640x360 test canvas, as docs/ladder.md
    // derives it (not from the code under test): high = the canvas at 30 fps,
    // low = a quarter of each side at half the frame rate, 120 kbps scaled
    // by pixel count (30 kbps) and raised to the 60 kbps floor.
    let high = &Rung { name: "high".into(), width: 640, height: 360, fps: 30, bitrate: 300_000 };
    let low = &Rung { name: "low".into(), width: 160, height: 90, fps: 15, bitrate: 60_000 };

    let sender = Bot::connect(BotOptions { codec, ..busy_bot(&url, "q", "sender", 440.0) }).await.expect("sender connects");
    let picky = Bot::connect(BotOptions { quality: Some("low".into()), codec, ..busy_bot(&url, "q", "picky", 660.0) }).await.expect("picky connects");
    wait_receiving(&sender, Duration::from_secs(10)).await;
    wait_receiving(&picky, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let q = picky.qualities();
    assert_eq!(q.first().map(|q| (q.rung.as_str(), q.auto, q.codec)), Some(("low", false, codec)), "quality events: {q:?}");
    let s = picky.stats();
    assert_eq!((s.width, s.height), (low.width, low.height), "picky got {}x{}", s.width, s.height);
    assert_eq!((sender.stats().width, sender.stats().height), (high.width, high.height));
    // The rung's frame rate is the stream's (frames per second of RTP
    // time). Regression: counted as frames decoded per second of wall
    // time, it read 20.8, 22 and 30 fps for H.264 in three runs (two from
    // a fresh clone, one by hand; none in 26 runs since, idle or loaded):
    // frames held back and let go inside the window. The decoded rate stays
    // asserted as "the picture flows".
    let (fps, decoded, kbps) = tokio::join!(stream_fps_over(&picky, 4.0), fps_over(&picky, 4.0), video_kbps(&picky, 4.0));
    assert!((fps - low.fps as f64).abs() <= 2.0, "low rung at {fps:.1} fps of stream time ({decoded:.1} decoded per second), want {}", low.fps);
    assert!(decoded >= low.fps as f64 / 2.0, "the low rung's picture does not flow: {decoded:.1} frames decoded per second");
    let want = low.bitrate as f64 / 1000.0;
    match codec {
        Codec::Vp8 => assert!((kbps - want).abs() <= 0.2 * want, "low rung at {kbps:.0} kbps, want {want:.0} ± 20 %"),
        // OpenH264's rate control stays under its target on this picture
        // (46 of 60 kbps measured): at most the rung's bitrate, and flowing.
        Codec::H264 => assert!(kbps <= 1.2 * want && kbps >= 0.3 * want, "low rung at {kbps:.0} kbps, want at most {want:.0} (+20 %)"),
    }

    let stats = room_stats(&server, "q").await;
    let (running, used) = rungs_running_and_used(&stats);
    assert_eq!(running, vec![rung("high"), rung("low")], "{stats}");
    assert_eq!(running, used, "an encoder runs without receivers: {stats}");

    // Ask for the high rung: the picture follows, the low encoder stops.
    picky.set_quality("high").await.expect("sent");
    let moved = picky.wait_until(Duration::from_secs(3), |b| b.stats().width == high.width).await;
    assert!(moved, "set_quality high did not change the stream: {:?}", picky.stats());
    assert_eq!(picky.rung().as_deref(), Some("high"));
    let mut stopped = false;
    for _ in 0..20 {
        let (running, _) = rungs_running_and_used(&room_stats(&server, "q").await);
        if running == vec![rung("high")] {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the low rung's encoder kept running: {}", room_stats(&server, "q").await);

    // An unknown rung is refused and changes nothing.
    picky.set_quality("ultra").await.expect("sent");
    let refused = picky.wait_until(Duration::from_secs(2), |b| b.errors().iter().any(|(c, _)| c == "unknown_quality")).await;
    assert!(refused, "no unknown_quality error: {:?}", picky.errors());
    assert!(fps_over(&picky, 1.0).await >= 25.0, "the picture stopped after a refused set_quality");

    picky.leave().await;
    sender.leave().await;
}
