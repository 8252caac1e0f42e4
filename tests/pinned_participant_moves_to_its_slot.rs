//! A room's layout can be switched and a participant pinned to a reserved
//! slot through a signaling message and through PUT /api/rooms/{room}/layout;
//! unknown names get stable error codes.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_participant_moves_to_its_slot() {
    let server = start_server_with(shipped_catalog(), None);
    let url = server.ws_url();
    let red = bot(&url, "show", "red", 0xff0000, 440.0).await;
    let blue = bot(&url, "show", "blue", 0x0000ff, 880.0).await;
    for b in [&red, &blue] {
        wait_receiving(b, Duration::from_secs(10)).await;
    }
    // Switch to the panel layout by signaling.
    red.send_raw(r#"{"type":"set_layout","group":"panel"}"#.into()).await.unwrap();
    assert!(red.wait_until(Duration::from_secs(2), |b| b.layout_name().as_deref() == Some("panel")).await);
    // panel at 640x360: the host slot is x 12..204, y 14..158 (border 4).
    let host_centre = (108, 86);
    let blue_id = blue.id().unwrap();
    let (status, body) = http(server.addr(), "PUT", "/api/rooms/show/layout", &format!(r#"{{"pins":{{"host":"{blue_id}"}}}}"#)).await;
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["pins"]["host"], blue_id.as_str());
    assert_eq!(state["current"], "panel");
    let pinned = red
        .wait_until(Duration::from_secs(2), |b| color_at(b, host_centre.0, host_centre.1).map(|c| color_close(c, 0x0000ff, 48)).unwrap_or(false))
        .await;
    assert!(pinned, "host slot shows {:?}", color_at(&red, host_centre.0, host_centre.1));
    let (_, tiles) = red.layout().unwrap();
    let t = tiles.iter().find(|t| t.id == blue_id).unwrap();
    assert_eq!((t.x, t.y), (12, 14));

    // Unpin by signaling: the reserved slot empties (background shows).
    red.send_raw(format!(r#"{{"type":"pin","slot":"host","id":null}}"#)).await.unwrap();
    let empty = red
        .wait_until(Duration::from_secs(2), |b| color_at(b, host_centre.0, host_centre.1).map(|c| color_close(c, 0x000000, 24)).unwrap_or(false))
        .await;
    assert!(empty, "host slot after unpin: {:?}", color_at(&red, host_centre.0, host_centre.1));

    // Errors.
    let (status, body) = http(server.addr(), "PUT", "/api/rooms/show/layout", r#"{"group":"nope"}"#).await;
    assert_eq!(status, 422);
    assert!(body.contains("unknown_layout"), "{body}");
    let (status, body) = http(server.addr(), "PUT", "/api/rooms/show/layout", r#"{"pins":{"host":"p999"}}"#).await;
    assert_eq!(status, 422);
    assert!(body.contains("unknown_participant"), "{body}");
    let (status, body) = http(server.addr(), "PUT", "/api/rooms/nowhere/layout", r#"{"group":"grid"}"#).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown_room"), "{body}");
    let (status, body) = http(server.addr(), "PUT", "/api/rooms/show/layout", "{not json").await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed_json"));
    red.send_raw(r#"{"type":"set_layout","layout":"nope"}"#.into()).await.unwrap();
    assert!(red.wait_until(Duration::from_secs(2), |b| b.errors().iter().any(|(c, _)| c == "unknown_layout")).await);
    // GET shows the state; media kept flowing throughout.
    let (status, body) = http(server.addr(), "GET", "/api/rooms/show/layout", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(blue.stats().fps_recent > 20.0);
    red.leave().await;
    blue.leave().await;
    server.stop().await;
}
