//! One empty program of each type tracer could use. Only `tracer doctor` loads them, to learn
//! what this kernel allows (tracing itself needs only raw_tp and tp_btf).
use core::ffi::c_void;

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, lsm, raw_tracepoint, tracepoint, uprobe},
    programs::{
        BtfTracePointContext, FEntryContext, LsmContext, ProbeContext, RawTracePointContext,
        TracePointContext,
    },
};

#[tracepoint]
pub fn doctor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn doctor_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_enter")]
pub fn doctor_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[fentry(function = "do_sys_openat2")]
pub fn doctor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[kprobe]
pub fn doctor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[uprobe]
pub fn doctor_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[lsm(hook = "file_open")]
pub fn doctor_lsm(_ctx: LsmContext) -> i32 {
    0
}

/// A BPF iterator over every task's open files (aya-ebpf has no macro for iterators).
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub extern "C" fn doctor_iter(_ctx: *mut c_void) -> i32 {
    0
}
