//! Regression: browsers hide their host addresses behind mDNS names
//! (`<uuid>.local`). Given such a candidate, GStreamer 1.22's webrtcbin
//! started a name lookup that kept about six file descriptors (eventfds,
//! sockets) and a thread for good, after the participant had left: the
//! soak grew the server from 46 to 103 fds in 200 cycles. Any other name
//! (`999.999.999.999` is one) took the same path. mDNS candidates are now
//! dropped before webrtcbin (trickled or inside the answer) and other names
//! refused; the server's fds come back to where they were, on either
//! transport.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::hostile::fake_answer;

/// An answer to `offer` with an mDNS host candidate in its audio section.
fn answer_with_mdns(offer: &str) -> String {
    fake_answer(offer).replacen("a=sendrecv\r\n", "a=sendrecv\r\na=candidate:1 1 udp 2113937151 6c1d2e3f-1111-4222-8333-944455566677.local 50000 typ host\r\n", 1)
}

async fn participant_with_mdns(addr: std::net::SocketAddr, i: usize) {
    let mut ws = ws_from("127.0.0.1", addr).await.unwrap();
    send_text(&mut ws, &join_msg("lan", &format!("p{i}"), "participant")).await;
    let offer = next_of_type(&mut ws, "offer", Duration::from_secs(10)).await.expect("an offer");
    let answer = answer_with_mdns(offer["sdp"].as_str().unwrap_or_default());
    send_text(&mut ws, &serde_json::json!({"type": "answer", "sdp": answer}).to_string()).await;
    let named = serde_json::json!({"type": "ice", "candidate": format!("candidate:9 1 udp 1 999.999.999.{} 5000 typ host", 900 + i), "sdpMLineIndex": 0});
    send_text(&mut ws, &named.to_string()).await;
    assert_eq!(next_error(&mut ws).await, "invalid_field", "a name that is not mDNS is refused");
    for k in 0..3 {
        let c = format!("candidate:{k} 1 udp 2113937151 {k}a0b1c2d-{i:04}-4e5f-8a9b-0c1d2e3f4a5b.local {} typ host", 50_000 + k);
        send_text(&mut ws, &serde_json::json!({"type": "ice", "candidate": c, "sdpMLineIndex": 0}).to_string()).await;
    }
    // Nothing comes back for them: no error, no refusal.
    let mut seen = Vec::new();
    while let Some(v) = next_msg(&mut ws, Duration::from_millis(500)).await {
        if v["type"] == "error" {
            seen.push(v);
        }
    }
    assert!(seen.is_empty(), "mDNS candidates are dropped silently: {seen:?}");
    send_text(&mut ws, r#"{"type":"leave"}"#).await;
    let _ = futures::SinkExt::close(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_candidates_leave_no_file_descriptors() {
    // On the default transport (str0m), and on webrtcbin, whose lookup leaked.
    for transport in ["str0m", "webrtcbin"] {
        let server = ChildServer::spawn(&["--transport", transport]);
        let addr: std::net::SocketAddr = server.url.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap();
        // One round first: what a server that has run a room keeps
        // (GStreamer's one-time state).
        participant_with_mdns(addr, 0).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (fds0, threads0) = (server.fds(), server.threads());
        for i in 1..=8 {
            participant_with_mdns(addr, i).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (fds, threads) = (server.fds(), server.threads());
        eprintln!("{transport}: fds {fds0} -> {fds}, threads {threads0} -> {threads} after 8 participants with 4 mDNS candidates each");
        assert!(fds <= fds0 + 2, "{transport}: fds grew from {fds0} to {fds} (32 mDNS candidates)");
        assert!(threads <= threads0 + 2, "{transport}: threads grew from {threads0} to {threads}");
    }
}
