//! The same promise as `three_bots_see_and_hear_each_other`, with the
//! server's participants on GStreamer's webrtcbin (`[media] transport =
//! "webrtcbin"`; the default is our own, str0m): the grid and the
//! mix-minus on the other transport.

mod common;

use common::*;
use tessera::config::Transport;
use tessera::media::MediaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtcbin_transport_participants_see_and_hear_each_other() {
    three_bots_see_and_hear_each_other_on(MediaConfig { transport: Transport::Webrtcbin, ..media_config() }).await;
}
