//! Regression: a participant that sends no video (camera denied) got no
//! mixed video at all. The compositor inputs (appsrc) reported a maximum
//! latency of 0, below the background source's one-frame minimum, so the
//! compositor could not configure latency, stopped being live, and waited
//! forever for the participant's tile, which only ever held one name card.
//! Now the grid keeps flowing whatever any input does.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::Bot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_only_participant_gets_the_grid() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let mut opts = bot_options(&url, "ro", "listener", 0, 440.0);
    opts.send_video = false;
    let listener = Bot::connect(opts).await.unwrap();
    wait_receiving(&listener, Duration::from_secs(10)).await;
    // Alone in the room: its own tile shows its name card at full rate.
    let f0 = listener.stats().frames;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(listener.stats().frames - f0 >= 50, "grid stalled: {:?}", listener.stats());
    let me = listener.id().unwrap();
    let seen = listener.tiles_seen();
    let t = seen.iter().find(|t| t.id == me).unwrap();
    let f = listener.last_frame().unwrap();
    assert!(color_close(f.mean_around(t.x + t.width / 8, t.y + t.height / 8, 2), tessera::media::raw::CARD_RGB, 24));

    // A sender joins: the listener sees it, the sender sees the listener's card.
    let sender = bot(&url, "ro", "sender", 0xff0000, 660.0).await;
    wait_receiving(&sender, Duration::from_secs(10)).await;
    let sid = sender.id().unwrap();
    assert!(
        listener
            .wait_until(Duration::from_secs(3), |b| b.tiles_seen().iter().any(|t| t.id == sid && color_close(t.center_rgb, 0xff0000, 48)))
            .await,
        "listener never saw the sender: {:?}",
        listener.tiles_seen()
    );
    assert!(sender.stats().fps_recent > 20.0 || sender.wait_until(Duration::from_secs(3), |b| b.stats().fps_recent > 20.0).await);
    // And hears it.
    assert!(listener.wait_until(Duration::from_secs(3), |b| b.level_db(660.0).unwrap_or(-200.0) > -40.0).await);
    listener.leave().await;
    sender.leave().await;
    server.stop().await;
}
