//! Project tasks: `cargo xtask setup | build | demo NAME | test | bench`.
//!
//! `setup` installs what building and testing tracer needs (idempotent: nothing already present
//! is rebuilt): the nightly toolchain's rust-src, bpf-linker linked against nightly's own LLVM,
//! gcc and Go (Debian packages) for the C and Go test programs, PostgreSQL and Go's lib/pq
//! (Debian packages) for the database demos, and chromium (Debian package) for the HTML
//! report's browser test.
use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod bench;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tracer's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces and packages tracer needs (idempotent).
    Setup,
    /// Set up, then build tracer (with its eBPF programs) and every demo.
    Build,
    /// Set up, build, and run a demo under `tracer run` (e.g. file-leak, http-leak, go-http-leak).
    Demo {
        /// Demo name: file-leak, file-fixed, http-leak, http-fixed, socket-leak, socket-fixed,
        /// pipe-leak, pipe-fixed, dup-leak, dup-fixed, exec-inherit, exec-fixed, stress,
        /// go-file-leak, go-file-fixed, go-http-leak, go-http-fixed, c-leaky, db-leak, db-fixed
        /// (Go with lib/pq against a throwaway PostgreSQL cluster).
        name: String,
        /// Extra arguments for the demo (e.g. -- --count 20).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the whole test suite as CI does (needs root: real eBPF).
    Test,
    /// Benchmark: tracer against a bare run and its peers (strace, valgrind, bpftrace) on an
    /// open loop, a socket loop, an HTTP client loop and nginx under wrk, in one invocation.
    Bench {
        /// Paired rounds of every variant (medians are reported).
        #[arg(long, default_value_t = 15)]
        runs: usize,
        /// Iterations of the open + read + close loop.
        #[arg(long, default_value_t = 100_000)]
        open: u64,
        /// Iterations of the socket + close loop.
        #[arg(long, default_value_t = 100_000)]
        socket: u64,
        /// HTTP GETs, one connection each.
        #[arg(long, default_value_t = 5_000)]
        http: u64,
        /// HTTP GETs of the Go client loop, one connection each.
        #[arg(long, default_value_t = 2_000)]
        go_http: u64,
        /// Seconds of wrk load on nginx per run.
        #[arg(long, default_value_t = 5)]
        wrk_secs: u64,
        /// Only these workloads: open, socket, http, go-http, nginx, unselected (repeat;
        /// default: all).
        #[arg(long = "only", value_name = "WORKLOAD")]
        only: Vec<String>,
        /// Bare and tracer only (no strace, valgrind, bpftrace): for quick comparisons.
        #[arg(long)]
        no_peers: bool,
        /// Also run the loops' twins under this tracer binary (a copy of an earlier build) and
        /// this one: a row with the ratio of the two, for changes smaller than the drift.
        #[arg(long, value_name = "TRACER")]
        against: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => {
            let missing = setup()?;
            if !missing.is_empty() {
                bail!("{} could not be installed", names(&missing));
            }
            Ok(())
        }
        Task::Build => {
            setup()?;
            build()
        }
        Task::Demo { name, args } => {
            setup()?;
            build()?;
            demo(&name, &args)
        }
        Task::Test => {
            let missing = setup()?;
            build()?;
            // The tests that need a missing tool say so: they fail under CI, and are listed as
            // skipped otherwise.
            test()?;
            if under_ci() && !missing.is_empty() {
                bail!("{} could not be installed (CI)", names(&missing));
            }
            Ok(())
        }
        Task::Bench {
            runs,
            open,
            socket,
            http,
            go_http,
            wrk_secs,
            only,
            no_peers,
            against,
        } => {
            setup()?;
            build()?;
            bench::bench(&bench::Options {
                runs,
                open,
                socket,
                http,
                go_http,
                wrk_secs,
                only,
                peers: !no_peers,
                against,
            })
        }
    }
}

/// "gcc, golang-go": the packages of missing tools.
fn names(tools: &[&Tool]) -> String {
    tools
        .iter()
        .map(|t| t.package)
        .collect::<Vec<_>>()
        .join(", ")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Where test and demo programs other than Rust ones are built.
fn programs_dir() -> PathBuf {
    target_dir().join("programs")
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    which(program).is_some()
}

fn which(program: &str) -> Option<PathBuf> {
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `apt-get ARGS`, through sudo when not root.
fn apt_get(args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// A tool the tests and demos need, from a Debian package.
struct Tool {
    /// How to tell it is installed: a program on PATH, or an absolute path (one `*` component
    /// matches any directory: a version).
    probe: &'static str,
    package: &'static str,
    /// What needs it (said when it is missing).
    needed_by: &'static str,
}

/// Every tool `setup` installs besides the Rust toolchain pieces.
const TOOLS: &[Tool] = &[
    Tool {
        probe: "gcc",
        package: "gcc",
        needed_by: "the C test programs (c-leaky, c-kinds) and the benchmark (churn)",
    },
    Tool {
        probe: "g++",
        package: "g++",
        needed_by: "the C++ test program (cxx-leaky)",
    },
    Tool {
        probe: "go",
        package: "golang-go",
        needed_by: "the Go demos and their tests",
    },
    Tool {
        probe: "/usr/lib/postgresql/*/bin/initdb",
        package: "postgresql",
        needed_by: "the database demos (db-leak, db-fixed) and their tests",
    },
    Tool {
        probe: "/usr/share/gocode/src/github.com/lib/pq/go.mod",
        package: "golang-github-lib-pq-dev",
        needed_by: "the database demos (Go's lib/pq driver, built offline)",
    },
    Tool {
        probe: "/usr/bin/chromium",
        package: "chromium",
        needed_by: "the HTML report's browser test",
    },
    Tool {
        probe: "/usr/bin/python3",
        package: "python3",
        needed_by: "the Python test programs",
    },
    Tool {
        probe: "setpriv",
        package: "util-linux",
        needed_by: "the tests running tracer without privileges",
    },
];

impl Tool {
    fn present(&self) -> bool {
        match self.probe.split_once("/*/") {
            Some((dir, rest)) => fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join(rest).is_file()),
            None if self.probe.starts_with('/') => Path::new(self.probe).is_file(),
            None => have(self.probe),
        }
    }
}

/// Installs Debian packages. The package lists are refreshed only when an install fails
/// (a fresh machine has none; a cached machine needs no network round trip).
fn apt_install(packages: &[&str]) -> Result<()> {
    if !have("apt-get") {
        bail!(
            "apt-get not found: install {} with your package manager",
            packages.join(" ")
        );
    }
    let install = || {
        apt_get(&["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    eprintln!("setup: refreshing the package lists (apt-get update)");
    run(&mut apt_get(&["update", "-qq"]))?;
    run(apt_get(&["install", "-y", "-qq", "--no-install-recommends"]).args(packages))
}

/// Whether this runs under CI (`CI=true`): missing tools then fail the tests that need them.
fn under_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Installs what building and testing need. Returns what could not be installed (each said
/// loudly); the Rust toolchain pieces are required and fail setup outright.
fn setup() -> Result<Vec<&'static Tool>> {
    // rust-src for the nightly toolchain (eBPF is built with -Z build-std=core).
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the nightly toolchain is required (rustup toolchain install nightly)")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    ensure_bpf_linker()?;
    let missing: Vec<&Tool> = TOOLS.iter().filter(|t| !t.present()).collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    eprintln!("setup: installing {}", packages.join(" "));
    let why = apt_install(&packages).err();
    let still: Vec<&'static Tool> = TOOLS.iter().filter(|t| !t.present()).collect();
    for t in &still {
        eprintln!(
            "setup: ERROR: {} (Debian package {}) could not be installed{}: {} cannot run",
            t.probe,
            t.package,
            why.as_ref()
                .map_or_else(String::new, |e| format!(" ({e:#})")),
            t.needed_by
        );
    }
    Ok(still)
}

/// What bpf-linker was built against: the nightly toolchain and its libLLVM.
fn llvm_stamp() -> Result<(String, String, PathBuf)> {
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("reading nightly's LLVM version")?
        .to_string();
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let nightly_lib = Path::new(sysroot.trim()).join("lib");
    let llvm_so = fs::read_dir(&nightly_lib)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{llvm_major}")))
        })
        .with_context(|| format!("no libLLVM.so.{llvm_major}* in {}", nightly_lib.display()))?;
    let nightly = version.lines().next().unwrap_or_default().to_string();
    let stamp = format!("{nightly}\n{}\n", llvm_so.display());
    Ok((llvm_major, stamp, llvm_so))
}

fn cache_dir() -> PathBuf {
    let home = env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/tracer")
}

/// bpf-linker 0.13 from crates.io, linked against the nightly toolchain's own libLLVM. Rebuilt
/// when it is missing, does not start, or was built against another nightly or libLLVM than
/// the current one (recorded next to it).
fn ensure_bpf_linker() -> Result<()> {
    let (llvm_major, stamp, llvm_so) = llvm_stamp()?;
    let stamp_file = cache_dir().join("bpf-linker.stamp");
    let starts = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let built_for = fs::read_to_string(&stamp_file).unwrap_or_default();
    let nightly = stamp.lines().next().unwrap_or_default();
    if starts && built_for == stamp {
        return Ok(());
    }
    let why = if !have("bpf-linker") {
        "not installed".to_string()
    } else if !starts {
        "it does not start".to_string()
    } else if built_for.is_empty() {
        "built by something else (no record of its LLVM)".to_string()
    } else {
        format!(
            "built for {}",
            built_for.lines().collect::<Vec<_>>().join(", ")
        )
    };
    eprintln!(
        "setup: building bpf-linker 0.13.0 against {nightly}'s LLVM {llvm_major} ({why}; about a \
         minute, once)"
    );
    let nightly_lib = llvm_so.parent().context("libLLVM's directory")?;
    let prefix = cache_dir().join("llvm");
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm_so, &link)?;
    let home = env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let cargo_home = env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--locked",
            "--force",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{llvm_major}")])
        .arg("--root")
        .arg(&cargo_home)
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", nightly_lib.display()),
        ))?;
    if !have("bpf-linker") {
        bail!(
            "bpf-linker was installed in {} which is not on PATH",
            cargo_home.join("bin").display()
        );
    }
    fs::write(&stamp_file, &stamp).with_context(|| format!("writing {}", stamp_file.display()))?;
    Ok(())
}

fn build() -> Result<()> {
    run(Command::new("cargo").current_dir(root()).args([
        "build",
        "--release",
        "--package",
        "tracer",
        "--package",
        "demos",
    ]))?;
    build_programs()
}

/// Builds the C and C++ programs (-O2 -g, no frame-pointer flags) and the Go demos. A program
/// whose compiler is missing is removed, so that no test runs a stale build of it.
fn build_programs() -> Result<()> {
    let out = programs_dir();
    fs::create_dir_all(&out)?;
    let c_programs = [
        ("leaky.c", "c-leaky"),
        ("churn.c", "churn"),
        ("kinds.c", "c-kinds"),
        ("threads.c", "c-threads"),
    ];
    let cxx_programs = [("leaky.cpp", "cxx-leaky")];
    let go_programs = [
        "file-leak",
        "file-fixed",
        "http-leak",
        "http-fixed",
        "status-leak",
        "status-fixed",
        "goroutine-leak",
        "goroutine-pool",
        "http-loop",
    ];
    for (compiler, src_dir, programs) in [
        ("gcc", "demos/c", &c_programs[..]),
        ("g++", "demos/c", &cxx_programs[..]),
    ] {
        for (src, bin) in programs {
            let _ = fs::remove_file(out.join(bin));
            if !have(compiler) {
                eprintln!("build: {compiler} not available: {bin} not built");
                continue;
            }
            run(Command::new(compiler)
                .args(["-O2", "-g", "-o"])
                .arg(out.join(bin))
                .arg(root().join(src_dir).join(src)))?;
        }
    }
    // The database demos are a module of their own: it needs Debian's lib/pq sources.
    let lib_pq = Path::new("/usr/share/gocode/src/github.com/lib/pq/go.mod").is_file();
    let go_builds = go_programs
        .iter()
        .map(|demo| ("demos/go", *demo, true))
        .chain(["db-leak", "db-fixed"].map(|demo| ("demos/go/db", demo, lib_pq)));
    for (module, demo, sources) in go_builds {
        let bin = out.join(format!("go-{demo}"));
        let _ = fs::remove_file(&bin);
        if !have("go") || !sources {
            let missing = if sources {
                "go"
            } else {
                "golang-github-lib-pq-dev"
            };
            eprintln!("build: {missing} not available: go-{demo} not built");
            continue;
        }
        run(Command::new("go")
            .current_dir(root().join(module))
            .args(["build", "-o"])
            .arg(&bin)
            .arg(format!("./{demo}"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local"))?;
    }
    Ok(())
}

/// The tracer binary, run through sudo when not root.
fn tracer_command() -> Command {
    let tracer = target_dir().join("release/tracer");
    if is_root() || !have("sudo") {
        Command::new(tracer)
    } else {
        let mut c = Command::new("sudo");
        c.arg(tracer);
        c
    }
}

fn demo(name: &str, args: &[String]) -> Result<()> {
    if let Some(db_demo) = ["db-leak", "db-fixed"].into_iter().find(|d| *d == name) {
        return db_demo_run(db_demo, args);
    }
    let mut cmd = tracer_command();
    cmd.args(["run", "--"]);
    if let Some(variant) = name.strip_prefix("python-") {
        // The script under Debian's interpreter (a `python3` earlier on PATH may be a shim).
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| have(p))
            .context("python3 is not installed")?;
        cmd.arg(python).arg(root().join("demos/python/leaky.py"));
        match variant {
            "leak" => {}
            "fixed" => drop(cmd.arg("--fixed")),
            _ => bail!("no demo named {name} (python-leak, python-fixed)"),
        }
    } else {
        let program = if name.starts_with("go-") || name.starts_with("c-") {
            programs_dir().join(name)
        } else {
            target_dir().join("release").join(name)
        };
        if !program.is_file() {
            bail!("no demo named {name} (see `cargo xtask demo --help`)");
        }
        cmd.arg(&program);
        if args.is_empty() && !name.starts_with("c-") {
            cmd.args(["--count", "100"]);
        }
    }
    cmd.args(args);
    eprintln!("demo: {cmd:?}");
    let status = cmd.status().context("running tracer")?;
    // A demo's exit code is its own; tracer errors are 125.
    if status.code() == Some(125) {
        bail!("tracer failed");
    }
    Ok(())
}

/// `demo db-leak`, `demo db-fixed`: a throwaway PostgreSQL cluster, the Go demo under `tracer
/// run` against it (10 lookups, unbounded pool, unless told otherwise), the cluster stopped
/// whatever happens (Ctrl-C reaches the demo and tracer; this process waits for them).
fn db_demo_run(name: &str, args: &[String]) -> Result<()> {
    let program = programs_dir().join(format!("go-{name}"));
    if !program.is_file() {
        bail!(
            "{} was not built (it needs golang-go and golang-github-lib-pq-dev)",
            program.display()
        );
    }
    let cluster = pgcluster::Cluster::start().context("starting a throwaway PostgreSQL")?;
    eprintln!(
        "demo: PostgreSQL (postmaster pid {}) on 127.0.0.1:{}, socket in {}",
        cluster.postmaster_pid(),
        cluster.port(),
        cluster.socket_dir().display()
    );
    let mut cmd = tracer_command();
    cmd.args(["run", "--"]).arg(&program);
    cmd.arg("--dsn").arg(cluster.tcp_dsn());
    if args.is_empty() {
        cmd.args(["--count", "10"]);
    }
    cmd.args(args);
    eprintln!("demo: {cmd:?}");
    let status = {
        let _interrupts = KeepRunning::on_interrupt();
        cmd.status().context("running tracer")
    };
    drop(cluster);
    if status?.code() == Some(125) {
        bail!("tracer failed");
    }
    Ok(())
}

/// While alive, SIGINT and SIGTERM do not end this process (they still reach the children,
/// whose handlers are their own): cleanup after them runs.
struct KeepRunning {
    previous: [libc::sigaction; 2],
}

extern "C" fn ignore_signal(_: libc::c_int) {}

impl KeepRunning {
    fn on_interrupt() -> Self {
        // SAFETY: installs a handler that does nothing (async-signal-safe); a handler, unlike
        // SIG_IGN, is not inherited across exec.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: [libc::sigaction; 2] = std::mem::zeroed();
            for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
                libc::sigaction(sig, &action, &mut previous[i]);
            }
            Self { previous }
        }
    }
}

impl Drop for KeepRunning {
    fn drop(&mut self) {
        for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
            // SAFETY: restores the dispositions saved in on_interrupt.
            unsafe { libc::sigaction(sig, &self.previous[i], std::ptr::null_mut()) };
        }
    }
}

/// Where the tests note what they skipped (see tests/common: `skip`).
fn skipped_log() -> PathBuf {
    target_dir().join("tests-skipped.txt")
}

fn test() -> Result<()> {
    if !is_root() {
        bail!("the test suite loads real eBPF programs: run it as root (sudo -E cargo xtask test)");
    }
    let log = skipped_log();
    let _ = fs::remove_file(&log);
    let result = run(Command::new("cargo")
        .current_dir(root())
        .args([
            "test",
            "--release",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            // Every failing test is named, not only those of the first failing binary.
            "--no-fail-fast",
        ])
        .args(["--", "--test-threads=2"])
        .env("TRACER_TEST_PROGRAMS", programs_dir())
        .env("TRACER_TEST_DEMOS", target_dir().join("release"))
        .env("TRACER_SKIPPED_LOG", &log));
    let skipped = fs::read_to_string(&log).unwrap_or_default();
    let skipped: Vec<&str> = skipped.lines().filter(|l| !l.is_empty()).collect();
    if skipped.is_empty() {
        eprintln!("test: no test skipped");
    } else {
        eprintln!(
            "test: {} tests SKIPPED (their tool is missing):",
            skipped.len()
        );
        for line in &skipped {
            eprintln!("  {line}");
        }
    }
    result
}

/// The median of some measurements.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
