//! The must-haves, checked before anything is loaded, each failing with one clear sentence
//! (`tracer doctor` shows them all, with what else the kernel allows).
use std::{fs, path::Path};

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Oldest kernel with every helper the programs use (bpf_loop, bpf_find_vma: 5.17).
const MIN_KERNEL: (u32, u32) = (5, 17);

/// Runs every must-have check, failing on the first.
pub fn check() -> Result<()> {
    let hint = "(`tracer doctor` checks everything)";
    privileges().map_err(|e| anyhow::anyhow!("{e} {hint}"))?;
    kernel_version().map_err(|e| anyhow::anyhow!("{e} {hint}"))?;
    kernel_btf().map_err(|e| anyhow::anyhow!("{e} {hint}"))?;
    tracefs().map_err(|e| anyhow::anyhow!("tracefs: {e} {hint}"))?;
    let _ = raise_memlock();
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

/// Root, or the capabilities to load tracing programs.
pub fn privileges() -> Result<String> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok("CAP_SYS_ADMIN".into());
    }
    if has(CAP_BPF) && has(CAP_PERFMON) {
        return Ok("CAP_BPF, CAP_PERFMON".into());
    }
    bail!("tracer needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo")
}

/// The running kernel's version, if recent enough.
pub fn kernel_version() -> Result<String> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < MIN_KERNEL {
        bail!(
            "Linux {release} is too old: tracer needs {}.{} or newer (bpf_loop, bpf_find_vma)",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(release.to_string())
}

/// The kernel describes its types (BTF): needed for tp_btf and field offsets.
pub fn kernel_btf() -> Result<String> {
    if !Path::new(super::btf::VMLINUX_BTF).exists() {
        bail!(
            "this kernel has no BTF ({} is missing): tracer needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (as most distributions ship)",
            super::btf::VMLINUX_BTF
        );
    }
    Ok(super::btf::VMLINUX_BTF.into())
}

/// Kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK: lift it as far as allowed.
pub fn raise_memlock() -> Result<String> {
    // Kernels tracer runs on (5.17+) charge maps to the memory cgroup instead (5.11+).
    let charged_to_memcg = kernel_version().is_ok();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the provided struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim);
        let want = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) == 0 {
            return Ok("unlimited".into());
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
    let limit = if lim.rlim_max == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", lim.rlim_max / 1024)
    };
    if charged_to_memcg {
        return Ok(format!("{limit}; not used for maps on this kernel"));
    }
    bail!("limited to {limit}")
}

/// Where tracefs is mounted, mounting it when it is not (the syscall hooks attach through it).
pub fn tracefs() -> Result<String> {
    let path = "/sys/kernel/tracing";
    if Path::new(path).join("events").exists() {
        return Ok(path.into());
    }
    if std::fs::read_dir(path).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
        bail!("{path} is not readable (it needs root)");
    }
    let c = std::ffi::CString::new(path)?;
    let fs = c"tracefs";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe { libc::mount(fs.as_ptr(), c.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        bail!(
            "not mounted, and mounting it failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(format!("{path}, mounted now"))
}
