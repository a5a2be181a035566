//! Project tasks: `cargo xtask setup | build | demo NAME | test | bench`.
//!
//! `setup` installs what building and testing tracer needs (idempotent: nothing already present
//! is rebuilt): the nightly toolchain's rust-src, bpf-linker linked against nightly's own LLVM,
//! gcc and Go (Debian packages) for the C and Go test programs, and chromium (Debian package)
//! for the HTML report's browser test.
use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

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
        /// go-file-leak, go-file-fixed, go-http-leak, go-http-fixed, c-leaky.
        name: String,
        /// Extra arguments for the demo (e.g. -- --count 20).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the whole test suite as CI does (needs root: real eBPF).
    Test,
    /// Benchmark: a 1M open+close loop bare and under `tracer run`, in one invocation.
    Bench {
        /// Loop iterations.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
        /// Runs of each variant (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
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
        Task::Bench { iterations, runs } => {
            setup()?;
            build()?;
            bench(iterations, runs)
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
    /// How to tell it is installed: a program on PATH, or an absolute path.
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
        needed_by: "the C test programs (c-leaky, c-kinds, openclose)",
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
        if self.probe.starts_with('/') {
            Path::new(self.probe).is_file()
        } else {
            have(self.probe)
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
        ("openclose.c", "openclose"),
        ("kinds.c", "c-kinds"),
    ];
    let cxx_programs = [("leaky.cpp", "cxx-leaky")];
    let go_programs = ["file-leak", "file-fixed", "http-leak", "http-fixed"];
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
    for demo in go_programs {
        let bin = out.join(format!("go-{demo}"));
        let _ = fs::remove_file(&bin);
        if !have("go") {
            eprintln!("build: go not available: go-{demo} not built");
            continue;
        }
        run(Command::new("go")
            .current_dir(root().join("demos/go"))
            .args(["build", "-o"])
            .arg(&bin)
            .arg(format!("./{demo}"))
            .env("GOFLAGS", "-mod=mod")
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
    let program = if name.starts_with("go-") || name.starts_with("c-") {
        programs_dir().join(name)
    } else {
        target_dir().join("release").join(name)
    };
    if !program.is_file() {
        bail!("no demo named {name} (see `cargo xtask demo --help`)");
    }
    let mut cmd = tracer_command();
    cmd.args(["run", "--"]).arg(&program);
    if args.is_empty() && !name.starts_with("c-") {
        cmd.args(["--count", "100"]);
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs a command, returning its stdout and the peak RSS (KiB) of the command itself.
fn run_measured(cmd: &mut Command) -> Result<(String, i64)> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as i32;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout {
        use std::io::Read as _;
        out.read_to_string(&mut stdout)?;
    }
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    Ok((stdout, usage.ru_maxrss))
}

fn bench(iterations: u64, runs: usize) -> Result<()> {
    if !is_root() {
        bail!("the benchmark loads real eBPF programs: run it as root");
    }
    let program = programs_dir().join("openclose");
    if !program.is_file() {
        bail!("gcc is needed to build the benchmark program");
    }
    let n = iterations.to_string();
    let ns_per_iter = |out: &str| -> Result<f64> {
        out.lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("unexpected benchmark output {out:?}"))
    };
    let started = Instant::now();
    let variants: [(&str, &[&str]); 3] = [
        ("bare", &[]),
        ("tracer run, full stacks (default)", &["--quiet"]),
        (
            "tracer run, no stacks (--stack-size 0)",
            &["--quiet", "--stack-size", "0"],
        ),
    ];
    let mut results = Vec::new();
    for (name, tracer_args) in variants {
        let mut times = Vec::new();
        let mut rss = 0;
        for _ in 0..runs {
            let mut cmd = if tracer_args.is_empty() {
                Command::new(&program)
            } else {
                let mut c = tracer_command();
                c.arg("run").args(tracer_args).arg("--").arg(&program);
                c
            };
            cmd.arg(&n);
            let (out, max_rss) = run_measured(&mut cmd)?;
            times.push(ns_per_iter(&out)?);
            rss = rss.max(max_rss);
        }
        results.push((name, median(times), rss));
    }
    // The cost for a process tracer does not select, while tracer watches the system.
    {
        let mut watcher = tracer_command();
        watcher
            .args(["--comm", "no-such-process", "--interval", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut watcher = watcher.spawn().context("starting system-wide tracer")?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut times = Vec::new();
        for _ in 0..runs {
            let (out, _) = run_measured(Command::new(&program).arg(&n))?;
            times.push(ns_per_iter(&out)?);
        }
        // SAFETY: signals our own child.
        unsafe { libc::kill(watcher.id() as i32, libc::SIGINT) };
        let _ = watcher.wait();
        results.push((
            "unrelated process, `tracer --comm other` watching",
            median(times),
            0,
        ));
    }
    let bare = results[0].1;
    println!(
        "open+close loop, {iterations} iterations, median of {runs} runs ({:.0} s in all)\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<50} {:>10} {:>14} {:>14} {:>8} {:>12}",
        "variant", "ns/iter", "+ns/acquire", "+ns/syscall", "ratio", "peak RSS"
    );
    for (name, ns, rss) in &results {
        let added = ns - bare;
        println!(
            "{name:<50} {ns:>10.1} {:>14.1} {:>14.1} {:>7.2}x {:>9} KiB",
            added,
            added / 2.0,
            ns / bare,
            rss
        );
    }
    println!(
        "\n(+ns/syscall: the added time spread over the iteration's two fd syscalls; peak RSS: of tracer, or of the bare program)"
    );
    Ok(())
}
