//! The lossy-uplink promise (`lossy_uplink_keeps_the_senders_tile`) with
//! the server's participants on our own transport (`[media] transport =
//! "str0m"`): str0m asks the sender again for lost packets (NACK, answered
//! with RTX); a frame it gives up on freezes the tile until a keyframe,
//! which the server asks for at once (`direct::VideoGap`). Left off str0m
//! until then: one run of two froze the tile 367 ms at 3 %, when such a
//! frame was decoded on a broken reference and no keyframe asked for.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_uplink_keeps_the_senders_tile_on_str0m() {
    common::lossy::lossy_uplink_keeps_the_senders_tile_on(Transport::Str0m).await;
}
