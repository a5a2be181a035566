//! `cargo xtask bench`: tracer's cost against a bare run and against its peers (strace,
//! valgrind, bpftrace), in one invocation, on four workloads:
//!
//! * `open`: N x (open + read + close) of a small file;
//! * `socket`: N x (socket + close);
//! * `http`: N x a new TCP connection per HTTP GET to a local nginx (on the other CPU);
//! * `nginx`: nginx under wrk, requests per second.
//!
//! This VM's speed drifts by tens of percent from one second to the next, more than the tools
//! differ, so every measurement is of twins: the program under a tool and the same program bare
//! run at the same time, pinned to the same CPU (0), where the scheduler interleaves them. A
//! loop's cost is the CPU time per iteration of each twin (its syscalls' kernel time included);
//! nginx's is the requests per second each twin serves while two wrk (on CPU 1) load both. The
//! ratio is the median over rounds of the tool twin against its bare twin; a bare-against-bare
//! row shows what that method itself measures (about 1.00).
//!
//! A separate profiling run of tracer with `kernel.bpf_stats_enabled` gives each eBPF program's
//! cost, tracer's report gives the CPU time its collector spent per 1000 events, and the cost
//! tracer puts on a process it does not select is measured in rounds of bare and watched runs
//! (not twins: that cost exists only while tracer runs). Everything is also written as JSON
//! (`target/bench.json`).
//!
//! With `--against TRACER` (a copy of an earlier build), the loops also run twins of this
//! tracer against that one, each tracing its own twin: a change of a few percent, invisible
//! against bare runs that drift, shows as that row's ratio (about 1.00 for the same build).
use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{apt_install, have, is_root, median, programs_dir, target_dir, tracer_command};

/// Sizes of the workloads.
pub struct Options {
    pub runs: usize,
    pub open: u64,
    pub socket: u64,
    pub http: u64,
    /// GETs of the Go client loop (goroutines started and ended on every request).
    pub go_http: u64,
    pub wrk_secs: u64,
    /// Only these workloads (empty: all).
    pub only: Vec<String>,
    /// Also measure strace, valgrind and bpftrace.
    pub peers: bool,
    /// Another tracer binary (an earlier build) to measure this one against, as twins.
    pub against: Option<PathBuf>,
}

/// The CPU the twins share; the other one runs the server, the load and the tools' helpers.
const WORK_CPU: &str = "0";
const OTHER_CPU: &str = "1";

/// How a variant runs the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// A second bare twin: what the method measures without any tool.
    Bare,
    Tracer,
    Strace,
    Valgrind,
    Bpftrace,
    /// This tracer, whose twin runs under the `--against` tracer instead of bare: a change
    /// smaller than the VM's drift, measured directly (loops only).
    Against,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Bare => "bare (against a bare twin)",
            Tool::Tracer => "tracer (full stacks)",
            Tool::Strace => "strace -f (fd syscalls)",
            Tool::Valgrind => "valgrind --track-fds=yes",
            Tool::Bpftrace => "bpftrace (tracepoints + ustack)",
            Tool::Against => "tracer against the --against tracer",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Tool::Bare => "bare",
            Tool::Tracer => "tracer",
            Tool::Strace => "strace",
            Tool::Valgrind => "valgrind",
            Tool::Bpftrace => "bpftrace",
            Tool::Against => "against",
        }
    }

    /// The program a peer needs, and its Debian package.
    fn needs(self) -> Option<(&'static str, &'static str)> {
        match self {
            Tool::Bare | Tool::Tracer | Tool::Against => None,
            Tool::Strace => Some(("strace", "strace")),
            Tool::Valgrind => Some(("valgrind", "valgrind")),
            Tool::Bpftrace => Some(("bpftrace", "bpftrace")),
        }
    }
}

/// A bpftrace leak tracker in the style of the peer survey: map the new descriptor to the user
/// stack at every creation, delete it at close (frame-pointer stacks), for the command it runs.
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_exit_openat,
tracepoint:syscalls:sys_exit_socket,
tracepoint:syscalls:sys_exit_accept4,
tracepoint:syscalls:sys_exit_accept
/pid == cpid && args->ret >= 0/
{
  @open[args->ret] = ustack;
}
tracepoint:syscalls:sys_enter_close
/pid == cpid/
{
  delete(@open[args->fd]);
}
"#;

/// One round of one variant: the tool twin and its bare twin.
#[derive(Clone, Debug, Default)]
struct Pair {
    /// CPU ns per iteration (loops) or requests per second (server), under the tool.
    tool: f64,
    bare: f64,
    /// Events tracer handled and its collector's CPU seconds (tracer only).
    events: Option<u64>,
    collector_cpu_s: Option<f64>,
}

/// Per-program eBPF cost from a profiling run.
#[derive(Clone, Debug)]
struct ProgStat {
    name: String,
    run_count: u64,
    run_time_ns: u64,
}

/// Runs the benchmark and prints the table.
pub fn bench(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the benchmark loads real eBPF programs: run it as root");
    }
    let churn = programs_dir().join("churn");
    if !churn.is_file() {
        bail!("gcc is needed to build the benchmark program (churn)");
    }
    let mut tools = vec![Tool::Bare, Tool::Tracer];
    let peers = if opts.peers {
        &[Tool::Strace, Tool::Valgrind, Tool::Bpftrace][..]
    } else {
        &[]
    };
    for &t in peers {
        let (program, package) = t.needs().expect("peer tools need a program");
        if !have(program) {
            eprintln!("bench: installing {package} (a peer to compare with)");
            if let Err(e) = apt_install(&[package]) {
                eprintln!("bench: {package} could not be installed ({e:#}): its row is left out");
            }
        }
        if have(program) {
            tools.push(t);
        }
    }
    for (program, package) in [("nginx", "nginx"), ("wrk", "wrk")] {
        if !have(program) && !Path::new("/usr/sbin").join(program).is_file() {
            eprintln!("bench: installing {package}");
            apt_install(&[package]).with_context(|| format!("{package} is needed"))?;
        }
    }
    if let Some(other) = &opts.against
        && !other.is_file()
    {
        bail!("--against {}: no such tracer binary", other.display());
    }
    // The loops also measure this tracer against the other one; servers do not.
    let loop_tools: Vec<Tool> = tools
        .iter()
        .copied()
        .chain(opts.against.is_some().then_some(Tool::Against))
        .collect();
    let against = opts.against.as_deref();
    let _ = BASELINE_PROGRAMS.set(program_ids());
    let started = Instant::now();
    let want = |w: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == w);
    let mut results = Vec::new();
    let nginx = Nginx::start(OTHER_CPU)?;
    let loops: [(&str, &str, u64, Option<String>); 3] = [
        ("open", "open + read + close loop", opts.open, None),
        ("socket", "socket + close loop", opts.socket, None),
        (
            "http",
            "new TCP connection per HTTP GET to nginx",
            opts.http,
            Some(nginx.port.to_string()),
        ),
    ];
    for (key, title, n, arg) in loops {
        if !want(key) {
            continue;
        }
        eprintln!("bench: {title} ({n} iterations, {} rounds)", opts.runs);
        let mut cmd = vec![churn.display().to_string(), key.to_string(), n.to_string()];
        cmd.extend(arg);
        let pairs = rounds(&loop_tools, opts.runs, |tool| {
            twin_loop(tool, &cmd, against)
        })?;
        let profile = profile(|| solo_loop(&cmd))?;
        results.push(workload(key, title, n, false, &pairs, &profile, n));
    }
    if want("go-http") {
        // The cost of the Go runtime probes (goroutine creation and exit) on top of the
        // syscalls: bare and tracer only (the peers do not follow goroutines).
        let go = programs_dir().join("go-http-loop");
        if !go.is_file() {
            bail!("golang-go is needed to build the Go benchmark program (go-http-loop)");
        }
        let n = opts.go_http;
        let title = "Go HTTP client loop, new connection per GET (net/http goroutines)";
        eprintln!("bench: {title} ({n} iterations, {} rounds)", opts.runs);
        let cmd = vec![
            go.display().to_string(),
            n.to_string(),
            nginx.port.to_string(),
        ];
        let go_tools: Vec<Tool> = [Tool::Bare, Tool::Tracer]
            .into_iter()
            .chain(against.map(|_| Tool::Against))
            .collect();
        let pairs = rounds(&go_tools, opts.runs, |tool| twin_loop(tool, &cmd, against))?;
        let profile = profile(|| solo_loop(&cmd))?;
        results.push(workload("go-http", title, n, false, &pairs, &profile, n));
    }
    drop(nginx);
    if want("nginx") {
        eprintln!(
            "bench: nginx under wrk ({} s per round, {} rounds)",
            opts.wrk_secs, opts.runs
        );
        let pairs = rounds(&tools, opts.runs, |tool| twin_server(tool, opts.wrk_secs))?;
        let profile = profile(|| twin_server(Tool::Tracer, opts.wrk_secs).map(drop))?;
        results.push(workload(
            "nginx",
            "nginx under wrk (requests/s)",
            opts.wrk_secs,
            true,
            &pairs,
            &profile,
            0,
        ));
    }
    if want("unselected") {
        eprintln!("bench: an unselected process while tracer traces another one");
        results.push(unselected(&churn, opts)?);
    }
    print_table(&results, opts.runs, started.elapsed());
    let out = target_dir().join("bench.json");
    fs::write(
        &out,
        serde_json::to_string_pretty(&json!({
            "rounds": opts.runs,
            "method": "twins: the tool's run and a bare run at once on CPU 0; ratio = median over rounds of tool/bare",
            "workloads": results,
        }))?,
    )?;
    eprintln!("bench: JSON written to {}", out.display());
    Ok(())
}

/// Runs `measure` for every tool, `runs` rounds of one pair each.
fn rounds(
    tools: &[Tool],
    runs: usize,
    mut measure: impl FnMut(Tool) -> Result<Pair>,
) -> Result<Vec<(Tool, Vec<Pair>)>> {
    let mut out: Vec<(Tool, Vec<Pair>)> = tools.iter().map(|&t| (t, Vec::new())).collect();
    for round in 0..runs {
        for (tool, pairs) in &mut out {
            settle();
            let p =
                measure(*tool).with_context(|| format!("{} (round {})", tool.name(), round + 1))?;
            pairs.push(p);
        }
    }
    Ok(out)
}

/// The JSON of one workload: per variant its pairs, the median ratio and absolute figures.
fn workload(
    key: &str,
    title: &str,
    size: u64,
    higher_is_better: bool,
    pairs: &[(Tool, Vec<Pair>)],
    profile: &[ProgStat],
    iterations: u64,
) -> Value {
    let variants: Vec<Value> = pairs
        .iter()
        .map(|(tool, v)| {
            // Cost ratio: more time per iteration, or fewer requests per second.
            let ratios: Vec<f64> = v
                .iter()
                .map(|p| {
                    if higher_is_better {
                        p.bare / p.tool
                    } else {
                        p.tool / p.bare
                    }
                })
                .collect();
            let ratio = median(ratios.clone());
            let bare = median(v.iter().map(|p| p.bare).collect());
            let with_tool = median(v.iter().map(|p| p.tool).collect());
            let cpu: Vec<f64> = v.iter().filter_map(|p| p.collector_cpu_s).collect();
            let events: Vec<f64> = v
                .iter()
                .filter_map(|p| p.events.map(|e| e as f64))
                .collect();
            let per_1000 = (!cpu.is_empty() && !events.is_empty())
                .then(|| median(cpu) * 1e3 / median(events).max(1.0) * 1e3);
            json!({
                "tool": tool.key(),
                "name": tool.name(),
                "ratios": ratios,
                "ratio": ratio,
                "median_with_tool": with_tool,
                "median_bare_twin": bare,
                "added_ns_per_iteration": (!higher_is_better).then_some((ratio - 1.0) * bare),
                "change_percent": higher_is_better.then(|| (1.0 / ratio - 1.0) * 100.0),
                "tracer_cpu_ms_per_1000_events": per_1000,
            })
        })
        .collect();
    let programs: Vec<Value> = profile
        .iter()
        .map(|p| {
            json!({
                "program": p.name,
                "run_count": p.run_count,
                "run_time_ns": p.run_time_ns,
                "ns_per_run": p.run_time_ns as f64 / p.run_count.max(1) as f64,
                "ns_per_iteration": (iterations > 0).then(|| p.run_time_ns as f64 / iterations as f64),
            })
        })
        .collect();
    json!({
        "workload": key,
        "title": title,
        "size": size,
        "unit": if higher_is_better { "requests/s" } else { "CPU ns/iteration" },
        "variants": variants,
        "bpf_programs": programs,
    })
}

/// `tracer` (a command starting it) running `program` quietly, its report to `json`; the
/// program's arguments are the caller's to add.
fn tracer_run(mut tracer: Command, json: &Path, program: &str) -> Command {
    tracer
        .args(["run", "-q", "--json"])
        .arg(json)
        .arg("--")
        .arg(program);
    tracer
}

/// A command under a tool (`Tool::Bare`: as it is). `json` is where tracer writes its report.
fn under(tool: Tool, cmd: &[String], json: &Path) -> Result<(Command, Option<PathBuf>)> {
    let mut script = None;
    let mut c = match tool {
        Tool::Bare => Command::new(&cmd[0]),
        Tool::Tracer | Tool::Against => tracer_run(tracer_command(), json, &cmd[0]),
        Tool::Strace => {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=openat,socket,accept,accept4,connect,close",
            ])
            .arg(&cmd[0]);
            c
        }
        Tool::Valgrind => {
            let mut c = Command::new("valgrind");
            c.args(["-q", "--track-fds=yes", "--trace-children=yes"])
                .arg(&cmd[0]);
            c
        }
        Tool::Bpftrace => {
            let path = json.with_extension("bt");
            fs::write(&path, BPFTRACE_SCRIPT)?;
            script = Some(path.clone());
            let mut c = Command::new("bpftrace");
            c.arg("-q").arg("-c").arg(cmd.join(" ")).arg(&path);
            return Ok((c, script));
        }
    };
    c.args(&cmd[1..]);
    Ok((c, script))
}

/// A started twin: its process and its standard output.
struct Twin {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Twin {
    fn start(mut c: Command, go: &Path) -> Result<Self> {
        c.env("CHURN_CPU", WORK_CPU)
            .env("CHURN_GO", go)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().with_context(|| format!("running {c:?}"))?;
        let out = BufReader::new(child.stdout.take().context("twin stdout")?);
        Ok(Self { child, out })
    }

    /// Waits for the twin's "ready" (it then waits for the go byte).
    fn ready(&mut self) -> Result<()> {
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the twin did not get ready: {line:?}");
        }
        Ok(())
    }

    /// Waits for the end; the CPU ns per iteration it measured.
    fn finish(mut self) -> Result<f64> {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the twin failed ({status}): {rest}");
        }
        rest.lines()
            .find_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .with_context(|| format!("no timing from the twin: {rest:?}"))
    }
}

/// One round of a loop: the tool twin and a bare twin started together on one CPU.
fn twin_loop(tool: Tool, cmd: &[String], against: Option<&Path>) -> Result<Pair> {
    let dir = tempfile_dir()?;
    let json = dir.join("report.json");
    let go = dir.join("go");
    mkfifo(&go)?;
    let (c, _script) = under(tool, cmd, &json)?;
    let mut plain = match (tool, against) {
        (Tool::Against, Some(other)) => {
            tracer_run(Command::new(other), &dir.join("against.json"), &cmd[0])
        }
        _ => Command::new(&cmd[0]),
    };
    plain.args(&cmd[1..]);
    let [tool_ns, bare_ns] = race([c, plain], &go)?;
    let mut p = Pair {
        tool: tool_ns,
        bare: bare_ns,
        ..Default::default()
    };
    if tool == Tool::Tracer {
        collector_cost(&json, &mut p)?;
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(p)
}

/// The profiling run of a loop: tracer's twin alone on the CPU, so that its programs' run counts
/// are the traced process's own (a bare twin's syscalls also run them, to return at once).
fn solo_loop(cmd: &[String]) -> Result<()> {
    let dir = tempfile_dir()?;
    let go = dir.join("go");
    mkfifo(&go)?;
    let (c, _script) = under(Tool::Tracer, cmd, &dir.join("report.json"))?;
    race([c], &go)?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts the commands as twins, waits until each is ready, lets them all go at once (a byte
/// each on the `go` FIFO) and returns each one's CPU ns per iteration.
fn race<const N: usize>(cmds: [Command; N], go: &Path) -> Result<[f64; N]> {
    let mut twins = Vec::with_capacity(N);
    for c in cmds {
        twins.push(Twin::start(c, go)?);
    }
    for t in &mut twins {
        t.ready()?;
    }
    fs::OpenOptions::new()
        .write(true)
        .open(go)?
        .write_all(&[b'g'; N])?;
    let mut ns = [0.0; N];
    for (n, t) in ns.iter_mut().zip(twins) {
        *n = t.finish()?;
    }
    Ok(ns)
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The events tracer handled and the CPU its collector spent on them, from its JSON report.
fn collector_cost(json: &Path, p: &mut Pair) -> Result<()> {
    let report: Value = serde_json::from_slice(&fs::read(json)?)
        .with_context(|| format!("tracer's report {}", json.display()))?;
    let e = &report["events"];
    p.events = Some(e["acquired"].as_u64().unwrap_or(0) + e["released"].as_u64().unwrap_or(0));
    p.collector_cpu_s = e["collector_cpu_ms"].as_f64().map(|ms| ms / 1e3);
    Ok(())
}

/// A fresh scratch directory.
fn tempfile_dir() -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tracer-bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A local nginx serving a small page from a scratch directory, single-process, pinned.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn config(dir: &Path, port: u16) -> Result<PathBuf> {
        fs::create_dir_all(dir.join("www"))?;
        fs::write(dir.join("www/index.html"), "<html><body>ok</body></html>\n")?;
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d};\n  \
                 proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  \
                 scgi_temp_path {d};\n  server {{ listen 127.0.0.1:{port} reuseport; root {d}/www; }}\n}}\n",
                d = dir.display()
            ),
        )?;
        Ok(conf)
    }

    /// The nginx command line for a config, pinned to `cpu` (taskset execs nginx, so a tool in
    /// front of it follows the exec and is not pinned itself).
    fn command(conf: &Path, cpu: &str) -> Vec<String> {
        vec![
            absolute("taskset"),
            "-c".into(),
            cpu.into(),
            nginx_binary(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            conf.display().to_string(),
        ]
    }

    fn start(cpu: &str) -> Result<Self> {
        let dir = tempfile_dir()?;
        let port = free_port()?;
        let conf = Self::config(&dir, port)?;
        let cmd = Self::command(&conf, cpu);
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        wait_listening(port)?;
        Ok(Self { child, port, dir })
    }
}

/// Asks the nginx of scratch directory `dir` to finish (a tool in front of it exits after it).
fn nginx_quit(dir: &Path) {
    let pid = fs::read_to_string(dir.join("nginx.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGQUIT) };
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        nginx_quit(&self.dir);
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn nginx_binary() -> String {
    if have("nginx") {
        absolute("nginx")
    } else {
        "/usr/sbin/nginx".into()
    }
}

/// The absolute path of a program on PATH (bpftrace -c wants one).
fn absolute(program: &str) -> String {
    crate::which(program).map_or_else(|| program.to_string(), |p| p.display().to_string())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `port` (tools take seconds to attach).
fn wait_listening(port: u16) -> Result<()> {
    for _ in 0..1500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on port {port}")
}

/// wrk on the other CPU against `port` for `secs`: requests per second.
fn wrk(port: u16, secs: u64) -> Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", OTHER_CPU, "wrk", "-t1", "-c16"])
        .arg(format!("-d{secs}s"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec from wrk: {text}"))
}

/// One round of nginx: one under `tool` and a bare twin, both on CPU 0, each loaded by its own
/// wrk on CPU 1 at the same time.
fn twin_server(tool: Tool, secs: u64) -> Result<Pair> {
    let traced_dir = tempfile_dir()?;
    let port = free_port()?;
    let conf = Nginx::config(&traced_dir, port)?;
    let json = traced_dir.join("report.json");
    let (mut c, _script) = under(tool, &Nginx::command(&conf, WORK_CPU), &json)?;
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut server = c.spawn().context("starting the server")?;
    let bare = Nginx::start(WORK_CPU)?;
    let result = wait_listening(port).and_then(|()| {
        let bare_port = bare.port;
        let bare_load = thread::spawn(move || wrk(bare_port, secs));
        let tool_rps = wrk(port, secs)?;
        let bare_rps = bare_load
            .join()
            .map_err(|_| anyhow::anyhow!("wrk thread panicked"))??;
        Ok((tool_rps, bare_rps))
    });
    nginx_quit(&traced_dir);
    let status = server.wait()?;
    drop(bare);
    let (tool_rps, bare_rps) = result?;
    let mut p = Pair {
        tool: tool_rps,
        bare: bare_rps,
        ..Default::default()
    };
    if !status.success() && tool != Tool::Valgrind {
        bail!("the server under {} exited: {status}", tool.name());
    }
    if tool == Tool::Tracer {
        collector_cost(&json, &mut p)?;
    }
    let _ = fs::remove_dir_all(&traced_dir);
    Ok(p)
}

/// The eBPF programs loaded when the benchmark started (not the tools').
static BASELINE_PROGRAMS: OnceLock<HashSet<u32>> = OnceLock::new();

/// Ids of the eBPF programs loaded now.
fn program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

/// Waits (at most 20 s) until the programs of the tools measured before are gone. tracer
/// detaches its syscall hooks in the background after it exits (an RCU grace period each, about
/// 2 s in all): until then they run on every hooked syscall of every process, so a measurement
/// started sooner also pays for them, in both twins. Any other tool's programs are waited for too.
fn settle() {
    let Some(baseline) = BASELINE_PROGRAMS.get() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = program_ids().difference(baseline).count();
        if left == 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("bench: {left} eBPF programs of earlier runs are still loaded after 20 s");
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `f` with `kernel.bpf_stats_enabled`, sampling the run time of tracer's programs while
/// it runs (they are unloaded when tracer exits).
fn profile(f: impl FnOnce() -> Result<()>) -> Result<Vec<ProgStat>> {
    settle();
    let before = program_ids();
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow::anyhow!("enabling bpf_stats: {e}"))?;
    let seen: Arc<Mutex<BTreeMap<u32, ProgStat>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                for p in aya::programs::loaded_programs().filter_map(Result::ok) {
                    if before.contains(&p.id()) {
                        continue;
                    }
                    let stat = ProgStat {
                        name: p.name_as_str().unwrap_or("?").to_string(),
                        run_count: p.run_count(),
                        run_time_ns: p.run_time().as_nanos() as u64,
                    };
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.id(), stat);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let r = f();
    stop.store(true, Ordering::Release);
    let _ = sampler.join();
    drop(stats_fd);
    r?;
    let mut by_name: BTreeMap<String, ProgStat> = BTreeMap::new();
    for s in seen.lock().unwrap_or_else(|e| e.into_inner()).values() {
        let e = by_name.entry(s.name.clone()).or_insert(ProgStat {
            name: s.name.clone(),
            run_count: 0,
            run_time_ns: 0,
        });
        e.run_count += s.run_count;
        e.run_time_ns += s.run_time_ns;
    }
    let mut v: Vec<ProgStat> = by_name.into_values().filter(|p| p.run_count > 0).collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns));
    Ok(v)
}

/// A bare run of the open loop, alone: CPU ns per iteration.
fn alone(churn: &Path, n: u64) -> Result<f64> {
    let out = Command::new(churn)
        .args(["open", &n.to_string()])
        .env("CHURN_CPU", WORK_CPU)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no timing from churn: {text}"))
}

/// The open loop of a process tracer does not select, bare and while tracer traces another
/// process (`--pid`) and while it watches the system for another name (`--comm`), in rounds.
fn unselected(churn: &Path, opts: &Options) -> Result<Value> {
    let mut sleeper = Command::new("sleep").arg("3600").spawn()?;
    let modes: [(&str, Vec<String>); 2] = [
        (
            "tracer --pid OTHER",
            vec!["--pid".into(), sleeper.id().to_string()],
        ),
        (
            "tracer --comm other (system-wide)",
            vec!["--comm".into(), "no-such-process".into()],
        ),
    ];
    let mut rows = Vec::new();
    for (name, args) in &modes {
        let mut ratios = Vec::new();
        for _ in 0..opts.runs {
            settle();
            let bare = alone(churn, opts.open)?;
            let mut w = tracer_command()
                .args(args)
                .args(["--interval", "3600"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting tracer")?;
            thread::sleep(Duration::from_millis(1500));
            if let Some(status) = w.try_wait()? {
                bail!("tracer {} exited early: {status}", args.join(" "));
            }
            let watched = alone(churn, opts.open)?;
            // SAFETY: signals our own child.
            unsafe { libc::kill(w.id() as i32, libc::SIGINT) };
            let _ = w.wait();
            ratios.push(watched / bare);
        }
        let ratio = median(ratios.clone());
        settle();
        let bare = alone(churn, opts.open)?;
        // Three syscalls per iteration (open, read, close).
        rows.push(json!({
            "name": name,
            "ratios": ratios,
            "ratio": ratio,
            "added_ns_per_syscall": (ratio - 1.0) * bare / 3.0,
        }));
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    Ok(json!({
        "workload": "unselected",
        "title": "open + read + close loop of a process tracer does not select (rounds, not twins)",
        "size": opts.open,
        "unit": "CPU ns/iteration",
        "variants": rows,
        "bpf_programs": [],
    }))
}

fn print_table(results: &[Value], runs: usize, took: Duration) {
    println!(
        "\ntracer benchmark: {runs} rounds of twins on CPU {WORK_CPU} ({:.0} s in all); ratio = \
         median of tool twin / bare twin\n",
        took.as_secs_f64()
    );
    for w in results {
        println!(
            "{} [{}]",
            w["title"].as_str().unwrap_or(""),
            w["unit"].as_str().unwrap_or("")
        );
        for v in w["variants"].as_array().into_iter().flatten() {
            let extra = match (
                v["added_ns_per_iteration"].as_f64(),
                v["change_percent"].as_f64(),
                v["added_ns_per_syscall"].as_f64(),
            ) {
                (_, _, Some(s)) => format!("{s:+.0} ns/syscall"),
                (Some(a), _, _) => format!("{a:+.0} ns/iter"),
                (_, Some(p), _) => format!("{p:+.1} % req/s"),
                _ => String::new(),
            };
            let cpu = v["tracer_cpu_ms_per_1000_events"]
                .as_f64()
                .map_or_else(String::new, |c| {
                    format!("  collector {c:.2} ms CPU/1000 events")
                });
            println!(
                "  {:<40} {:>7.2}x {:>18}{cpu}",
                v["name"].as_str().unwrap_or(""),
                v["ratio"].as_f64().unwrap_or(f64::NAN),
                extra
            );
        }
        let progs = w["bpf_programs"].as_array().cloned().unwrap_or_default();
        if !progs.is_empty() {
            println!("  eBPF programs (profiling run, bpf_stats):");
            for p in progs {
                println!(
                    "    {:<16} {:>10} runs {:>8.0} ns/run{}",
                    p["program"].as_str().unwrap_or(""),
                    p["run_count"],
                    p["ns_per_run"].as_f64().unwrap_or(0.0),
                    p["ns_per_iteration"]
                        .as_f64()
                        .map_or_else(String::new, |n| format!(" {n:>8.0} ns/iteration"))
                );
            }
        }
        println!();
    }
}
