//! Pictures survive packet loss: a bot behind a router namespace that
//! drops 3 %, then 10 %, of the packets towards it at random (nftables)
//! gets its lost video packets again (NACK, RTX) instead of a keyframe
//! for each: over 20 s its decoded picture never freezes longer than
//! 300 ms at 3 % and 700 ms at 10 %, and its rung forces no more than one
//! keyframe per 2 s. The bot's depayloader freezes the picture until a
//! keyframe after a frame lost for good, as a browser does, so an
//! unrepaired loss shows as a freeze; its jitterbuffer holds 150 ms, as a
//! browser's waits for retransmissions.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_keeps_the_picture() {
    common::lossy::lossy_link_keeps_the_picture_on(Transport::Webrtcbin).await;
}
