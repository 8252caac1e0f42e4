//! A drained node (SIGTERM) takes no new rooms, and its rooms move as
//! their clients rejoin: two nodes, a room of two rejoining bots on one of
//! them, which gets SIGTERM with a 3 s drain. A new room joined meanwhile
//! through the other node is placed there; at the deadline the bots are
//! told `server_draining`, the node exits 0 releasing its leases, and the
//! bots get the mix again from the other node, in one room.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{where_is, Node, Redis};
use common::*;
use tessera::tools::rejoin::Rejoiner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_draining_node_hands_its_rooms_on() {
    let redis = Redis::start();
    let mut nodes: Vec<Node> = (0..2).map(|i| Node::start(&redis, &format!("n{i}"), i, &["--drain-timeout", "3"])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let mut bots = Vec::new();
    for (i, (name, color)) in [("red", 0xff0000), ("green", 0x00ff00)].into_iter().enumerate() {
        let servers = vec![urls[i].clone(), urls[1 - i].clone()];
        bots.push(Rejoiner::connect(bot_options(&servers[0], "moving", name, color, 350.0 + 460.0 * i as f64), servers).await.expect("bot connects"));
    }
    for r in &bots {
        wait_receiving(r.bot().expect("in the room"), Duration::from_secs(15)).await;
    }
    let placed = where_is(&nodes, "moving").await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    let draining = nodes.iter().position(|n| n.id == placed[0].0).expect("a node of ours");
    let other = 1 - draining;
    nodes[draining].term();
    let termed = Instant::now();
    // The draining node says so in its next heartbeat; then a new room
    // goes to the other node.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut ws = ws_from("127.0.0.1", nodes[other].addr).await.expect("a WebSocket");
    send_text(&mut ws, &join_msg("fresh", "f", "participant")).await;
    let first = next_msg(&mut ws, Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(first["type"], "joined", "{first}");
    let (status, body) = http(nodes[other].addr, "GET", "/api/rooms", "").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let fresh = v["rooms"].as_array().and_then(|a| a.iter().find(|r| r["room"] == "fresh")).map(|r| r["node"].clone());
    assert_eq!(fresh, Some(nodes[other].id.clone().into()), "a new room is not placed on the draining node: {v}");
    drop(ws);

    while termed.elapsed() < Duration::from_secs(15) {
        futures::future::join_all(bots.iter_mut().map(|r| r.tend(Duration::from_millis(250)))).await;
        if bots.iter().all(|r| r.history.last().is_some_and(|h| h.receiving.is_some())) {
            break;
        }
    }
    for r in &bots {
        let h = r.history.last().unwrap_or_else(|| panic!("a bot never lost its room: it should have been told server_draining"));
        let back = h.receiving.unwrap_or_else(|| panic!("a bot never got the mix again: {:?}", r.history));
        let after = back.duration_since(termed);
        eprintln!("the mix again {} ms after SIGTERM (drain 3 s)", after.as_millis());
        assert!(after <= Duration::from_secs(7), "the mix came back {} ms after SIGTERM: over 4 s after the 3 s drain", after.as_millis());
    }
    let status = nodes[draining].wait_exit(Duration::from_secs(10)).expect("the drained node exits");
    assert!(status.success(), "the drained node exits 0: {status}");
    let placed = where_is(&nodes, "moving").await;
    assert_eq!(placed, vec![(nodes[other].id.clone(), 2)], "the room moved, with both");
    for r in bots {
        r.leave().await;
    }
}
