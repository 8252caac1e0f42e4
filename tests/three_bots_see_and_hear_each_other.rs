//! The core promise of the MCU: three participants each receive ONE mixed
//! stream in which every other participant's video sits in its tile, at
//! full frame rate, and an audio mix of everyone except themselves.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bots_see_and_hear_each_other() {
    three_bots_see_and_hear_each_other_on(media_config()).await;
}
