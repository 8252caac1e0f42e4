//! The mixed-codec promise (`h264_and_vp8_participants_see_and_hear_each_other`)
//! with the server's participants on our own transport (`[media] transport
//! = "str0m"`): each answers with its codec only, and the server decodes
//! what each sends and sends each the grid in its codec over str0m (VP8,
//! or H.264 as Annex B access units str0m packetizes); the H.264 viewer
//! stays on webrtcbin and shares the H.264 encoder with them.

mod common;

use common::*;
use tessera::config::Transport;
use tessera::media::MediaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_vp8_participants_see_and_hear_each_other_on_str0m() {
    common::codecs::h264_and_vp8_participants_see_and_hear_each_other_on(MediaConfig { transport: Transport::Str0m, ..media_config() }).await;
}
