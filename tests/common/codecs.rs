//! One room, two codecs (VP8 and H.264 participants, an H.264 viewer), on
//! either transport.

use std::time::Duration;

use super::*;
use tessera::media::MediaConfig;
use tessera::protocol::Codec;
use tessera::tools::bot::{Bot, BotOptions};

const BOTS: [(&str, u32, f64, Codec); 3] =
    [("vp8", 0xff0000, 440.0, Codec::Vp8), ("h264-a", 0x00ff00, 660.0, Codec::H264), ("h264-b", 0x0000ff, 880.0, Codec::H264)];

/// The mixed-codec promise with `cfg`'s transport (see
/// tests/h264_and_vp8_participants_see_and_hear_each_other.rs).
pub async fn h264_and_vp8_participants_see_and_hear_each_other_on(cfg: MediaConfig) {
    let server = start_server(cfg);
    let url = server.ws_url();
    let mut bots = Vec::new();
    for (name, color, tone, codec) in BOTS {
        let opts = BotOptions { codec, ..bot_options(&url, "codecs", name, color, tone) };
        bots.push(Bot::connect(opts).await.expect("bot connects"));
    }
    let viewer = Bot::connect(BotOptions { viewer: true, codec: Codec::H264, ..bot_options(&url, "codecs", "viewer", 0, 0.0) })
        .await
        .expect("viewer connects");
    for b in bots.iter().chain([&viewer]) {
        wait_receiving(b, Duration::from_secs(15)).await;
        assert!(b.wait_until(Duration::from_secs(5), |b| b.layout().map(|l| l.1.len()) == Some(3)).await, "layout never had 3 tiles");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let rates = futures::future::join_all(bots.iter().chain([&viewer]).map(|b| fps_over(b, 3.0))).await;
    for (name, fps) in BOTS.iter().map(|b| b.0).chain(["viewer"]).zip(rates) {
        assert!(fps >= 25.0, "{name} received {fps:.1} fps");
    }
    assert!(viewer.stats().pads.contains(&"video/H264".to_string()), "the viewer asked for H.264: {:?}", viewer.stats().pads);
    assert_eq!(viewer.qualities().last().map(|q| q.codec), Some(Codec::H264));
    for (i, b) in bots.iter().enumerate() {
        let (name, _, tone, codec) = BOTS[i];
        let s = b.stats();
        assert_eq!((s.width, s.height), CANVAS, "{name}: mixed video not at canvas size");
        let want = format!("video/{}", codec.rtp_name());
        assert!(s.pads.contains(&want), "{name} should receive {want}: {:?}", s.pads);
        assert_eq!(b.qualities().last().map(|q| q.codec), Some(codec), "{name}: the quality message names its codec");
        let seen = b.tiles_seen();
        for (j, other) in bots.iter().enumerate().filter(|(j, _)| *j != i) {
            let id = other.id().expect("joined");
            let tile = seen.iter().find(|t| t.id == id).expect("a tile for every participant");
            assert!(
                color_close(tile.center_rgb, BOTS[j].1, 48),
                "{name} sees {:?} in {}'s tile, expected {:06x}",
                tile.center_rgb,
                BOTS[j].0,
                BOTS[j].1
            );
        }
        let own = b.level_db(tone).expect("audio received");
        for (j, (other_name, _, other_tone, _)) in BOTS.iter().enumerate().filter(|(j, _)| *j != i) {
            let other = b.level_db(*other_tone).expect("audio received");
            assert!(other > -40.0, "{name} hears {other_name} ({other_tone} Hz) at only {other:.1} dBFS");
            assert!(own <= other - 20.0, "{name} hears itself at {own:.1} dBFS vs {other:.1} dBFS ({j})");
        }
        assert!(b.errors().is_empty(), "{name}: {:?}", b.errors());
    }

    // One encoder per codec in use; the stats name each receiver's codec.
    let stats = room_stats(&server, "codecs").await;
    let (running, used) = rungs_running_and_used(&stats);
    assert_eq!(running, vec!["vp8:high".to_string(), "h264:high".to_string()], "{stats}");
    assert_eq!(running, used, "{stats}");
    let receivers = stats["media"]["receivers"].as_array().cloned().unwrap_or_default();
    for (b, (name, _, _, codec)) in bots.iter().zip(BOTS) {
        let id = b.id().expect("joined");
        let r = receivers.iter().find(|r| r["id"] == id.as_str()).unwrap_or_else(|| panic!("{name} in the stats: {stats}"));
        assert_eq!(r["codec"], codec.name(), "{name}: {r}");
    }

    // The H.264 participants and viewer leave: their encoder stops.
    viewer.leave().await;
    let mut bots = bots.into_iter();
    let vp8 = bots.next().expect("the VP8 bot");
    for b in bots {
        b.leave().await;
    }
    let mut stopped = false;
    for _ in 0..30 {
        let (running, _) = rungs_running_and_used(&room_stats(&server, "codecs").await);
        if running == vec!["vp8:high".to_string()] {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the H.264 encoder still runs with no H.264 receiver: {}", room_stats(&server, "codecs").await);
    assert!(fps_over(&vp8, 2.0).await >= 25.0, "the VP8 participant's video after the others left");
    vp8.leave().await;
    server.stop().await;
}
