//! SRTP on OpenSSL's crypto instead of NSS's.
//!
//! GStreamer's `srtpenc`/`srtpdec` (inside every webrtcbin) link the system's
//! libsrtp2, and Debian builds it on NSS, which sets up a new cipher context
//! for every packet (`PK11_CreateContextBySymKey` under a lock): protecting a
//! 1200-byte packet took 11.6 µs on the bench machine, against 3.2 µs for the
//! same libsrtp2 release built on OpenSSL (AES-NI). A 25-person room
//! protects and unprotects some 6,000 packets a second, and in a profile of
//! it SRTP was a fifth of every send and receive thread.
//!
//! `scripts/deps.sh` builds that library from Debian's source of the
//! installed release into [`DEFAULT_LIBRARY`]. Loaded here before GStreamer
//! loads its SRTP plugin, it is the one the plugin uses: the dynamic linker
//! takes a library already loaded under the soname it needs
//! (`libsrtp2.so.1`) instead of searching for it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};

/// Where `scripts/deps.sh` installs libsrtp2 built on OpenSSL.
pub const DEFAULT_LIBRARY: &str = "/usr/local/lib/tessera/libsrtp2.so.1";

/// The SRTP library the process runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Srtp {
    /// This libsrtp2, loaded before GStreamer's.
    Loaded(PathBuf),
    /// The system's libsrtp2, and why.
    System(String),
}

impl std::fmt::Display for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Srtp::Loaded(p) => write!(f, "libsrtp2 from {}", p.display()),
            Srtp::System(why) => write!(f, "the system's libsrtp2 ({why})"),
        }
    }
}

static CHOICE: OnceLock<Srtp> = OnceLock::new();

/// Load the SRTP library before GStreamer's SRTP elements: `path` given by
/// the configuration (`[media] srtp_library`; empty: the system's), or
/// [`DEFAULT_LIBRARY`] when it is there. The first call decides for the
/// process (a process links one libsrtp2); [`super::init`] makes it with
/// no path. A configured library that cannot be loaded is an error, and so
/// is one asked for after the process chose another.
pub fn choose(path: Option<&str>) -> Result<&'static Srtp> {
    if let Some(c) = CHOICE.get() {
        let same = match (path, c) {
            (None, _) => true,
            (Some(""), Srtp::System(_)) => true,
            (Some(p), Srtp::Loaded(l)) => Path::new(p) == l,
            _ => false,
        };
        if !same {
            bail!("srtp_library {:?} comes too late: this process already runs on {c}", path.unwrap_or_default());
        }
        return Ok(c);
    }
    let choice = match path {
        Some("") => Srtp::System("srtp_library is empty".into()),
        Some(p) => load(Path::new(p))?,
        None if Path::new(DEFAULT_LIBRARY).exists() => {
            load(Path::new(DEFAULT_LIBRARY)).unwrap_or_else(|e| Srtp::System(format!("{e:#}")))
        }
        None => Srtp::System(format!("{DEFAULT_LIBRARY} is missing; scripts/deps.sh builds it")),
    };
    Ok(CHOICE.get_or_init(|| choice))
}

fn load(path: &Path) -> Result<Srtp> {
    let name = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: dlopen/dlsym/dlerror with NUL-terminated strings; the handle
    // is never closed (the library stays for the process's life, as the
    // SRTP plugin that will use it does).
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            let why = if err.is_null() { "unknown error".into() } else { std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned() };
            bail!("cannot load the SRTP library {}: {why}", path.display());
        }
        if libc::dlsym(handle, c"srtp_protect".as_ptr()).is_null() {
            bail!("{} is not libsrtp2 (it has no srtp_protect)", path.display());
        }
    }
    Ok(Srtp::Loaded(path.to_path_buf()))
}

/// The file of the libsrtp2 mapped into this process, if any is (once an
/// SRTP element exists): what the elements really run on.
pub fn in_use() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("libsrtp2")).map(PathBuf::from)
}
