//! Twenty new rooms, their first joins sent round-robin through three
//! nodes (each allowed 10 rooms), end up spread over the nodes by load:
//! every room on exactly one node, no node over its limit, and none left
//! with fewer than 4 of the 20 (the placing node reads the other nodes'
//! room counts fresh from Redis, so a burst does not pile onto one node).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::{Node, Redis};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_spreads_rooms_by_load() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..3).map(|i| Node::start(&redis, &format!("n{i}"), i, &["--max-rooms", "10"])).collect();
    let mut held = Vec::new();
    for k in 0..20 {
        let n = &nodes[k % 3];
        let mut ws = ws_from("127.0.0.1", n.addr).await.unwrap_or_else(|(s, b)| panic!("{}: HTTP {s} {b}", n.id));
        send_text(&mut ws, &join_msg(&format!("spread{k}"), "p", "participant")).await;
        let first = next_msg(&mut ws, Duration::from_secs(10)).await.expect("an answer to the join");
        assert_eq!(first["type"], "joined", "room {k} through {}: {first}", n.id);
        held.push(ws);
    }
    let mut per_node: HashMap<String, usize> = nodes.iter().map(|n| (n.id.clone(), 0)).collect();
    let listed = nodes[0].rooms().await;
    assert!(listed.iter().all(|(_, r, p)| r.starts_with("spread") && *p == 1), "{listed:?}");
    for (node, _, _) in &listed {
        *per_node.entry(node.clone()).or_default() += 1;
    }
    let mut names: Vec<&String> = listed.iter().map(|(_, r, _)| r).collect();
    names.sort();
    names.dedup();
    let seen = listed.len();
    assert_eq!(names.len(), 20, "all 20 rooms listed: {listed:?}");
    eprintln!("rooms per node: {per_node:?}");
    assert_eq!(seen, 20, "every room on exactly one node: {listed:?}");
    for (id, count) in &per_node {
        assert!(*count <= 10, "{id} holds {count} rooms, over its max_rooms of 10");
        assert_eq!(n_listed(&nodes, id).await, *count, "{id} lists its own rooms as the cluster list does");
        assert!(*count >= 4, "{id} holds only {count} of 20 rooms: {per_node:?}");
    }
    drop(held);
}

/// How many rooms node `id` runs, by its own count (`/healthz`).
async fn n_listed(nodes: &[Node], id: &str) -> usize {
    let n = nodes.iter().find(|n| n.id == id).expect("a node of ours");
    let (_, body) = http(n.addr, "GET", "/healthz", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["rooms"].as_u64().unwrap_or(0) as usize
}
