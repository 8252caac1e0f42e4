//! The DTLS identity an operator configures: `tessera dtls-cert` writes an
//! ECDSA P-256 certificate, `tessera serve --dtls-cert FILE` offers exactly
//! its fingerprint (so a restart, or every node of a cluster, keeps it), and
//! a missing or broken file stops the server at start with a clear message.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{refused_start, ChildServer};

/// Join a room on `url` and return the fingerprints in the server's offer.
async fn offered_fingerprints(url: &str) -> Vec<String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
    ws.send(Message::Text(r#"{"type":"join","room":"fp","name":"probe"}"#.into())).await.expect("sends");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next()).await.expect("an offer in time").expect("open").expect("ok");
        let Message::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
        if v["type"] == "offer" {
            let sdp = v["sdp"].as_str().expect("sdp").to_string();
            return sdp.lines().filter_map(|l| l.strip_prefix("a=fingerprint:")).map(str::to_string).collect();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_certificate_file_keeps_the_fingerprint() {
    let dir = std::env::temp_dir().join(format!("tessera-dtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dtls.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["dtls-cert", "-o"]).arg(&file).output().expect("dtls-cert runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains("ECDSA P-256"), "{printed}");
    let fingerprint = printed.rsplit("sha-256 ").next().expect("a fingerprint").trim().to_string();
    assert_eq!(fingerprint.len(), 95, "{printed}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the key file is readable by others: {mode:o}");
    // It never overwrites.
    let again = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["dtls-cert", "-o"]).arg(&file).output().unwrap();
    assert!(!again.status.success());

    // Two runs of the server with the file offer the same fingerprint: the file's.
    for _ in 0..2 {
        let server = ChildServer::spawn(&["--dtls-cert", file.to_str().unwrap()]);
        let fps = offered_fingerprints(&server.url).await;
        assert!(!fps.is_empty());
        for f in fps {
            assert_eq!(f, format!("sha-256 {fingerprint}"));
        }
    }
    // Without it, each process makes its own.
    let a = offered_fingerprints(&ChildServer::spawn(&[]).url).await;
    let b = offered_fingerprints(&ChildServer::spawn(&[]).url).await;
    assert_ne!(a[0], b[0]);
    assert_ne!(a[0], format!("sha-256 {fingerprint}"));

    // Files that cannot work stop the server at start, with a reason.
    let err = refused_start(&["--dtls-cert".as_ref(), "/nonexistent/dtls.pem".as_ref()]);
    assert!(err.contains("cannot read the DTLS certificate"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let cert_only: String = text.split_inclusive('\n').take_while(|l| !l.contains("PRIVATE KEY")).collect();
    let broken = dir.join("cert-only.pem");
    std::fs::write(&broken, cert_only).unwrap();
    let err = refused_start(&["--dtls-cert".as_ref(), broken.as_os_str()]);
    assert!(err.contains("not a usable DTLS certificate") && err.contains("no PRIVATE KEY"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
