//! A muted microphone is left out of everyone's mix, and a camera that is
//! off shows a name card (plain background) in its tile instead of a
//! frozen frame; both states are in the layout, and both undo.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::Bot;
use tessera::media::raw::CARD_RGB;

fn tile_of(b: &Bot, id: &str) -> Option<tessera::protocol::Tile> {
    b.layout()?.1.into_iter().find(|t| t.id == id)
}

/// Colour near the top-left corner of `id`'s tile (away from the name text).
fn corner_color(b: &Bot, id: &str) -> Option<[u8; 3]> {
    let t = tile_of(b, id)?;
    let f = b.last_frame()?;
    Some(f.mean_around(t.x + t.width / 8, t.y + t.height / 8, 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_participant_is_left_out() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let red = bot(&url, "m", "Red", 0xff0000, 440.0).await;
    let green = bot(&url, "m", "Green", 0x00ff00, 660.0).await;
    let blue = bot(&url, "m", "Blue", 0x0000ff, 880.0).await;
    for b in [&red, &green, &blue] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let (red_id, blue_id) = (red.id().unwrap(), blue.id().unwrap());
    assert!(green.wait_until(Duration::from_secs(3), |b| b.level_db(440.0).unwrap_or(-200.0) > -40.0).await, "green never heard red");

    // Microphone muted: red's tone leaves green's mix; blue is still heard.
    red.send_raw(r#"{"type":"mute","audio":true}"#.into()).await.unwrap();
    let gone = green.wait_until(Duration::from_secs(2), |b| b.level_db(440.0).unwrap_or(0.0) < -70.0).await;
    assert!(gone, "red still heard at {:?} dBFS", green.level_db(440.0));
    assert!(green.level_db(880.0).unwrap() > -40.0, "blue must still be heard");
    assert!(green.wait_until(Duration::from_secs(1), |b| tile_of(b, &red_id).map(|t| t.audio_muted) == Some(true)).await);

    // Camera off: blue's tile shows the name card, not a frozen blue frame.
    blue.send_raw(r#"{"type":"mute","video":true}"#.into()).await.unwrap();
    let card = red
        .wait_until(Duration::from_secs(2), |b| corner_color(b, &blue_id).map(|c| color_close(c, CARD_RGB, 24)).unwrap_or(false))
        .await;
    assert!(card, "blue's tile corner shows {:?}", corner_color(&red, &blue_id));
    let t = tile_of(&red, &blue_id).unwrap();
    assert!(t.video_muted);
    let centre = red.tiles_seen().into_iter().find(|t| t.id == blue_id).unwrap().center_rgb;
    assert!(!color_close(centre, 0x0000ff, 60), "blue video still visible: {centre:?}");
    // The card carries the name: some pixels in the tile differ from the background.
    let f = red.last_frame().unwrap();
    let mut text_pixels = 0;
    for y in (t.y..t.y + t.height).step_by(2) {
        for x in (t.x..t.x + t.width).step_by(2) {
            if !color_close(f.pixel(x, y), CARD_RGB, 40) {
                text_pixels += 1;
            }
        }
    }
    assert!(text_pixels > 20, "no name drawn on the card ({text_pixels} px)");

    // And back.
    blue.send_raw(r#"{"type":"mute","video":false}"#.into()).await.unwrap();
    red.send_raw(r#"{"type":"mute","audio":false}"#.into()).await.unwrap();
    let centre_of = |b: &Bot| b.tiles_seen().into_iter().find(|t| t.id == blue_id).map(|t| t.center_rgb);
    let back = red.wait_until(Duration::from_secs(2), |b| centre_of(b).map(|c| color_close(c, 0x0000ff, 48)).unwrap_or(false)).await;
    assert!(back, "blue's video did not come back: {:?}", centre_of(&red));
    assert!(green.wait_until(Duration::from_secs(2), |b| b.level_db(440.0).unwrap_or(-200.0) > -40.0).await);
    for b in [red, green, blue] {
        b.leave().await;
    }
    server.stop().await;
}
