//! Every offer names H.264 beside VP8, so a server that cannot decode
//! H.264 would show an H.264 participant as a name card forever. Such an
//! install (GStreamer without its libav plugin, `gstreamer1.0-libav`)
//! stops at start and says what is missing and where it comes from,
//! without a panic. Regression: it started, and on the str0m transport
//! logged a warning for every frame of every H.264 participant.

mod common;

use std::time::Duration;

use common::refused_start_with;

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

    // Scanning the system's plugins into a new registry takes seconds.
    let registry = dir.join("registry.bin");
    let err = refused_start_with(
        &[],
        &[
            ("GST_PLUGIN_SYSTEM_PATH_1_0", Some(plugins.as_os_str())),
            ("GST_REGISTRY", Some(registry.as_os_str())),
            ("GST_PLUGIN_PATH", None),
            ("GST_PLUGIN_PATH_1_0", None),
        ],
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Only the one element is missing: the plugins left out are libav's.
    assert!(err.contains("GStreamer elements missing: avdec_h264 (install the packages listed in scripts/deps.sh)"), "{err}");
}
