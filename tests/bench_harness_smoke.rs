//! The benchmark harness itself must keep working (timing is not tested
//! here, only that every scenario runs and reports sane numbers).

use std::process::Command;

#[test]
fn bench_harness_smoke() {
    let out = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["bench", "--quick", "--canvas", "320x180", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results/latest.json")).unwrap()).unwrap();
    let cap = json["capacity"].as_array().unwrap();
    assert_eq!(cap.iter().map(|r| r["participants"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 4]);
    for r in cap {
        assert!(r["server_cpu_pct_of_machine"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["observer_fps"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["fds"].as_u64().unwrap() > 0 && r["threads"].as_u64().unwrap() > 0);
    }
    let join = &json["join"];
    assert_eq!(join["join_to_first_frame_ms"].as_array().unwrap().len(), 3);
    assert!(join["p50_ms"].as_u64().unwrap() > 0);
    let g2g = &json["glass_to_glass"];
    assert!(g2g["detected"].as_u64().unwrap() >= 4, "{g2g}");
    assert!(g2g["p50_ms"].as_u64().unwrap() > 0);
    let ladder = json["ladder"].as_array().unwrap();
    assert_eq!(ladder.iter().map(|r| r["rung"].as_str().unwrap()).collect::<Vec<_>>(), vec!["high", "medium", "low"]);
    for r in ladder {
        assert!(r["fps"].as_f64().unwrap() > 5.0 && r["total_kbps"].as_f64().unwrap() > 0.0, "{r}");
    }
    let viewers = json["viewers"].as_array().unwrap();
    assert_eq!(viewers.iter().map(|r| r["viewers"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2]);
    assert!(viewers[1]["min_viewer_fps"].as_f64().unwrap() > 10.0, "{}", viewers[1]);
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    assert!(md.contains("## Capacity") && md.contains("## Join time") && md.contains("## Glass to glass"));
    assert!(md.contains("## Downlink per rung") && md.contains("## Viewers"));
    let _ = std::fs::remove_dir_all(&out);
}
