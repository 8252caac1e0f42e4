//! Tools apart from the server: `tessera serve` never uses this tree.
//!
//! * [`bot`] and [`bot_media`]: `tessera bot`, the headless participant our
//!   users run in CI (signaling client and report; its webrtcbin media).
//! * [`bench`]: `tessera bench`, the benchmark harness; [`plot`] draws its
//!   charts; [`rawmix`] is the plain-pipeline reference it compares with;
//!   [`procinfo`] reads a process's CPU, memory, threads and fds.
//! * [`hostile`]: what hostile clients send (the corpus, a made-up answer,
//!   a repeatable random generator), for the tests and the soak.

pub mod bench;
pub mod bot;
pub mod bot_media;
pub mod hostile;
pub mod netns;
pub mod nginx;
pub mod plot;
pub mod procinfo;
pub mod rawmix;
pub mod redis;
pub mod rejoin;
