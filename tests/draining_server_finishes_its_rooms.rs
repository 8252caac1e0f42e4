//! A restart does not cut calls: SIGTERM (or `POST /api/drain`) makes the
//! server drain. `/readyz` fails and new joins get `server_draining` (HTTP
//! 503 before the upgrade) while the running room goes on; the process
//! exits 0 once its rooms are empty, or at the drain deadline after
//! telling every member `server_draining`. A second SIGTERM exits at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tessera::tools::bot::Bot;

fn addr_of(server: &ChildServer) -> std::net::SocketAddr {
    server.url.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap()
}

fn term(server: &ChildServer) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid as i32, libc::SIGTERM) }, 0);
}

/// Wait for the child to exit; its status, and how long it took.
fn exit_within(server: &mut ChildServer, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return (status, t0.elapsed());
        }
        assert!(t0.elapsed() < limit, "the server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn still_receiving(b: &Bot) -> bool {
    let before = b.stats().frames;
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.stats().frames > before + 15
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_the_deadline_ends_the_room() {
    let mut server = ChildServer::spawn(&["--drain-timeout", "4"]);
    let addr = addr_of(&server);
    let a = bot(&server.url, "d", "a", 0xff0000, 440.0).await;
    let b = bot(&server.url, "d", "b", 0x00ff00, 660.0).await;
    for x in [&a, &b] {
        wait_receiving(x, Duration::from_secs(10)).await;
    }
    assert_eq!(http(addr, "GET", "/readyz", "").await.0, 200);
    term(&server);
    let t0 = Instant::now();
    let draining = async {
        loop {
            let (status, body) = http(addr, "GET", "/readyz", "").await;
            if status == 503 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(2), draining).await.expect("/readyz fails within 2 s of SIGTERM");
    assert!(body.contains("server_draining"), "{body}");
    assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200, "alive while draining");
    // A newcomer is refused before the upgrade.
    let refused = Bot::connect(bot_options(&server.url, "d", "late", 0x0000ff, 880.0)).await.err().expect("no join while draining");
    assert!(format!("{refused:#}").contains("server_draining"), "{refused:#}");
    // The room goes on meanwhile.
    assert!(still_receiving(&a).await && still_receiving(&b).await, "the room stopped while draining");
    // At the deadline (4 s) everyone is told, and the process exits 0.
    let (status, _) = exit_within(&mut server, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(4), "exited {took:?} after SIGTERM, before the 4 s deadline");
    for x in [&a, &b] {
        assert!(x.errors().iter().any(|(c, _)| c == "server_draining"), "{:?}", x.errors());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_exits_when_its_rooms_empty_and_a_second_sigterm_at_once() {
    // POST /api/drain, then the last participant leaves: exit 0 long
    // before the 600 s deadline.
    let mut server = ChildServer::spawn(&[]);
    let addr = addr_of(&server);
    let a = bot(&server.url, "e", "a", 0xff0000, 440.0).await;
    wait_receiving(&a, Duration::from_secs(10)).await;
    let (status, body) = http(addr, "POST", "/api/drain", "").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(http(addr, "GET", "/readyz", "").await.0, 503);
    assert!(still_receiving(&a).await);
    a.leave().await;
    let (status, took) = exit_within(&mut server, Duration::from_secs(10));
    assert!(status.success() && took < Duration::from_secs(8), "{status:?} after {took:?}");

    // Two SIGTERMs: the second does not wait for the room.
    let mut server = ChildServer::spawn(&[]);
    let a = bot(&server.url, "f", "a", 0xff0000, 440.0).await;
    wait_receiving(&a, Duration::from_secs(10)).await;
    term(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the first SIGTERM drains, it does not exit");
    assert!(still_receiving(&a).await);
    term(&server);
    let (status, took) = exit_within(&mut server, Duration::from_secs(5));
    assert!(status.success() && took < Duration::from_secs(2), "{status:?} after {took:?}");
    a.disconnect().await;
}
