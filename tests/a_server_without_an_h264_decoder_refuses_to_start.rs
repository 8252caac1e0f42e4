//! Every offer names H.264 beside VP8, so a server that cannot decode
//! H.264 would show an H.264 participant as a name card forever. Such an
//! install (GStreamer without its libav plugin, `gstreamer1.0-libav`)
//! stops at start and says what is missing and where it comes from,
//! without a panic. Regression: it started, and on the str0m transport
//! logged a warning for every frame of every H.264 participant.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_server_without_an_h264_decoder_refuses_to_start() {
    gst::init().expect("GStreamer");
    let libav = gst::Registry::get().find_plugin("libav").expect("the libav plugin is installed here (scripts/deps.sh)");
    let libav_file = libav.filename().expect("the libav plugin's file");
    let system = libav_file.parent().expect("the plugin directory").to_path_buf();

    // The system's plugins, every one but libav.
    let dir = std::env::temp_dir().join(format!("tessera-no-libav-{}", std::process::id()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("temp dir");
    let mut linked = 0;
    for entry in std::fs::read_dir(&system).expect("the plugin directory lists") {
        let path = entry.expect("entry").path();
        if path == libav_file || path.extension().and_then(|e| e.to_str()) != Some("so") {
            continue;
        }
        std::os::unix::fs::symlink(&path, plugins.join(path.file_name().expect("name"))).expect("symlink");
        linked += 1;
    }
    assert!(linked > 50, "only {linked} plugins in {system:?}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GST_PLUGIN_SYSTEM_PATH_1_0", &plugins)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .env_remove("GST_PLUGIN_PATH")
        .env_remove("GST_PLUGIN_PATH_1_0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tessera serve starts");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tessera serve without libav did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "it started without an H.264 decoder: {err}");
    assert!(!err.contains("panicked"), "a panic instead of an error: {err}");
    // Only the one element is missing: the plugins left out are libav's.
    assert!(err.contains("GStreamer elements missing: avdec_h264 (install the packages listed in scripts/deps.sh)"), "{err}");
}
