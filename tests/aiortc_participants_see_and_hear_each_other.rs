//! Regression: an independent WebRTC stack could not connect at all. aiortc
//! offers only ECDHE-ECDSA cipher suites, GStreamer 1.22 generates an RSA
//! certificate by default, and every aiortc participant failed the DTLS
//! handshake ("no shared cipher") and got `media_failed`.
//!
//! Promise: three aiortc participants (no trickle: every candidate in the
//! answer) and one tessera bot in one room each receive the mix at ≥ 20 fps,
//! see every other participant's colour at the centre of its tile, and hear
//! the others' tones but not their own.

mod common;

use std::time::Duration;

use common::*;

const AIORTC: [(&str, u32, f64); 3] = [("ann", 0xff0000, 440.0), ("bea", 0x00ff00, 660.0), ("cyd", 0x0000ff, 880.0)];
const BOT: (&str, u32, f64) = ("bot", 0xffff00, 1100.0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_participants_see_and_hear_each_other() {
    // All four send a tone all the time: four talkers to mix.
    let server = start_server(tessera::media::MediaConfig { audio_talkers: 4, ..media_config() });
    let url = server.ws_url();
    let all: Vec<(&str, u32, f64)> = AIORTC.iter().copied().chain([BOT]).collect();
    let listen: Vec<String> = all.iter().map(|p| p.2.to_string()).collect();
    let clients: Vec<AiortcClient> = AIORTC
        .iter()
        .map(|(name, color, tone)| {
            let mut args = vec!["--color".to_string(), format!("{color:06x}"), "--tone".into(), tone.to_string()];
            // Reports at 14 s, while all four are in the room; leaves at 18 s.
            args.extend(["--duration", "18", "--report-at", "14", "--fps-window", "4", "--listen"].map(String::from));
            args.extend(listen.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            AiortcClient::spawn(&url, "interop", name, &args)
        })
        .collect();
    let bot = bot(&url, "interop", BOT.0, BOT.1, BOT.2).await;
    wait_receiving(&bot, Duration::from_secs(15)).await;
    assert!(
        bot.wait_until(Duration::from_secs(15), |b| b.layout().map(|l| l.1.len()) == Some(4)).await,
        "the room never had 4 tiles: {:?} (errors {:?})",
        bot.layout(),
        bot.errors()
    );

    // The tessera bot sees and hears the aiortc participants.
    let names = |id: &str| bot.layout().and_then(|(_, t)| t.into_iter().find(|t| t.id == id).map(|t| t.name));
    let ok = bot
        .wait_until(Duration::from_secs(10), |b| {
            let seen = b.tiles_seen();
            AIORTC.iter().all(|(name, color, _)| {
                seen.iter().any(|t| names(&t.id).as_deref() == Some(*name) && color_close(t.center_rgb, *color, 48))
            })
        })
        .await;
    assert!(ok, "the bot does not see every aiortc colour in its tile: {:?}", bot.tiles_seen());

    // A second of audio with everyone in the room (the aiortc clients stay 18 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bot_own = bot.level_db(BOT.2).expect("the bot receives audio");
    for (_, _, tone) in AIORTC {
        let l = bot.level_db(tone).expect("audio");
        assert!(l > -40.0, "the bot hears {tone} Hz at only {l:.1} dBFS");
        assert!(bot_own <= l - 20.0, "the bot hears itself at {bot_own:.1} dBFS vs {l:.1}");
    }

    let mut reports = Vec::new();
    for c in clients {
        reports.push(c.report(Duration::from_secs(40)).await);
    }

    for (i, r) in reports.iter().enumerate() {
        let (me, _, my_tone) = AIORTC[i];
        assert_eq!(r["errors"], serde_json::json!([]), "{me}: {r}");
        assert_eq!(r["connection"], "connected", "{me}: {r}");
        let fps = r["fps"].as_f64().unwrap_or(0.0);
        eprintln!(
            "aiortc {me}: {fps:.1} fps over the last {} s, first frame after {} ms, DTLS handshake {} ms ({})",
            r["fps_window_s"], r["first_frame_ms"], r["dtls_handshake_ms"], r["dtls"]
        );
        assert_eq!(r["dtls_failed"], false, "{me}: the DTLS handshake failed: {r}");
        assert!(fps >= 20.0, "{me} received the mix at {fps:.1} fps: {r}");
        assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(CANVAS.0 as u64), Some(CANVAS.1 as u64)), "{me}: {r}");
        let tiles = r["tiles_seen"].as_array().cloned().unwrap_or_default();
        assert_eq!(tiles.len(), 4, "{me} saw {} tiles: {r}", tiles.len());
        for (name, color, _) in all.iter().filter(|p| p.0 != me) {
            let t = tiles.iter().find(|t| t["name"] == *name).unwrap_or_else(|| panic!("{me} has no tile for {name}: {r}"));
            let c = rgb_of(&t["center_rgb"]);
            assert!(color_close(c, *color, 48), "{me} sees {c:?} at the centre of {name}'s tile, expected {color:06x}");
        }
        let level = |hz: f64| r["levels_db"][hz.to_string()].as_f64().unwrap_or_else(|| panic!("{me} has no audio level for {hz}: {r}"));
        let own = level(my_tone);
        for (name, _, tone) in all.iter().filter(|p| p.0 != me) {
            let other = level(*tone);
            assert!(other > -40.0, "{me} hears {name} ({tone} Hz) at only {other:.1} dBFS");
            assert!(own <= other - 20.0, "{me} hears itself at {own:.1} dBFS vs {other:.1} dBFS for {name}");
        }
    }
    bot.leave().await;
    server.stop().await;
}
