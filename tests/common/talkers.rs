//! The talkers test's body, shared by the test on each transport
//! (`talkers_never_hear_themselves_as_the_floor_moves*`):
//!
//! Audio is encoded by who talks: with room for two talkers, four bots
//! take turns in pairs, five times. Whoever talks hears the other talker
//! and never itself; whoever is silent hears both talkers. Through every
//! switch between the shared encoding and a personal one, no bot ever
//! hears its own tone, and no bot's audio stream has a hole (RTP time no
//! packet carried) longer than 60 ms. The room runs three Opus encoders (the shared one and two
//! talker slots) for its four participants, and its stats say two talk.
//! On str0m the bots tell their level in each packet's header (RFC
//! 6464) and the stats say only the two talkers' audio is decoded.

use std::time::{Duration, Instant};

use super::*;
use tessera::config::Transport;
use tessera::media::MediaConfig;
use tessera::tools::bot::Bot;

const TONES: [f64; 4] = [350.0, 810.0, 1470.0, 2330.0];
const TALKING: f64 = 0.25;
/// Tones at least 460 Hz apart, none a sum, difference or double of
/// others. A talker's tone arrives at about -12 dBFS; Opus's coding noise
/// reads up to about -58 dBFS at the other tones' frequencies (at 440,
/// 660, 880 and 1100 Hz, 220 Hz apart, it read -48, too close to call).
/// A tone that is heard is far above this, one that is not is below; a
/// single 20 ms frame of one's own tone reads about -31 dBFS.
const NOT_HEARD_DB: f64 = -48.0;

fn level(b: &Bot, hz: f64) -> f64 {
    b.level_db(hz).unwrap_or(-200.0)
}

pub async fn talkers_never_hear_themselves_as_the_floor_moves_on(transport: Transport) {
    let server = start_server(MediaConfig { audio_talkers: 2, transport, ..media_config() });
    let url = server.ws_url();
    let mut bots = Vec::new();
    for (i, (hz, colour)) in TONES.iter().zip([0xff0000, 0x00ff00, 0x0000ff, 0xffff00]).enumerate() {
        bots.push(bot(&url, "turns", &format!("b{i}"), colour, *hz).await);
    }
    for b in &bots {
        wait_receiving(b, Duration::from_secs(15)).await;
    }
    // Everyone silent long enough for every talker slot to be free.
    for b in &bots {
        b.set_volume(0.0, false);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = Instant::now();
    let mut loudest_own = -200.0f64;

    for (turn, pair) in [[0usize, 1], [1, 2], [2, 3], [3, 0], [0, 2]].into_iter().enumerate() {
        for (i, b) in bots.iter().enumerate() {
            b.set_volume(if pair.contains(&i) { TALKING } else { 0.0 }, false);
        }
        // Over the switch and after it, every 50 ms: nobody hears itself.
        let settled = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < settled {
            for (i, b) in bots.iter().enumerate() {
                let own = level(b, TONES[i]);
                loudest_own = loudest_own.max(own);
                assert!(own < NOT_HEARD_DB, "turn {turn} ({pair:?} talk): b{i} hears its own {} Hz at {own:.1} dBFS", TONES[i]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Settled: each hears the talkers other than itself, and no one else.
        for (i, b) in bots.iter().enumerate() {
            for (j, hz) in TONES.iter().enumerate().filter(|(j, _)| *j != i) {
                let l = level(b, *hz);
                if pair.contains(&j) {
                    assert!(l > -30.0, "turn {turn} ({pair:?} talk): b{i} does not hear b{j} ({hz} Hz at {l:.1} dBFS)");
                } else {
                    assert!(l < NOT_HEARD_DB, "turn {turn} ({pair:?} talk): b{i} hears silent b{j} ({hz} Hz at {l:.1} dBFS)");
                }
            }
        }
        let stats = room_stats(&server, "turns").await;
        let audio = &stats["media"]["audio"];
        assert_eq!(audio["talkers"].as_u64(), Some(2), "turn {turn}: {audio}");
        assert_eq!(audio["opus_encoders"].as_u64(), Some(3), "the shared encoder and two slots: {audio}");
        if transport == Transport::Str0m {
            // The silent tell it in their packets' headers: only the
            // talkers' audio is decoded.
            assert_eq!(audio["opus_decoding"].as_u64(), Some(2), "turn {turn}: only the talkers are decoded: {audio}");
        }
    }

    eprintln!("the loudest own tone anyone heard: {loudest_own:.1} dBFS (heard: > -30)");
    for (i, b) in bots.iter().enumerate() {
        let gaps: Vec<u128> = b.audio_gaps().into_iter().filter(|(at, _)| *at > start).map(|(_, d)| d.as_millis()).collect();
        eprintln!("b{i}: holes in its audio over {:.1} s: {gaps:?} ms", start.elapsed().as_secs_f64());
        assert!(gaps.iter().all(|g| *g <= 60), "b{i}'s audio has holes of {gaps:?} ms");
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
