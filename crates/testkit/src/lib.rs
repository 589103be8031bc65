//! Real processes for tests, the tutorial demo and benchmarks: a `nats-server` with JetStream,
//! a private PostgreSQL cluster, an Unleash server from npm, Prometheus with Alertmanager and
//! the tutorial's sample application, each on free loopback ports and stopped when its handle
//! is dropped; the service binary itself as a process ([`ServiceProcess`]); and the whole
//! tutorial with all of them ([`tutorial`]).

pub mod nats;
pub mod postgres;
pub mod prometheus;
pub mod sample_app;
pub mod service;
pub mod tutorial;
pub mod unleash;

pub use service::ServiceProcess;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The repository root (the workspace's `Cargo.toml`, two levels above this crate), for finding
/// committed files.
pub fn repo_root() -> std::path::PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(std::path::Path::parent)
        .expect("crates/testkit lies two levels below the repository root")
        .to_path_buf()
}

/// A minimal blocking HTTP/1.0 GET on 127.0.0.1 (no async runtime needed while starting).
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        timeout,
    )
    .ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    use std::io::{Read, Write};
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
