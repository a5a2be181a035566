//! `tracer doctor`: what this kernel and these privileges let tracer do. Loads one tiny program
//! of each type tracer could use, then traces a real command end to end, and prints a table of
//! what works and what coverage is lost where something does not.
use std::{
    fmt::Write as _,
    io::IsTerminal,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Btf, EbpfLoader,
    programs::{
        BtfTracePoint, FEntry, Iter, KProbe, Lsm, RawTracePoint, TracePoint, UProbe,
        uprobe::UProbeScope,
    },
};
use tabled::{Table, Tabled, settings::Style};

use crate::{
    collector::Collector,
    probes::{self, ProbeOptions, btf, preflight},
};

/// One line of the doctor's table.
#[derive(Tabled)]
struct Row {
    check: String,
    result: String,
    #[tabled(rename = "what it means for tracer")]
    meaning: String,
}

/// The outcome of one check.
struct Check {
    name: String,
    /// `Ok(detail)` or `Err(reason)`.
    outcome: Result<String, String>,
    /// Tracing cannot work without it.
    required: bool,
    /// What tracer does with it, or without it.
    if_ok: String,
    if_not: String,
}

impl Check {
    fn new(name: &str, required: bool, if_ok: &str, if_not: &str) -> Self {
        Self {
            name: name.into(),
            outcome: Err("not checked".into()),
            required,
            if_ok: if_ok.into(),
            if_not: if_not.into(),
        }
    }

    fn with(mut self, outcome: Result<String, String>) -> Self {
        self.outcome = outcome;
        self
    }
}

/// Runs every check and prints the table; exit code 0 only if tracing can work.
pub fn doctor() -> Result<i32> {
    let checks = run_checks();
    let color = std::io::stdout().is_terminal();
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Row> = checks
        .iter()
        .map(|c| match &c.outcome {
            Ok(detail) => Row {
                check: c.name.clone(),
                result: paint("32", &format!("ok{}", suffix(detail))),
                meaning: c.if_ok.clone(),
            },
            Err(why) => Row {
                check: c.name.clone(),
                result: if c.required {
                    paint("1;31", &format!("FAILED: {why}"))
                } else {
                    paint("33", &format!("no: {why}"))
                },
                meaning: c.if_not.clone(),
            },
        })
        .collect();
    let mut out = String::new();
    let mut table = Table::new(rows);
    table.with(Style::rounded());
    let _ = writeln!(out, "{table}");
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.required && c.outcome.is_err())
        .collect();
    if failed.is_empty() {
        let _ = writeln!(out, "{}", paint("32", "tracer can trace on this machine"));
    } else {
        for c in &failed {
            let _ = writeln!(
                out,
                "{}",
                paint(
                    "1;31",
                    &format!(
                        "tracer cannot trace here: {}: {}",
                        c.name,
                        c.outcome.as_ref().err().map_or("", String::as_str)
                    )
                )
            );
        }
    }
    print!("{out}");
    Ok(if failed.is_empty() { 0 } else { 1 })
}

fn suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn run_checks() -> Vec<Check> {
    let mut checks = vec![
        Check::new(
            "privileges",
            true,
            "can load eBPF programs and read any process's memory",
            "run tracer with sudo (or grant CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE)",
        )
        .with(preflight::privileges().map_err(|e| e.to_string())),
        Check::new(
            "kernel version",
            true,
            "bpf_loop and bpf_find_vma (5.17+) are available",
            "tracer needs Linux 5.17 or newer",
        )
        .with(preflight::kernel_version().map_err(|e| e.to_string())),
        Check::new(
            "kernel BTF",
            true,
            "field offsets resolved from /sys/kernel/btf/vmlinux; tp_btf programs can load",
            "tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
        .with(preflight::kernel_btf().map_err(|e| e.to_string())),
        Check::new(
            "locked memory",
            false,
            "enough for tracer's maps",
            "RLIMIT_MEMLOCK is low: large maps may fail to load on kernels before 5.11",
        )
        .with(preflight::raise_memlock().map_err(|e| e.to_string())),
        Check::new(
            "tracefs",
            false,
            "available (tracer attaches by name and does not need it)",
            "not needed: tracer attaches raw and BTF tracepoints by name",
        )
        .with(preflight::tracefs().map_err(|e| e.to_string())),
    ];
    let base_ok = checks.iter().all(|c| !c.required || c.outcome.is_ok());
    if !base_ok {
        return checks;
    }
    checks.extend(program_types());
    checks.push(
        Check::new(
            "io_uring tracepoints",
            false,
            "io_uring requests (openat, socket, accept, pipe, fixed_fd_install, close) are \
             accounted",
            "descriptors made or closed through io_uring are not seen (verification flags them)",
        )
        .with(io_uring_check()),
    );
    let e2e = Check::new(
        "end to end",
        true,
        "traced a real command: acquisitions, complete stacks, exact accounting",
        "tracer's own programs failed: see the reason",
    )
    .with(end_to_end().map_err(|e| format!("{e:#}")));
    checks.push(e2e);
    checks
}

/// Loads (and attaches, then detaches) one tiny program of each type.
fn program_types() -> Vec<Check> {
    let mut out = Vec::new();
    let btf = match Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            out.push(Check::new("program types", true, "", "").with(Err(e.to_string())));
            return out;
        }
    };
    let mut ebpf = match EbpfLoader::new()
        .map_max_entries("OPEN_FDS", 64)
        .map_max_entries("EVENTS", 1 << 16)
        .load(probes::object())
    {
        Ok(e) => e,
        Err(e) => {
            out.push(
                Check::new(
                    "maps (hash, LRU, per-CPU, ring buffer)",
                    true,
                    "",
                    "tracer's maps cannot be created",
                )
                .with(Err(short(&e.to_string()))),
            );
            return out;
        }
    };
    out.push(
        Check::new(
            "maps (hash, LRU, per-CPU, ring buffer)",
            true,
            "accounting map, filters and the ring buffer can be created",
            "",
        )
        .with(Ok(String::new())),
    );
    macro_rules! try_prog {
        ($name:literal, $ty:ty, |$p:ident| $body:expr) => {{
            (|| -> Result<String, String> {
                let $p: &mut $ty = ebpf
                    .program_mut($name)
                    .ok_or_else(|| "missing from the object".to_string())?
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| short(&e.to_string()))?;
                $body
            })()
        }};
    }
    let load_err =
        |e: aya::programs::ProgramError| format!("load: {}", short(&format!("{e} {e:?}")));
    let attach_err =
        |e: aya::programs::ProgramError| format!("attach: {}", short(&format!("{e} {e:?}")));
    out.push(
        Check::new(
            "tp_btf (io_uring_submit_req, io_uring_complete)",
            false,
            "io_uring requests that create or close descriptors",
            "io_uring requests cannot be followed (their descriptors show as missing)",
        )
        .with(try_prog!("doctor_tp_btf", BtfTracePoint, |p| {
            p.load("sys_enter", &btf).map_err(load_err)?;
            p.attach().map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "raw_tp (sched_process_*, inet_sock_set_state)",
            true,
            "fork, exec and exit of the traced tree; TCP states",
            "processes cannot be followed",
        )
        .with(try_prog!("doctor_raw_tp", RawTracePoint, |p| {
            p.load().map_err(load_err)?;
            p.attach("sys_enter").map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "tracepoint (syscalls:sys_enter_close)",
            true,
            "every syscall that creates or releases a descriptor, each on its own tracepoint \
             (no other syscall runs tracer's code)",
            "syscalls cannot be followed",
        )
        .with(try_prog!("doctor_tracepoint", TracePoint, |p| {
            p.load().map_err(load_err)?;
            p.attach("syscalls", "sys_enter_close")
                .map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "fentry (do_sys_openat2)",
            false,
            "available; tracer uses syscall tracepoints anyway (same coverage)",
            "fentry/fexit unusable → tracer uses syscall tracepoints (same coverage)",
        )
        .with(try_prog!("doctor_fentry", FEntry, |p| {
            p.load("do_sys_openat2", &btf).map_err(load_err)?;
            p.attach().map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "kprobe (do_sys_openat2)",
            false,
            "available; not needed",
            "no kprobes → tracer uses tracepoints (kernel-internal paths such as ioctl-made \
             descriptors are found by verification instead)",
        )
        .with(try_prog!("doctor_kprobe", KProbe, |p| {
            p.load().map_err(load_err)?;
            p.attach("do_sys_openat2", 0).map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "uprobe (libc close)",
            false,
            "goroutines of Go programs are followed (uprobes on the Go runtime)",
            "goroutines are not followed (descriptors are, with complete Go stacks)",
        )
        .with(try_prog!("doctor_uprobe", UProbe, |p| {
            p.load().map_err(load_err)?;
            p.attach("close", "libc", UProbeScope::CallingProcess)
                .map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "lsm (file_open)",
            false,
            "available; not needed",
            "not needed: descriptor creation is seen at syscall exit",
        )
        .with(try_prog!("doctor_lsm", Lsm, |p| {
            p.load("file_open", &btf).map_err(load_err)?;
            p.attach().map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out.push(
        Check::new(
            "BPF iterator (task_file)",
            false,
            "available; tracer reads /proc/PID/fd for descriptors open before it attached",
            "not needed: /proc/PID/fd lists descriptors open before tracer attached",
        )
        .with(try_prog!("doctor_iter", Iter, |p| {
            p.load("task_file", &btf).map_err(load_err)?;
            p.attach().map_err(attach_err)?;
            Ok(String::new())
        })),
    );
    out
}

/// Whether tracer's io_uring programs load and attach here.
fn io_uring_check() -> Result<String, String> {
    let offsets = btf::kernel_offsets().map_err(|e| e.to_string())?;
    if !btf::io_uring_supported(&offsets) {
        return Err("kernel BTF lacks the io_uring request structures".into());
    }
    Ok(String::new())
}

/// Traces `cat /dev/null` with tracer's real programs and checks what came back.
fn end_to_end() -> Result<String> {
    let mut collector = Collector::new(&ProbeOptions {
        ring_bytes: 1 << 20,
        max_fds: 4096,
        ..Default::default()
    })?;
    if let Some(lost) = collector.state.probes.lost_coverage().first() {
        eprintln!("tracer doctor: {lost}");
    }
    let me = std::process::id();
    collector.state.probes.trace(me, false)?;
    let cat = ["/usr/bin/cat", "/bin/cat"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("no cat binary to trace"))?;
    let status = Command::new(cat)
        .arg("/dev/null")
        .stdout(Stdio::null())
        .status();
    collector.state.probes.untrace(me)?;
    status.context("running cat")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let exited = |c: &Collector| {
        c.state
            .acct
            .processes()
            .iter()
            .any(|p| p.exit_status.is_some())
    };
    while !exited(&collector) && Instant::now() < deadline {
        collector.drain();
        std::thread::sleep(Duration::from_millis(10));
    }
    let counters = collector.finish(false)?;
    let procs = collector.state.acct.processes();
    let p = procs
        .iter()
        .find(|p| p.exit_status.is_some())
        .ok_or_else(|| anyhow!("the traced command's exit was not seen"))?;
    if counters.acquired == 0 {
        return Err(anyhow!("no acquisition seen (cat opens /dev/null)"));
    }
    let deepest = collector
        .state
        .sites
        .stacks
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(0);
    if deepest < 2 {
        return Err(anyhow!("stacks were not captured"));
    }
    match &p.verify {
        Some(v) if v.is_exact() => Ok(format!(
            "{} acquired, {} released, stacks {deepest} frames deep, accounting exact ({}/{})",
            counters.acquired, counters.released, v.exact, v.open
        )),
        Some(v) => Err(anyhow!(
            "accounting does not match the kernel at exit: {} missing, {} phantom",
            v.missing,
            v.phantom
        )),
        None => Err(anyhow!("no exit-time verification")),
    }
}

/// A short form of a load or attach error: its errno name when it has one.
fn short(msg: &str) -> String {
    let errno = ["os error ", "code: "].iter().find_map(|marker| {
        let rest = &msg[msg.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<i32>().ok()
    });
    let name = match errno {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(524) => "ENOTSUPP",
        _ => "",
    };
    if name.is_empty() {
        msg.lines().next().unwrap_or(msg).chars().take(60).collect()
    } else {
        name.to_string()
    }
}
