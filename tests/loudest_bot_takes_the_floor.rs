//! In the speaker layout the loudest participant takes the big `floor`
//! slot within 3 s of starting to speak and keeps it while it stays loudest
//! (hysteresis: a rival less than 3 dB louder does not take it), everyone
//! is told with `speaking`, and its tile is highlighted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tessera::tools::bot::Bot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loudest_bot_takes_the_floor() {
    let mut catalog = shipped_catalog();
    catalog.mixer.default_group = "speaker".into();
    let server = start_server_with(catalog, None);
    let url = server.ws_url();
    let mut bots = Vec::new();
    for (name, color, tone, volume) in [("quiet", 0xff0000, 440.0, 0.004), ("medium", 0x0000ff, 880.0, 0.03)] {
        let mut o = bot_options(&url, "floor", name, color, tone);
        o.volume = volume;
        bots.push(Bot::connect(o).await.unwrap());
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    // The loud voice starts when its bot joins: the clock starts before that.
    let t0 = Instant::now();
    let mut o = bot_options(&url, "floor", "loud", 0x00ff00, 660.0);
    o.volume = 0.5;
    bots.push(Bot::connect(o).await.unwrap());
    let observer = &bots[0];
    assert!(bots[2].wait_until(Duration::from_secs(5), |b| b.id().is_some()).await, "the loud bot never joined");
    let loud_id = bots[2].id().unwrap_or_default();
    assert_eq!(observer.layout_name().as_deref(), Some("speaker-5"));
    // speaker-5 at 640x360: the floor slot is the top 640x288.
    let in_floor = |b: &Bot| color_at(b, 320, 144).map(|c| color_close(c, 0x00ff00, 48)).unwrap_or(false);
    let took = observer.wait_until(Duration::from_secs(3).saturating_sub(t0.elapsed()), |b| in_floor(b) && b.speaker().as_deref() == Some(loud_id.as_str())).await;
    assert!(took, "after {:?}: floor shows {:?}, speaker {:?}", t0.elapsed(), color_at(observer, 320, 144), observer.speaker());
    // The floor tile in the layout is the loud bot's.
    let (_, tiles) = observer.layout().unwrap();
    let floor_tile = tiles.iter().find(|t| t.y == 0 && t.width == 640).expect("a full-width floor tile");
    assert_eq!(floor_tile.id, loud_id);
    // Highlight border (layout.highlight_color #ffc531) around the floor.
    let lit = observer.wait_until(Duration::from_secs(1), |b| color_at(b, 320, 1).is_some_and(|c| color_close(c, 0xffc531, 60))).await;
    assert!(lit, "highlight at the floor's edge: {:?}", color_at(observer, 320, 1));
    // A rival 2 dB louder (under the 3 dB lead the detector asks for)
    // joins: the floor stays with the loud bot.
    let mut o = bot_options(&url, "floor", "rival", 0xffff00, 1100.0);
    o.volume = 0.5 * 10f64.powf(2.0 / 20.0);
    let rival = Bot::connect(o).await.unwrap();
    wait_receiving(&rival, Duration::from_secs(10)).await;
    assert!(observer.wait_until(Duration::from_secs(3), |b| b.layout().is_some_and(|l| l.1.len() == 4)).await, "the rival never got a tile");
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert!(in_floor(observer), "floor lost: {:?}", color_at(observer, 320, 144));
        assert_eq!(observer.speaker().as_deref(), Some(loud_id.as_str()), "the speaker changed to a rival less than 3 dB louder");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bots.push(rival);
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
