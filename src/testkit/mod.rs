//! Real processes for tests, the tutorial demo and benchmarks: a `nats-server` with JetStream,
//! a private PostgreSQL cluster, an Unleash server from npm, Prometheus with Alertmanager and
//! the tutorial's sample application, each on free loopback ports and stopped when its handle
//! is dropped; and the whole tutorial with all of them ([`tutorial`]).

pub mod nats;
pub mod postgres;
pub mod prometheus;
pub mod sample_app;
pub mod tutorial;
pub mod unleash;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The repository root (where `Cargo.toml` is), for finding committed files.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
