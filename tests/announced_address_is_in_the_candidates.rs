//! `--announce-ip` for a server behind a 1:1 NAT: the candidates the server
//! gives (trickled on webrtcbin, in the offer on str0m) carry the announced
//! public address, never the local one it binds (checked on the wire, with
//! a plain WebSocket client; nothing is sent to the announced address).

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use tessera::protocol::{ClientMessage, Role, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_address_is_in_the_candidates() {
    announced_address_is_in_the_candidates_on("webrtcbin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_address_is_in_the_candidates_on_str0m() {
    announced_address_is_in_the_candidates_on("str0m").await;
}

async fn announced_address_is_in_the_candidates_on(transport: &str) {
    init_tracing();
    let server = ChildServer::spawn(&["--announce-ip", "203.0.113.7", "--transport", transport]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str()).await.expect("websocket");
    let join = ClientMessage::Join { room: "nat".into(), name: "probe".into(), role: Role::Participant, quality: "auto".into(), share_of: None, share_key: None };
    ws.send(Message::Text(join.to_json())).await.expect("join sent");
    let mut candidates = Vec::new();
    let mut offer = None;
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout_at(end, ws.next()).await {
        match serde_json::from_str::<ServerMessage>(&t).expect("a server message") {
            ServerMessage::Offer { sdp } => offer = Some(sdp),
            ServerMessage::Ice { candidate, .. } if !candidate.is_empty() => candidates.push(candidate),
            _ => {}
        }
        let in_offer = offer.as_deref().is_some_and(|o| o.contains("a=candidate:"));
        if offer.is_some() && (!candidates.is_empty() || in_offer) {
            // Give the agent a moment for any further candidate.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                if let Ok(ServerMessage::Ice { candidate, .. }) = serde_json::from_str::<ServerMessage>(&t) {
                    candidates.push(candidate);
                }
            }
            break;
        }
    }
    assert!(offer.is_some(), "no offer");
    let offer = offer.unwrap_or_default();
    candidates.extend(offer.lines().filter_map(|l| l.trim().strip_prefix("a=")).filter(|l| l.starts_with("candidate:")).map(str::to_string));
    assert!(!candidates.is_empty(), "no candidate, trickled or in the offer:\n{offer}");
    for c in &candidates {
        let addr = c.split(' ').nth(4).unwrap_or("");
        assert_eq!(addr, "203.0.113.7", "a candidate with another address: {c}");
    }
    assert!(!offer.contains("127.0.0.1 "), "the offer names the local address: {offer}");
}
