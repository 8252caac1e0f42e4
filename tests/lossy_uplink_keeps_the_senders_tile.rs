//! A sender's tile survives loss on its uplink: a bot behind a router
//! namespace that drops 3 %, then 10 %, of the packets it sends at random
//! (nftables) has its lost video packets asked for again by the server
//! (NACK, answered with RTX) instead of a keyframe each. Over 20 s the
//! server's decode of its camera, which is its tile in everyone's mix,
//! never freezes longer than 300 ms at 3 % and 700 ms at 10 %, and the
//! server asks it for no more than one keyframe per 2 s.

mod common;

use std::time::{Duration, Instant};

use common::netns::{lossy_router_room, NsBot};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_uplink_keeps_the_senders_tile() {
    let (ns, server, free) = lossy_router_room("uplink").await;
    let url = server.ws_url();
    let weak = NsBot::start(&ns, &url, "uplink", &[]);
    wait_receiving(&free, Duration::from_secs(15)).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        if let Some(id) = weak.report()["id"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the namespaced bot never joined: {}", weak.report());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let input = |s: &serde_json::Value| s["media"]["inputs"]["list"].as_array().and_then(|l| l.iter().find(|i| i["id"] == id.as_str()).cloned()).unwrap_or_default();
    // Settled first (about 5 s of its video decoded here): no start-up keyframes.
    while input(&room_stats(&server, "uplink").await)["frames"].as_u64().unwrap_or(0) < 150 {
        assert!(Instant::now() < deadline, "the server decoded no video from the namespaced bot: {}", room_stats(&server, "uplink").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (percent, limit_ms) in [(3u32, 300u64), (10, 700)] {
        ns.loss(percent, false).expect("nft rule");
        let a = room_stats(&server, "uplink").await;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(20)).await;
        let b = room_stats(&server, "uplink").await;
        let secs = started.elapsed().as_secs_f64();
        let (ia, ib) = (input(&a), input(&b));
        let d = |k: &str| ib[k].as_u64().unwrap_or(0).saturating_sub(ia[k].as_u64().unwrap_or(0));
        let from = a["media"]["inputs"]["at_ms"].as_u64().unwrap_or(0);
        let freezes: Vec<[u64; 2]> = ib["freezes"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| Some([x[0].as_u64()?, x[1].as_u64()?])).filter(|x| x[0] > from).collect())
            .unwrap_or_default();
        let longest = freezes.iter().map(|f| f[1]).max().unwrap_or(0);
        let fps = d("frames") as f64 / secs;
        let keyframes = d("keyframe_requests");
        eprintln!(
            "{percent} % loss from the sender: the server decoded {fps:.1} fps, longest freeze {longest} ms ({} over 150 ms), asked {} packets again, recovered {}, gave up {}, asked for {keyframes} keyframes in {secs:.0} s ({} since it joined)",
            freezes.len(),
            d("nack_requests"),
            d("recovered"),
            d("lost"),
            ib["keyframe_requests"]
        );
        assert!(longest <= limit_ms, "{percent} % loss: the sender's tile froze for {longest} ms (limit {limit_ms}): {freezes:?}\n{ib}");
        assert!(keyframes as f64 <= secs / 2.0 + 1.0, "{percent} % loss: the server asked the sender for {keyframes} keyframes in {secs:.0} s");
        assert!(fps >= 20.0, "{percent} % loss: only {fps:.1} fps of the sender decoded");
        assert!(d("recovered") > 0, "{percent} % loss: no lost packet came again (no NACK reached the sender, or no RTX came back): {ib}");
    }
    ns.loss(0, false).expect("nft rule removed");
    drop(weak);
    free.leave().await;
}
