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

/// A free TCP port on 127.0.0.1 (bound, then released), for a server a test starts.
///
/// It is taken below the kernel's ephemeral range, where no outgoing connection gets its
/// local port: a port the kernel hands out for `:0` could be given to a client's connection
/// (tests open thousands) before the server binds it. Within this process each port is handed
/// out once; the walk starts at a place set by the process id, so test binaries running side by
/// side start apart, and a port something listens on is passed over.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (PORTS_FROM, ephemeral_low().unwrap_or(PORTS_FROM));
    if high > low {
        let span = u32::from(high - low);
        let start = std::process::id().wrapping_mul(7919) % span;
        let walk = (0..span).map(|_| {
            let step = NEXT.fetch_add(1, Ordering::Relaxed);
            low + ((start + step) % span) as u16
        });
        if let Some(port) = first_unbound(walk) {
            return port;
        }
    }
    // No room below the ephemeral range (or every port there taken): the kernel's choice.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The first of `ports` that nothing on 127.0.0.1 listens on.
fn first_unbound(mut ports: impl Iterator<Item = u16>) -> Option<u16> {
    ports.find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// The lowest port [`free_port`] hands out, above the well-known services' ports.
const PORTS_FROM: u16 = 20_000;

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), read once.
fn ephemeral_low() -> Option<u16> {
    static LOW: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();
    *LOW.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        range.split_whitespace().next()?.parse().ok()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_handed_out_once_each_below_the_ephemeral_range() {
        let low = ephemeral_low().expect("the ephemeral range is readable here");
        let ports: Vec<u16> = (0..64).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        assert!(
            ports.iter().all(|p| (PORTS_FROM..low).contains(p)),
            "{ports:?} not in {PORTS_FROM}..{low}"
        );
    }

    #[test]
    fn a_port_something_listens_on_is_passed_over() {
        let (taken, next) = (free_port(), free_port());
        let _listener = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("free port");
        assert_eq!(first_unbound([taken, next].into_iter()), Some(next));
        assert_eq!(first_unbound([taken].into_iter()), None);
    }
}
