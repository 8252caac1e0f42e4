//! What hostile clients send, for the tests and the soak: the corpus of
//! tests/corpus/hostile.tsv, a made-up answer, and a small repeatable
//! random generator for mutations and corrupted payloads.

/// One input of the hostile corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileInput {
    /// `frame` (on a fresh connection, before any join), `answer` (the
    /// answer of a participant, after its offer) or `ice` (a candidate of
    /// a participant, after [`FAKE_ANSWER`]).
    pub stage: &'static str,
    pub name: &'static str,
    /// The text frame, sent as is.
    pub frame: &'static str,
}

const CORPUS: &str = include_str!("../../tests/corpus/hostile.tsv");

/// tests/corpus/hostile.tsv, parsed (blank lines and `#` comments skipped).
pub fn corpus() -> Vec<HostileInput> {
    CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some(HostileInput { stage: f.next()?, name: f.next()?, frame: f.next()? })
        })
        .collect()
}

/// A well-formed answer with made-up ICE credentials and fingerprint, for
/// what is checked before any transport sees it (size, lines, fields); to
/// have it taken, answer [`fake_answer`] of the offer.
pub const FAKE_ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\na=setup:active\r\na=mid:audio0\r\na=rtpmap:111 OPUS/48000/2\r\na=sendrecv\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 00\r\na=setup:active\r\na=mid:video1\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";

/// An answer to `offer` with made-up ICE credentials and fingerprint: Opus
/// and VP8 on the offer's payload types, its mids bundled (both transports
/// take it: str0m checks the mids and the bundle group, webrtcbin does
/// not); it never connects, so no media flows. [`FAKE_ANSWER`]'s mids when
/// the offer has none.
pub fn fake_answer(offer: &str) -> String {
    // (kind, mid, payload type of its codec)
    let mut sections: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    for line in offer.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            sections.push((m.split_whitespace().next().unwrap_or(""), None, None));
        } else if let Some(last) = sections.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                last.1 = Some(mid);
            } else if let Some((pt, enc)) = line.strip_prefix("a=rtpmap:").and_then(|r| r.split_once(' ')) {
                let want = if last.0 == "audio" { "opus/" } else { "vp8/" };
                if last.2.is_none() && enc.to_ascii_lowercase().starts_with(want) {
                    last.2 = Some(pt);
                }
            }
        }
    }
    let kinds = [("audio", "audio0", "111", "OPUS/48000/2"), ("video", "video1", "96", "VP8/90000")];
    let mut mids = Vec::new();
    let mut media = String::new();
    for (kind, default_mid, default_pt, rtpmap) in kinds {
        let found = sections.iter().find(|s| s.0 == kind);
        let mid = found.and_then(|s| s.1).unwrap_or(default_mid);
        let pt = found.and_then(|s| s.2).unwrap_or(default_pt);
        mids.push(mid);
        media.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n\
             a=fingerprint:sha-256 00\r\na=setup:active\r\na=mid:{mid}\r\na=rtcp-mux\r\na=rtpmap:{pt} {rtpmap}\r\na=sendrecv\r\n"
        ));
    }
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n{media}", mids.join(" "))
}

/// xorshift64: random enough to corrupt and mutate, the same sequence for
/// the same seed (a seed of 0 is replaced, it would stay 0).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_has_at_least_60_inputs_of_known_stages() {
        let c = corpus();
        assert!(c.len() >= 60, "{}", c.len());
        assert!(c.iter().all(|i| ["frame", "answer", "ice"].contains(&i.stage) && !i.name.is_empty()));
        assert!(c.iter().filter(|i| i.stage != "frame").all(|i| serde_json::from_str::<serde_json::Value>(i.frame).is_ok()), "answers and candidates are JSON");
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs[0], xs[1]);
        assert!(XorShift::new(0).next_u64() != 0);
    }
}
