//! `--udp-ports MIN-MAX` keeps every media socket of the server inside the
//! range (one firewall rule opens them all), and a peer that finds the
//! range full is told so at once (`media_failed`) instead of waiting for
//! its ICE to time out; the ports come back when peers leave.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::procinfo::Proc;

const RANGE: (u16, u16) = (47300, 47301);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_ports_stay_in_the_configured_range() {
    init_tracing();
    let server = ChildServer::spawn(&["--udp-ports", &format!("{}-{}", RANGE.0, RANGE.1)]);
    let proc = Proc(Some(server.pid));
    assert!(proc.udp_ports().expect("the server's sockets").is_empty(), "no media socket before anyone joins");

    let a = bot(&server.url, "ports", "a", 0xff0000, 440.0).await;
    let b = bot(&server.url, "ports", "b", 0x0000ff, 660.0).await;
    wait_receiving(&a, Duration::from_secs(10)).await;
    wait_receiving(&b, Duration::from_secs(10)).await;
    let ports = proc.udp_ports().expect("the server's sockets");
    assert_eq!(ports, vec![RANGE.0, RANGE.1], "one socket per peer, every one in the range");

    // The range is full: the third peer hears it from the server.
    let c = bot(&server.url, "ports", "c", 0x00ff00, 880.0).await;
    let told = c.wait_until(Duration::from_secs(10), |c| c.errors().iter().any(|(code, _)| code == "media_failed")).await;
    assert!(told, "the third peer got no media_failed: {:?}", c.errors());
    let (_, message) = c.errors().into_iter().find(|(code, _)| code == "media_failed").expect("media_failed");
    assert!(message.contains("port range"), "{message}");
    assert!(!c.is_connected());
    c.leave().await;
    assert!(a.stats().frames > 0 && b.stats().frames > 0);

    // Ports come back: after one leaves, a newcomer connects on its port.
    b.leave().await;
    let freed = wait_for(Duration::from_secs(10), || proc.udp_ports().map(|p| p == vec![RANGE.0] || p == vec![RANGE.1]).unwrap_or(false)).await;
    assert!(freed, "a leaving peer's port was not released: {:?}", proc.udp_ports());
    let d = bot(&server.url, "ports", "d", 0xffff00, 550.0).await;
    wait_receiving(&d, Duration::from_secs(10)).await;
    assert_eq!(proc.udp_ports().expect("the server's sockets"), vec![RANGE.0, RANGE.1]);
    d.leave().await;
    a.leave().await;
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
