//! Redis lost while running: the rooms already running keep running and
//! their clients keep their media (no frame gap over 500 ms at any bot);
//! a new room is refused with `cluster_unavailable` while Redis is away;
//! when Redis comes back (empty: it keeps nothing), the running room's
//! lease is established again by its node, with no second copy anywhere,
//! and new rooms are placed again.

mod common;

use std::time::Duration;

use common::cluster::{where_is, Node, Redis};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_a_redis_restart() {
    let mut redis = Redis::start();
    let nodes: Vec<Node> = (0..2).map(|i| Node::start(&redis, &format!("n{i}"), i, &[])).collect();
    let a = bot(&nodes[0].url, "steady", "a", 0xff0000, 350.0).await;
    let b = bot(&nodes[1].url, "steady", "b", 0x00ff00, 810.0).await;
    for x in [&a, &b] {
        wait_receiving(x, Duration::from_secs(15)).await;
    }
    let owner = where_is(&nodes, "steady").await;
    assert_eq!(owner.len(), 1, "{owner:?}");
    let owner = owner[0].0.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for x in [&a, &b] {
        x.reset_max_gap();
    }
    let frames_before: Vec<u64> = [&a, &b].iter().map(|x| x.stats().frames).collect();

    redis.kill();
    // Longer than a lease: had the node given the room up, it would show.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for n in &nodes {
        let mut ws = ws_from("127.0.0.1", n.addr).await.unwrap_or_else(|(s, body)| panic!("{}: HTTP {s} {body}", n.id));
        send_text(&mut ws, &join_msg("newcomer", "c", "participant")).await;
        assert_eq!(next_error(&mut ws).await, "cluster_unavailable", "a new room through {} while Redis is away", n.id);
    }

    redis.restart();
    let mut back = false;
    for _ in 0..50 {
        if redis.get("tessera:room:steady").as_deref() == Some(owner.as_str()) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the lease of the running room is not established again within 5 s of Redis's return");
    let placed = where_is(&nodes, "steady").await;
    assert_eq!(placed, vec![(owner.clone(), 2)], "one copy of the room, with both");

    for (x, f0) in [&a, &b].iter().zip(frames_before) {
        let s = x.stats();
        assert!(s.frames > f0 + 200, "a bot's video stopped while Redis was away: {} frames in ~8 s", s.frames - f0);
        assert!(s.max_frame_gap_ms <= 500, "a bot's video froze for {} ms while Redis was away", s.max_frame_gap_ms);
    }
    // New rooms are placed again.
    let mut ws = ws_from("127.0.0.1", nodes[1].addr).await.expect("a WebSocket");
    send_text(&mut ws, &join_msg("newcomer", "c", "participant")).await;
    let first = next_msg(&mut ws, Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(first["type"], "joined", "{first}");
    drop(ws);
    a.leave().await;
    b.leave().await;
}
