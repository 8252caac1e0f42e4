//! Any node accepts any client: three bots of one room connect to three
//! different nodes of a cluster (Redis and three `tessera serve`
//! processes) and see and hear each other through ONE mixer. The room
//! runs on exactly one node with all three participants; the other two
//! carry their bot's signaling there and run no room (so no media passes
//! them). The room's HTTP API answers from every node, and the emptied
//! room's lease is released. Auth is on: a token is valid on every node,
//! and one for another room is refused wherever it arrives.

mod common;

use std::time::Duration;

use common::cluster::{token, where_is, Node, Redis};
use common::*;
use tessera::auth::TokenRole;
use tessera::tools::bot::{Bot, BotOptions};

const SECRET: &str = "a-cluster-wide-secret-0123456789";

const BOTS: [(&str, u32, f64); 3] = [("red", 0xff0000, 350.0), ("green", 0x00ff00, 810.0), ("blue", 0x0000ff, 1470.0)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_bots_on_three_nodes_share_one_mixer() {
    let redis = Redis::start();
    // Auth on: every node checks the tokens (they share the secret).
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut n = Node::start(&redis, &format!("n{i}"), i, &["--auth-secret", SECRET]);
            n.token = Some(token(SECRET, "*", "operator", TokenRole::Admin));
            n
        })
        .collect();
    let mut bots = Vec::new();
    for (i, (name, color, tone)) in BOTS.iter().enumerate() {
        let opts = BotOptions { token: Some(token(SECRET, "across", name, TokenRole::Participant)), ..bot_options(&nodes[i].url, "across", name, *color, *tone) };
        bots.push(Bot::connect(opts).await.expect("bot connects"));
    }
    // A token for another room is refused, through the owner or not.
    for n in &nodes {
        let opts = BotOptions { token: Some(token(SECRET, "elsewhere", "intruder", TokenRole::Participant)), ..bot_options(&n.url, "across", "intruder", 0xffffff, 2330.0) };
        let intruder = Bot::connect(opts).await.expect("connects");
        assert!(intruder.wait_until(Duration::from_secs(5), |b| !b.errors().is_empty()).await, "no refusal through {}", n.id);
        assert_eq!(intruder.errors()[0].0, "forbidden", "through {}: {:?}", n.id, intruder.errors());
        intruder.disconnect().await;
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(15)).await;
        assert!(b.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(3)).await, "a bot's layout never had 3 tiles: {:?}", b.errors());
    }
    let placed = where_is(&nodes, "across").await;
    assert_eq!(placed.len(), 1, "the room runs on exactly one node: {placed:?}");
    assert_eq!(placed[0].1, 3, "with all three participants: {placed:?}");
    let owner = nodes.iter().position(|n| n.id == placed[0].0).expect("a node of ours");
    // The room's HTTP API answers from every node (carried to the owner).
    for n in &nodes {
        let admin = n.token.clone().unwrap_or_default();
        let (status, body) = http(n.addr, "GET", &format!("/api/rooms/across?token={admin}"), "").await;
        assert_eq!(status, 200, "GET /api/rooms/across through {}: {body}", n.id);
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["participants"].as_array().map(|p| p.len()), Some(3), "through {}: {v}", n.id);
        let (status, body) = http(n.addr, "GET", &format!("/api/rooms/across/stats?token={admin}"), "").await;
        assert_eq!(status, 200, "stats through {}: {body}", n.id);
    }
    let (status, body) = http(nodes[(owner + 1) % 3].addr, "GET", &format!("/api/rooms/nowhere?token={}", nodes[0].token.clone().unwrap_or_default()), "").await;
    assert_eq!(http(nodes[(owner + 1) % 3].addr, "GET", "/api/rooms/across", "").await.0, 401, "no token, no API, carried or not");
    assert_eq!((status, body.contains("unknown_room")), (404, true), "a room no node runs: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, b) in bots.iter().enumerate() {
        let seen = b.tiles_seen();
        for (j, other) in bots.iter().enumerate().filter(|(j, _)| *j != i) {
            let id = other.id().expect("joined");
            let tile = seen.iter().find(|t| t.id == id).expect("a tile for every participant");
            assert!(color_close(tile.center_rgb, BOTS[j].1, 48), "{} sees {:?} in {}'s tile", BOTS[i].0, tile.center_rgb, BOTS[j].0);
            let heard = b.level_db(BOTS[j].2).unwrap_or(-200.0);
            assert!(heard > -30.0, "{} does not hear {} ({} Hz at {heard:.1} dBFS)", BOTS[i].0, BOTS[j].0, BOTS[j].2);
        }
        let own = b.level_db(BOTS[i].2).unwrap_or(-200.0);
        assert!(own < -48.0, "{} hears itself at {own:.1} dBFS", BOTS[i].0);
    }
    for b in bots {
        b.leave().await;
    }
    // The owner releases the lease of the emptied room within a heartbeat.
    let mut released = false;
    for _ in 0..40 {
        if redis.get("tessera:room:across").is_none() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(released, "the lease of the emptied room is still held");
}
