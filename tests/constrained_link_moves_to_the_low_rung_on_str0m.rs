//! The constrained-link promise (`constrained_link_moves_to_the_low_rung`)
//! with the server's participants on our own transport (`[media] transport
//! = "str0m"`): the rung controller reads the receiver's link from the
//! TWCC feedback str0m hands us and probes with str0m's padding.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_link_moves_to_the_low_rung_on_str0m() {
    common::constrained::constrained_link_moves_to_the_low_rung_on(Transport::Str0m).await;
}
