//! Audio is encoded by who talks: with room for two talkers, four bots
//! take turns in pairs, five times. Whoever talks hears the other talker
//! and never itself; whoever is silent hears both talkers. Through every
//! switch between the shared encoding and a personal one, no bot ever
//! hears its own tone, and no bot's audio stream has a hole (RTP time no
//! packet carried) longer than 60 ms. The room runs three Opus encoders (the shared one and two
//! talker slots) for its four participants, and its stats say two talk.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talkers_never_hear_themselves_as_the_floor_moves() {
    common::talkers::talkers_never_hear_themselves_as_the_floor_moves_on(Transport::Webrtcbin).await;
}
