//! Receive-only viewers (the broadcast case): 20 viewers of a room of 3
//! participants all get the composed video at full frame rate and the
//! whole audio mix, have no tile, and add no encoder: the number of
//! running video encoders equals the number of rungs in use.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};

const VIEWERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_the_rung_encoders() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let tones = [440.0, 660.0, 880.0];
    let mut speakers = Vec::new();
    for (i, tone) in tones.iter().enumerate() {
        speakers.push(bot(&url, "show", &format!("speaker{i}"), [0xff0000, 0x00ff00, 0x0000ff][i], *tone).await);
    }
    for s in &speakers {
        wait_receiving(s, Duration::from_secs(10)).await;
    }
    // One viewer decodes (to hear the mix); the others only count frames.
    let viewer = |i: usize, decode: bool| BotOptions {
        viewer: true,
        decode,
        ..bot_options(&url, "show", &format!("viewer{i}"), 0, 0.0)
    };
    let listener = Bot::connect(viewer(0, true)).await.expect("viewer connects");
    let mut viewers = Vec::new();
    for i in 1..=VIEWERS {
        viewers.push(Bot::connect(viewer(i, false)).await.expect("viewer connects"));
    }
    wait_receiving(&listener, Duration::from_secs(15)).await;
    for v in &viewers {
        wait_receiving(v, Duration::from_secs(15)).await;
    }

    // Full frame rate at every viewer, measured together.
    let (rates, listener_fps) = tokio::join!(futures::future::join_all(viewers.iter().map(|v| fps_over(v, 3.0))), fps_over(&listener, 3.0));
    for (i, fps) in rates.iter().enumerate() {
        assert!(*fps >= 25.0, "viewer{} received {fps:.1} fps", i + 1);
    }
    assert!(listener_fps >= 25.0, "the decoding viewer received {listener_fps:.1} fps");
    assert_eq!((listener.stats().width, listener.stats().height), CANVAS);
    assert_eq!((viewers[0].stats().width, viewers[0].stats().height), CANVAS);

    // No tile for viewers: the grid has the three speakers only.
    let (_, tiles) = listener.layout().expect("viewers get the layout");
    assert_eq!(tiles.len(), 3, "viewers must not get tiles: {tiles:?}");

    // The whole mix: every speaker's tone.
    let heard = listener
        .wait_until(Duration::from_secs(5), |b| tones.iter().all(|t| b.level_db(*t).is_some_and(|db| db > -40.0)))
        .await;
    assert!(heard, "a viewer must hear all three speakers: {:?}", listener.dominant_frequencies(5));

    // Encoders: one per rung in use, however many receivers.
    let stats = room_stats(&server, "show").await;
    assert_eq!(stats["viewers"], VIEWERS + 1, "{stats}");
    let (running, used) = rungs_running_and_used(&stats);
    assert_eq!(running, used, "{stats}");
    assert_eq!(running.len(), 1, "24 receivers on one rung must share one encoder: {stats}");

    viewers[0].set_quality("low").await.expect("sent");
    assert!(viewers[0].wait_until(Duration::from_secs(3), |b| b.rung().as_deref() == Some("low")).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (running, used) = rungs_running_and_used(&room_stats(&server, "show").await);
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(running, used);

    for v in viewers {
        v.leave().await;
    }
    listener.leave().await;
    for s in speakers {
        s.leave().await;
    }
}
