//! The server's configuration: one tree, each setting defined once.
//!
//! A setting lives in one section struct below as an `Option` field whose
//! doc comment is also its `--flag` help, is given its default once in
//! [`Settings::resolve`], and has a line in docs/configuration.md. The same
//! sections are read from `tessera.toml` (unknown keys are errors with
//! file:line:column) and from `tessera serve`'s flags; a flag wins over the
//! file, the file over the default. Nothing else needs to change to add one.
//!
//! These are the settings read at start. What an operator edits while the
//! server runs (layouts, groups, `[layout]` and `[overlay]` of
//! `pipelines/mixer.toml`) is [`crate::layouts::Catalog`], reloaded by the
//! watcher; the canvas, encoder and audio settings of `mixer.toml` are read
//! at start, and the `[media]` section here overrides them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::layouts::{line_col, Problem};

/// `[server]`: where the server listens and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed). [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Folder of static files for the web client. [default: ./web, else the
    /// source tree's web/]
    #[arg(long)]
    pub web: Option<PathBuf>,
    /// Pipelines folder (mixer.toml, layouts/), watched for changes.
    /// [default: ./pipelines, else the source tree's pipelines/]
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
}

/// `[rooms]`: limits of a room.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RoomsSection {
    /// Participants per room (viewers are counted apart). [default: 25]
    #[arg(long)]
    pub max_participants: Option<usize>,
}

/// `[network]`: ICE and DTLS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Local address ICE may use (repeatable). [default: 127.0.0.1 when
    /// listening on loopback, otherwise every interface]
    #[arg(long = "ice-address")]
    #[serde(rename = "ice_addresses")]
    pub ice_address: Option<Vec<String>>,
    /// DTLS certificate and private key as one PEM file (`tessera dtls-cert`
    /// makes one); keeps the fingerprint across restarts and nodes.
    /// [default: an ECDSA P-256 certificate generated at start]
    #[arg(long)]
    pub dtls_cert: Option<PathBuf>,
}

/// `[media]`: overrides of pipelines/mixer.toml, read at start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// Canvas of the composed grid, WIDTHxHEIGHT. [default: mixer.toml's]
    #[arg(long)]
    pub canvas: Option<String>,
    /// Frame rate of the composed grid, 1..=60. [default: mixer.toml's]
    #[arg(long)]
    pub fps: Option<u32>,
    /// Jitterbuffer latency for incoming RTP, milliseconds. [default: mixer.toml's]
    #[arg(long)]
    pub jitterbuffer_ms: Option<u32>,
    /// Extra compositor latency, milliseconds. [default: mixer.toml's]
    #[arg(long)]
    pub mixer_latency_ms: Option<u32>,
    /// gst-launch fragment for each rung's VP8 encoder. [default: mixer.toml's]
    #[arg(long)]
    pub video_encoder: Option<String>,
}

/// Every setting of `tessera serve`, as given (file or flags): a section per
/// table of `tessera.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    #[command(flatten)]
    pub server: ServerSection,
    #[command(flatten)]
    pub rooms: RoomsSection,
    #[command(flatten)]
    pub network: NetworkSection,
    #[command(flatten)]
    pub media: MediaSection,
}

/// The resolved configuration: every value set.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub web: PathBuf,
    pub pipelines: PathBuf,
    pub max_participants: usize,
    /// Empty: every interface.
    pub ice_addresses: Vec<String>,
    pub dtls_cert: Option<PathBuf>,
    /// Overrides of mixer.toml (None: keep mixer.toml's).
    pub media: MediaSection,
}

/// A problem with a configuration file or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Problem),
    #[error("{0}")]
    Value(String),
}

fn or<T>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.or(b)
}

impl Settings {
    /// Read `tessera.toml`-style text; unknown keys and wrong types are
    /// reported with the file, line and column.
    pub fn from_toml(file: &Path, text: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid(Problem { file: file.to_path_buf(), line, column, message: e.message().trim().replace('\n', " ") })
        })
    }

    pub fn from_file(file: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { path: file.to_path_buf(), source })?;
        Settings::from_toml(file, &text)
    }

    /// `self` where set, else `under`: flags over the file.
    pub fn over(self, under: Settings) -> Settings {
        let (a, b) = (self, under);
        Settings {
            server: ServerSection {
                listen: or(a.server.listen, b.server.listen),
                web: or(a.server.web, b.server.web),
                pipelines: or(a.server.pipelines, b.server.pipelines),
            },
            rooms: RoomsSection { max_participants: or(a.rooms.max_participants, b.rooms.max_participants) },
            network: NetworkSection {
                ice_address: or(a.network.ice_address, b.network.ice_address),
                dtls_cert: or(a.network.dtls_cert, b.network.dtls_cert),
            },
            media: MediaSection {
                canvas: or(a.media.canvas, b.media.canvas),
                fps: or(a.media.fps, b.media.fps),
                jitterbuffer_ms: or(a.media.jitterbuffer_ms, b.media.jitterbuffer_ms),
                mixer_latency_ms: or(a.media.mixer_latency_ms, b.media.mixer_latency_ms),
                video_encoder: or(a.media.video_encoder, b.media.video_encoder),
            },
        }
    }

    /// Every value, with the defaults (defined here, once) where unset.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let listen = self.server.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let max_participants = self.rooms.max_participants.unwrap_or(25);
        if !(1..=1000).contains(&max_participants) {
            return Err(ConfigError::Value(format!("max_participants is {max_participants}; it must be between 1 and 1000")));
        }
        if let Some(fps) = self.media.fps {
            if !(1..=60).contains(&fps) {
                return Err(ConfigError::Value(format!("fps is {fps}; it must be between 1 and 60")));
            }
        }
        if let Some(c) = &self.media.canvas {
            parse_size(c).map_err(ConfigError::Value)?;
        }
        Ok(Config {
            listen,
            web: self.server.web.unwrap_or_else(default_web_dir),
            pipelines: self.server.pipelines.unwrap_or_else(default_pipelines_dir),
            max_participants,
            ice_addresses: self.network.ice_address.unwrap_or_else(|| default_ice_addresses(&listen.ip())),
            dtls_cert: self.network.dtls_cert,
            media: self.media,
        })
    }
}

/// `WIDTHxHEIGHT`, even, between 16x16 and 7680x4320.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}`: sizes are WIDTHxHEIGHT, even, between 16x16 and 7680x4320");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w < 16 || h < 16 || w > 7680 || h > 4320 || w % 2 != 0 || h % 2 != 0 {
        return Err(bad());
    }
    Ok((w, h))
}

/// `./web` if it exists, else the `web/` folder of the source tree.
pub fn default_web_dir() -> PathBuf {
    let local = PathBuf::from("web");
    if local.join("index.html").exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// `./pipelines` if it exists, else the `pipelines/` folder of the source tree.
pub fn default_pipelines_dir() -> PathBuf {
    let local = PathBuf::from("pipelines");
    if local.join("layouts").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines")
}

/// ICE addresses to use when none are configured: a server listening on
/// loopback only offers loopback candidates; otherwise every interface.
pub fn default_ice_addresses(listen: &std::net::IpAddr) -> Vec<String> {
    if listen.is_loopback() {
        vec![if listen.is_ipv4() { "127.0.0.1".into() } else { "::1".into() }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    fn flags(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap().s
    }

    #[test]
    fn no_file_and_no_flags_give_the_defaults() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.max_participants, 25);
        assert_eq!(c.ice_addresses, vec!["127.0.0.1".to_string()]);
        assert_eq!(c.dtls_cert, None);
        assert_eq!(c.media, MediaSection::default());
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let file = Settings::from_toml(
            Path::new("tessera.toml"),
            "[server]\nlisten = \"0.0.0.0:9000\"\n[rooms]\nmax_participants = 9\n[media]\nfps = 15\n",
        )
        .unwrap();
        let c = flags(&["--max-participants", "4"]).over(file).resolve().unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap(), "from the file");
        assert_eq!(c.max_participants, 4, "from the flag");
        assert_eq!(c.media.fps, Some(15));
        assert!(c.ice_addresses.is_empty(), "not on loopback: every interface");
    }

    #[test]
    fn the_shipped_example_loads_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tessera.toml");
        let s = Settings::from_file(&path).unwrap();
        assert_eq!(s.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(s.clone().resolve().unwrap(), Settings::default().resolve().unwrap());
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let e = Settings::from_toml(Path::new("t.toml"), "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.toml:3:1:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
        let e = Settings::from_toml(Path::new("t.toml"), "[nope]\nx = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:"), "{e}");
        let e = Settings::from_toml(Path::new("t.toml"), "[rooms]\nmax_participants = \"many\"\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn values_out_of_range_are_refused() {
        assert!(flags(&["--fps", "0"]).resolve().is_err());
        assert!(flags(&["--max-participants", "0"]).resolve().is_err());
        assert!(flags(&["--canvas", "641x360"]).resolve().is_err());
        assert!(flags(&["--canvas", "640x360"]).resolve().is_ok());
        let e = Settings::from_file(Path::new("/nonexistent/tessera.toml")).unwrap_err();
        assert!(e.to_string().contains("cannot read /nonexistent/tessera.toml"), "{e}");
    }

    #[test]
    fn repeatable_flags_replace_the_file_list() {
        let file = Settings::from_toml(Path::new("t"), "[network]\nice_addresses = [\"10.0.0.1\", \"10.0.0.2\"]\n").unwrap();
        assert_eq!(Settings::default().over(file.clone()).resolve().unwrap().ice_addresses, ["10.0.0.1", "10.0.0.2"]);
        let c = flags(&["--ice-address", "127.0.0.1"]).over(file).resolve().unwrap();
        assert_eq!(c.ice_addresses, ["127.0.0.1"]);
    }
}
