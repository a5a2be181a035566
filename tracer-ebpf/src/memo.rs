//! The stack memo: a call site userspace has already unwound is recognized from the registers
//! and the stack words its unwind read (see `tracer_common::MemoKey`), so no copy is sent.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_user};
use tracer_common::{MEMO_SPAN, MEMO_WORDS, MemoKey, MemoSig, UserRegs, memo_mix, memo_seed};

use crate::maps::{MEMO_SIGS, MEMO_STACK_SCRATCH, MEMO_STACKS};

/// Words of the per-CPU stack scratch (holds [`MEMO_SPAN`] bytes).
pub const SCRATCH_WORDS: usize = 4096;
/// Keeps a word index inside the scratch (for the verifier).
const SCRATCH_INDEX_MASK: usize = SCRATCH_WORDS - 1;
/// Keeps a signature position inside the signature.
const WORD_INDEX_MASK: usize = MEMO_WORDS - 1;
/// Keeps a span length inside the scratch: the span is below 32 KiB.
const SPAN_MASK: u32 = (SCRATCH_WORDS * 8 - 1) as u32;

const _: () = assert!(MEMO_SPAN < SCRATCH_WORDS * 8 && MEMO_WORDS.is_power_of_two());

/// State of the memo hash loop: the hash so far, and the signature and stack copy it reads
/// (map values, looked up once).
#[repr(C)]
struct MemoLoop {
    h: u64,
    sig: *const MemoSig,
    stack: *const [u64; SCRATCH_WORDS],
}

/// bpf_loop callback: mixes the value of signature word `i` into the hash.
#[inline(never)]
extern "C" fn memo_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's MemoLoop, whose pointers are valid map values; indexes are
    // masked into their arrays.
    unsafe {
        let l = &mut *(ctx as *mut MemoLoop);
        let idx = (*l.sig).words[i as usize & WORD_INDEX_MASK] as usize;
        l.h = memo_mix(l.h, (*l.stack)[idx & SCRATCH_INDEX_MASK]);
    }
    0
}

/// The call site (id + 1) of the current stack if the memo knows it, else 0.
#[inline(always)]
pub fn memo_site(tgid: u32, regs: &UserRegs) -> u32 {
    let key = MemoKey {
        tgid,
        _pad: 0,
        ip: regs.ip,
        sp: regs.sp,
        bp: regs.bp,
    };
    let Some(sig) = MEMO_SIGS.get_ptr(&key) else {
        return 0;
    };
    let Some(stack) = MEMO_STACK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: all pointers are valid map values; the copy's length is masked below the
    // scratch's size (userspace never makes a longer span). Userspace never changes an
    // installed signature, so reading it in place is safe.
    unsafe {
        let n = (*sig).n;
        if n == 0 || n > MEMO_WORDS as u32 {
            return 0;
        }
        let span = (*sig).span & SPAN_MASK;
        if bpf_probe_read_user(stack.cast(), span, regs.sp as *const c_void) != 0 {
            return 0;
        }
        let mut l = MemoLoop {
            h: memo_seed(&key),
            sig,
            stack,
        };
        bpf_loop(n, memo_step as *mut c_void, addr_of_mut!(l).cast(), 0);
        if l.h == (*sig).hash {
            return (*sig).site.wrapping_add(1);
        }
        match MEMO_STACKS.get(&l.h) {
            Some(&site) => site.wrapping_add(1),
            None => 0,
        }
    }
}
