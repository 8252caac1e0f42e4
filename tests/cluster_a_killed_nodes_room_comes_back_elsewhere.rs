//! A lost node costs its participants seconds, not their call: three
//! rejoining bots of one room, each connected to a different node; the
//! room's node is killed with SIGKILL (no goodbye to Redis). Its lease
//! lapses, the bots join again through the live nodes, the room is built
//! anew on one of them, and every bot receives the mix again within 5 s of
//! the lease's end (lease 6 s, so within 11 s of the kill), seeing the
//! other two in their tiles.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{where_is, Node, Redis};
use common::*;
use tessera::tools::rejoin::Rejoiner;

const BOTS: [(&str, u32, f64); 3] = [("red", 0xff0000, 350.0), ("green", 0x00ff00, 810.0), ("blue", 0x0000ff, 1470.0)];
const LEASE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_killed_nodes_room_comes_back_elsewhere() {
    let redis = Redis::start();
    let mut nodes: Vec<Node> = (0..3).map(|i| Node::start(&redis, &format!("n{i}"), i, &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let mut bots = Vec::new();
    for (i, (name, color, tone)) in BOTS.iter().enumerate() {
        // Each bot starts at its own node and tries the others in turn.
        let servers: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
        bots.push(Rejoiner::connect(bot_options(&servers[0], "survivor", name, *color, *tone), servers).await.expect("bot connects"));
    }
    for r in &bots {
        wait_receiving(r.bot().expect("in the room"), Duration::from_secs(15)).await;
    }
    let placed = where_is(&nodes, "survivor").await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    let owner = nodes.iter().position(|n| n.id == placed[0].0).expect("a node of ours");
    nodes[owner].kill();
    let killed = Instant::now();

    // Every bot tends its connection (joining again as needed) at once,
    // until all receive the mix again (or 15 s pass).
    while killed.elapsed() < LEASE + Duration::from_secs(9) {
        futures::future::join_all(bots.iter_mut().map(|r| r.tend(Duration::from_millis(500)))).await;
        if bots.iter().all(|r| r.history.last().is_some_and(|h| h.receiving.is_some())) {
            break;
        }
    }
    let placed = where_is(&nodes, "survivor").await;
    assert_eq!(placed.len(), 1, "the room runs again on one live node: {placed:?}");
    assert_ne!(placed[0].0, nodes[owner].id);
    assert_eq!(placed[0].1, 3, "with all three: {placed:?}");
    for (r, (name, _, _)) in bots.iter().zip(BOTS) {
        let last = r.history.last().unwrap_or_else(|| panic!("{name} never noticed its room was gone"));
        let back = last.receiving.unwrap_or_else(|| panic!("{name} never received the mix again: {:?}", r.history));
        let after = back.duration_since(killed);
        eprintln!("{name}: the mix again {} ms after the kill ({} attempts, through {})", after.as_millis(), last.attempts, last.server);
        assert!(after <= LEASE + Duration::from_secs(5), "{name} got the mix back {} ms after the kill", after.as_millis());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, r) in bots.iter().enumerate() {
        let b = r.bot().expect("in the room again");
        let seen = b.tiles_seen();
        for (j, other) in bots.iter().enumerate().filter(|(j, _)| *j != i) {
            let id = other.bot().and_then(|o| o.id()).expect("joined");
            let tile = seen.iter().find(|t| t.id == id).expect("a tile for every participant");
            assert!(color_close(tile.center_rgb, BOTS[j].1, 48), "{} sees {:?} in {}'s tile after the move", BOTS[i].0, tile.center_rgb, BOTS[j].0);
        }
    }
    for r in bots {
        r.leave().await;
    }
}
