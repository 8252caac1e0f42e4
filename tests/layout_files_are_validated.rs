//! Operators edit pipelines/ without touching Rust, so every broken file
//! must be reported with file, line, column and a clear message, by
//! `tessera check` (exit 1) and by the loader the server uses; the shipped
//! files must pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layout_corpus")
}

fn check(dir: &Path) -> Result<tessera::layouts::Catalog, tessera::layouts::Problems> {
    tessera::layouts::load_dir(dir, &tessera::media::check_fragment)
}

#[test]
fn every_broken_file_gets_its_exact_error() {
    let mut cases = 0;
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let dir = entry.unwrap().path();
        let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
        let problems = check(&dir).expect_err(&format!("{} must be rejected", dir.display()));
        let prefix = format!("{}/", dir.display());
        let got: Vec<String> = problems.0.iter().map(|p| p.to_string().replacen(&prefix, "", 1)).collect();
        let want: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(got, want, "case {}", dir.display());
        cases += 1;
    }
    assert_eq!(cases, 30, "corpus cases (add the new one here)");
}

#[test]
fn shipped_pipelines_are_valid_and_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let c = check(&dir).unwrap_or_else(|p| panic!("shipped pipelines are invalid:\n{p}"));
    for g in ["grid", "speaker", "sidebar", "pip", "panel"] {
        assert!(c.group(g).is_some(), "group {g} is shipped");
    }
    // The grid group goes up to 25, like the automatic grid.
    let grid = c.group("grid").unwrap();
    assert_eq!(grid.by_count.len(), 25);
    for n in 1..=25usize {
        let l = c.pick("grid", None, n).unwrap();
        assert!(l.slots.len() >= n, "grid layout for {n} has {} slots", l.slots.len());
    }
}

#[test]
fn check_command_exits_1_on_problems_and_0_on_the_shipped_files() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let bad = Command::new(bin).args(["check"]).arg(corpus().join("group_gap")).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("grid.toml:6:9: group `grid` has a gap"), "{err}");
    let good = Command::new(bin).args(["check"]).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")).output().unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
}

#[test]
fn the_server_refuses_to_start_on_an_invalid_default() {
    let dir = corpus().join("bad_encoder_property");
    let err = common::refused_start(&["--pipelines".as_ref(), dir.as_os_str()]);
    assert!(err.contains("no property \"speed\" in element \"vp8enc\""), "{err}");
}
