//! Kernel structure offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The eBPF programs read a few kernel fields (the descriptor table, exit code, ...). Rust eBPF has
//! no CO-RE relocations, so userspace resolves each field's offset here and writes them into the
//! program's read-only configuration before loading.
use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use tracer_common::KernelOffsets;

/// Where the kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Resolves every offset the eBPF programs need.
pub fn kernel_offsets() -> Result<KernelOffsets> {
    let btf = Btf::from_file(VMLINUX_BTF)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading kernel BTF from {VMLINUX_BTF}"))?;
    let off = |ty: &str, field: &str| field_offset(&btf, ty, field);
    Ok(KernelOffsets {
        task_files: off("task_struct", "files")?,
        task_signal: off("task_struct", "signal")?,
        task_tgid: off("task_struct", "tgid")?,
        task_pid: off("task_struct", "pid")?,
        task_exit_code: off("task_struct", "exit_code")?,
        files_fdt: off("files_struct", "fdt")?,
        fdt_max_fds: off("fdtable", "max_fds")?,
        fdt_fd: off("fdtable", "fd")?,
        fdt_open_fds: off("fdtable", "open_fds")?,
        file_inode: off("file", "f_inode")?,
        inode_ino: off("inode", "i_ino")?,
        inode_mode: off("inode", "i_mode")?,
        signal_live: off("signal_struct", "live")?,
        vma_start: off("vm_area_struct", "vm_start")?,
        vma_end: off("vm_area_struct", "vm_end")?,
        binprm_filename: off("linux_binprm", "filename")?,
        file_private_data: off("file", "private_data")?,
        socket_sk: off("socket", "sk")?,
        skc_daddr: off("sock_common", "skc_daddr")?,
        skc_rcv_saddr: off("sock_common", "skc_rcv_saddr")?,
        skc_dport: off("sock_common", "skc_dport")?,
        skc_num: off("sock_common", "skc_num")?,
        skc_family: off("sock_common", "skc_family")?,
        skc_v6_daddr: off("sock_common", "skc_v6_daddr")?,
        skc_v6_rcv_saddr: off("sock_common", "skc_v6_rcv_saddr")?,
        task_fsbase: off("task_struct", "thread")? + off("thread_struct", "fsbase")?,
        signal_flags: off("signal_struct", "flags")?,
        ..io_uring_offsets(&btf).unwrap_or_default()
    })
}

/// Offsets of the io_uring request structures (private to the kernel, described by its BTF).
/// `None` when any is missing: io_uring is then not followed (see `tracer doctor`).
fn io_uring_offsets(btf: &Btf) -> Option<KernelOffsets> {
    let off = |ty: &str, field: &str| field_offset(btf, ty, field).ok();
    // Request data lives in the first bytes of `struct io_kiocb` (its `cmd` member).
    let cmd = off("io_kiocb", "cmd")?;
    let cqe = off("io_kiocb", "cqe")?;
    Some(KernelOffsets {
        kiocb_opcode: off("io_kiocb", "opcode")?,
        kiocb_ctx: off("io_kiocb", "ctx")?,
        kiocb_user_data: cqe + off("io_cqe", "user_data")?,
        open_dfd: cmd + off("io_open", "dfd")?,
        open_file_slot: cmd + off("io_open", "file_slot")?,
        open_filename: cmd + off("io_open", "filename")?,
        filename_name: off("filename", "name")?,
        accept_file_slot: cmd + off("io_accept", "file_slot")?,
        socket_domain: cmd + off("io_socket", "domain")?,
        socket_type: cmd + off("io_socket", "type")?,
        socket_protocol: cmd + off("io_socket", "protocol")?,
        socket_file_slot: cmd + off("io_socket", "file_slot")?,
        close_fd: cmd + off("io_close", "fd")?,
        close_file_slot: cmd + off("io_close", "file_slot")?,
        // IORING_OP_PIPE is recent (6.16): without it only pipes through io_uring are missed.
        pipe_fds: off("io_pipe", "fds").map_or(0, |o| cmd + o),
        pipe_file_slot: off("io_pipe", "file_slot").map_or(0, |o| cmd + o),
        cqe_user_data: off("io_uring_cqe", "user_data")?,
        cqe_res: off("io_uring_cqe", "res")?,
        cqe_flags: off("io_uring_cqe", "flags")?,
        ..Default::default()
    })
}

/// Whether this kernel's BTF describes io_uring requests well enough to follow them.
pub fn io_uring_supported(offsets: &KernelOffsets) -> bool {
    offsets.kiocb_opcode != 0
}

/// Byte offset of `field` in `struct ty`, looking through anonymous struct and union members.
pub fn field_offset(btf: &Btf, ty: &str, field: &str) -> Result<u32> {
    let types = btf
        .resolve_types_by_name(ty)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("kernel BTF has no type `{ty}`"))?;
    for t in types {
        if let Type::Struct(s) = t
            && let Some(bits) = find_member(btf, &s, field, 0, 0)?
        {
            if bits % 8 != 0 {
                bail!("{ty}.{field} is a bitfield");
            }
            return Ok(bits / 8);
        }
    }
    bail!("kernel BTF: struct {ty} has no field `{field}`")
}

fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    field: &str,
    base_bits: u32,
    depth: u32,
) -> Result<Option<u32>> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let bits = base_bits + m.bit_offset();
        if name == field {
            return Ok(Some(bits));
        }
        if name.is_empty() && depth < 4 {
            let inner = btf.resolve_chained_type(m).map_err(|e| anyhow!("{e}"))?;
            if let Type::Struct(inner) | Type::Union(inner) = inner
                && let Some(found) = find_member(btf, &inner, field, bits, depth + 1)?
            {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_offsets_on_this_kernel() {
        let off = kernel_offsets().expect("offsets");
        // The eBPF side reads x86_64 pt_regs with its ABI layout: check it against BTF.
        #[cfg(target_arch = "x86_64")]
        {
            let btf = Btf::from_file(VMLINUX_BTF).unwrap();
            let f = |n| field_offset(&btf, "pt_regs", n).unwrap();
            assert_eq!(
                (f("bp"), f("r10"), f("di"), f("orig_ax"), f("ip"), f("sp")),
                (32, 56, 112, 120, 128, 152)
            );
        }
        // vm_start/vm_end lead vm_area_struct.
        assert_eq!((off.vma_start, off.vma_end), (0, 8));
        assert!(off.task_files > 0 && off.fdt_open_fds > 0 && off.task_fsbase > 0);
        // This kernel (6.x) describes io_uring: the request data starts the request.
        assert!(io_uring_supported(&off));
        assert_eq!((off.cqe_user_data, off.cqe_res, off.cqe_flags), (0, 8, 12));
    }
}
