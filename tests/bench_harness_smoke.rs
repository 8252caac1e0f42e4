//! The benchmark harness itself must keep working (timing is not tested
//! here, only that every scenario runs and reports sane numbers). The
//! scenarios run as five `tessera bench --quick` processes, two at a time
//! (one per test; the groups take 30 to 60 s each, so that the two lanes
//! end together), each on its own ports and output folder.

use std::path::PathBuf;
use std::process::Command;

/// `tessera bench --quick` of `scenarios` at a small canvas: its report
/// (latest.json), RESULTS.md and output folder.
fn bench(tag: &str, scenarios: &[&str]) -> (serde_json::Value, String, PathBuf) {
    let out = std::env::temp_dir().join(format!("tessera-bench-{tag}-{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["bench", "--quick", "--canvas", "320x180"]);
    for s in scenarios {
        cmd.args(["--scenario", s]);
    }
    let status = cmd.arg("--out").arg(&out).status().unwrap();
    assert!(status.success(), "tessera bench --quick {scenarios:?}");
    let json = serde_json::from_str(&std::fs::read_to_string(out.join("results/latest.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    (json, md, out)
}

/// Capacity with its per-thread accounting, join time, latency, lip sync,
/// the plain pipeline and the mesh comparison, and the report's plots.
#[test]
fn bench_measures_capacity_latency_and_efficiency() {
    let (json, md, out) = bench("core", &["capacity", "join", "latency", "avsync", "raw", "mesh"]);
    let cap = json["capacity"].as_array().unwrap();
    let rows: Vec<(String, u64)> = cap.iter().map(|r| (r["inputs"].as_str().unwrap().to_string(), r["participants"].as_u64().unwrap())).collect();
    assert_eq!(rows, vec![("tile".into(), 2), ("tile".into(), 4), ("360p".into(), 2)]);
    for r in cap {
        assert!(r["server_cpu_pct_of_machine"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["fds"].as_u64().unwrap() > 0 && r["threads"].as_u64().unwrap() > 0);
    }
    // Threads per participant and CPU by kind of thread in every capacity row.
    for r in cap {
        assert!(r["threads_per_participant"].as_f64().unwrap() > 1.0, "{r}");
        assert!(!r["thread_cpu"].as_array().unwrap().is_empty(), "{r}");
    }
    let join = &json["join"];
    assert_eq!(join["join_to_first_frame_ms"].as_array().unwrap().len(), 3);
    assert!(join["p50_ms"].as_u64().unwrap() > 0);
    let g2g = &json["glass_to_glass"];
    assert!(g2g["detected"].as_u64().unwrap() >= 4, "{g2g}");
    assert!(g2g["p50_ms"].as_u64().unwrap() > 0);
    // Server-added latency is traced for most changes and is below glass to glass.
    assert!(g2g["server_detected"].as_u64().unwrap() >= 4, "{g2g}");
    let server_p50 = g2g["server_p50_ms"].as_f64().unwrap();
    assert!(server_p50 > 0.0 && server_p50 < g2g["p50_ms"].as_u64().unwrap() as f64, "{g2g}");
    // Lip sync: most events seen in both audio and video, offsets ordered
    // and within a second (the goal itself is the bench's to judge).
    let av = &json["avsync"];
    assert!(av["detected"].as_u64().unwrap() >= 4, "{av}");
    let (p5, p50, p95) = (av["p5_ms"].as_f64().unwrap(), av["p50_ms"].as_f64().unwrap(), av["p95_ms"].as_f64().unwrap());
    assert!(p5 <= p50 && p50 <= p95 && p5 > -1000.0 && p95 < 1000.0, "{av}");
    let raw = json["raw"].as_array().unwrap();
    assert_eq!(raw.len(), 1);
    assert!(raw[0]["raw_cpu_pct_of_machine"].as_f64().unwrap() > 0.0 && raw[0]["raw_fps"].as_f64().unwrap() > 10.0, "{}", raw[0]);
    assert!(raw[0]["ratio"].as_f64().unwrap() > 0.0, "{}", raw[0]);
    // Where the plain pipeline's time goes, beside the server's.
    assert!(raw[0]["thread_cpu"].as_array().is_some_and(|t| !t.is_empty()), "{}", raw[0]);
    assert!(md.contains("Where the plain pipeline's time goes"));
    let bw = json["bandwidth"].as_array().unwrap();
    assert_eq!(bw.len(), 1);
    assert_eq!((bw[0]["mesh_links"].as_u64(), bw[0]["mesh_links_up"].as_u64()), (Some(1), Some(1)), "{}", bw[0]);
    for k in ["tessera_up_kbps", "tessera_down_kbps", "mesh_up_kbps", "mesh_down_kbps"] {
        assert!(bw[0][k].as_f64().unwrap() > 20.0, "{k}: {}", bw[0]);
    }
    assert!(md.contains("## Capacity") && md.contains("## Join time") && md.contains("## Latency"));
    assert!(md.contains("## Bandwidth against a mesh") && md.contains("## Efficiency against a plain pipeline") && md.contains("## Plots"));
    // The plots are real PNGs.
    for name in ["capacity_cpu", "capacity_fps", "latency", "bandwidth"] {
        let png = std::fs::read(out.join(format!("plots/{name}.png"))).unwrap();
        assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "{name}.png");
        assert!(md.contains(&format!("plots/{name}.png")));
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A receiver and a sender behind a lossy router, with NACK and without.
#[test]
fn bench_measures_loss_with_and_without_nack() {
    let (json, _md, out) = bench("loss", &["loss"]);
    // A receiver behind 0, 3 and 10 % loss, with NACK and without: with
    // NACK it kept decoding and the server resent packets; without, more
    // stayed missing (the bench judges how much).
    let loss = json["loss"].as_array().unwrap();
    assert_eq!(
        loss.iter().map(|r| (r["path"].as_str().unwrap(), r["nack"].as_bool().unwrap(), r["loss_pct"].as_u64().unwrap())).collect::<Vec<_>>(),
        vec![
            ("downlink", true, 0),
            ("downlink", true, 3),
            ("downlink", true, 10),
            ("uplink", true, 0),
            ("uplink", true, 3),
            ("uplink", true, 10),
            ("downlink", false, 0),
            ("downlink", false, 3),
            ("downlink", false, 10)
        ]
    );
    for r in &loss[..6] {
        assert!(r["fps"].as_f64().unwrap() > 5.0, "{r}");
    }
    assert!(loss[2]["resent_packets"].as_u64().unwrap() > 0, "{}", loss[2]);
    assert!(loss[5]["asked"].as_u64().unwrap() > 0, "the server asked the lossy sender for nothing: {}", loss[5]);
    assert!(loss[2]["missing_pct"].as_f64().unwrap() < loss[8]["missing_pct"].as_f64().unwrap(), "{} vs {}", loss[2], loss[8]);
    assert_eq!(loss[8]["resent_packets"].as_u64(), Some(0), "without NACK nothing is resent: {}", loss[8]);
    let _ = std::fs::remove_dir_all(&out);
}

/// The soak's cycles and resources, and the cluster's joins and kill.
#[test]
fn bench_soaks_and_runs_the_cluster() {
    let (json, md, out) = bench("soak", &["soak", "cluster"]);
    // The cluster: two joins each way, one kill with the mix back in time.
    let c = &json["cluster"];
    for k in ["direct_ms", "carried_ms"] {
        let v = c[k].as_array().unwrap();
        assert!(v.len() == 2 && v.iter().all(|x| (1..20_000).contains(&x.as_u64().unwrap())), "{c}");
    }
    assert_eq!(c["kill_to_mix_ms"].as_array().map(|v| v.len()), Some(1), "{c}");
    assert!(c["kill_max_ms"].as_u64().unwrap() <= 11_000, "{c}");
    // The soak ran its cycles (bot, reset, two hostile inputs each) and
    // read the server's resources before and after.
    let soak = &json["soak"];
    assert_eq!(soak["cycles"], 12, "{soak}");
    assert_eq!((soak["bot_cycles"].as_u64(), soak["aborted"].as_u64(), soak["hostile"].as_u64()), (Some(12), Some(12), Some(24)), "{soak}");
    for k in ["before", "after"] {
        assert!(soak[k]["fds"].as_u64().unwrap() > 0 && soak[k]["threads"].as_u64().unwrap() > 0 && soak[k]["rss_mib"].as_f64().unwrap() > 0.0, "{soak}");
    }
    assert!(soak["honest_min_fps_1s"].as_f64().unwrap() > 0.0, "{soak}");
    assert!(md.contains("## Soak"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Every rung of the ladder, viewers, encoders and mixed codecs.
#[test]
fn bench_measures_rungs_viewers_and_codecs() {
    let (json, md, out) = bench("media", &["ladder", "viewers", "codecs", "mixed-codecs"]);
    // Every rung of both codecs received (at the 320x180 canvas every rung
    // is canvas-sized), with its encoding thread found and busy.
    let ladder = json["ladder"].as_array().unwrap();
    let rungs: Vec<(&str, &str)> = ladder.iter().map(|r| (r["codec"].as_str().unwrap(), r["rung"].as_str().unwrap())).collect();
    assert_eq!(rungs, vec![("vp8", "high"), ("vp8", "medium"), ("vp8", "low"), ("h264", "high"), ("h264", "medium"), ("h264", "low")]);
    for r in ladder {
        assert!(r["fps"].as_f64().unwrap() > 5.0 && r["total_kbps"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["width"].as_u64().unwrap() > 0 && r["height"].as_u64().unwrap() > 0, "{r}");
        assert!(r["cpu_pct_of_core"].as_f64().unwrap() > 0.0, "{r}");
    }
    // A room all on VP8, then with half its load bots on H.264: both kept
    // the observer's picture going.
    let mixed = json["mixed_codecs"].as_array().unwrap();
    assert_eq!(mixed.iter().map(|r| (r["participants"].as_u64().unwrap(), r["h264_participants"].as_u64().unwrap())).collect::<Vec<_>>(), vec![(4, 0), (4, 2)]);
    for r in mixed {
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0 && r["server_cpu_pct_of_machine"].as_f64().unwrap() > 0.0, "{r}");
    }
    let viewers = json["viewers"].as_array().unwrap();
    assert_eq!(viewers.iter().map(|r| r["viewers"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2]);
    assert!(viewers[1]["min_viewer_fps"].as_f64().unwrap() > 10.0, "{}", viewers[1]);
    // One encoder per codec on the same grid: each runs at the canvas rate
    // and sends something.
    let codecs = json["codecs"].as_array().unwrap();
    assert_eq!(codecs.len(), 3, "vp8enc, x264enc, openh264enc: {codecs:?}");
    for c in codecs {
        assert!(c["fps"].as_f64().unwrap() > 10.0 && c["kbps"].as_f64().unwrap() > 10.0, "{c}");
    }
    assert!(md.contains("## Downlink per rung") && md.contains("## Half the room on H.264") && md.contains("## Viewers"));
    let _ = std::fs::remove_dir_all(&out);
}

/// A share, recording and streaming outputs, HLS players and HTTPS.
#[test]
fn bench_measures_a_share_outputs_and_https() {
    let (json, md, out) = bench("outputs", &["share", "outputs", "hls-viewers", "tls"]);
    // A room without, then with a shared screen: both kept the picture going.
    let share = json["share"].as_array().unwrap();
    assert_eq!(share.iter().map(|r| (r["participants"].as_u64().unwrap(), r["sharing"].as_bool().unwrap())).collect::<Vec<_>>(), vec![(4, false), (4, true)]);
    for r in share {
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0 && r["server_cpu_pct_of_core"].as_f64().unwrap() > 0.0, "{r}");
    }
    // A room with nothing, a recording, an RTMP stream (to nginx-rtmp), an HLS stream.
    let outputs = json["outputs"].as_array().unwrap();
    assert_eq!(
        outputs.iter().map(|r| (r["participants"].as_u64().unwrap(), r["output"].as_str().unwrap())).collect::<Vec<_>>(),
        vec![(4, ""), (4, "recording"), (4, "rtmp"), (4, "hls")]
    );
    for r in outputs {
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0, "{r}");
    }
    // HLS players: none, then 20 fetch loops that keep up (within the one
    // segment a short window may cut).
    let hls = json["hls_viewers"].as_array().unwrap();
    assert_eq!(hls.iter().map(|r| r["viewers"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 20]);
    assert!(hls[1]["min_segments_fetched"].as_u64().unwrap() + 1 >= hls[1]["segments_expected"].as_u64().unwrap(), "{}", hls[1]);
    assert!(hls[0]["server_cpu_pct_of_core"].as_f64().unwrap() > 0.0, "{}", hls[0]);
    // The same room over HTTP/WS and HTTPS/WSS: the bots reached both.
    let tls = json["tls"].as_array().unwrap();
    assert_eq!(tls.iter().map(|r| r["tls"].as_bool().unwrap()).collect::<Vec<_>>(), vec![false, true]);
    for r in tls {
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0 && r["server_cpu_pct_of_machine"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(md.contains("## HTTPS/WSS cost"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Regression: a typo in `--scenario` ran nothing and exited 0.
#[test]
fn an_unknown_scenario_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["bench", "--quick", "--scenario", "capacty", "--out"])
        .arg(std::env::temp_dir().join(format!("tessera-bench-typo-{}", std::process::id())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scenario `capacty`") && err.contains("capacity"), "{err}");
}
