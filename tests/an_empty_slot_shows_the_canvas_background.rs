//! The canvas background shows where no tile is: three people in a 2x2
//! grid leave the bottom-right cell empty, and it has the room's
//! background colour, black (the compositor's own fill) or any other (a
//! solid-colour source under the tiles), while each tile shows its
//! sender's colour.

mod common;

use std::time::Duration;

use common::*;
use tessera::media::MediaConfig;

async fn empty_cell_shows(background: u32) {
    let server = start_server(MediaConfig { background, ..media_config() });
    let url = server.ws_url();
    let colours = [0xff0000, 0x00ff00, 0x0000ff];
    let mut bots = Vec::new();
    for (i, c) in colours.iter().enumerate() {
        bots.push(bot(&url, "bg", &format!("b{i}"), *c, 440.0 + 220.0 * i as f64).await);
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let (w, h) = CANVAS;
    let empty = (3 * w / 4, 3 * h / 4);
    let shows = bots[0]
        .wait_until(Duration::from_secs(5), |b| color_at(b, empty.0, empty.1).is_some_and(|c| color_close(c, background, 24)))
        .await;
    assert!(shows, "background #{background:06x}: the empty cell shows {:?}", color_at(&bots[0], empty.0, empty.1));
    // And the tiles theirs: the cell centres of the first three.
    for (i, c) in colours.iter().enumerate() {
        let (x, y) = ((i as u32 % 2) * w / 2 + w / 4, (i as u32 / 2) * h / 2 + h / 4);
        let got = bots[0].wait_until(Duration::from_secs(5), |b| color_at(b, x, y).is_some_and(|p| color_close(p, *c, 48))).await;
        assert!(got, "background #{background:06x}: tile {i} shows {:?}, not #{c:06x}", color_at(&bots[0], x, y));
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slot_shows_the_canvas_background() {
    empty_cell_shows(0x000000).await;
    empty_cell_shows(0x2080c0).await;
}
