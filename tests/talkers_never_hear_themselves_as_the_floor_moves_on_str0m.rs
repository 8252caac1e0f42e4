//! The talkers promise (`talkers_never_hear_themselves_as_the_floor_moves`)
//! with the server's participants on our own transport (`[media] transport
//! = "str0m"`), where incoming audio is decoded only while its sender's
//! level (told in each packet's header, RFC 6464) could be heard: the
//! floor still moves with no one hearing themselves and no holes, and only
//! the talkers are decoded.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talkers_never_hear_themselves_as_the_floor_moves_on_str0m() {
    common::talkers::talkers_never_hear_themselves_as_the_floor_moves_on(Transport::Str0m).await;
}
