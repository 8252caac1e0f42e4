//! The lossy-downlink promise (`lossy_link_keeps_the_picture`) with the
//! server's participants on our own transport (`[media] transport =
//! "str0m"`): str0m answers the bot's NACKs with RTX from its resend
//! buffer.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_keeps_the_picture_on_str0m() {
    common::lossy::lossy_link_keeps_the_picture_on(Transport::Str0m).await;
}
