//! tessera: a WebRTC Multipoint Control Unit on GStreamer.
//!
//! Data flow, module by module:
//! `signaling` (warp, WebSocket) → `protocol` (messages, validation) →
//! `room` (participants, grid order) → `media` (GStreamer pipelines).
//! `config` is the server's one configuration tree (tessera.toml and flags);
//! `layout` holds the pure grid geometry; `bot` is the headless client;
//! `bench` measures it all and `plot` draws the benchmark charts (SVG).

pub mod bench;
pub mod bot;
pub mod config;
pub mod ladder;
pub mod layout;
pub mod layouts;
pub mod media;
pub mod plot;
pub mod protocol;
pub mod room;
pub mod server;
pub mod signaling;
pub mod speaker;
