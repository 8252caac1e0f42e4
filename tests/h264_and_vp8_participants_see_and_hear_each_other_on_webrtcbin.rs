//! The mixed-codec promise (`h264_and_vp8_participants_see_and_hear_each_other`)
//! with the server's participants on GStreamer's webrtcbin (`[media]
//! transport = "webrtcbin"`; the default is str0m): each payloader
//! (rtpvp8pay, rtph264pay) and decoder branch chosen by the answer.

mod common;

use common::*;
use tessera::config::Transport;
use tessera::media::MediaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_vp8_participants_see_and_hear_each_other_on_webrtcbin() {
    common::codecs::h264_and_vp8_participants_see_and_hear_each_other_on(MediaConfig { transport: Transport::Webrtcbin, ..media_config() }).await;
}
