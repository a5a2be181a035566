//! Checks that must pass before anything is loaded, each failing with one clear sentence:
//! privileges, kernel BTF, locked-memory limit. (tracer attaches to raw and BTF tracepoints by
//! name, so it needs no tracefs.)
use std::{fs, path::Path};

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Runs every check; mounts tracefs when needed.
pub fn check() -> Result<()> {
    check_privileges()?;
    if !Path::new(super::btf::VMLINUX_BTF).exists() {
        bail!(
            "this kernel has no BTF ({} is missing): tracer needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (5.15 or newer, as most distributions ship)",
            super::btf::VMLINUX_BTF
        );
    }
    raise_memlock();
    Ok(())
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn check_privileges() -> Result<()> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("tracer needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo")
}

/// Kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the provided struct. Failure only matters on old kernels, where the
    // map creation error that follows says what is wrong.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}
