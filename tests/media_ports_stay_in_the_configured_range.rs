//! `--udp-ports MIN-MAX` keeps every media socket of the server inside the
//! range (one firewall rule opens them all); a peer that finds the range
//! full is told so at once (`media_failed`) instead of waiting for its ICE
//! to time out, the others keep their media, and ports come back when
//! peers leave.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::procinfo::Proc;

/// Four ports: a room of four fills them.
const RANGE: (u16, u16) = (47300, 47303);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_ports_stay_in_the_configured_range() {
    init_tracing();
    let server = ChildServer::spawn(&["--udp-ports", &format!("{}-{}", RANGE.0, RANGE.1)]);
    let proc = Proc(Some(server.pid));
    assert!(proc.udp_ports().expect("the server's sockets").is_empty(), "no media socket before anyone joins");

    let colors = [0xff0000, 0x00ff00, 0x0000ff, 0xffff00];
    let mut bots = Vec::new();
    for (i, c) in colors.iter().enumerate() {
        bots.push(bot(&server.url, "ports", &format!("p{i}"), *c, 440.0 + 110.0 * i as f64).await);
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(15)).await;
    }
    let all: Vec<u16> = (RANGE.0..=RANGE.1).collect();
    assert_eq!(proc.udp_ports().expect("the server's sockets"), all, "one socket per peer, every one in the range");

    // The range is full: the fifth peer hears it from the server, and the
    // four keep their media.
    let frames: Vec<u64> = bots.iter().map(|b| b.stats().frames).collect();
    let late = bot(&server.url, "ports", "late", 0xffffff, 990.0).await;
    let told = late.wait_until(Duration::from_secs(10), |c| c.errors().iter().any(|(code, _)| code == "media_failed")).await;
    assert!(told, "the fifth peer got no media_failed: {:?}", late.errors());
    let (_, message) = late.errors().into_iter().find(|(code, _)| code == "media_failed").expect("media_failed");
    assert!(message.contains("port range"), "{message}");
    assert!(!late.is_connected());
    late.leave().await;
    for (b, f0) in bots.iter().zip(frames) {
        // (str0m tells at once, before a second of frames has passed.)
        let flowing = b.wait_until(Duration::from_secs(5), |b| b.stats().frames > f0 + 30).await;
        assert!(flowing, "a member's media stalled while the range was full");
        assert!(fps_over(b, 1.0).await >= 20.0);
    }

    // Ports come back: after one leaves, a newcomer connects on its port.
    let gone = bots.pop().expect("four bots");
    gone.leave().await;
    let freed = wait_for(Duration::from_secs(10), || proc.udp_ports().map(|p| p.len() == 3).unwrap_or(false)).await;
    assert!(freed, "a leaving peer's port was not released: {:?}", proc.udp_ports());
    let again = bot(&server.url, "ports", "again", 0x00ffff, 550.0).await;
    wait_receiving(&again, Duration::from_secs(15)).await;
    assert_eq!(proc.udp_ports().expect("the server's sockets"), all);
    again.leave().await;
    for b in bots {
        b.leave().await;
    }
}

async fn wait_for(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}
