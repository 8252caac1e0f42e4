//! What a process uses, read from /proc with the `procfs` crate: CPU time,
//! resident memory, threads and open file descriptors. The benchmarks and
//! the leak tests read the server's figures through this one place.

use anyhow::{Context, Result};

/// A process: `None` is this one.
#[derive(Debug, Clone, Copy)]
pub struct Proc(pub Option<u32>);

impl Proc {
    pub fn myself() -> Proc {
        Proc(None)
    }

    fn open(&self) -> Result<procfs::process::Process> {
        match self.0 {
            None => procfs::process::Process::myself(),
            Some(pid) => procfs::process::Process::new(pid as i32),
        }
        .with_context(|| format!("cannot read /proc for process {}", self.label()))
    }

    fn label(&self) -> String {
        self.0.map(|p| p.to_string()).unwrap_or_else(|| "self".into())
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = self.open()?.stat().context("reading stat")?;
        Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
    }

    /// Resident memory, MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let stat = self.open()?.stat().context("reading stat")?;
        Ok((stat.rss * procfs::page_size()) as f64 / (1024.0 * 1024.0))
    }

    pub fn threads(&self) -> Result<usize> {
        Ok(self.open()?.tasks().context("reading task/")?.count())
    }

    pub fn fds(&self) -> Result<usize> {
        self.open()?.fd_count().context("reading fd/")
    }
}

impl Proc {
    /// Local ports of the UDP sockets (IPv4 and IPv6) this process holds.
    pub fn udp_ports(&self) -> Result<Vec<u16>> {
        let inodes: std::collections::HashSet<u64> = self
            .open()?
            .fd()
            .context("reading fd/")?
            .flatten()
            .filter_map(|fd| match fd.target {
                procfs::process::FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect();
        let mut entries = procfs::net::udp().context("reading /proc/net/udp")?;
        entries.extend(procfs::net::udp6().unwrap_or_default());
        let mut ports: Vec<u16> = entries.iter().filter(|e| inodes.contains(&e.inode)).map(|e| e.local_address.port()).collect();
        ports.sort_unstable();
        Ok(ports)
    }
}
