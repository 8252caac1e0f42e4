//! Live streaming: `POST /api/rooms/{room}/streams` sends the composed grid
//! and the whole mix to an RTMP server (H.264 + AAC in FLV) or as HLS that
//! tessera serves under `/hls/<name>/`, with no video encoder of its own.
//! Against Debian's nginx with its RTMP module on loopback: a stream
//! started while nothing listens is `failed` and tried again, the room
//! unharmed, and once nginx is up it is `active` and reads back (GStreamer's
//! rtmp2src) with the bots' colours in their tiles and their tones. HLS:
//! the playlist and a segment fetched over HTTP decode the same way, cut
//! about where asked (2 s).

mod common;

use std::time::Duration;

use common::*;
use tessera::server::{self, ServerConfig};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn stream_status(addr: std::net::SocketAddr, room: &str, id: &str) -> serde_json::Value {
    let (_, body) = http(addr, "GET", &format!("/api/rooms/{room}/streams"), "").await;
    json(&body)["streams"].as_array().and_then(|a| a.iter().find(|s| s["id"] == id).cloned()).unwrap_or_else(|| panic!("no stream {id}: {body}"))
}

async fn wait_status(addr: std::net::SocketAddr, room: &str, id: &str, want: &str, timeout: Duration) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    loop {
        let s = stream_status(addr, room, id).await;
        if s["status"] == want {
            return s;
        }
        assert!(t0.elapsed() < timeout, "stream {id} is not {want} after {timeout:?}: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const AUDIO_OUT: &str = "audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate=48000 ! appsink name=a sync=false async=false";
const VIDEO_OUT: &str = "videoconvert ! video/x-raw,format=RGB ! appsink name=v sync=false async=false";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_stream_retries_until_its_server_is_there() {
    init_tracing();
    let port = free_tcp_port();
    let server = server::start(ServerConfig { config: listening_on("127.0.0.1:0"), media: media_config(), ..ServerConfig::default() }).expect("server starts");
    let (url, addr) = (server.ws_url(), server.addr());
    let [red, green, blue] = three_bots(&url, "live.1").await;
    let target = format!("rtmp://127.0.0.1:{port}/live/s3cr3tkey");
    let (status, body) = http(addr, "POST", "/api/rooms/live.1/streams", &format!("{{\"url\":\"{target}\"}}")).await;
    assert_eq!(status, 201, "{body}");
    assert!(!body.contains("s3cr3tkey"), "the stream key is never shown: {body}");
    let started = json(&body);
    assert_eq!(started["rtmp"], format!("rtmp://127.0.0.1:{port}/live/***"));
    let id = started["id"].as_str().unwrap().to_string();

    // Nothing listens yet: the attempt fails, and the room does not notice.
    let failed = wait_status(addr, "live.1", &id, "failed", Duration::from_secs(10)).await;
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    let before = red.stats().frames;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = red.stats().frames - before;
    assert!(during >= 30, "the room slowed while its stream failed: {during} frames in 2 s");

    // The server comes up: a later attempt gets through.
    let nginx = NginxRtmp::start(port).expect("nginx-rtmp starts");
    let active = wait_status(addr, "live.1", &id, "active", Duration::from_secs(40)).await;
    assert!(active["attempts"].as_u64().unwrap() >= 2, "{active}");

    let desc = format!(
        "rtmp2src location={target} ! flvdemux name=d d.video ! queue ! h264parse ! avdec_h264 ! {VIDEO_OUT} d.audio ! queue ! aacparse ! avdec_aac ! {AUDIO_OUT}"
    );
    let (frame, samples) = tokio::task::spawn_blocking(move || decode_av(&desc, Duration::from_millis(500), Some(3.0), Duration::from_secs(30))).await.unwrap();
    assert_three_tiles(&frame, "the RTMP stream");
    assert_tones(&samples, &[440.0, 660.0, 880.0], "the RTMP stream (the whole mix)");

    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/live.1/streams/{id}"), "").await;
    assert_eq!((status, json(&body)["status"].as_str().unwrap()), (200, "complete"), "{body}");
    let (status, body) = http(addr, "DELETE", "/api/rooms/live.1/streams/s999", "").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (404, "unknown_stream"));
    for bad in ["{}", "{\"url\":\"http://example.com/x\"}", "{\"url\":\"rtmp://a/b\",\"hls\":\"c\"}", "nope"] {
        let (status, body) = http(addr, "POST", "/api/rooms/live.1/streams", bad).await;
        assert_eq!((status, json(&body)["code"].as_str().unwrap()), (400, "invalid_field"), "{bad}: {body}");
    }
    drop(nginx);
    for b in [red, green, blue] {
        b.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_stream_is_served_over_http() {
    init_tracing();
    let dir = std::env::temp_dir().join(format!("tessera-hls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = listening_on("127.0.0.1:0");
    config.rooms.hls_dir = dir.clone();
    let mut media = media_config();
    media.stream.hls_segment_s = 2;
    let server = server::start(ServerConfig { config, media, ..ServerConfig::default() }).expect("server starts");
    let (url, addr) = (server.ws_url(), server.addr());
    let [red, green, blue] = three_bots(&url, "live.2").await;
    let (status, body) = http(addr, "POST", "/api/rooms/live.2/streams", "{\"hls\":\"main\"}").await;
    assert_eq!(status, 201, "{body}");
    let started = json(&body);
    assert_eq!(started["playlist"], "/hls/main/index.m3u8");
    let id = started["id"].as_str().unwrap().to_string();
    let (status, body) = http(addr, "POST", "/api/rooms/live.2/streams", "{\"hls\":\"main\"}").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (409, "stream_exists"), "{body}");
    let (status, body) = http(addr, "POST", "/api/rooms/live.2/streams", "{\"hls\":\"../etc\"}").await;
    assert_eq!((status, json(&body)["code"].as_str().unwrap()), (400, "invalid_field"), "{body}");

    // The live playlist over HTTP, never cached, with segments of about 2 s.
    let t0 = std::time::Instant::now();
    let (head, playlist) = loop {
        let (status, head, body) = http_bytes(addr, "GET", "/hls/main/index.m3u8", "").await;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status == 200 && text.matches("#EXTINF").count() >= 3 {
            break (head, text);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no playlist of 3 segments after 30 s: {status} {text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/vnd.apple.mpegurl") && head.contains("cache-control: no-cache"), "{head}");
    let durations: Vec<f64> = playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|l| l.trim_end_matches(',').split(',').next()?.parse().ok()).collect();
    // The first segment ends where the rung's second keyframe landed (its
    // encoder starts with one and is asked for one), the others on time.
    assert!(durations.iter().skip(1).all(|d| (1.5..=2.6).contains(d)), "segments are cut about every 2 s (a keyframe asked for at each cut): {durations:?}\n{playlist}");
    assert_eq!(stream_status(addr, "live.2", &id).await["status"], "active");

    // A segment fetched like any player would, decoded.
    let segment = playlist.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).nth(1).expect("a second segment").trim().to_string();
    let (status, _, bytes) = http_bytes(addr, "GET", &format!("/hls/main/{segment}"), "").await;
    assert_eq!(status, 200, "{segment}");
    let file = std::env::temp_dir().join(format!("tessera-hls-segment-{}.ts", std::process::id()));
    std::fs::write(&file, &bytes).unwrap();
    let desc = format!(
        "filesrc location={} ! tsdemux name=d d. ! queue ! h264parse ! avdec_h264 ! {VIDEO_OUT} d. ! queue ! aacparse ! avdec_aac ! {AUDIO_OUT}",
        file.display()
    );
    let (frame, samples) = tokio::task::spawn_blocking(move || decode_av(&desc, Duration::from_millis(500), None, Duration::from_secs(20))).await.unwrap();
    assert!(samples.len() >= 48_000, "a segment of about 2 s has {} samples", samples.len());
    assert_three_tiles(&frame, "the HLS segment");
    assert_tones(&samples, &[440.0, 660.0, 880.0], "the HLS segment (the whole mix)");
    let _ = std::fs::remove_file(&file);

    // Stopped: the playlist ends.
    let (status, body) = http(addr, "DELETE", &format!("/api/rooms/live.2/streams/{id}"), "").await;
    assert_eq!((status, json(&body)["status"].as_str().unwrap()), (200, "complete"), "{body}");
    // (The server's copy of a file is at most 0.5 s old.)
    let t0 = std::time::Instant::now();
    loop {
        let (_, body) = http(addr, "GET", "/hls/main/index.m3u8", "").await;
        if body.contains("#EXT-X-ENDLIST") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "the playlist does not end: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = http(addr, "GET", "/hls/main/../../etc/passwd", "").await;
    assert_eq!(status, 404);
    for b in [red, green, blue] {
        b.leave().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
