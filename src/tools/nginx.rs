//! Debian's nginx with its RTMP module (libnginx-mod-rtmp) as the RTMP
//! server live streams publish to, for the tests and the bench: one
//! foreground process on a loopback port, its files in a temporary folder.
//! `scripts/deps.sh --rtmp` (and `--browser`) installs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct NginxRtmp {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl NginxRtmp {
    pub const MODULE: &'static str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    /// Start it on `port` (chosen by the caller, so a stream can be pointed
    /// at it before it runs). Application `live`: `rtmp://127.0.0.1:PORT/live/<key>`;
    /// players start at a keyframe.
    pub fn start(port: u16) -> Result<NginxRtmp> {
        if !std::path::Path::new(Self::MODULE).exists() {
            bail!("{} is missing: scripts/deps.sh --rtmp installs nginx and libnginx-mod-rtmp", Self::MODULE);
        }
        let dir = std::env::temp_dir().join(format!("tessera-nginx-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module {};\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; wait_key on; }} }} }}\n",
                Self::MODULE,
                d = dir.display()
            ),
        )?;
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx (scripts/deps.sh --rtmp installs it)")?;
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) || child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                let _ = child.kill();
                let _ = child.wait();
                bail!("nginx-rtmp is not listening on {port}: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(NginxRtmp { child, port, dir })
    }

    /// The URL a stream publishes `key` to (and a player reads it from).
    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
