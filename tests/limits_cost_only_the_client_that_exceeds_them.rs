//! Every limit of `[rooms]` and `[limits]` answers with its stable code
//! (or HTTP 429 before the upgrade), and costs only the client over it:
//! another address, another connection, the same connection a moment
//! later, all keep working.

mod common;

use std::time::Duration;

use common::*;
use tessera::server::{self, ServerConfig};

fn server_with(edit: impl FnOnce(&mut tessera::config::Config)) -> tessera::server::Running {
    init_tracing();
    let mut config = listening_on("127.0.0.1:0");
    edit(&mut config);
    server::start(ServerConfig { config, media: media_config(), ..ServerConfig::default() }).expect("server starts")
}

async fn joined(ws: &mut Ws, room: &str, name: &str, role: &str) -> serde_json::Value {
    send_text(ws, &join_msg(room, name, role)).await;
    let v = next_msg(ws, Duration::from_secs(10)).await.expect("a reply to join");
    assert_eq!(v["type"], "joined", "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_refused_with_429_before_the_upgrade() {
    let server = server_with(|c| c.limits.connections_per_ip = 3);
    let addr = server.addr();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(ws_from("127.0.0.1", addr).await.expect("under the limit"));
    }
    let (status, body) = ws_from("127.0.0.1", addr).await.err().expect("the fourth is refused");
    assert_eq!(status, 429, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON reason");
    assert_eq!(v["code"], "too_many_connections", "{v}");
    // A page whose WebSocket failed asks with a plain GET, and learns why.
    let (status, body) = http(addr, "GET", "/ws", "").await;
    assert_eq!((status, body.contains("too_many_connections")), (429, true), "{body}");
    // Another address is not affected, and a closed connection gives its place back.
    let mut other = ws_from("127.0.0.2", addr).await.expect("another client address");
    send_text(&mut other, r#"{"type":"dance"}"#).await;
    assert_eq!(next_error(&mut other).await, "unknown_type");
    drop(open.pop());
    let mut back = None;
    for _ in 0..50 {
        if let Ok(ws) = ws_from("127.0.0.1", addr).await {
            back = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back.is_some(), "a place came back after a connection closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_participants_and_viewers_are_capped() {
    let server = server_with(|c| {
        c.rooms.max_rooms = 2;
        c.rooms.max_participants = 2;
        c.rooms.max_viewers = 1;
    });
    let addr = server.addr();
    let mut conns = Vec::new();
    for (room, name) in [("a", "p1"), ("a", "p2"), ("b", "p3")] {
        let mut ws = ws_from("127.0.0.1", addr).await.unwrap();
        joined(&mut ws, room, name, "participant").await;
        conns.push(ws);
    }
    let mut extra = ws_from("127.0.0.1", addr).await.unwrap();
    send_text(&mut extra, &join_msg("c", "p4", "participant")).await;
    assert_eq!(next_error(&mut extra).await, "too_many_rooms");
    send_text(&mut extra, &join_msg("a", "p4", "participant")).await;
    assert_eq!(next_error(&mut extra).await, "room_full");
    joined(&mut extra, "a", "v1", "viewer").await;
    let mut viewer2 = ws_from("127.0.0.1", addr).await.unwrap();
    send_text(&mut viewer2, &join_msg("a", "v2", "viewer")).await;
    assert_eq!(next_error(&mut viewer2).await, "room_full");
    // The refused joins opened nothing and removed nobody.
    assert_eq!(server.hub.room_count(), 2);
    assert_eq!(server.hub.participant_count(), 3);
    // A room that empties makes room for another.
    drop(conns.pop());
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.hub.room_count() == 1 {
            ok = true;
            break;
        }
    }
    assert!(ok, "room b closed when its only participant left");
    joined(&mut viewer2, "c", "p5", "participant").await;
    drop((conns, extra, viewer2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_dropped_with_rate_limited_and_others_are_answered() {
    let server = server_with(|c| {
        c.limits.messages_per_second = 20;
        c.limits.message_burst = 40;
    });
    let addr = server.addr();
    let mut flood = ws_from("127.0.0.1", addr).await.unwrap();
    let mut calm = ws_from("127.0.0.2", addr).await.unwrap();
    for _ in 0..400 {
        send_text(&mut flood, r#"{"type":"dance"}"#).await;
    }
    // The calm client is answered at once while the flood is read.
    send_text(&mut calm, r#"{"type":"leave"}"#).await;
    assert_eq!(next_error(&mut calm).await, "not_joined");
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    while let Some(v) = next_msg(&mut flood, Duration::from_millis(1500)).await {
        *codes.entry(v["code"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    let answered = codes.get("unknown_type").copied().unwrap_or(0);
    assert!((40..=80).contains(&answered), "the burst and the rate are answered, the rest dropped: {codes:?}");
    assert!((1..=3).contains(&codes.get("rate_limited").copied().unwrap_or(0)), "told once a second, not once a message: {codes:?}");
    // The same connection, a moment later: served again.
    joined(&mut flood, "r", "back", "participant").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_per_address_are_rate_limited() {
    let server = server_with(|c| {
        c.limits.joins_per_second_per_ip = 1;
        c.limits.join_burst_per_ip = 3;
    });
    let addr = server.addr();
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(ws_from("127.0.0.1", addr).await.unwrap());
    }
    // Five joins at once from one address: the burst of three is taken.
    for (i, ws) in conns.iter_mut().enumerate() {
        send_text(ws, &join_msg("r", &format!("j{i}"), "viewer")).await;
    }
    let mut refused = Vec::new();
    for (i, ws) in conns.iter_mut().enumerate() {
        let v = next_msg(ws, Duration::from_secs(10)).await.expect("a reply to join");
        match v["type"].as_str() {
            Some("joined") => {}
            Some("error") => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                refused.push(i);
            }
            _ => panic!("{v}"),
        }
    }
    assert_eq!(refused.len(), 2, "three joins of the burst, two refused");
    let mut other = ws_from("127.0.0.2", addr).await.unwrap();
    joined(&mut other, "r", "elsewhere", "viewer").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    joined(&mut conns[refused[0]], "r", "again", "viewer").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sizes_candidates_and_names_are_bounded() {
    let server = server_with(|c| {
        c.limits.max_ice_candidates = 8;
        c.limits.message.name_chars = 8;
        c.limits.message.frame_bytes = 48 * 1024;
    });
    let addr = server.addr();
    let mut ws = ws_from("127.0.0.1", addr).await.unwrap();
    send_text(&mut ws, &join_msg("r", "Alexandria", "participant")).await;
    assert_eq!(next_error(&mut ws).await, "invalid_field", "a name over max_name_chars");
    for bidi in ["Ann\u{202E}evil", "Zero\u{200B}width"] {
        send_text(&mut ws, &join_msg("r", bidi, "participant")).await;
        assert_eq!(next_error(&mut ws).await, "invalid_field", "{bidi:?}");
    }
    joined(&mut ws, "r", "Ann", "participant").await;
    next_of_type(&mut ws, "offer", Duration::from_secs(10)).await.expect("an offer");
    let head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let big = format!("{head}{}", "a=x-padding:0123456789012345678901234567890123456789\r\n".repeat(700));
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": big}).to_string()).await;
    assert_eq!(next_error(&mut ws).await, "sdp_too_large", "{} bytes", big.len());
    let long = format!("{head}{}", "a=x\r\n".repeat(2_100));
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": long}).to_string()).await;
    assert_eq!(next_error(&mut ws).await, "sdp_too_large", "2,100 lines");
    for i in 0..8 {
        let c = format!("candidate:{i} 1 UDP 2122260223 127.0.0.1 {} typ host", 40000 + i);
        send_text(&mut ws, &serde_json::json!({"type": "ice", "candidate": c, "sdpMLineIndex": 0}).to_string()).await;
    }
    send_text(&mut ws, r#"{"type":"ice","candidate":"candidate:9 1 UDP 2122260223 127.0.0.1 40009 typ host","sdpMLineIndex":0}"#).await;
    assert_eq!(next_error(&mut ws).await, "too_many_candidates");
    // Still in the room: a mute is taken (the layout shows it).
    send_text(&mut ws, r#"{"type":"mute","audio":true}"#).await;
    let layout = next_of_type(&mut ws, "layout", Duration::from_secs(5)).await.expect("a layout after mute");
    assert_eq!(layout["tiles"][0]["audio_muted"], true, "{layout}");
    server.stop().await;
}
