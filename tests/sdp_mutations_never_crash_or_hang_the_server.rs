//! Fuzzers found crashes in trusted servers' SDP handling (a 259,318-line
//! SDP in Janus, an empty fingerprints array in mediasoup). A real answer
//! of a bot (tests/corpus/bot-answer.sdp) goes through 300 seeded random
//! mutations — lines dropped, duplicated, swapped, truncated, bytes
//! flipped — each sent as the answer of a participant. The same seed gives
//! the same mutations on every run. None may crash or hang the server:
//! every answer is refused with a code or taken, `/healthz` answers, an
//! honest bot can join and receive afterwards, and no participant is left.

mod common;

use std::time::Duration;

use common::*;
use tessera::tools::hostile::XorShift;

const SEED: u64 = 0x7e55_e7a5_eed5_0001;
const MUTATIONS: usize = 300;
const WORKERS: usize = 4;

/// One to four mutations of `sdp`.
fn mutate(sdp: &str, rng: &mut XorShift) -> String {
    let mut lines: Vec<Vec<u8>> = sdp.split("\r\n").filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
    for _ in 0..1 + rng.below(4) {
        let n = lines.len();
        if n == 0 {
            break;
        }
        let i = rng.below(n);
        match rng.below(7) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                let times = 1 + rng.below(50);
                for _ in 0..times {
                    lines.insert(i, l.clone());
                }
            }
            2 => {
                let j = rng.below(n);
                lines.swap(i, j);
            }
            3 => {
                let cut = rng.below(lines[i].len() + 1);
                lines[i].truncate(cut);
            }
            4 => {
                if !lines[i].is_empty() {
                    let at = rng.below(lines[i].len());
                    lines[i][at] ^= 1 << rng.below(8);
                }
            }
            5 => {
                if !lines[i].is_empty() {
                    let at = rng.below(lines[i].len());
                    lines[i][at] = rng.next_u64() as u8;
                }
            }
            _ => {
                // Truncate the whole SDP here.
                lines.truncate(i);
            }
        }
    }
    let joined: Vec<u8> = lines.into_iter().flat_map(|mut l| {
        l.extend_from_slice(b"\r\n");
        l
    }).collect();
    String::from_utf8_lossy(&joined).into_owned()
}

/// What happened to one mutated answer.
#[derive(Debug, Default)]
struct Outcomes {
    refused_by_validation: usize,
    refused_by_webrtc: usize,
    taken: usize,
}

async fn worker(addr: std::net::SocketAddr, answers: Vec<String>) -> Outcomes {
    let mut out = Outcomes::default();
    let mut ws: Option<Ws> = None;
    let mut mids: Vec<String> = Vec::new();
    for sdp in answers {
        if ws.is_none() {
            let mut c = ws_from("127.0.0.6", addr).await.expect("connect");
            send_text(&mut c, &join_msg("m", "mutant", "participant")).await;
            let offer = next_of_type(&mut c, "offer", Duration::from_secs(10)).await.expect("an offer: the server is not hung");
            // The bot answered webrtcbin's mids (audio0, video1); the
            // mutant answers this offer's (str0m's are its own).
            mids = offer["sdp"].as_str().unwrap_or_default().lines().filter_map(|l| l.trim_end().strip_prefix("a=mid:").map(String::from)).collect();
            ws = Some(c);
        }
        let Some(c) = ws.as_mut() else { unreachable!() };
        let mut sdp = sdp;
        for (theirs, ours) in ["audio0", "video1"].iter().zip(&mids) {
            sdp = sdp.replace(theirs, ours);
        }
        send_text(c, &serde_json::json!({"type": "answer", "sdp": sdp}).to_string()).await;
        // A refusal comes at once; silence means the answer was taken.
        let mut verdict = None;
        while let Some(v) = next_msg(c, Duration::from_millis(250)).await {
            if v["type"] == "error" {
                let code = v["code"].as_str().unwrap_or_default();
                assert!(["invalid_sdp", "sdp_too_large", "media_failed"].contains(&code), "an unexpected code for a mutated answer: {v}");
                verdict = Some(v["message"].as_str().unwrap_or_default().starts_with("the answer was refused"));
                break;
            }
        }
        match verdict {
            Some(false) => out.refused_by_validation += 1,
            Some(true) => out.refused_by_webrtc += 1,
            None => {
                out.taken += 1;
                // A taken answer ends this offer: leave, and join again.
                let mut c = ws.take().unwrap();
                send_text(&mut c, r#"{"type":"leave"}"#).await;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_mutations_never_crash_or_hang_the_server() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bot-answer.sdp");
    let base = std::fs::read_to_string(&path).expect("the bot's answer").replace("\r\n", "\n").replace('\n', "\r\n");
    let mut rng = XorShift::new(SEED);
    let all: Vec<String> = (0..MUTATIONS).map(|_| mutate(&base, &mut rng)).collect();
    // Deterministic: the same seed, the same inputs.
    let again: Vec<String> = {
        let mut rng = XorShift::new(SEED);
        (0..MUTATIONS).map(|_| mutate(&base, &mut rng)).collect()
    };
    assert_eq!(all, again);
    assert!(all.iter().filter(|m| **m != base).count() >= MUTATIONS * 9 / 10, "the mutations change the answer");

    let server = start_server(media_config());
    let addr = server.addr();
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); WORKERS];
    for (i, a) in all.into_iter().enumerate() {
        shares[i % WORKERS].push(a);
    }
    let t0 = std::time::Instant::now();
    let results = futures::future::join_all(shares.into_iter().map(|s| worker(addr, s))).await;
    let total = results.iter().fold(Outcomes::default(), |a, r| Outcomes {
        refused_by_validation: a.refused_by_validation + r.refused_by_validation,
        refused_by_webrtc: a.refused_by_webrtc + r.refused_by_webrtc,
        taken: a.taken + r.taken,
    });
    eprintln!("{MUTATIONS} mutated answers in {:?}: {total:?}", t0.elapsed());
    assert_eq!(total.refused_by_validation + total.refused_by_webrtc + total.taken, MUTATIONS);
    assert!(total.refused_by_validation > 0 && total.taken > 0, "the mutations reach both the validation and the transport: {total:?}");

    let (status, body) = http(addr, "GET", "/healthz", "").await;
    assert_eq!(status, 200, "{body}");
    let honest = bot(&server.ws_url(), "after", "honest", 0x00ff00, 440.0).await;
    wait_receiving(&honest, Duration::from_secs(10)).await;
    honest.leave().await;
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = server.hub.participant_count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "every mutant left with its connection");
    server.stop().await;
}
