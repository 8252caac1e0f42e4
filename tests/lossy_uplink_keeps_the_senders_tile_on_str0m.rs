//! The lossy-uplink promise (`lossy_uplink_keeps_the_senders_tile`) with
//! the server's participants on our own transport (`[media] transport =
//! "str0m"`): str0m NACKs the sender's lost packets and reorders what
//! comes again.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_uplink_keeps_the_senders_tile_on_str0m() {
    common::lossy::lossy_uplink_keeps_the_senders_tile_on(Transport::Str0m).await;
}
