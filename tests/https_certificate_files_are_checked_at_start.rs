//! `--tls-cert/--tls-key`: files that are missing, unreadable as PEM, or a
//! key that is not the certificate's stop the server at start with the
//! reason (never a panic, never a server that starts and fails each
//! handshake); good files serve HTTPS and WSS, and a bot that trusts the
//! certificate joins over wss://.

mod common;

use std::time::Duration;

use common::*;
use tessera::certs::Identity;
use tessera::tools::bot::{Bot, BotOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_certificate_files_are_checked_at_start() {
    let dir = std::env::temp_dir().join(format!("tessera-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let a = Identity::generate(&["localhost".into(), "127.0.0.1".into()]).expect("a certificate");
    let b = Identity::generate(&["localhost".into()]).expect("another");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let (cert, key, other_key, junk) = (write("cert.pem", &a.cert_pem), write("key.pem", &a.key_pem), write("other.pem", &b.key_pem), write("junk.pem", "not a certificate"));
    let missing = dir.join("missing.pem");

    let cases: [(&std::path::Path, &std::path::Path, &str); 4] = [
        (&missing, &key, "cannot read the certificate"),
        (&cert, &missing, "cannot read the private key"),
        (&junk, &key, "no CERTIFICATE"),
        (&cert, &other_key, "does not belong to the certificate"),
    ];
    for (c, k, why) in cases {
        let err = refused_start(&["--tls-cert".as_ref(), c.as_os_str(), "--tls-key".as_ref(), k.as_os_str()]);
        assert!(err.contains(why), "{c:?} + {k:?}: expected `{why}` in: {err}");
    }
    let err = refused_start(&["--tls-cert".as_ref(), cert.as_os_str()]);
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");

    // Good files: HTTPS and WSS, and a bot that trusts the certificate joins.
    let server = ChildServer::spawn(&["--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")]);
    assert!(server.url.starts_with("wss://127.0.0.1:"), "{}", server.url);
    let joined = Bot::connect(BotOptions { tls_trust: Some(a.cert_pem.clone()), ..bot_options(&server.url, "tls", "secure", 0xff0000, 440.0) })
        .await
        .expect("a bot trusting the certificate connects over wss://");
    wait_receiving(&joined, Duration::from_secs(10)).await;
    joined.leave().await;
    // A client that does not trust it is refused by TLS, not by tessera.
    let e = Bot::connect(bot_options(&server.url, "tls", "untrusting", 0x00ff00, 660.0)).await.err().expect("an untrusted certificate is refused");
    assert!(format!("{e:#}").to_lowercase().contains("certificate"), "{e:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
