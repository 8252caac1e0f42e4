//! One room, two codecs: a VP8 participant and two H.264 participants (each
//! answers with its codec only). Each gets the grid in its own codec at full
//! frame rate with every other participant's colour in its tile, hears the
//! others and not itself; an H.264 viewer shares the H.264 encoder; the
//! server runs one encoder per codec in use and stops the H.264 one when no
//! H.264 receiver is left.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_vp8_participants_see_and_hear_each_other() {
    common::codecs::h264_and_vp8_participants_see_and_hear_each_other_on(media_config()).await;
}
