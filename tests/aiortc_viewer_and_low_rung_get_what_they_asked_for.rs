//! An independent WebRTC stack (aiortc) gets what it asks for: as a viewer
//! (`"role":"viewer"`) it receives the composed grid and the whole mix and
//! has no tile; as a participant asking `"quality":"low"` it receives the
//! low rung (160x90 at 15 fps for this 640x360 canvas, docs/ladder.md).

mod common;

use std::time::Duration;

use common::*;

const SENDERS: [(&str, u32, f64); 2] = [("red", 0xff0000, 440.0), ("blue", 0x0000ff, 880.0)];
const LOW_TONE: f64 = 660.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_viewer_and_low_rung_get_what_they_asked_for() {
    let server = start_server(media_config());
    let url = server.ws_url();
    let bots = bots_receiving(&url, "interop-v", &SENDERS).await;
    let common_args = ["--duration", "16", "--report-at", "12", "--fps-window", "4", "--listen", "440", "660", "880"];
    let viewer = AiortcClient::spawn(&url, "interop-v", "watcher", &[&common_args[..], &["--role", "viewer"]].concat());
    let low = AiortcClient::spawn(
        &url,
        "interop-v",
        "lowly",
        &[&common_args[..], &["--quality", "low", "--color", "00ff00", "--tone", "660"]].concat(),
    );
    let (viewer, low) = (viewer.report(Duration::from_secs(40)).await, low.report(Duration::from_secs(40)).await);

    // The viewer: the grid at canvas size, every sender in its tile, no tile
    // of its own, the whole mix.
    assert_eq!(viewer["errors"], serde_json::json!([]), "{viewer}");
    assert_eq!(viewer["connection"], "connected", "{viewer}");
    let fps = viewer["fps"].as_f64().unwrap_or(0.0);
    eprintln!("aiortc viewer: {fps:.1} fps");
    assert!(fps >= 20.0, "the aiortc viewer received {fps:.1} fps: {viewer}");
    assert_eq!((viewer["width"].as_u64(), viewer["height"].as_u64()), (Some(640), Some(360)), "{viewer}");
    let tiles = viewer["tiles_seen"].as_array().cloned().unwrap_or_default();
    assert!(tiles.iter().all(|t| t["name"] != "watcher"), "the viewer has a tile: {viewer}");
    assert_eq!(tiles.len(), 3, "two senders and the low participant: {viewer}");
    for (name, color, tone) in SENDERS {
        let t = tiles.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no tile for {name}: {viewer}"));
        let c = rgb_of(&t["center_rgb"]);
        assert!(color_close(c, color, 48), "the viewer sees {c:?} in {name}'s tile");
        let l = viewer["levels_db"][tone.to_string()].as_f64().expect("viewer audio");
        assert!(l > -40.0, "the viewer hears {name} at only {l:.1} dBFS");
    }
    let l = viewer["levels_db"][LOW_TONE.to_string()].as_f64().expect("viewer audio");
    assert!(l > -40.0, "the viewer hears the low participant at only {l:.1} dBFS (a viewer gets the whole mix)");

    // The low participant: the low rung, its own tone left out.
    assert_eq!(low["errors"], serde_json::json!([]), "{low}");
    let q = &low["quality"][0];
    assert_eq!((q["rung"].as_str(), q["auto"].as_bool()), (Some("low"), Some(false)), "{low}");
    assert_eq!((low["width"].as_u64(), low["height"].as_u64()), (Some(160), Some(90)), "{low}");
    let fps = low["fps"].as_f64().unwrap_or(0.0);
    eprintln!("aiortc low: {fps:.1} fps");
    assert!((13.0..=17.0).contains(&fps), "the low rung arrives at {fps:.1} fps, want 15: {low}");
    let tiles = low["tiles_seen"].as_array().cloned().unwrap_or_default();
    for (name, color, tone) in SENDERS {
        let t = tiles.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no tile for {name}: {low}"));
        let c = rgb_of(&t["center_rgb"]);
        assert!(color_close(c, color, 64), "the low participant sees {c:?} in {name}'s tile");
        let other = low["levels_db"][tone.to_string()].as_f64().expect("audio");
        let own = low["levels_db"][LOW_TONE.to_string()].as_f64().expect("audio");
        assert!(other > -40.0 && own <= other - 20.0, "low hears {name} at {other:.1} dBFS and itself at {own:.1}");
    }
    for b in bots {
        b.leave().await;
    }
    server.stop().await;
}
