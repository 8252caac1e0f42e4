//! The same promise as `three_bots_see_and_hear_each_other`, with the
//! server's participants on our own transport (`[media] transport =
//! "str0m"`, media::rtc) and the bots on webrtcbin: ICE, DTLS, SRTP and
//! the SDP between two stacks, the grid and the mix-minus across it.

mod common;

use common::*;
use tessera::config::Transport;
use tessera::media::MediaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_transport_participants_see_and_hear_each_other() {
    three_bots_see_and_hear_each_other_on(MediaConfig { transport: Transport::Str0m, ..media_config() }).await;
}
