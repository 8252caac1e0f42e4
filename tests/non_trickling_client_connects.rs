//! Clients that put every ICE candidate inside the answer (no trickle)
//! must work as well as trickling ones; and the server's candidates that
//! arrive before the client applied the offer are not lost.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::Bot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_trickling_client_connects() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let mut opts = bot_options(&url, "nt", "vanilla", 0xff0000, 440.0);
    opts.trickle = false;
    let vanilla = Bot::connect(opts).await.unwrap();
    let trickler = bot(&url, "nt", "trickler", 0x0000ff, 880.0).await;
    wait_receiving(&vanilla, Duration::from_secs(10)).await;
    wait_receiving(&trickler, Duration::from_secs(10)).await;
    // Each sees the other's colour in its tile.
    for (me, other, color) in [(&vanilla, &trickler, 0x0000ff), (&trickler, &vanilla, 0xff0000)] {
        let other_id = other.id().unwrap();
        let ok = me
            .wait_until(Duration::from_secs(3), |b| {
                b.tiles_seen().iter().any(|t| t.id == other_id && color_close(t.center_rgb, color, 48))
            })
            .await;
        assert!(ok, "tiles seen: {:?}", me.tiles_seen());
    }
    vanilla.leave().await;
    trickler.leave().await;
    server.stop().await;
}
