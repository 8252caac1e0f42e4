//! With periodic keyframes effectively off, a participant that joins a
//! running room still decodes the shared grid quickly: the server forces a
//! keyframe on the shared encoder when a receiver connects (and on PLI),
//! throttled so joins do not cause a keyframe storm.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tessera::media::MediaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_participant_gets_a_keyframe_quickly() {
    let media = MediaConfig {
        // Without forced keyframes a joiner would wait ~330 s for one.
        video_encoder: tessera::media::DEFAULT_VIDEO_ENCODER.replace("keyframe-max-dist=90", "keyframe-max-dist=10000"),
        ..media_config()
    };
    assert!(media.video_encoder.contains("keyframe-max-dist=10000"));
    let server = start_server(media);
    let url = server.ws_url();
    let first = bot(&url, "kf", "first", 0xff0000, 440.0).await;
    wait_receiving(&first, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.reset_max_gap();
    for i in 0..3 {
        let t0 = Instant::now();
        let joiner = bot(&url, "kf", &format!("joiner{i}"), 0x00ff00, 660.0).await;
        let ok = joiner.wait_until(Duration::from_secs(5), |b| b.stats().frames > 0).await;
        assert!(ok, "joiner {i} decoded nothing in 5 s: {:?}", joiner.stats());
        let took = t0.elapsed();
        // Generous bound (loaded CI machine); the real figure is in the bench.
        assert!(took < Duration::from_secs(3), "joiner {i}: first frame after {took:?}");
        joiner.leave().await;
    }
    // The resident never froze while others came and went.
    assert!(first.stats().max_frame_gap_ms < 500, "resident gap {} ms", first.stats().max_frame_gap_ms);
    first.leave().await;
    server.stop().await;
}
