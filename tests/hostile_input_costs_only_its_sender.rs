//! An MCU decodes everyone's media, so one bad input could cost everyone.
//! While an honest room of three bots runs, hostile clients replay
//! tests/corpus/hostile.tsv (signaling frames, SDP answers and ICE
//! candidates, most of them as participants of the honest room) plus
//! floods, a 12,000-line SDP, thousands of candidates, connections that
//! never speak or are reset mid-negotiation, and a participant sending
//! corrupted VP8 and Opus. Throughout, every honest bot keeps >= 25 fps;
//! at the end their colours are in their tiles, their mix-minus is intact
//! and `/healthz` answers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tessera::tools::hostile::fake_answer;
use tessera::tools::bot::{Bot, BotOptions};

const HONEST: [(&str, u32, f64); 3] = [("red", 0xff0000, 440.0), ("green", 0x00ff00, 660.0), ("blue", 0x0000ff, 880.0)];
const ROOM: &str = "honest";


/// Every message (type and code) until `quiet` passes without one, or the
/// connection ends (then "closed" is the last).
async fn drain(ws: &mut Ws, quiet: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match next_msg(ws, quiet).await {
            Some(v) => seen.push(format!("{}:{}", v["type"].as_str().unwrap_or("?"), v["code"].as_str().unwrap_or(""))),
            None => return seen,
        }
    }
}

/// A hostile participant of the honest room, its offer received.
/// A participant that joined, and the answer its transport takes (made up:
/// it never connects).
async fn hostile_participant(addr: std::net::SocketAddr, name: &str) -> (Ws, String) {
    let mut ws = ws_from("127.0.0.3", addr).await.expect("a hostile client may connect");
    send_text(&mut ws, &join_msg(ROOM, name, "participant")).await;
    let offer = next_of_type(&mut ws, "offer", Duration::from_secs(10)).await.unwrap_or_else(|| panic!("{name}: no offer"));
    (ws, fake_answer(offer["sdp"].as_str().unwrap_or_default()))
}

async fn leave(mut ws: Ws) {
    send_text(&mut ws, r#"{"type":"leave"}"#).await;
    let _ = futures::SinkExt::close(&mut ws).await;
}

/// Replay everything; returns a line per input saying what came back.
async fn replay(addr: std::net::SocketAddr) -> Vec<String> {
    let t0 = Instant::now();
    let mut log = Vec::new();
    // Connections that never speak, held through the replay.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(ws_from("127.0.0.4", addr).await.expect("a silent client may connect"));
    }
    for e in tessera::tools::hostile::corpus() {
        let seen = match e.stage {
            "frame" => {
                let mut ws = ws_from("127.0.0.3", addr).await.unwrap();
                send_text(&mut ws, e.frame).await;
                let seen = drain(&mut ws, Duration::from_millis(300)).await;
                assert!(seen.iter().any(|s| s.starts_with("error:")), "{}: no error came back: {seen:?}", e.name);
                seen
            }
            "answer" => {
                let (mut ws, _) = hostile_participant(addr, "hostile-answer").await;
                send_text(&mut ws, e.frame).await;
                let seen = drain(&mut ws, Duration::from_millis(400)).await;
                leave(ws).await;
                seen
            }
            "ice" => {
                let (mut ws, answer) = hostile_participant(addr, "hostile-ice").await;
                send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
                send_text(&mut ws, e.frame).await;
                let seen = drain(&mut ws, Duration::from_millis(300)).await;
                leave(ws).await;
                seen
            }
            other => panic!("unknown stage `{other}` in the corpus"),
        };
        log.push(format!("{:5.1}s {} {}: {}", t0.elapsed().as_secs_f64(), e.stage, e.name, seen.join(" ")));
    }

    // Built here: too big or too many for the file.
    let (mut ws, answer) = hostile_participant(addr, "hostile-lines").await;
    // Bare `\n` line ends: 12,000 lines fit in one frame.
    let sdp = format!("v=0\n{}", "a\n".repeat(12_000));
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": sdp}).to_string()).await;
    let seen = drain(&mut ws, Duration::from_millis(300)).await;
    assert!(seen.contains(&"error:sdp_too_large".to_string()), "12,000 lines: {seen:?}");
    log.push(format!("{:5.1}s a 12,000-line answer: {}", t0.elapsed().as_secs_f64(), seen.join(" ")));
    // Thousands of candidates after the answer.
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await;
    for i in 0..3_000 {
        let c = format!("candidate:{i} 1 UDP 2122260223 127.0.0.1 {} typ host", 10_000 + i % 50_000);
        send_text(&mut ws, &serde_json::json!({"type": "ice", "candidate": c, "sdpMLineIndex": i % 2}).to_string()).await;
    }
    let seen = drain(&mut ws, Duration::from_millis(500)).await;
    assert!(seen.iter().any(|s| s == "error:too_many_candidates" || s == "error:rate_limited"), "3,000 candidates: {:?}", &seen[..seen.len().min(5)]);
    log.push(format!("{:5.1}s 3,000 candidates: {} replies", t0.elapsed().as_secs_f64(), seen.len()));
    // Out of order: a second join, a second answer, ICE after leaving.
    send_text(&mut ws, &join_msg(ROOM, "again", "participant")).await;
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await;
    send_text(&mut ws, r#"{"type":"leave"}"#).await;
    send_text(&mut ws, r#"{"type":"ice","candidate":"candidate:1 1 UDP 1 127.0.0.1 9 typ host","sdpMLineIndex":0}"#).await;
    let seen = drain(&mut ws, Duration::from_millis(300)).await;
    log.push(format!("{:5.1}s out of order: {}", t0.elapsed().as_secs_f64(), seen.join(" ")));
    drop(ws);
    // A flood of frames.
    let mut ws = ws_from("127.0.0.5", addr).await.unwrap();
    for _ in 0..5_000 {
        send_text(&mut ws, r#"{"type":"set_quality","quality":"low"}"#).await;
    }
    let seen = drain(&mut ws, Duration::from_millis(500)).await;
    assert!(seen.iter().any(|s| s == "error:rate_limited"), "a flood is rate limited");
    log.push(format!("{:5.1}s a flood of 5,000 frames: {} replies", t0.elapsed().as_secs_f64(), seen.len()));
    // Connections reset (TCP RST) mid-negotiation.
    for _ in 0..4 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        // Linger 0 is what makes the close a reset (and blocking on drop is harmless here).
        #[allow(deprecated)]
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        let tcp = sock.connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
        send_text(&mut ws, &join_msg(ROOM, "reset", "participant")).await;
        next_of_type(&mut ws, "offer", Duration::from_secs(10)).await.expect("offer");
        drop(ws); // linger 0: the kernel sends RST
    }
    log.push(format!("{:5.1}s 4 connections reset after the offer", t0.elapsed().as_secs_f64()));
    drop(silent);
    log
}

/// Frames received by each bot, sampled every 500 ms until `stop`.
async fn sample(bots: &[Bot], stop: &AtomicBool) -> Vec<(Instant, Vec<u64>)> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        out.push((Instant::now(), bots.iter().map(|b| b.stats().frames).collect()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.push((Instant::now(), bots.iter().map(|b| b.stats().frames).collect()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_costs_only_its_sender() {
    let server = start_server(media_config());
    let (url, addr) = (server.ws_url(), server.addr());
    let bots = bots_receiving(&url, ROOM, &HONEST).await;
    assert!(bots[0].wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(3)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let corrupt = Bot::connect(BotOptions { corrupt_media: true, ..bot_options(&url, ROOM, "corrupt", 0xffffff, 1200.0) }).await.expect("the corrupting bot connects");
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (log, samples) = tokio::join!(
        async {
            let log = replay(addr).await;
            stop.store(true, Ordering::Relaxed);
            log
        },
        sample(&bots, &stop)
    );
    let took = started.elapsed();
    eprintln!("replayed {} inputs in {took:?}:\n{}", log.len(), log.join("\n"));
    assert!(log.len() >= 60, "a corpus of at least 60 hostile inputs");

    // >= 25 fps in every 2-second window, for every honest bot.
    let mut worst = f64::MAX;
    for w in samples.windows(5) {
        let (t0, f0) = &w[0];
        let (t1, f1) = &w[4];
        let secs = t1.duration_since(*t0).as_secs_f64();
        for (i, (a, b)) in f0.iter().zip(f1).enumerate() {
            let fps = (b - a) as f64 / secs;
            worst = worst.min(fps);
            assert!(fps >= 25.0, "{} received {fps:.1} fps between {:?} and {:?} of the replay", HONEST[i].0, t0.duration_since(started), t1.duration_since(started));
        }
    }
    eprintln!("worst 2-second window of the honest bots: {worst:.1} fps");

    // The corrupting sender costs only itself: it is in the room or gone,
    // and the honest tiles and mixes are as they should be.
    eprintln!("corrupting bot: errors {:?}", corrupt.errors());
    // While it is still in the room: its garbage Opus is mixed like any
    // microphone (the server cannot tell noise from garbage), and decodes
    // to noise far under the others' voices: 2 kHz is nobody's tone; -40 to
    // -58 dBFS in the runs measured, against tones at -13, so the bar is
    // 20 dB under the quietest honest tone.
    for (i, b) in bots.iter().enumerate() {
        let noise = b.level_db(2000.0).expect("audio");
        let mut quietest = f64::MAX;
        for (j, h) in HONEST.iter().enumerate() {
            if j != i {
                let db = b.level_db(h.2).expect("audio");
                assert!(db > -40.0, "{} still hears {}", HONEST[i].0, h.0);
                quietest = quietest.min(db);
            }
        }
        eprintln!("{} with the corrupting sender in the room: 2 kHz {noise:.1} dBFS, quietest honest tone {quietest:.1} dBFS", HONEST[i].0);
        assert!(
            noise <= quietest - 20.0,
            "{} hears {noise:.1} dBFS of noise at 2 kHz from the corrupting sender, the others' tones at {quietest:.1} dBFS",
            HONEST[i].0
        );
    }
    corrupt.leave().await;
    assert!(bots[0].wait_until(Duration::from_secs(10), |b| b.layout().map(|l| l.1.len()) == Some(3)).await, "back to the three honest tiles");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, b) in bots.iter().enumerate() {
        let seen = b.tiles_seen();
        for (j, b2) in bots.iter().enumerate() {
            let id = b2.id().unwrap();
            let tile = seen.iter().find(|t| t.id == id).expect("a tile for every honest bot");
            if i != j {
                assert!(color_close(tile.center_rgb, HONEST[j].1, 48), "{} sees {:?} in {}'s tile", HONEST[i].0, tile.center_rgb, HONEST[j].0);
            }
        }
        let own = b.level_db(HONEST[i].2).expect("audio");
        for (j, (_, _, tone)) in HONEST.iter().enumerate() {
            if i != j {
                let other = b.level_db(*tone).expect("audio");
                assert!(other > -40.0 && own <= other - 20.0, "{}: own {own:.1} dBFS, {tone} Hz {other:.1} dBFS", HONEST[i].0);
            }
        }
        assert!(b.errors().is_empty(), "{}: {:?}", HONEST[i].0, b.errors());
    }
    let (status, body) = http(addr, "GET", "/healthz", "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["participants"], 3, "only the honest ones are left: {v}");
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
