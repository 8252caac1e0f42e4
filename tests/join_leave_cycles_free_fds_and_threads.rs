//! webrtcbin leaks sockets when torn down carelessly. After 20 join/leave
//! cycles the server process must be back to its baseline of file
//! descriptors and threads.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_cycles_free_fds_and_threads() {
    init_tracing();
    let server = ChildServer::spawn(&[]);
    // A resident participant keeps the room (and its mixer) alive, as in a
    // real call; a second warm-up cycle creates GStreamer's lazy pools.
    let resident = bot(&server.url, "cycles", "resident", 0x00ff00, 660.0).await;
    wait_receiving(&resident, Duration::from_secs(10)).await;
    let warm = bot(&server.url, "cycles", "warm", 0xff0000, 440.0).await;
    wait_receiving(&warm, Duration::from_secs(10)).await;
    warm.leave().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fd0, th0) = (server.fds(), server.threads());
    assert!(fd0 > 0 && th0 > 0, "cannot read /proc for the server");

    let mut peak_fds = fd0;
    for i in 0..20 {
        let b = bot(&server.url, "cycles", &format!("cycle{i}"), 0xff0000, 440.0).await;
        wait_receiving(&b, Duration::from_secs(10)).await;
        peak_fds = peak_fds.max(server.fds());
        if i % 2 == 0 { b.leave().await } else { b.disconnect().await }
    }
    assert!(peak_fds > fd0, "a joined participant should hold sockets (fd count never rose)");

    // Teardown is asynchronous and GLib thread pools expire idle threads
    // after a while: wait (bounded) for the counts to come back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (fd, th) = (server.fds(), server.threads());
        if fd <= fd0 && th <= th0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 cycles: {fd} fds (baseline {fd0}), {th} threads (baseline {th0})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The resident was undisturbed throughout.
    assert!(resident.stats().fps_recent >= 20.0, "resident's video: {:?}", resident.stats());
    resident.leave().await;
}
