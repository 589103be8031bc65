//! A private PostgreSQL cluster for tests, and the process supervisor the test kit uses for
//! every long-running server it starts.
//!
//! # Why a supervisor
//! A test binary may end without running destructors: a server kept in a `static` is never
//! dropped, and a crash or `SIGKILL` skips `Drop` too. So no server is started directly. Each
//! runs under a small `sh` script that holds the read end of a pipe whose write end only the
//! test process has; when that end closes, whatever the reason, the script stops the server,
//! waits for it, and removes its temporary directory. Dropping a [`Supervised`] closes the pipe
//! and waits for that to finish, so a test that drops its server sees it gone.
//!
//! # The cluster
//! `initdb` in a fresh temporary directory, its own free port, the socket in that directory,
//! listening on 127.0.0.1 only, `fsync` off (the data is thrown away). PostgreSQL refuses to run
//! as root, so as root the cluster runs as the `postgres` user through `runuser`.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "apt-get install -y postgresql";

/// The supervisor. Arguments: log file, file to write the server's PID to, stop signal, a file
/// whose first line is another PID to signal (PostgreSQL's `postmaster.pid`, or empty), a
/// directory to remove at the end (or empty), then the command.
const SUPERVISOR: &str = r#"
log=$1; pidfile=$2; sig=$3; extra=$4; cleanup=$5; shift 5
# A Ctrl-C or hang-up reaches the whole process group; the supervisor must outlive it to clean
# up once its stdin closes.
trap '' HUP INT QUIT
"$@" >>"$log" 2>&1 </dev/null &
child=$!
echo "$child" >"$pidfile"
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'; }
extra_pid() { [ -n "$extra" ] && [ -r "$extra" ] && head -n 1 "$extra" 2>/dev/null; }
# Block until the test process closes our stdin: it dropped the handle, exited or crashed.
cat >/dev/null
other=$(extra_pid)
kill -"$sig" "$child" 2>/dev/null
[ -n "$other" ] && kill -"$sig" "$other" 2>/dev/null
i=0
while [ "$i" -lt 150 ] && { alive "$child" || { [ -n "$other" ] && alive "$other"; }; }; do
  sleep 0.1; i=$((i+1))
done
kill -KILL "$child" 2>/dev/null
[ -n "$other" ] && kill -KILL "$other" 2>/dev/null
wait "$child" 2>/dev/null
[ -n "$cleanup" ] && rm -rf "$cleanup"
exit 0
"#;

/// A server process under the supervisor; stopped on drop (and when the test process dies).
#[derive(Debug)]
pub struct Supervised {
    name: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    pid_file: PathBuf,
    log: PathBuf,
}

/// What to run under the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisedSpec<'a> {
    /// For messages ("PostgreSQL", "Unleash 7.5.1").
    pub name: &'a str,
    /// Program and arguments.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: &'a Path,
    /// Where the server's stdout and stderr go (appended).
    pub log: PathBuf,
    /// Where the supervisor writes the server's PID.
    pub pid_file: PathBuf,
    /// `TERM`, `INT`, ...: the signal for a clean stop.
    pub stop_signal: &'a str,
    /// A file whose first line is a PID to signal as well (for servers behind `runuser`).
    pub extra_pid_file: Option<PathBuf>,
    /// Removed once the server has stopped.
    pub cleanup_dir: Option<PathBuf>,
}

impl Supervised {
    pub fn spawn(spec: SupervisedSpec<'_>) -> Result<Supervised> {
        let path_arg = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg("supervisor")
            .arg(&spec.log)
            .arg(&spec.pid_file)
            .arg(spec.stop_signal)
            .arg(path_arg(&spec.extra_pid_file))
            .arg(path_arg(&spec.cleanup_dir))
            .args(&spec.command)
            .current_dir(spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut supervisor = cmd
            .spawn()
            .with_context(|| format!("starting the supervisor for {} (sh)", spec.name))?;
        let stdin = supervisor.stdin.take();
        Ok(Supervised {
            name: spec.name.to_owned(),
            supervisor,
            stdin,
            pid_file: spec.pid_file,
            log: spec.log,
        })
    }

    /// The server's PID, once the supervisor has started it.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the server process still runs (a zombie counts as ended).
    pub fn is_running(&self) -> bool {
        match self.pid() {
            // Not started yet: the supervisor itself must still be there.
            None => std::path::Path::new(&format!("/proc/{}", self.supervisor.id())).exists(),
            Some(pid) => process_alive(pid),
        }
    }

    /// The last `lines` lines of the server's output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops the server and waits (up to 20 s) for the supervisor to finish cleaning up.
    pub fn stop(&mut self) {
        if self.stdin.take().is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.supervisor.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    tracing::warn!(name = %self.name, "supervisor did not finish in 20 s; killing it");
                    let _ = self.supervisor.kill();
                    let _ = self.supervisor.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when `/proc/<pid>` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = BufReader::new(file).read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// True when this process runs as root (PostgreSQL then has to run as `postgres`).
pub fn running_as_root() -> bool {
    // The real user id is the 4th field of the `Uid:` line; no libc needed.
    std::fs::File::open("/proc/self/status")
        .ok()
        .and_then(|f| {
            BufReader::new(f)
                .lines()
                .map_while(|l| l.ok())
                .find(|l| l.starts_with("Uid:"))
        })
        .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// A fresh temporary directory (not removed by this function: the supervisor removes it).
pub fn fresh_temp_dir(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The directory with `initdb`, `postgres`, `pg_isready` and `createdb`: the one on `PATH`
/// when `initdb` is there, else the newest `/usr/lib/postgresql/<version>/bin` (Debian and
/// Ubuntu keep the server binaries off `PATH`).
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "pg_isready", "createdb"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, postgres, pg_isready, createdb) were found neither on PATH nor under /usr/lib/postgresql/*/bin; install them with: {INSTALL_HINT}"
        ),
    }
}

/// A private, throw-away PostgreSQL cluster. Stopped (and its directory removed) on drop.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    // Dropped last: the server stops before anything else goes away.
    server: Supervised,
}

impl Postgres {
    /// initdb + start + wait until it accepts connections (about a second).
    pub fn start() -> Result<Postgres> {
        let bin = find_bin_dir()?;
        let as_root = running_as_root();
        let dir = fresh_temp_dir("urs-postgres")?;
        if as_root {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .context("running chown")?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(&dir);
                bail!(
                    "cannot hand {} to the postgres user (is there a postgres user? {INSTALL_HINT} creates it)",
                    dir.display()
                );
            }
        }
        let data = dir.join("data");
        let as_postgres = |program: &Path, args: Vec<String>| -> Vec<String> {
            let mut cmd = Vec::new();
            if as_root {
                cmd.extend(["runuser", "-u", "postgres", "--"].map(String::from));
            }
            cmd.push(program.display().to_string());
            cmd.extend(args);
            cmd
        };
        let initdb = as_postgres(
            &bin.join("initdb"),
            vec![
                "-D".into(),
                data.display().to_string(),
                "-A".into(),
                "trust".into(),
                "-U".into(),
                "postgres".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        );
        let output = Command::new(&initdb[0])
            .args(&initdb[1..])
            .current_dir(&dir)
            .output()
            .with_context(|| format!("running {}", initdb.join(" ")))?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "initdb failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let port = super::free_port();
        let command = as_postgres(
            &bin.join("postgres"),
            [
                "-D",
                &data.display().to_string(),
                "-p",
                &port.to_string(),
                "-k",
                &dir.display().to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
            .map(String::from)
            .to_vec(),
        );
        // Logs and the PID file live next to the data directory, removed with it.
        let server = Supervised::spawn(SupervisedSpec {
            name: "PostgreSQL",
            command,
            env: vec![],
            cwd: &dir,
            log: dir.join("postgres.log"),
            pid_file: dir.join("supervised.pid"),
            // SIGINT = "fast shutdown".
            stop_signal: "INT",
            extra_pid_file: Some(data.join("postmaster.pid")),
            cleanup_dir: Some(dir.clone()),
        })?;
        let pg = Postgres { port, bin, server };
        pg.wait_ready(Duration::from_secs(30))?;
        Ok(pg)
    }

    fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-t", "1", "-p"])
                .arg(self.port.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if !self.server.is_running() {
                bail!(
                    "PostgreSQL exited while starting; its log ends with:\n{}",
                    self.server.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL did not accept connections on 127.0.0.1:{} within {within:?}; its log ends with:\n{}",
                    self.port,
                    self.server.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` (user `postgres`, no password: trust auth on
    /// loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let output = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(name)
            .output()
            .context("running createdb")?;
        if !output.status.success() {
            bail!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(self.url(name))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }
}
