//! Webhooks: with `[webhook] url`, the room's life is POSTed there as
//! signed JSON, in order: room started, participant joined, recording
//! status (started, active, complete), participant left, room finished.
//! The receiver here is a plain HTTP listener that refuses the first
//! request (503): that event comes again, and nothing after it is lost or
//! reordered.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hmac::Mac;
use tessera::server::{self, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "webhook-secret-0123456789";

/// One request as received: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Hook {
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    raw: Vec<u8>,
    answered: u16,
}

impl Hook {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A listener that records every request; the first gets 503, the rest 200.
async fn receiver() -> (u16, Arc<parking_lot::Mutex<Vec<Hook>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<parking_lot::Mutex<Vec<Hook>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let (head_end, length) = loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..i]).to_ascii_lowercase();
                    let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while data.len() < start + length {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&data[..start]).to_string();
            let headers = head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
            let raw = data[start..].to_vec();
            let answered = if seen.lock().is_empty() { 503 } else { 200 };
            let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
            seen.lock().push(Hook { headers, body, raw, answered });
            let _ = s.write_all(format!("HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_report_the_room() {
    init_tracing();
    let (port, got) = receiver().await;
    let dir = std::env::temp_dir().join(format!("tessera-hook-rec-{}", std::process::id()));
    let mut config = listening_on("127.0.0.1:0");
    config.rooms.recordings_dir = dir.clone();
    config.webhook = Some(tessera::config::Webhook { url: format!("http://127.0.0.1:{port}/hook?from=tessera"), secret: SECRET.into() });
    let server = server::start(ServerConfig { config, media: media_config(), ..ServerConfig::default() }).expect("server starts");
    let (url, addr) = (server.ws_url(), server.addr());
    let b = bot(&url, "hooks", "Ada", 0xff0000, 440.0).await;
    wait_receiving(&b, Duration::from_secs(10)).await;
    let (status, body) = http(addr, "POST", "/api/rooms/hooks/recordings", "").await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = http(addr, "DELETE", &format!("/api/rooms/hooks/recordings/{id}"), "").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.leave().await;

    let t0 = std::time::Instant::now();
    while !got.lock().iter().any(|h| h.body["event"] == "room_finished") {
        assert!(t0.elapsed() < Duration::from_secs(15), "no room_finished: {:#?}", got.lock().iter().map(|h| h.body.clone()).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hooks = got.lock().clone();
    // Every request is signed over its time and body, as JSON.
    for h in &hooks {
        assert_eq!(h.header("content-type"), Some("application/webhook+json"));
        let sig = h.header("tessera-signature").expect("signed");
        let (t, v1) = sig.split_once(",v1=").and_then(|(t, v)| Some((t.strip_prefix("t=")?, v))).expect("t=…,v1=…");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&h.raw);
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v1, want, "the signature of {}", h.body);
        assert!(h.body["id"].as_str().is_some_and(|i| i.starts_with("EV_")) && h.body["created_at"].as_u64().is_some(), "{}", h.body);
    }
    // The refused first event came again; then each event once, in order.
    assert_eq!(hooks[0].answered, 503);
    assert_eq!(hooks[0].body, hooks[1].body, "the refused event is sent again");
    let delivered: Vec<&Hook> = hooks.iter().filter(|h| h.answered == 200).collect();
    let ids: Vec<&str> = delivered.iter().map(|h| h.body["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "each event once");
    let events: Vec<String> = delivered
        .iter()
        .map(|h| match h.body["event"].as_str().unwrap() {
            "recording_updated" => format!("recording {}", h.body["recording"]["status"].as_str().unwrap()),
            "participant_joined" | "participant_left" => format!("{} {} {}", h.body["event"].as_str().unwrap(), h.body["participant"]["name"].as_str().unwrap(), h.body["participant"]["role"].as_str().unwrap()),
            e => e.to_string(),
        })
        .collect();
    let want_order = ["room_started", "participant_joined Ada participant", "recording starting", "recording complete", "participant_left Ada participant", "room_finished"];
    let mut at = 0;
    for e in &events {
        if want_order.get(at) == Some(&e.as_str()) {
            at += 1;
        }
    }
    assert_eq!(at, want_order.len(), "events in order {want_order:?}: got {events:?}");
    assert!(events.iter().filter(|e| e.starts_with("recording")).all(|e| ["recording starting", "recording active", "recording ending", "recording complete"].contains(&e.as_str())), "{events:?}");
    let joined = delivered.iter().find(|h| h.body["event"] == "participant_joined").unwrap();
    assert_eq!(joined.body["room"]["name"], "hooks");
    assert_eq!(joined.body["room"]["num_participants"], 1, "{}", joined.body);
    let _ = std::fs::remove_dir_all(&dir);
}
