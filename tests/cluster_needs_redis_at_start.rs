//! A node whose Redis does not answer does not start: a clear error, not a
//! node that takes rooms no one else can find. Cluster settings that make
//! no sense stop it too, with the reason.

mod common;

use std::ffi::OsStr;

use common::*;

fn refused(args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    refused_start(&args)
}

#[test]
fn cluster_needs_redis_at_start() {
    // A port where nothing listens.
    let port = free_tcp_port();
    let err = refused(&["--redis", &format!("redis://127.0.0.1:{port}/0")]);
    assert!(err.contains("joining the cluster") && err.contains(&format!("cannot reach Redis at redis://127.0.0.1:{port}/0")), "{err}");
    let err = refused(&["--redis", "http://127.0.0.1:6379"]);
    assert!(err.contains("a Redis URL starts with redis://"), "{err}");
    let err = refused(&["--node-id", "a"]);
    assert!(err.contains("need redis"), "{err}");
    let err = refused(&["--redis", "redis://127.0.0.1:6379/0", "--heartbeat-ms", "3000"]);
    assert!(err.contains("over a third of lease_ms"), "{err}");
}
