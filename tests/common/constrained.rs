//! The constrained-link test's body, shared by the test on each transport
//! (`constrained_link_moves_to_the_low_rung*`):
//!
//! Per-receiver congestion control on a real, shaped link: a bot in its
//! own network namespace whose downlink is limited to 250 kbit/s (tbf) is
//! moved to the low rung within 5 s and then receives ≥ 12 fps with < 3 %
//! loss, while an unconstrained bot in the same room stays on the high
//! rung. Raising the limit to 5 Mbit/s brings it back to the high rung
//! within 20 s, with no more than one switch per 5 s.
//!
//! The bot sits behind a router namespace whose interface towards it is
//! shaped with tbf. Needs root (network namespaces, veth, tc); without them
//! it fails with the reason instead of passing.

use std::time::{Duration, Instant};

use super::netns::{Netns, NsBot};
use super::*;
use tessera::config::Transport;
use tessera::ladder::Rung;
use tessera::media::MediaConfig;
use tessera::server::{self, ServerConfig};
use tessera::tools::bot::{Bot, BotOptions};

fn rung_of(r: &serde_json::Value) -> Option<String> {
    r["qualities"].as_array()?.last()?["rung"].as_str().map(str::to_string)
}

/// The test's body, with the server's participants on `transport`.
pub async fn constrained_link_moves_to_the_low_rung_on(transport: Transport) {
    let ns = Netns::create().unwrap_or_else(|e| {
        panic!("this test needs network namespaces, veth and tc (run as root with iproute2 installed): {e}")
    });
    // A 640x360 room with a ladder whose high rung cannot pass 250 kbit/s
    // and whose low rung can.
    let ladder = vec![
        Rung { name: "high".into(), width: 640, height: 360, fps: 30, bitrate: 800_000 },
        Rung { name: "medium".into(), width: 320, height: 180, fps: 30, bitrate: 300_000 },
        Rung { name: "low".into(), width: 160, height: 90, fps: 15, bitrate: 100_000 },
    ];
    let network = tessera::config::Network { ice_addresses: vec![ns.host_ip.clone()], ..Default::default() };
    let media = MediaConfig { ladder, network, transport, ..media_config() };
    init_tracing();
    let server = server::start(ServerConfig { config: listening_on(&format!("{}:0", ns.host_ip)), media, ..ServerConfig::default() })
        .expect("server starts");
    let url = server.ws_url();

    let free = Bot::connect(BotOptions { decode: false, ice_addresses: vec![ns.host_ip.clone()], ..busy_bot(&url, "weak", "free", 440.0) })
        .await
        .expect("free bot connects");
    let weak = NsBot::start(&ns, &url, "weak", &["--no-decode"]);
    let last = || weak.report();
    // Waits with the async sleep: this test's tokio workers also run the server.
    async fn wait_until(last: &dyn Fn() -> serde_json::Value, pred: &dyn Fn(&serde_json::Value) -> bool, secs: u64) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = last();
            if pred(&r) {
                return Some(r);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let wait_for = |pred: &'static dyn Fn(&serde_json::Value) -> bool, secs: u64| wait_until(&last, pred, secs);

    // Both start on the high rung.
    wait_receiving(&free, Duration::from_secs(15)).await;
    let started = wait_for(&|r| r["frames"].as_u64().unwrap_or(0) > 30 && rung_of(r).as_deref() == Some("high"), 15).await;
    assert!(started.is_some(), "the namespaced bot never got the high rung: {}", last());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 250 kbit/s: the low rung within 5 s.
    ns.limit("250kbit", "add").expect("tc tbf");
    let limited = Instant::now();
    let low = wait_for(&|r| rung_of(r).as_deref() == Some("low"), 5).await;
    let stats = room_stats(&server, "weak").await;
    assert!(low.is_some(), "not on the low rung 5 s after the limit: {}\nserver: {stats}", last());
    eprintln!("on the low rung after {:.1} s", limited.elapsed().as_secs_f64());

    // The next 10 s (from the 5 s deadline on): at least 12 fps, less
    // than 3 % loss, still low.
    tokio::time::sleep((limited + Duration::from_secs(5)).saturating_duration_since(Instant::now())).await;
    let a = last();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let b = last();
    let b_at = Instant::now();
    let n = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let secs = (n(&b, "at_ms") - n(&a, "at_ms")) / 1000.0;
    let fps = (n(&b, "frames") - n(&a, "frames")) / secs;
    let got = n(&b, "video_packets") - n(&a, "video_packets");
    let lost = n(&b, "video_lost") - n(&a, "video_lost");
    let loss = lost / (got + lost).max(1.0);
    let kbps = (n(&b, "video_bytes") - n(&a, "video_bytes")) * 8.0 / 1000.0 / secs;
    eprintln!(
        "constrained: {fps:.1} fps, {:.2} % loss, {kbps:.0} kbps video (frames {} -> {}, {} -> {} ms)",
        loss * 100.0,
        n(&a, "frames"),
        n(&b, "frames"),
        n(&a, "at_ms"),
        n(&b, "at_ms")
    );
    eprintln!("at the end of the window: {} fps over 3 s, {}x{}", b["fps_recent"], b["width"], b["height"]);
    assert!(fps >= 12.0, "only {fps:.1} fps on the low rung: {b}");
    assert!(loss < 0.03, "{:.1} % loss on the low rung: {b}", loss * 100.0);
    assert_eq!(rung_of(&b).as_deref(), Some("low"), "left the low rung while limited: {b}");

    // The unconstrained bot never left the high rung.
    let q = free.qualities();
    assert!(!q.is_empty(), "the unconstrained bot was never told its rung");
    assert!(q.iter().all(|q| q.rung == "high"), "the unconstrained bot was moved: {q:?}");

    // 5 Mbit/s: back to high within 20 s, at most one switch per 5 s.
    ns.limit("5mbit", "change").expect("tc tbf change");
    let raised = Instant::now();
    let high = wait_for(&|r| rung_of(r).as_deref() == Some("high"), 20).await;
    assert!(high.is_some(), "not back on the high rung 20 s after the limit rose: {}\nserver: {}", last(), room_stats(&server, "weak").await);
    eprintln!("back on the high rung after {:.1} s", raised.elapsed().as_secs_f64());
    let raised_at = n(&b, "at_ms") + raised.duration_since(b_at).as_millis() as f64;
    let events: Vec<f64> = last()["qualities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|q| q["at_ms"].as_f64().unwrap_or(0.0))
        .filter(|t| *t >= raised_at - 5000.0)
        .collect();
    for w in events.windows(2) {
        assert!(w[1] - w[0] >= 5000.0, "two switches within 5 s: {}", last()["qualities"]);
    }
    let q = free.qualities();
    assert!(!q.is_empty() && q.iter().all(|q| q.rung == "high"), "{q:?}");

    drop(weak);
    free.leave().await;
}
