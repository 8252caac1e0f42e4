//! A sender's tile survives loss on its uplink: a bot behind a router
//! namespace that drops 3 %, then 10 %, of the packets it sends at random
//! (nftables) has its lost video packets asked for again by the server
//! (NACK, answered with RTX) instead of a keyframe each. Over 20 s the
//! server's decode of its camera, which is its tile in everyone's mix,
//! never freezes longer than 300 ms at 3 % and 700 ms at 10 %, and the
//! server asks it for no more than one keyframe per 2 s.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_uplink_keeps_the_senders_tile() {
    common::lossy::lossy_uplink_keeps_the_senders_tile_on(Transport::Webrtcbin).await;
}
