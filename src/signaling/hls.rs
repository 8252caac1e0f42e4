//! `/hls/<name>/<file>`: HLS playlists and segments served from memory.
//!
//! Every player fetches the same few files: the live playlist every second
//! or two and each new segment once. Read from disk per request, a few
//! hundred players cost the server more than the segmenting; here each
//! file is read once and kept, and looked at again (its size and time)
//! only when its copy is older than [`RECHECK`], so a new playlist or a
//! new stream under the same name shows within that.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use warp::http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use warp::http::StatusCode;

/// How old a copy may be before the file is looked at again.
pub const RECHECK: Duration = Duration::from_millis(500);
/// Files kept (a playlist of 6 segments per stream, a few streams).
pub const KEPT: usize = 64;

struct Copy {
    body: Bytes,
    modified: Option<SystemTime>,
    len: u64,
    checked: Instant,
}

/// The files of `[rooms] hls_dir`, cached.
#[derive(Clone)]
pub struct HlsFiles {
    dir: PathBuf,
    copies: Arc<Mutex<HashMap<PathBuf, Copy>>>,
}

/// A stream name or a file name of one: letters, digits, `-`, `_`, `.`,
/// not starting with a dot (no `..`, no hidden files, no folders).
fn plain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl HlsFiles {
    pub fn new(dir: PathBuf) -> HlsFiles {
        HlsFiles { dir, copies: Arc::default() }
    }

    /// The answer to `GET /hls/<name>/<file>`.
    pub async fn get(&self, name: &str, file: &str) -> warp::reply::Response {
        let playlist = file.ends_with(".m3u8");
        if !plain(name) || !plain(file) || !(playlist || file.ends_with(".ts")) {
            return status(StatusCode::NOT_FOUND);
        }
        let path = self.dir.join(name).join(file);
        let body = match self.fresh(&path) {
            Some(b) => b,
            None => {
                let (copies, p) = (self.copies.clone(), path.clone());
                match tokio::task::spawn_blocking(move || load(&copies, &p)).await {
                    Ok(Some(b)) => b,
                    _ => return status(StatusCode::NOT_FOUND),
                }
            }
        };
        let mut r = warp::reply::Response::new(body.into());
        let h = r.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        if playlist {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        } else {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        }
        r
    }

    /// The copy of `path` if it is recent enough.
    fn fresh(&self, path: &PathBuf) -> Option<Bytes> {
        self.copies.lock().get(path).filter(|c| c.checked.elapsed() < RECHECK).map(|c| c.body.clone())
    }
}

/// Look at the file (blocking): the copy again if it did not change, else
/// its new contents, kept. None: no such file.
fn load(copies: &Mutex<HashMap<PathBuf, Copy>>, path: &PathBuf) -> Option<Bytes> {
    let meta = std::fs::metadata(path).ok()?;
    let (modified, len) = (meta.modified().ok(), meta.len());
    if let Some(c) = copies.lock().get_mut(path) {
        if c.modified == modified && c.len == len {
            c.checked = Instant::now();
            return Some(c.body.clone());
        }
    }
    let body = Bytes::from(std::fs::read(path).ok()?);
    let mut copies = copies.lock();
    if copies.len() >= KEPT && !copies.contains_key(path) {
        if let Some(oldest) = copies.iter().min_by_key(|(_, c)| c.checked).map(|(p, _)| p.clone()) {
            copies.remove(&oldest);
        }
    }
    copies.insert(path.clone(), Copy { body: body.clone(), modified, len: body.len() as u64, checked: Instant::now() });
    Some(body)
}

fn status(code: StatusCode) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(warp::hyper::Body::empty());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        for ok in ["main", "town-hall_2", "index.m3u8", "segment00042.ts"] {
            assert!(plain(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "%2e%2e", "ünïcode", &"x".repeat(129)] {
            assert!(!plain(bad), "{bad}");
        }
    }
}
