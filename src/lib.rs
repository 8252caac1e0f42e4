//! tessera: a WebRTC Multipoint Control Unit on GStreamer.
//!
//! The server, module by module along the data flow:
//! `config` (every setting: tessera.toml and flags) →
//! `signaling` (warp, WebSocket I/O; `signaling::session`, the pure
//! per-connection state machine) → `protocol` (messages, validation, error
//! codes) → `room` (participants, join order, placement, speaker) →
//! `media` (the only GStreamer user: participant, mixer, delivery).
//! `cluster` (Redis directory of nodes and room leases, placement, the
//! node-to-node WebSocket proxy) sits beside `signaling`, which asks it
//! where a join goes.
//! `layouts` and `layout` hold the pipelines/ files and grid geometry,
//! `ladder`, `link` and `speaker` pure rules with time passed in, `metrics`
//! the Prometheus view of the hub, `server` the wiring. `tools` (the bot, the benchmark harness, its plots and the
//! plain-pipeline reference) stands apart: the server never uses it.

pub mod auth;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod ladder;
pub mod layout;
pub mod layouts;
pub mod link;
pub mod media;
pub mod metrics;
pub mod protocol;
pub mod room;
pub mod server;
pub mod signaling;
pub mod speaker;
pub mod tools;
pub mod turn;
pub mod webhook;
