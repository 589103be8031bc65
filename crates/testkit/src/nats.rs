//! A real `nats-server -js` on a free loopback port, with its own store directory.
//!
//! The server is killed when the handle is dropped. It can be stopped and started again on the
//! same port and store, to test reconnects and durability.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) nats-server.
pub struct NatsServer {
    port: u16,
    store: tempfile_dir::TempDir,
    child: Option<Child>,
    /// A configuration file passed with `-c` (limits, users), when given.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free port. Fails with install instructions when the binary
    /// is missing.
    pub fn start() -> anyhow::Result<NatsServer> {
        Self::start_with_config("")
    }

    /// Like [`NatsServer::start`], with `config` (nats-server configuration syntax, e.g.
    /// `max_payload: 16384` or an `authorization` block) as the server's configuration file.
    pub fn start_with_config(config: &str) -> anyhow::Result<NatsServer> {
        let store = tempfile_dir::TempDir::new("nats")?;
        let config = if config.is_empty() {
            None
        } else {
            let path = store.path().join("nats.conf");
            std::fs::write(&path, config).context("writing the nats-server configuration")?;
            Some(path)
        };
        let mut server = NatsServer {
            port: super::free_port(),
            store,
            child: None,
            config,
        };
        // The free port may be taken by another process before the server binds it (tests run
        // side by side); then it is tried on another one.
        for _ in 0..4 {
            match server.start_again() {
                Err(e) if e.downcast_ref::<PortTaken>().is_some() => {
                    server.port = super::free_port();
                }
                other => return other.map(|()| server),
            }
        }
        server.start_again().map(|()| server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server again on the same port and store after [`NatsServer::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let binary = find_binary().context(
            "nats-server is not installed: install it with `apt-get install -y nats-server` \
             (or put a nats-server binary on PATH); the test suite's script does this itself",
        )?;
        let log = self.store.path().join("nats.log");
        // The log is appended to by each start: only what this one writes counts.
        let logged_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let written = || {
            let text = std::fs::read(&log).unwrap_or_default();
            let from = (logged_before as usize).min(text.len());
            String::from_utf8_lossy(&text[from..]).into_owned()
        };
        let mut command = Command::new(binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path().join("js"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning nats-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Listening is what this server says it does: a connection alone could reach another
        // process that took the port.
        let listening = format!(
            "Listening for client connections on 127.0.0.1:{}",
            self.port
        );
        loop {
            if written().contains(&listening)
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let tail = written();
                self.child = None;
                if tail.contains("address already in use") {
                    return Err(PortTaken(self.port).into());
                }
                bail!("nats-server exited ({status}) before listening: {tail}");
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not listen on port {} within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to go away.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port a server was to listen on is held by another process.
#[derive(Debug)]
struct PortTaken(u16);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} is taken by another process", self.0)
    }
}

impl std::error::Error for PortTaken {}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
            "/usr/bin".into(),
        ])
        .map(|dir: PathBuf| dir.join("nats-server"))
        .find(|p| Path::new(p).is_file())
}

/// A temporary directory removed on drop (kept tiny to avoid a runtime dependency).
pub(crate) mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> std::io::Result<TempDir> {
            let dir = std::env::temp_dir().join(format!(
                "urs-{prefix}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(TempDir(dir))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
