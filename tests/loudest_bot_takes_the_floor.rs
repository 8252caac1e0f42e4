//! In the speaker layout the loudest participant takes the big `floor`
//! slot within 3 s and keeps it while it stays loudest (hysteresis: no
//! flicker), everyone is told with `speaking`, and its tile is highlighted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tessera::bot::Bot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loudest_bot_takes_the_floor() {
    let mut catalog = shipped_catalog();
    catalog.mixer.default_group = "speaker".into();
    let server = start_server_with(catalog, None);
    let url = server.ws_url();
    let mut bots = Vec::new();
    for (name, color, tone, volume) in [("quiet", 0xff0000, 440.0, 0.004), ("medium", 0x0000ff, 880.0, 0.03), ("loud", 0x00ff00, 660.0, 0.5)] {
        let mut o = bot_options(&url, "floor", name, color, tone);
        o.volume = volume;
        bots.push(Bot::connect(o).await.unwrap());
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let t0 = Instant::now();
    let observer = &bots[0];
    let loud_id = bots[2].id().unwrap();
    assert_eq!(observer.layout_name().as_deref(), Some("speaker-5"));
    // speaker-5 at 640x360: the floor slot is the top 640x288.
    let in_floor = |b: &Bot| color_at(b, 320, 144).map(|c| color_close(c, 0x00ff00, 48)).unwrap_or(false);
    let took = observer.wait_until(Duration::from_secs(3), |b| in_floor(b) && b.speaker().as_deref() == Some(loud_id.as_str())).await;
    assert!(took, "after {:?}: floor shows {:?}, speaker {:?}", t0.elapsed(), color_at(observer, 320, 144), observer.speaker());
    // The floor tile in the layout is the loud bot's.
    let (_, tiles) = observer.layout().unwrap();
    let floor_tile = tiles.iter().find(|t| t.y == 0 && t.width == 640).expect("a full-width floor tile");
    assert_eq!(floor_tile.id, loud_id);
    // Highlight border (layout.highlight_color #ffc531) around the floor.
    let edge = color_at(observer, 320, 1).unwrap();
    assert!(color_close(edge, 0xffc531, 60), "highlight at the floor's edge: {edge:?}");
    // It keeps the floor while it stays loudest.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(in_floor(observer), "floor lost: {:?}", color_at(observer, 320, 144));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
