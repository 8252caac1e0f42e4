//! Regression: with our ECDSA certificate given to webrtcbin, about one DTLS
//! handshake in sixty failed ("certificate verify failed", media_failed):
//! negotiation started while the pipeline's state change to PLAYING was
//! still running, which could take a new transport's decoder to READY
//! before it got the certificate. 60 receivers joining in waves of 15,
//! all at once, while three participants load the machine, must all connect.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::bot::{Bot, BotOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dtls_handshake_succeeds() {
    let server = start_server(media_config());
    let url = server.ws_url();
    // Three participants keep the machine busy (encoding, decoding) while
    // the receivers' handshakes happen, all of a wave at once.
    let mut senders = Vec::new();
    for i in 0..3 {
        senders.push(Bot::connect(busy_bot(&url, "many", &format!("sender{i}"), 440.0 + 220.0 * i as f64)).await.expect("sender connects"));
    }
    for s in &senders {
        wait_receiving(s, Duration::from_secs(10)).await;
    }
    let mut connected = 0;
    for wave in 0..4 {
        let joins = (0..15).map(|i| {
            let o = BotOptions { viewer: true, decode: i % 5 == 0, ..bot_options(&url, "many", &format!("v{wave}-{i}"), 0, 0.0) };
            Bot::connect(o)
        });
        let viewers: Vec<Bot> = futures::future::join_all(joins).await.into_iter().map(|b| b.expect("viewer connects")).collect();
        for v in &viewers {
            let ok = v.wait_until(Duration::from_secs(15), |b| b.is_connected() && b.stats().video_packets > 0).await;
            assert!(ok, "wave {wave}: a viewer never connected: errors {:?}", v.errors());
            assert!(v.errors().is_empty(), "{:?}", v.errors());
            connected += 1;
        }
        futures::future::join_all(viewers.into_iter().map(|v| v.leave())).await;
    }
    assert_eq!(connected, 60);
    for s in senders {
        s.leave().await;
    }
    server.stop().await;
}
