//! A vanished client leaves the grid on its own, with the default
//! settings (ping every 5 s, idle_timeout 15 s, media_timeout 15 s):
//! * a WebSocket that stops answering (no pong, no message): closed with
//!   `idle_timeout` and its participant removed;
//! * a participant whose media stops while its WebSocket lives (a frozen
//!   sender), and one whose media never starts: removed with
//!   `media_timeout`.
//! Each within 20 s of going silent, and not before 14 s; the honest
//! participant stays throughout.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use tessera::tools::hostile::fake_answer;
use tessera::tools::bot::{Bot, BotOptions};


fn tile_ids(b: &Bot) -> Vec<String> {
    b.layout().map(|(_, tiles)| tiles.into_iter().map(|t| t.id).collect()).unwrap_or_default()
}

/// A participant on a raw TCP socket: the upgrade and a masked `join`
/// written by hand, the `joined` read; then nothing more is written.
async fn silent_participant(addr: std::net::SocketAddr, room: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let payload = join_msg(room, "vanished", "participant").into_bytes();
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        assert!(Instant::now() < deadline, "no joined: {}", String::from_utf8_lossy(&seen));
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        seen.extend_from_slice(&buf[..n]);
        // `{"type":"joined","id":"p7",...}` comes first.
        let text = String::from_utf8_lossy(&seen);
        if let Some(rest) = text.split_once(r#""type":"joined","id":""#).map(|(_, r)| r) {
            if let Some((id, _)) = rest.split_once('"') {
                break id.to_string();
            }
        }
    };
    (s, id)
}

/// Everything left on the socket until the server closes it (10 s at most).
async fn read_to_end(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(matches!(r, Ok(Ok(_))), "the server closed the socket: {r:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peers_leave_the_room_within_20_seconds() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let honest = bot(&url, "d", "honest", 0xff0000, 440.0).await;
    wait_receiving(&honest, Duration::from_secs(10)).await;

    // Joins, then never reads or writes again: no pong ever goes back (a
    // raw socket: a WebSocket library would answer pings when read).
    let (mut mute_socket, vanished) = silent_participant(server.addr(), "d").await;
    let vanished_at = Instant::now();

    // Answers, keeps its WebSocket alive, but its media never arrives.
    let mut no_media = ws_from("127.0.0.1", server.addr()).await.unwrap();
    send_text(&mut no_media, &join_msg("d", "never-sends", "participant")).await;
    let never = next_of_type(&mut no_media, "joined", Duration::from_secs(10)).await.expect("joined")["id"].as_str().unwrap().to_string();
    let offer = next_of_type(&mut no_media, "offer", Duration::from_secs(10)).await.expect("offer");
    let never_at = Instant::now();
    let answer = fake_answer(offer["sdp"].as_str().unwrap_or_default());
    send_text(&mut no_media, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await;
    // Keep reading (which answers the server's pings) until its error.
    let reader = tokio::spawn(async move {
        let e = next_of_type(&mut no_media, "error", Duration::from_secs(30)).await;
        (e, no_media)
    });

    // Sends for 3 s, then freezes; its WebSocket (and pongs) go on.
    let frozen_opts = BotOptions { media_for: Some(Duration::from_secs(3)), ..bot_options(&url, "d", "frozen", 0x0000ff, 660.0) };
    let frozen = Bot::connect(frozen_opts).await.expect("frozen bot connects");
    assert!(frozen.wait_until(Duration::from_secs(10), |b| b.id().is_some()).await, "the frozen bot joined");
    let frozen_id = frozen.id().expect("joined");
    let frozen_at = Instant::now() + Duration::from_secs(3);

    assert!(honest.wait_until(Duration::from_secs(10), |b| tile_ids(b).len() == 4).await, "four tiles: {:?}", tile_ids(&honest));
    // Watch the honest participant's layout for 25 s.
    let mut gone: BTreeMap<String, Instant> = BTreeMap::new();
    let watch_until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < watch_until && gone.len() < 3 {
        let ids = tile_ids(&honest);
        for id in [&vanished, &never, &frozen_id] {
            if !ids.contains(id) {
                gone.entry(id.clone()).or_insert_with(Instant::now);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = |id: &String, since: Instant| gone.get(id).map(|t| t.saturating_duration_since(since));
    for (what, id, since) in [("a silent WebSocket", &vanished, vanished_at), ("media that never started", &never, never_at), ("media that stopped", &frozen_id, frozen_at)] {
        let took = after(id, since).unwrap_or_else(|| panic!("{what}: still in the room after 25 s"));
        assert!(took >= Duration::from_secs(14) && took <= Duration::from_secs(20), "{what}: removed {took:?} after going silent (expected 15 to 20 s)");
    }
    assert_eq!(tile_ids(&honest), vec![honest.id().unwrap()], "the honest participant stays, alone");
    assert!(honest.errors().is_empty(), "{:?}", honest.errors());

    let (err, _ws) = reader.await.unwrap();
    assert_eq!(err.expect("the no-media client is told")["code"], "media_timeout");
    assert!(frozen.errors().iter().any(|(code, _)| code == "media_timeout"), "the frozen bot is told: {:?}", frozen.errors());
    // The silent socket was told and closed by the server: what it never
    // read ends with the error, a close frame, and the end of the stream.
    let rest = read_to_end(&mut mute_socket).await;
    assert!(rest.windows(12).any(|w| w == b"idle_timeout"), "the silent WebSocket was told idle_timeout");
    assert_eq!(server.hub.participant_count(), 1);
    frozen.leave().await;
    honest.leave().await;
    server.stop().await;
}
