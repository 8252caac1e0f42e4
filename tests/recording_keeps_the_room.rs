//! Recording a room: `POST /api/rooms/{room}/recordings` writes the
//! composed grid and the whole mix into WebM (VP8 + Opus) without an
//! encoder of its own. 6 s of a 3-bot room read back with GStreamer's
//! discoverer last 6 s (±1 s) with a VP8 and an Opus track; a decoded
//! frame has the bots' colours in their tiles and the audio their three
//! tones (the full mix: nobody subtracted). A bot dropping out does not
//! end a recording; the room closing does, and its file is finished.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gst_pbutils::prelude::*;
use tessera::server::{self, ServerConfig};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// (duration, caps of each stream) as the discoverer sees the file.
fn discover(path: &Path) -> (Duration, Vec<String>) {
    let d = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(10)).unwrap();
    let uri = format!("file://{}", path.canonicalize().unwrap().display());
    let info = d.discover_uri(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    let streams = info.stream_list().iter().filter_map(|s| s.caps()).map(|c| c.structure(0).map(|s| s.name().to_string()).unwrap_or_default()).collect();
    (Duration::from_nanos(info.duration().map(|d| d.nseconds()).unwrap_or(0)), streams)
}

/// A decoded RGB frame from about `at` into the file, and every audio
/// sample (mono f32, 48 kHz) of the file.
fn decode(path: &Path, at: Duration) -> (Rgb, Vec<f32>) {
    let desc = format!(
        "filesrc location={} ! matroskademux name=d d. ! queue ! vp8dec ! videoconvert ! video/x-raw,format=RGB ! appsink name=v sync=false \
         d. ! queue ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate=48000 ! appsink name=a sync=false",
        path.display()
    );
    decode_av(&desc, at, None, Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_keeps_the_room() {
    init_tracing();
    let dir: PathBuf = std::env::temp_dir().join(format!("tessera-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = listening_on("127.0.0.1:0");
    config.rooms.recordings_dir = dir.clone();
    let server = server::start(ServerConfig { config, media: media_config(), ..ServerConfig::default() }).expect("server starts");
    let (url, addr) = (server.ws_url(), server.addr());
    let [red, green, blue] = three_bots(&url, "rec.1").await;
    let (status, body) = http(addr, "POST", "/api/rooms/rec.1/recordings", "").await;
    assert_eq!(status, 201, "{body}");
    let started = json(&body);
    let id = started["id"].as_str().unwrap().to_string();
    let path = PathBuf::from(started["path"].as_str().unwrap());
    assert!(path.starts_with(&dir) && path.file_name().unwrap().to_string_lossy().starts_with("rec_1-"), "{path:?}");
    // Everyone is told the room is recorded, a latecomer too.
    for b in [&red, &green, &blue] {
        assert!(b.wait_until(Duration::from_secs(2), |b| b.recording() == Some(true)).await, "not told of the recording");
    }
    let late = tessera::tools::bot::Bot::connect(tessera::tools::bot::BotOptions { viewer: true, ..bot_options(&url, "rec.1", "late", 0, 0.0) }).await.unwrap();
    assert!(late.wait_until(Duration::from_secs(5), |b| b.recording() == Some(true)).await, "a latecomer is told too");
    late.leave().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, body) = http(addr, "GET", "/api/rooms/rec.1/recordings", "").await;
    let listed = json(&body)["recordings"][0].clone();
    assert_eq!(listed["status"], "active", "{body}");
    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/rec.1/recordings/{id}"), "").await;
    assert_eq!(status, 200, "{body}");
    let done = json(&body);
    assert_eq!(done["status"], "complete", "{body}");
    assert!(red.wait_until(Duration::from_secs(2), |b| b.recording() == Some(false)).await, "not told the recording ended");
    assert!(done["size_bytes"].as_u64().unwrap() > 10_000, "{body}");
    let (status, body) = http(addr, "DELETE", "/api/rooms/rec.1/recordings/r999", "").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (404, "unknown_recording"));

    let (duration, streams) = discover(&path);
    assert!(duration >= Duration::from_secs(5) && duration <= Duration::from_secs(7), "{duration:?}");
    assert!(streams.contains(&"video/x-vp8".to_string()) && streams.contains(&"audio/x-opus".to_string()), "{streams:?}");
    let (frame, samples) = decode(&path, Duration::from_secs(3));
    // The 640x360 grid of three: 2x2, in join order; the whole mix has every bot.
    assert_three_tiles(&frame, "the recording");
    assert_tones(&samples, &[440.0, 660.0, 880.0], "the recording (the whole mix has every bot)");

    // A bot dropping out does not end a recording; the room closing does.
    let (status, body) = http(addr, "POST", "/api/rooms/rec.1/recordings", "").await;
    assert_eq!(status, 201, "{body}");
    let second = json(&body)["id"].as_str().unwrap().to_string();
    blue.disconnect().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status_of = |body: &str| json(body)["recordings"].as_array().unwrap().iter().find(|r| r["id"] == second.as_str()).unwrap()["status"].as_str().unwrap().to_string();
    let (_, body) = http(addr, "GET", "/api/rooms/rec.1/recordings", "").await;
    assert_eq!(status_of(&body), "active", "{body}");
    red.leave().await;
    green.leave().await;
    let finished = async {
        loop {
            let (_, body) = http(addr, "GET", "/api/rooms/rec.1/recordings", "").await;
            if status_of(&body) == "complete" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(15), finished).await.expect("the room's close finishes the recording");
    let second_path = json(&body)["recordings"].as_array().unwrap().iter().find(|r| r["id"] == second.as_str()).unwrap()["path"].as_str().unwrap().to_string();
    let (d2, _) = discover(Path::new(&second_path));
    assert!(d2 >= Duration::from_secs(2), "{d2:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--record-all`: every room is recorded from its opening to its close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_all_records_every_room() {
    init_tracing();
    let dir: PathBuf = std::env::temp_dir().join(format!("tessera-rec-all-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = listening_on("127.0.0.1:0");
    config.rooms.recordings_dir = dir.clone();
    config.rooms.record_all = true;
    let server = server::start(ServerConfig { config, media: media_config(), ..ServerConfig::default() }).expect("server starts");
    let (url, addr) = (server.ws_url(), server.addr());
    let b = bot(&url, "auto", "red", 0xff0000, 440.0).await;
    wait_receiving(&b, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, body) = http(addr, "GET", "/api/rooms/auto/recordings", "").await;
    assert_eq!(json(&body)["recordings"][0]["status"], "active", "{body}");
    b.leave().await;
    let finished = async {
        loop {
            let (_, body) = http(addr, "GET", "/api/rooms/auto/recordings", "").await;
            if json(&body)["recordings"][0]["status"] == "complete" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(15), finished).await.expect("finished when the room closed");
    let (d, streams) = discover(Path::new(json(&body)["recordings"][0]["path"].as_str().unwrap()));
    assert!(d >= Duration::from_secs(3) && streams.len() == 2, "{d:?} {streams:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
