//! `--announce-ip` for a server behind a 1:1 NAT: the candidates the server
//! trickles carry the announced public address, never the local one it
//! binds (checked on the wire, with a plain WebSocket client; nothing is
//! sent to the announced address).

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use tessera::protocol::{ClientMessage, Role, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_address_is_in_the_candidates() {
    init_tracing();
    let server = ChildServer::spawn(&["--announce-ip", "203.0.113.7"]);
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
        if offer.is_some() && !candidates.is_empty() {
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
    assert!(!candidates.is_empty(), "no candidate trickled");
    for c in &candidates {
        let addr = c.split(' ').nth(4).unwrap_or("");
        assert_eq!(addr, "203.0.113.7", "a candidate with another address: {c}");
    }
    let offer = offer.unwrap_or_default();
    assert!(!offer.contains("127.0.0.1 "), "the offer names the local address: {offer}");
}
