//! CPython frames: for a process userspace recognized as CPython (`PY_PROCS`, offsets per minor
//! version), each acquisition is preceded by the acquiring thread's Python stack (code object
//! and instruction index per frame), and each code object is described once (its names and
//! line table), so userspace names the script's function and line. The thread's state is found
//! in the interpreter's thread list by thread id: `open()` releases the GIL, so the interpreter's
//! "current thread" is not it.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_user};
use tracer_common::{
    PY_FILE_MAX, PY_FRAMES, PY_LINETABLE_MAX, PY_NAME_MAX, PyCodeEvent, PyFrame, PyFramesEvent,
    PyLayout, counter, event,
};

use crate::{
    emit::header,
    filter::may_have_runtime,
    kmem::{bump, now_ns, uread},
    maps::{EVENTS, PY_FRAMES_SCRATCH, PY_PROCS, PY_SEEN, PY_TSTATE},
};

/// `_PyInterpreterFrame.owner` of a C-stack shim frame (3.12+): not Python code.
const FRAME_OWNED_BY_CSTACK: u8 = 3;
/// Most interpreters and threads looked at when finding a thread's state.
const MAX_THREAD_STEPS: u32 = 256;
/// Bits of `PyASCIIObject.state`.
const STATE_COMPACT: u32 = 0x20;
const STATE_ASCII: u32 = 0x40;
/// Keeps copy lengths inside their fields (for the verifier).
const NAME_MASK: u32 = PY_NAME_MAX as u32 - 1;
const FILE_MASK: u32 = PY_FILE_MAX as u32 - 1;
const LINETABLE_MASK: u32 = PY_LINETABLE_MAX as u32 - 1;
const FRAME_INDEX_MASK: usize = PY_FRAMES - 1;
const _: () = assert!(
    PY_NAME_MAX.is_power_of_two()
        && PY_FILE_MAX.is_power_of_two()
        && PY_LINETABLE_MAX.is_power_of_two()
        && PY_FRAMES.is_power_of_two()
);

#[inline(always)]
fn at(base: u64, off: u32) -> u64 {
    base.wrapping_add(off as u64)
}

/// The current frame of thread state `ts` (0: none).
#[inline(always)]
fn current_frame(l: &PyLayout, ts: u64) -> u64 {
    if l.cframe_current_frame == u32::MAX {
        return uread::<u64>(at(ts, l.tstate_cframe)).unwrap_or(0);
    }
    uread::<u64>(at(ts, l.tstate_cframe))
        .and_then(|cf| uread::<u64>(at(cf, l.cframe_current_frame)))
        .unwrap_or(0)
}

/// State of the walk over interpreters and their thread states.
#[repr(C)]
struct ThreadWalk {
    layout: PyLayout,
    tid: u64,
    interp: u64,
    ts: u64,
    found: u64,
}

/// bpf_loop callback: one step of the walk (the next thread state, or the next interpreter).
#[inline(never)]
extern "C" fn thread_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's ThreadWalk.
    let w = unsafe { &mut *(ctx as *mut ThreadWalk) };
    let l = w.layout;
    if w.ts == 0 {
        if w.interp == 0 {
            return 1;
        }
        w.ts = uread::<u64>(at(w.interp, l.interp_threads_head)).unwrap_or(0);
        w.interp = uread::<u64>(at(w.interp, l.interp_next)).unwrap_or(0);
        return 0;
    }
    let ts = w.ts;
    w.ts = uread::<u64>(at(ts, l.tstate_next)).unwrap_or(0);
    // A thread just started shows its parent's ids until it runs (3.11): take the state that
    // has frames.
    if uread::<u64>(at(ts, l.tstate_native_thread_id)) == Some(w.tid) && current_frame(&l, ts) != 0
    {
        w.found = ts;
        return 1;
    }
    0
}

/// The thread state of thread `tid` (0: not found), cached per thread.
#[inline(always)]
fn thread_state(l: &PyLayout, tid: u32) -> u64 {
    // SAFETY: copy out of a valid map value.
    if let Some(&ts) = unsafe { PY_TSTATE.get(&tid) }
        && uread::<u64>(at(ts, l.tstate_native_thread_id)) == Some(tid as u64)
    {
        return ts;
    }
    let mut w = ThreadWalk {
        layout: *l,
        tid: tid as u64,
        interp: uread::<u64>(at(l.runtime, l.interpreters_head)).unwrap_or(0),
        ts: 0,
        found: 0,
    };
    // SAFETY: the callback only touches `w`.
    unsafe {
        bpf_loop(
            MAX_THREAD_STEPS,
            thread_step as *mut c_void,
            addr_of_mut!(w).cast(),
            0,
        )
    };
    if w.found != 0 {
        let _ = PY_TSTATE.insert(&tid, &w.found, 0);
    }
    w.found
}

/// Copies a Python `str` (compact) into `dst` (at most `mask + 1` bytes); returns the bytes
/// copied and the string's state bits.
#[inline(always)]
fn copy_str(l: &PyLayout, s: u64, dst: *mut u8, mask: u32) -> (u32, u32) {
    let state = uread::<u32>(at(s, l.unicode_state)).unwrap_or(0);
    let length = uread::<u64>(at(s, l.unicode_length)).unwrap_or(0);
    if state & STATE_COMPACT == 0 {
        return (0, state);
    }
    let (data, width) = if state & STATE_ASCII != 0 {
        (at(s, l.unicode_ascii_data), 1)
    } else {
        (at(s, l.unicode_compact_data), ((state >> 2) & 7) as u64)
    };
    // Bounded before multiplying (a checked 64-bit product needs 128-bit arithmetic BPF lacks).
    let chars = if length > mask as u64 {
        mask as u64
    } else {
        length
    };
    let mut bytes = chars * width;
    if bytes > mask as u64 {
        bytes = mask as u64;
    }
    let n = bytes as u32 & mask;
    // SAFETY: `dst` has `mask + 1` bytes; the helper validates the user pointer.
    if n == 0 || unsafe { bpf_probe_read_user(dst.cast(), n, data as *const c_void) } != 0 {
        return (0, state);
    }
    (n, state)
}

/// Sends a description of code object `code` unless this process already had one.
#[inline(always)]
fn describe_code(l: &PyLayout, tgid: u32, code: u64) {
    let key = [tgid as u64, code];
    // SAFETY: read-only lookup.
    if unsafe { PY_SEEN.get(&key) }.is_some() {
        return;
    }
    let _ = PY_SEEN.insert(&key, &1, 0);
    let Some(mut rec) = EVENTS.reserve::<PyCodeEvent>(0) else {
        bump(counter::EVENTS_LOST, 1);
        return;
    };
    let ev = rec.as_mut_ptr();
    // SAFETY: writes stay inside the reserved record; the helpers validate user pointers.
    unsafe {
        (*ev).header = header(event::PY_CODE, tgid);
        (*ev).code = code;
        (*ev).firstlineno = uread::<i32>(at(code, l.code_firstlineno)).unwrap_or(0);
        let name = uread::<u64>(at(code, l.code_qualname)).unwrap_or(0);
        let (n, state) = copy_str(l, name, addr_of_mut!((*ev).qualname).cast(), NAME_MASK);
        (*ev).name_len = n;
        (*ev).name_state = state;
        let file = uread::<u64>(at(code, l.code_filename)).unwrap_or(0);
        let (n, state) = copy_str(l, file, addr_of_mut!((*ev).filename).cast(), FILE_MASK);
        (*ev).file_len = n;
        (*ev).file_state = state;
        let table = uread::<u64>(at(code, l.code_linetable)).unwrap_or(0);
        let mut size = uread::<u64>(at(table, l.bytes_size)).unwrap_or(0);
        if size > LINETABLE_MASK as u64 {
            size = LINETABLE_MASK as u64;
        }
        let size = size as u32 & LINETABLE_MASK;
        (*ev).linetable_len = 0;
        if size > 0
            && bpf_probe_read_user(
                addr_of_mut!((*ev).linetable).cast(),
                size,
                at(table, l.bytes_data) as *const c_void,
            ) == 0
        {
            (*ev).linetable_len = size;
        }
    }
    rec.submit(0);
}

/// State of the walk over a thread's frames.
#[repr(C)]
struct FrameWalk {
    layout: PyLayout,
    tgid: u64,
    frame: u64,
}

/// bpf_loop callback: records one frame into the scratch and moves to its caller.
#[inline(never)]
extern "C" fn frame_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's FrameWalk.
    let w = unsafe { &mut *(ctx as *mut FrameWalk) };
    let l = w.layout;
    let frame = w.frame;
    if frame == 0 {
        return 1;
    }
    let Some(out) = PY_FRAMES_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    w.frame = uread::<u64>(at(frame, l.frame_previous)).unwrap_or(0);
    if uread::<u8>(at(frame, l.frame_owner)) == Some(FRAME_OWNED_BY_CSTACK) {
        return 0;
    }
    let (Some(code), Some(ip)) = (
        uread::<u64>(at(frame, l.frame_code)),
        uread::<u64>(at(frame, l.frame_instr)),
    ) else {
        return 0;
    };
    if code == 0 {
        return 0;
    }
    // SAFETY: a valid per-CPU map value; the index is masked into the array.
    unsafe {
        let n = (*out).n as usize;
        if n >= PY_FRAMES {
            return 1;
        }
        (*out).frames[n & FRAME_INDEX_MASK] = PyFrame {
            code,
            instr: (ip.wrapping_sub(at(code, l.code_adaptive)) as i64) / 2,
        };
        (*out).n = n as u32 + 1;
    }
    describe_code(&l, w.tgid as u32, code);
    0
}

/// Sends the Python stack of thread `tid` of `tgid`, when the process is CPython and the thread
/// runs Python code; returns its token (0: nothing sent).
#[inline(always)]
pub fn send_stack(tgid: u32, tid: u32) -> u64 {
    if !may_have_runtime(tgid) {
        return 0;
    }
    // SAFETY: copy out of a valid map value.
    let Some(l) = (unsafe { PY_PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let ts = thread_state(&l, tid);
    if ts == 0 {
        return 0;
    }
    let Some(out) = PY_FRAMES_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let token = now_ns() | 1;
    // SAFETY: a valid per-CPU map value.
    unsafe {
        (*out).header = header(event::PY_FRAMES, tgid);
        (*out).token = token;
        (*out).tid = tid;
        (*out).n = 0;
    }
    let mut w = FrameWalk {
        layout: l,
        tgid: tgid as u64,
        frame: current_frame(&l, ts),
    };
    // SAFETY: the callback only touches `w` and maps.
    unsafe {
        bpf_loop(
            PY_FRAMES as u32,
            frame_step as *mut c_void,
            addr_of_mut!(w).cast(),
            0,
        )
    };
    // SAFETY: as above.
    let Some(out) = PY_FRAMES_SCRATCH.get(0) else {
        return 0;
    };
    if out.n == 0 {
        return 0;
    }
    if EVENTS.output::<PyFramesEvent>(out, 0).is_err() {
        bump(counter::EVENTS_LOST, 1);
        return 0;
    }
    token
}
