//! A participant shares a screen: a second connection (`role: "share"`)
//! whose video gets the `share` slot of the presentation layout,
//! letterboxed, while the cameras move to the strip; everyone (a viewer
//! too) sees it, a second sharer is refused with `share_busy`, and the
//! room's own layout comes back when the share stops. A receiver on the
//! lowest rung gets the share alone, larger and slower (mixer.toml
//! `[share]`), and the whole canvas again afterwards.

mod common;

use std::time::Duration;

use common::*;
use tessera::protocol::Role;
use tessera::tools::bot::{Bot, BotOptions};

/// The share tile of `b`'s last layout.
fn share_tile(b: &Bot) -> Option<tessera::protocol::Tile> {
    b.layout()?.1.into_iter().find(|t| t.share_of.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_screen_takes_the_floor() {
    let server = start_server_with(shipped_catalog(), None);
    let url = server.ws_url();
    let red = Bot::connect(bot_options(&url, "talk", "red", 0xff0000, 440.0)).await.unwrap();
    let green = Bot::connect(bot_options(&url, "talk", "green", 0x00ff00, 660.0)).await.unwrap();
    let viewer = Bot::connect(BotOptions { viewer: true, ..bot_options(&url, "talk", "viewer", 0, 0.0) }).await.unwrap();
    let phone = Bot::connect(BotOptions { viewer: true, quality: Some("low".into()), ..bot_options(&url, "talk", "phone", 0, 0.0) }).await.unwrap();
    for b in [&red, &green, &viewer, &phone] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let frame_size = |b: &Bot| b.last_frame().map(|f| (f.width, f.height));
    assert_eq!(frame_size(&phone), Some((160, 90)), "the low rung of a 640x360 canvas");
    let before = green.layout_name();
    assert_eq!(before.as_deref(), Some("side-by-side"));

    // A 4:3 screen (SMPTE bars) into the 16:9 share slot: bars left and right.
    let share = red.share("smpte", 960, 720).await.unwrap();
    assert!(share.wait_until(Duration::from_secs(5), |b| b.role() == Some(Role::Share)).await, "joined as {:?}: {:?}", share.role(), share.errors());
    for b in [&green, &viewer, &red] {
        let ok = b.wait_until(Duration::from_secs(5), |b| b.layout_name().as_deref() == Some("presentation")).await;
        assert!(ok, "{:?} sees layout {:?}", b.report().name, b.layout_name());
    }
    let t = share_tile(&green).expect("a share tile");
    assert_eq!(t.share_of, red.id());
    assert_eq!((t.x, t.y, t.width, t.height), (0, 0, 512, 288), "the share slot of a 640x360 canvas");
    // The sharer is asked for its slot, letterboxed, at the share frame rate.
    assert!(share.wait_until(Duration::from_secs(3), |b| b.send_size().map(|s| (s.0, s.1)) == Some((512, 288))).await, "{:?}", share.send_size());

    // Pixels: bars of the pattern inside the slot, black beside them, the
    // cameras in the strip. 384 of the 512 pixels are the screen (4:3).
    let scale = |b: &Bot| b.last_frame().map(|f| f.width as f64 / CANVAS.0 as f64).unwrap_or(1.0);
    let at = |b: &Bot, x: f64, y: f64| color_at(b, (x * scale(b)) as u32, (y * scale(b)) as u32);
    let bar = 384.0 / 7.0;
    let checks: [(f64, f64, u32, &str); 4] = [
        (64.0 + 1.5 * bar, 86.0, 0xc0c000, "yellow bar"),
        (64.0 + 6.5 * bar, 86.0, 0x0000c0, "blue bar"),
        (32.0, 86.0, 0x000000, "bar left of the screen"),
        (480.0, 86.0, 0x000000, "bar right of the screen"),
    ];
    for b in [&green, &viewer] {
        let seen = |b: &Bot| checks.iter().map(|(x, y, _, _)| at(b, *x, *y)).collect::<Vec<_>>();
        let shown = b
            .wait_until(Duration::from_secs(8), |b| {
                checks.iter().zip(seen(b)).all(|((_, _, want, _), c)| c.is_some_and(|c| color_close(c, *want, 60)))
            })
            .await;
        let report: Vec<String> = checks.iter().zip(seen(b)).map(|((_, _, w, what), c)| format!("{what}: want #{w:06x}, saw {c:?}")).collect();
        assert!(shown, "{} sees the share wrong: {report:#?}", b.report().name);
        // A third down the 128x72 tile: clear of its label. Regression: a
        // tile that shrank kept a short name's label at its old font size
        // (the text was the same, so the font was never set), covering it.
        for cam in b.layout().unwrap().1.iter().filter(|t| t.share_of.is_none()) {
            let want = if cam.name == "red" { 0xff0000 } else { 0x00ff00 };
            let (cx, cy) = (cam.x + cam.width / 2, cam.y + cam.height / 3);
            let ok = b.wait_until(Duration::from_secs(3), |b| at(b, cx as f64, cy as f64).is_some_and(|c| color_close(c, want, 60))).await;
            assert!(ok, "{}'s camera in the strip at ({cx}, {cy}) shows {:?} (frame {:?})", cam.name, at(b, cx as f64, cy as f64), b.last_frame().map(|f| (f.width, f.height)));
        }
    }

    // The low rung: the share slot alone, 512x288 (its own size: the
    // focus size, 640x360, is never scaled up to), the bars readable.
    let focused = phone.wait_until(Duration::from_secs(8), |b| frame_size(b) == Some((512, 288)) && color_at(b, (64.0 + 1.5 * bar) as u32, 86).is_some_and(|c| color_close(c, 0xc0c000, 60))).await;
    assert!(focused, "the low rung while sharing: {:?}, yellow bar {:?}", frame_size(&phone), color_at(&phone, (64.0 + 1.5 * bar) as u32, 86));
    let stats = room_stats(&server, "talk").await;
    let low = stats["media"]["rungs"].as_array().unwrap().iter().find(|r| r["name"] == "low" && r["codec"] == "vp8").cloned().unwrap();
    assert_eq!(low["share_focus"], serde_json::json!([512, 288, 5]), "{low}");
    let told = |b: &Bot, size: (u32, u32, u32)| b.qualities().last().is_some_and(|q| q.rung == "low" && (q.width, q.height, q.fps) == size);
    assert!(phone.wait_until(Duration::from_secs(2), |b| told(b, (512, 288, 5))).await, "quality while focused: {:?}", phone.qualities().last());

    // One share at a time: green's is refused with share_busy.
    let refused = green.share("checkers-8", 640, 360).await.unwrap();
    let busy = refused.wait_until(Duration::from_secs(5), |b| b.errors().iter().any(|(c, _)| c == "share_busy")).await;
    assert!(busy, "second share: errors {:?}", refused.errors());
    assert_eq!(share_tile(&viewer).and_then(|t| t.share_of), red.id(), "red still shares");
    refused.leave().await;

    // Stopping the share brings the room's layout back.
    share.leave().await;
    for b in [&green, &viewer] {
        let back = b.wait_until(Duration::from_secs(5), |b| b.layout_name() == before && share_tile(b).is_none()).await;
        assert!(back, "after the share: layout {:?}", b.layout_name());
    }
    let back_red = green.wait_until(Duration::from_secs(5), |b| {
        let t = b.layout().and_then(|(_, t)| t.into_iter().find(|t| t.name == "red"));
        t.is_some_and(|t| at(b, (t.x + t.width / 2) as f64, (t.y + t.height / 2) as f64).is_some_and(|c| color_close(c, 0xff0000, 60)))
    });
    assert!(back_red.await, "red's camera back in its half");
    assert!(phone.wait_until(Duration::from_secs(5), |b| frame_size(b) == Some((160, 90))).await, "the low rung after the share: {:?}", frame_size(&phone));
    assert!(told(&phone, (160, 90, 15)), "quality after the share: {:?}", phone.qualities().last());
    for b in [red, green, viewer, phone] {
        b.leave().await;
    }
}
