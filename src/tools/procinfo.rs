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

    /// CPU time (user plus system, seconds) of each thread by name, threads
    /// of the same name added up; the kernel keeps 15 bytes of a name.
    pub fn thread_cpu_seconds(&self) -> Result<std::collections::BTreeMap<String, f64>> {
        let tick = procfs::ticks_per_second() as f64;
        let mut by_name = std::collections::BTreeMap::new();
        for task in self.open()?.tasks().context("reading task/")?.flatten() {
            // A thread may end between listing and reading.
            if let Ok(stat) = task.stat() {
                *by_name.entry(stat.comm).or_insert(0.0) += (stat.utime + stat.stime) as f64 / tick;
            }
        }
        Ok(by_name)
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

    /// Open file descriptors by kind: `tcp`, `udp`, `unix`, `socket`
    /// (another family), `pipe`, `file`, or the anonymous inode's name
    /// (`eventfd`, `eventpoll`, `timerfd`, ...). A leak shows up by kind.
    pub fn fd_kinds(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        use procfs::process::FDTarget;
        let mut family = std::collections::HashMap::new();
        for (kind, inodes) in [
            ("tcp", procfs::net::tcp().unwrap_or_default().into_iter().chain(procfs::net::tcp6().unwrap_or_default()).map(|e| e.inode).collect::<Vec<_>>()),
            ("udp", procfs::net::udp().unwrap_or_default().into_iter().chain(procfs::net::udp6().unwrap_or_default()).map(|e| e.inode).collect()),
            ("unix", procfs::net::unix().unwrap_or_default().into_iter().map(|e| e.inode).collect()),
        ] {
            for i in inodes {
                family.insert(i, kind);
            }
        }
        let mut kinds = std::collections::BTreeMap::new();
        for fd in self.open()?.fd().context("reading fd/")?.flatten() {
            let kind = match fd.target {
                FDTarget::Socket(inode) => family.get(&inode).copied().unwrap_or("socket").to_string(),
                FDTarget::Pipe(_) => "pipe".into(),
                FDTarget::Path(_) => "file".into(),
                FDTarget::AnonInode(name) => name.trim_start_matches("[").trim_end_matches("]").to_string(),
                _ => "other".into(),
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
        Ok(kinds)
    }
}
