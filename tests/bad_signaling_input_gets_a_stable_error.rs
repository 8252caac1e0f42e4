//! Bad input on the signaling socket gets an `error` with a stable code and
//! the connection stays usable; frames over 64 KiB close it with 1009.
//! Malformed input never takes the server down (corpus replay at the end).

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use common::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a reply in time").expect("open").expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("server sends JSON");
        }
    }
}

/// The next message of type `ty`, skipping others (layout, offer, ice
/// arrive asynchronously once joined).
async fn next_of(ws: &mut Ws, ty: &str, seen: &mut Vec<serde_json::Value>) -> serde_json::Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == ty {
            return v;
        }
        seen.push(v);
    }
}

/// Send `text`, expect an error with `code`.
async fn expect_error(ws: &mut Ws, text: &str, code: &str) {
    ws.send(Message::Text(text.to_string())).await.unwrap();
    let v = next_of(ws, "error", &mut Vec::new()).await;
    assert_eq!(v["type"], "error", "for {text}: {v}");
    assert_eq!(v["code"], code, "for {text}: {v}");
    assert!(v["message"].as_str().map(|m| !m.is_empty()).unwrap_or(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_input_gets_a_stable_error() {
    let server = start_server(media_config());
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.unwrap();

    expect_error(&mut ws, "{not json", "malformed_json").await;
    expect_error(&mut ws, "[1,2]", "malformed_json").await;
    expect_error(&mut ws, r#"{"room":"r"}"#, "missing_type").await;
    expect_error(&mut ws, r#"{"type":"dance"}"#, "unknown_type").await;
    expect_error(&mut ws, r#"{"type":"join","room":"r"}"#, "missing_field").await;
    expect_error(&mut ws, r#"{"type":"join","room":"a b","name":"x"}"#, "invalid_field").await;
    expect_error(&mut ws, r#"{"type":"join","room":"r","name":7}"#, "invalid_field").await;
    expect_error(&mut ws, r#"{"type":"answer","sdp":"v=0"}"#, "invalid_sdp").await;
    expect_error(&mut ws, r#"{"type":"ice","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMLineIndex":0}"#, "not_joined").await;
    expect_error(&mut ws, r#"{"type":"leave"}"#, "not_joined").await;
    ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "unsupported_frame");

    // Still usable: join works and an offer follows.
    ws.send(Message::Text(r#"{"type":"join","room":"r","name":"probe"}"#.into())).await.unwrap();
    let joined = next_json(&mut ws).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["room"], "r");
    expect_error(&mut ws, r#"{"type":"join","room":"r","name":"again"}"#, "already_joined").await;
    expect_error(&mut ws, r#"{"type":"ice","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMLineIndex":7}"#, "unknown_mline").await;
    // ICE before the answer is buffered, not refused.
    ws.send(Message::Text(r#"{"type":"ice","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 9 typ host","sdpMLineIndex":0}"#.into())).await.unwrap();
    let fake_answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\n";
    let mut seen = Vec::new();
    let offer = next_of(&mut ws, "offer", &mut seen).await;
    let sdp = offer["sdp"].as_str().expect("offer sdp");
    assert!(sdp.contains("m=audio") && sdp.contains("OPUS") && sdp.contains("m=video") && sdp.contains("VP8"), "{sdp}");
    let audio_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:sha-256 00\r\n";
    expect_error(&mut ws, &serde_json::json!({"type":"answer","sdp":audio_only}).to_string(), "invalid_sdp").await;
    let no_fp = fake_answer.replace("a=fingerprint:sha-256 00\r\n", "");
    expect_error(&mut ws, &serde_json::json!({"type":"answer","sdp":no_fp}).to_string(), "invalid_sdp").await;

    // Frames over 64 KiB close the connection with 1009.
    let big = format!(r#"{{"type":"join","room":"r","name":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send(Message::Text(big)).await.unwrap();
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Ok(Message::Close(Some(f))) = m {
            code = Some(f.code);
            break;
        }
    }
    assert_eq!(code, Some(CloseCode::Size), "close code 1009 expected");

    // The server is still up, and a new connection works.
    let (mut ws2, _) = tokio_tungstenite::connect_async(server.ws_url()).await.unwrap();
    expect_error(&mut ws2, "{}", "missing_type").await;
    server.stop().await;
}

/// Answer before offer: a client that answers immediately after `join`,
/// before the server's offer reached it, gets `answer_before_offer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_before_offer_is_refused() {
    let server = start_server(media_config());
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.unwrap();
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\n";
    // Pipelined in one write burst: join, then the answer.
    ws.send(Message::Text(r#"{"type":"join","room":"early","name":"eager"}"#.into())).await.unwrap();
    ws.send(Message::Text(serde_json::json!({"type":"answer","sdp":answer}).to_string())).await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    codes.push(v["code"].as_str().unwrap().to_string());
                }
            }
            _ => break,
        }
    }
    // The answer arrived before this connection was sent an offer (making
    // one takes milliseconds: a DTLS certificate and negotiation).
    assert_eq!(codes.first().map(String::as_str), Some("answer_before_offer"), "codes: {codes:?}");
    server.stop().await;
}

/// Replay of a corpus of hostile frames: every one gets an error reply and
/// the connection and server survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_never_breaks_the_server() {
    let server = start_server(media_config());
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.unwrap();
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/signaling.jsonl")).unwrap();
    let mut n = 0;
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        ws.send(Message::Text(line.to_string())).await.unwrap();
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "error", "corpus line {line} -> {v}");
        n += 1;
    }
    assert!(n >= 20, "corpus too small");
    ws.send(Message::Text(r#"{"type":"join","room":"after","name":"ok"}"#.into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "joined");
    server.stop().await;
}
