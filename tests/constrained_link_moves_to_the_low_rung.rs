//! Per-receiver congestion control on a real, shaped link: a bot in its
//! own network namespace whose downlink is limited to 250 kbit/s (tbf) is
//! moved to the low rung within 5 s and then receives ≥ 12 fps with < 3 %
//! loss, while an unconstrained bot in the same room stays on the high
//! rung. Raising the limit to 5 Mbit/s brings it back to the high rung
//! within 20 s, with no more than one switch per 5 s.
//!
//! The bot sits behind a router namespace whose interface towards it is
//! shaped with tbf. Needs root (network namespaces, veth, tc); without them
//! it fails with the reason instead of passing.

mod common;

use tessera::config::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_link_moves_to_the_low_rung() {
    common::constrained::constrained_link_moves_to_the_low_rung_on(Transport::Webrtcbin).await;
}
