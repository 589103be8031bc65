//! The service binary as a real process: `serve` with only the environment it is given, on a
//! loopback HTTP port, its output in a log file; ready when `/ready` answers 200; stopped with
//! SIGTERM (graceful) or SIGKILL; its memory read from `/proc`.

use anyhow::{Context, Result, bail};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One running `unleash-remediation-service serve`. Killed (SIGKILL) when dropped, or stopped
/// with SIGTERM first after [`ServiceProcess::terminate_on_drop`].
pub struct ServiceProcess {
    child: Option<Child>,
    http: String,
    client: reqwest::Client,
    started: Instant,
    log: PathBuf,
    graceful_drop: bool,
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Starts `binary serve` with a cleared environment: `PATH`, then `HTTP_ADDR` on a free
    /// loopback port, then `env` in order (a later value wins, also over `HTTP_ADDR`). Standard
    /// output and standard error go to the log file.
    pub fn spawn<K, V>(
        binary: impl AsRef<Path>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ServiceProcess>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let binary = binary.as_ref();
        if !binary.is_file() {
            bail!("{} does not exist: build it first", binary.display());
        }
        let env: Vec<(OsString, OsString)> = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let http_addr = env
            .iter()
            .rev()
            .find(|(k, _)| k == "HTTP_ADDR")
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("127.0.0.1:{}", super::free_port()));
        let dir = tempfile::tempdir().context("temporary directory for the service log")?;
        let log = dir.path().join("service.log");
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // Built before the process starts, so that waiting for it measures only the service.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("HTTP client")?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HTTP_ADDR", &http_addr)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("duplicating the log file")?)
            .stderr(file);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        // Listening on every interface: reached on the loopback one.
        let reach = match http_addr.strip_prefix("0.0.0.0:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => http_addr,
        };
        Ok(ServiceProcess {
            child: Some(child),
            http: format!("http://{reach}"),
            client,
            started,
            log,
            graceful_drop: false,
            _dir: dir,
        })
    }

    /// SIGTERM (and up to 10 s to stop) rather than SIGKILL when dropped.
    pub fn terminate_on_drop(&mut self) {
        self.graceful_drop = true;
    }

    /// The base URL of its HTTP listener, `http://127.0.0.1:<port>`.
    pub fn http(&self) -> &str {
        &self.http
    }

    /// Its process id; 0 once it was stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its exit status, when it has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().context("checking the service process"),
            None => Ok(None),
        }
    }

    /// Polls `/ready` every `poll` until it answers 200 (at most `within`); the time since
    /// the process was started. Fails at once when the process exits.
    pub async fn wait_ready(&mut self, within: Duration, poll: Duration) -> Result<Duration> {
        let url = format!("{}/ready", self.http);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "the service exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "the service was not ready within {within:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// SIGKILL, and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then its exit status. Killed (SIGKILL) and an error when it has not stopped
    /// `within`. Blocks the calling thread.
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the service was already stopped")?;
        sigterm(&child);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the service")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().context("waiting for the killed service")?;
                bail!(
                    "the service did not stop within {within:?} of SIGTERM; killed ({status}); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (VmRSS, VmHWM) in KiB, from `/proc/<pid>/status`; zeros when unreadable.
    pub fn memory(&self) -> (u64, u64) {
        let [rss, hwm] = self.status_kib(["VmRSS:", "VmHWM:"]);
        (rss, hwm)
    }

    /// The named fields of `/proc/<pid>/status` (`"VmRSS:"`, `"RssAnon:"`, …) in KiB, read
    /// together; zeros when unreadable. RssAnon is the process's own memory, RssFile the pages
    /// of the binary and the libraries it has mapped.
    pub fn status_kib<const N: usize>(&self, names: [&str; N]) -> [u64; N] {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        names.map(|name| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    }

    /// KiB of the process's own program code resident: the `Rss` of the executable mappings of
    /// its binary (`/proc/<pid>/exe`) in `/proc/<pid>/smaps`; 0 when unreadable.
    pub fn code_resident_kib(&self) -> u64 {
        let pid = self.pid();
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            return 0;
        };
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut ours = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("Rss:") if ours => {
                    kib += fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                // A mapping's first line: address range, permissions, offset, device, inode, path.
                Some(range) if !range.ends_with(':') => {
                    let perms = fields.next().unwrap_or_default();
                    let path = fields.nth(3).unwrap_or_default();
                    ours = perms.contains('x') && std::path::Path::new(path) == exe;
                }
                _ => {}
            }
        }
        kib
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.graceful_drop
            && let Some(child) = self.child.as_mut()
        {
            sigterm(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill9();
    }
}

/// SIGTERM to one child process (by its id, which it keeps until it is waited for).
pub fn sigterm(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes no pointers; the pid is our own child's, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}
