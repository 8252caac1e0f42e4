//! The admin API lets an operator see and act on a room: list rooms with
//! their members, one room's details, mute a participant in the mix (it is
//! told, the others stop hearing it), remove a participant (it gets
//! `removed` and its connection closes; the grid shrinks), close a room
//! (everyone is removed). Errors have stable codes.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_acts_on_a_room() {
    let server = start_server(media_config());
    let (url, addr) = (server.ws_url(), server.addr());
    let red = bot(&url, "ops", "red", 0xff0000, 440.0).await;
    let green = bot(&url, "ops", "green", 0x00ff00, 660.0).await;
    let viewer = Bot::connect(BotOptions { viewer: true, ..bot_options(&url, "ops", "watcher", 0, 0.0) }).await.unwrap();
    for b in [&red, &green, &viewer] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    let gid = green.id().unwrap();

    let (status, body) = http(addr, "GET", "/api/rooms", "").await;
    assert_eq!(status, 200, "{body}");
    let rooms = json(&body)["rooms"].clone();
    assert_eq!(rooms.as_array().unwrap().len(), 1);
    let names: Vec<&str> = rooms[0]["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["red", "green"]);
    assert_eq!(rooms[0]["viewers"][0]["name"], "watcher");
    let (status, body) = http(addr, "GET", "/api/rooms/ops", "").await;
    assert_eq!((status, json(&body)["layout"].as_str().unwrap()), (200, "grid-2x1"), "{body}");
    let (status, body) = http(addr, "GET", "/api/rooms/nope", "").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (404, "unknown_room"));

    // Mute green in the mix: green is told, red stops hearing it.
    assert!(red.wait_until(Duration::from_secs(3), |b| b.level_db(660.0).unwrap_or(-200.0) > -40.0).await, "red never heard green");
    let (status, body) = http(addr, "POST", &format!("/api/rooms/ops/participants/{gid}/mute"), r#"{"audio":true}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(green.wait_until(Duration::from_secs(2), |b| b.server_muted() == Some(true)).await, "green was not told");
    let silent = red.wait_until(Duration::from_secs(3), |b| b.level_db(660.0).unwrap_or(0.0) < -70.0).await;
    assert!(silent, "red still hears green at {:?} dBFS", red.level_db(660.0));
    let tile = red.layout().unwrap().1.into_iter().find(|t| t.id == gid).unwrap();
    assert!(tile.audio_muted, "the layout shows green muted");
    let (status, body) = http(addr, "POST", &format!("/api/rooms/ops/participants/{gid}/mute"), r#"{"audio":"yes"}"#).await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (400, "invalid_field"));
    let (status, body) = http(addr, "POST", "/api/rooms/ops/participants/p999/mute", r#"{"audio":true}"#).await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (404, "unknown_participant"));

    // Remove green: it gets `removed`, its connection closes, the grid shrinks.
    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/ops/participants/{gid}"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(green.wait_until(Duration::from_secs(3), |b| b.removed().is_some() && b.closed()).await, "green: removed {:?}, closed {}", green.removed(), green.closed());
    assert!(red.wait_until(Duration::from_secs(3), |b| b.layout().is_some_and(|(_, t)| t.len() == 1)).await, "the grid kept green");
    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/ops/participants/{gid}"), "").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (404, "unknown_participant"));

    // Close the room: red and the viewer are removed, the room goes.
    let (status, body) = http(addr, "DELETE", "/api/rooms/ops", "").await;
    assert_eq!((status, json(&body)["removed"].as_u64()), (200, Some(2)), "{body}");
    for b in [&red, &viewer] {
        assert!(b.wait_until(Duration::from_secs(3), |b| b.removed().is_some() && b.closed()).await, "not removed");
    }
    let gone = async {
        loop {
            let (_, body) = http(addr, "GET", "/api/rooms", "").await;
            if json(&body)["rooms"].as_array().is_some_and(|r| r.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone).await.expect("the closed room is gone");
    for b in [red, green, viewer] {
        b.disconnect().await;
    }
}
