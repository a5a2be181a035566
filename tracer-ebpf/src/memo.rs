//! The stack memo: a call site userspace has already unwound is recognized from the registers
//! and the stack words its unwind read (see `tracer_common::MemoKey`), so no copy is sent.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_probe_read_user;
use tracer_common::{MEMO_SPAN, MEMO_WORDS, MemoKey, UserRegs, memo_mix, memo_seed};

use crate::maps::{MEMO_SIGS, MEMO_STACK_SCRATCH, MEMO_STACKS};

/// Words of the per-CPU stack scratch (holds [`MEMO_SPAN`] bytes).
pub const SCRATCH_WORDS: usize = 4096;
/// Keeps a word index inside the scratch (for the verifier).
const SCRATCH_INDEX_MASK: usize = SCRATCH_WORDS - 1;
/// Keeps a span length inside the scratch: the span is below 32 KiB.
const SPAN_MASK: u32 = (SCRATCH_WORDS * 8 - 1) as u32;

const _: () = assert!(MEMO_SPAN < SCRATCH_WORDS * 8 && MEMO_WORDS.is_power_of_two());

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
        // A bounded loop rather than bpf_loop: no callback per word.
        let mut h = memo_seed(&key);
        let mut i = 0;
        while i < MEMO_WORDS {
            if i as u32 >= n {
                break;
            }
            let idx = (*sig).words[i] as usize;
            h = memo_mix(h, (*stack)[idx & SCRATCH_INDEX_MASK]);
            i += 1;
        }
        if h == (*sig).hash {
            return (*sig).site.wrapping_add(1);
        }
        match MEMO_STACKS.get(&h) {
            Some(&site) => site.wrapping_add(1),
            None => 0,
        }
    }
}
