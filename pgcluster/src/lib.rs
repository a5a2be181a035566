//! A throwaway PostgreSQL cluster: `initdb` in a temporary directory, started with `pg_ctl` on
//! its own port on 127.0.0.1 and a unix socket in that directory, stopped (immediate shutdown,
//! then SIGKILL) and removed when the [`Cluster`] is dropped, on every path out, panics included.
//!
//! The server refuses to run as root: as root, the cluster's files and processes belong to user
//! `nobody`. Uses Debian's server binaries (`/usr/lib/postgresql/VERSION/bin`, package
//! `postgresql`).
use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The cluster's superuser and the role the demos connect as.
pub const USER: &str = "tracer";

/// The database the demos use (the one initdb creates).
pub const DATABASE: &str = "postgres";

/// User and group `nobody` (Debian's `nobody:nogroup`).
const NOBODY: u32 = 65534;

/// Longest wait for `initdb`, for the server to accept connections, and for it to stop.
const INITDB_LIMIT: Duration = Duration::from_secs(60);
const START_LIMIT_S: u64 = 30;
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A running throwaway cluster; dropping it stops the server and removes its files.
pub struct Cluster {
    /// Data directory, log and socket directory live here.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    postmaster: u32,
    stopped: bool,
}

/// The directory of the newest PostgreSQL server installed from Debian's packages, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd`, killing it after `limit`; fails unless it exits 0, with the end of `logs`.
fn run_bounded(cmd: &mut Command, limit: Duration, logs: &[PathBuf]) -> Result<()> {
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting")? {
            if status.success() {
                return Ok(());
            }
            let mut tail = String::new();
            for log in logs {
                let text = fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(15)..] {
                    tail.push_str(line);
                    tail.push('\n');
                }
            }
            bail!("{cmd:?} failed ({status}):\n{tail}");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port on 127.0.0.1 nobody listens on now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

impl Cluster {
    /// Creates and starts a cluster; fails (never hangs) if PostgreSQL is not installed or the
    /// server does not come up within 30 s.
    pub fn start() -> Result<Cluster> {
        let bin = bin_dir().context(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin (Debian package postgresql)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("tracer-pg-")
            .tempdir()
            .context("creating the cluster's directory")?;
        let mut cluster = Cluster {
            dir,
            bin,
            port: free_port()?,
            postmaster: 0,
            stopped: false,
        };
        if is_root() {
            std::os::unix::fs::chown(cluster.dir.path(), Some(NOBODY), Some(NOBODY))
                .context("giving the cluster's directory to nobody")?;
        }
        // From here on, dropping `cluster` stops whatever was started.
        cluster.init()?;
        Ok(cluster)
    }

    /// A command run as the cluster's owner, its output appended to the commands' log.
    fn command(&self, program: &str) -> Result<Command> {
        let log = self.commands_log();
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(self.bin.join(program));
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("LC_ALL", "C")
            .env_remove("PGDATA");
        if is_root() {
            // std drops the supplementary groups too.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        Ok(cmd)
    }

    fn init(&mut self) -> Result<()> {
        let logs = [self.commands_log(), self.server_log()];
        let data = self.data_dir();
        let mut initdb = self.command("initdb")?;
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"]);
        run_bounded(&mut initdb, INITDB_LIMIT, &logs)?;
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.socket_dir().display()
        );
        let mut start = self.command("pg_ctl")?;
        start
            .arg("start")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.server_log())
            .args(["-w", "-t", &START_LIMIT_S.to_string(), "-o", &options]);
        let started = run_bounded(&mut start, Duration::from_secs(START_LIMIT_S + 10), &logs);
        // The server may be up even if pg_ctl gave up waiting: stop it whatever happened.
        self.postmaster = self.read_postmaster_pid().unwrap_or(0);
        started?;
        if self.postmaster == 0 {
            bail!("the server started but wrote no postmaster.pid");
        }
        Ok(())
    }

    fn read_postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Output of initdb and pg_ctl (written by this process).
    fn commands_log(&self) -> PathBuf {
        self.dir.path().join("commands.log")
    }

    /// The server's own log (written by the server, as the cluster's owner).
    fn server_log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Where the server's unix socket (`.s.PGSQL.PORT`) is.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid (the parent of every backend).
    pub fn postmaster_pid(&self) -> u32 {
        self.postmaster
    }

    /// A libpq connection string over TCP to 127.0.0.1.
    pub fn tcp_dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname={DATABASE} sslmode=disable",
            self.port
        )
    }

    /// A libpq connection string over the server's unix socket.
    pub fn unix_dsn(&self) -> String {
        format!(
            "host={} port={} user={USER} dbname={DATABASE} sslmode=disable",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Stops the server now: immediate shutdown, then SIGKILL for a postmaster still alive.
    /// Idempotent; also done on drop.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.postmaster == 0 {
            self.postmaster = self.read_postmaster_pid().unwrap_or(0);
        }
        if self.postmaster == 0 {
            return Ok(()); // never started
        }
        let stopped = self.command("pg_ctl").and_then(|mut stop| {
            stop.arg("stop").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
            ]);
            run_bounded(&mut stop, STOP_LIMIT, &[self.commands_log()])
        });
        let pid = self.postmaster;
        if pid != 0 && alive(pid) {
            // SAFETY: plain kill(2) of the server we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let start = Instant::now();
            while alive(pid) && start.elapsed() < STOP_LIMIT {
                thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                bail!("the postmaster (pid {pid}) survived SIGKILL");
            }
        }
        stopped
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("pgcluster: stopping the cluster: {e:#}");
        }
    }
}
