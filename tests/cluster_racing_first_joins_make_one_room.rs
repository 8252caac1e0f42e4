//! No two nodes ever run the same room: for ten new rooms, two clients
//! join at the same moment through two different nodes (each node sees a
//! room no one holds and places it). Each room ends up on exactly one
//! node with both participants, and its lease in Redis names that node.

mod common;

use std::time::Duration;

use common::cluster::{where_is, Node, Redis};
use common::*;

async fn join(node: &Node, room: &str, name: &str) -> (Ws, serde_json::Value) {
    let mut ws = ws_from("127.0.0.1", node.addr).await.unwrap_or_else(|(s, b)| panic!("{}: HTTP {s} {b}", node.id));
    send_text(&mut ws, &join_msg(room, name, "participant")).await;
    let first = next_msg(&mut ws, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no answer to a join through {}", node.id));
    (ws, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_racing_first_joins_make_one_room() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..2).map(|i| Node::start(&redis, &format!("n{i}"), i, &[])).collect();
    let mut held = Vec::new();
    for k in 0..10 {
        let room = format!("race{k}");
        let ((ws_a, a), (ws_b, b)) = tokio::join!(join(&nodes[0], &room, "a"), join(&nodes[1], &room, "b"));
        assert_eq!((a["type"].as_str(), b["type"].as_str()), (Some("joined"), Some("joined")), "{room}: {a} / {b}");
        let placed = where_is(&nodes, &room).await;
        assert_eq!(placed.len(), 1, "{room} runs on one node: {placed:?}");
        assert_eq!(placed[0].1, 2, "{room} has both participants: {placed:?}");
        assert_eq!(redis.get(&format!("tessera:room:{room}")).as_deref(), Some(placed[0].0.as_str()), "{room}'s lease names its node");
        held.push((ws_a, ws_b));
    }
    drop(held);
}
