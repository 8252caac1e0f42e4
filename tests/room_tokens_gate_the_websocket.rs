//! With an auth secret, only a valid room token opens a WebSocket: the
//! token is checked before the upgrade (a plain GET without one gets 401
//! and a JSON reason, as `curl -i http://host/ws` shows), binds the room,
//! the display name and the role, and the HTTP API needs an admin token.
//! Tokens come from `tessera token`, as an operator would mint them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tessera::auth::{mint, Claims, Grant, TokenRole};
use tessera::protocol::Role;
use tessera::tools::bot::{Bot, BotOptions};

const SECRET: &str = "a-room-token-secret-0123";

/// `tessera token ...`'s output.
fn token(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["token", "--secret", SECRET]).args(args).output().expect("tessera token runs");
    assert!(out.status.success(), "tessera token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_tokens_gate_the_websocket() {
    init_tracing();
    let server = ChildServer::spawn(&["--auth-secret", SECRET]);
    let addr: std::net::SocketAddr = server.url.trim_start_matches("ws://").trim_end_matches("/ws").parse().expect("address");

    // Refused before any upgrade, with a code.
    let (status, body) = http(addr, "GET", "/ws", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "missing_token"), "{body}");
    let (status, body) = http(addr, "GET", "/ws?token=not.a.token", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "invalid_token"), "{body}");
    let forged = mint("another-secret-0123456", &Claims { sub: "x".into(), name: None, exp: u64::MAX / 4, nbf: None, grant: Grant { room: "a".into(), role: TokenRole::Admin, can_publish: true, can_subscribe: true } }).expect("mint");
    let (status, body) = http(addr, "GET", &format!("/ws?token={forged}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "invalid_token"), "{body}");
    let expired = mint(SECRET, &Claims { sub: "x".into(), name: None, exp: 1_000, nbf: None, grant: Grant { room: "a".into(), role: TokenRole::Participant, can_publish: true, can_subscribe: true } }).expect("mint");
    let (status, body) = http(addr, "GET", &format!("/ws?token={expired}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "expired_token"), "{body}");
    let e = Bot::connect(bot_options(&server.url, "a", "nobody", 0x00ff00, 660.0)).await.err().expect("no token, no room");
    assert!(format!("{e:#}").contains("missing_token"), "{e:#}");

    // A participant token: its room, its name.
    let ada = token(&["--room", "a", "--identity", "u1", "--name", "Ada from the token"]);
    let bot = Bot::connect(BotOptions { token: Some(ada.clone()), ..bot_options(&server.url, "a", "whatever", 0xff0000, 440.0) }).await.expect("joins with a token");
    wait_receiving(&bot, Duration::from_secs(10)).await;
    let (_, tiles) = bot.layout().expect("layout");
    assert_eq!(tiles.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Ada from the token"]);
    // The same token for another room: refused at join.
    let wrong = Bot::connect(BotOptions { token: Some(ada), ..bot_options(&server.url, "b", "x", 0xff0000, 440.0) }).await.expect("the socket opens");
    assert!(wrong.wait_until(Duration::from_secs(5), |b| b.errors().iter().any(|(c, _)| c == "forbidden")).await, "{:?}", wrong.errors());
    wrong.leave().await;
    // A viewer token joins receive-only: no tile; `joined` says `viewer`.
    let v = token(&["--room", "a", "--identity", "v1", "--role", "viewer"]);
    let viewer = Bot::connect(BotOptions { token: Some(v.clone()), viewer: true, ..bot_options(&server.url, "a", "viewer", 0x0000ff, 880.0) })
        .await
        .expect("viewer");
    wait_receiving(&viewer, Duration::from_secs(10)).await;
    assert_eq!(viewer.role(), Some(Role::Viewer));
    // A client that joins as a participant (and sends camera and
    // microphone) on a viewer token is admitted as a viewer, told so, and
    // still gets the grid: what it sends is dropped, not a failure.
    let pushy = Bot::connect(BotOptions { token: Some(v), ..bot_options(&server.url, "a", "pushy", 0xff00ff, 990.0) }).await.expect("pushy");
    wait_receiving(&pushy, Duration::from_secs(10)).await;
    assert_eq!(pushy.role(), Some(Role::Viewer));
    assert!(pushy.wait_until(Duration::from_secs(3), |b| b.stats().fps_recent > 15.0).await, "the pushy viewer's grid: {:?}", pushy.stats());
    assert!(pushy.errors().is_empty(), "{:?}", pushy.errors());
    assert_eq!(bot.layout().expect("layout").1.len(), 1, "viewers have no tile");
    pushy.leave().await;

    // The HTTP API: none → 401, a participant's → 403, an admin's → 200.
    let participant = token(&["--room", "a", "--identity", "u2"]);
    let admin = token(&["--room", "*", "--identity", "ops", "--role", "admin"]);
    let (status, body) = http(addr, "GET", "/api/rooms/a/stats", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "missing_token"), "{body}");
    let (status, body) = http(addr, "GET", &format!("/api/rooms/a/stats?token={participant}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden"), "{body}");
    let (status, body) = http(addr, "GET", &format!("/api/rooms/a/stats?token={admin}"), "").await;
    assert_eq!(status, 200, "{body}");
    // The admin API: listing every room needs an admin of every room;
    // acting on a room, an admin of that room.
    let (status, body) = http(addr, "GET", &format!("/api/rooms?token={participant}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden"), "{body}");
    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/a/participants/p1?token={participant}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden"), "{body}");
    let (status, body) = http(addr, "POST", "/api/drain", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "missing_token"), "{body}");
    let (status, body) = http(addr, "GET", &format!("/api/rooms?token={admin}"), "").await;
    assert_eq!(status, 200, "{body}");
    // /metrics: an admin token for every room, not one room's.
    let room_admin = token(&["--room", "a", "--identity", "ops-a", "--role", "admin"]);
    let (status, body) = http(addr, "GET", "/metrics", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "missing_token"), "{body}");
    let (status, body) = http(addr, "GET", &format!("/metrics?token={room_admin}"), "").await;
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden"), "{body}");
    let (status, body) = http(addr, "GET", &format!("/metrics?token={admin}"), "").await;
    assert!(status == 200 && body.contains("tessera_rooms 1"), "{status}: {body}");
    viewer.leave().await;
    bot.leave().await;
}
