//! The kernel's accounting of outstanding descriptors (OPEN_FDS): the authority userspace
//! aligns with. Every insert and removal goes through here and is reported to userspace.
use aya_ebpf::bindings::BPF_NOEXIST;
use tracer_common::{FdEntry, FdKey, counter, fd_flag, release};

use crate::{
    emit::emit_release,
    kmem::bump,
    maps::{OPEN_FDS, SOCKS},
};

/// Accounts a new descriptor; returns whether it is accounted (a full map is counted, and the
/// descriptor is then unknown to userspace too: verification reports it missing). A stale
/// entry with the same number means its release was not seen (or, for dup2/dup3, that the
/// target was implicitly closed): report that release first.
#[inline(always)]
pub fn account_fd(tgid: u32, fd: i32, entry: &FdEntry, replaced_how: u32) -> bool {
    if fd < 0 {
        return false;
    }
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    if OPEN_FDS.insert(&key, entry, BPF_NOEXIST as u64).is_ok() {
        bump(counter::ACQUIRED, 1);
        return true;
    }
    // SAFETY: copy out of a valid map value.
    if let Some((old, flags)) = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).seq, (*e).flags) })
        && flags & fd_flag::FOREIGN == 0
    {
        emit_release(tgid, fd as u32, old, replaced_how);
    }
    if OPEN_FDS.insert(&key, entry, 0).is_ok() {
        bump(counter::ACQUIRED, 1);
        true
    } else {
        bump(counter::FD_MAP_FULL, 1);
        false
    }
}

/// Removes `(tgid, fd)` from the accounting if tracked, reporting how it was released.
/// Returns whether it was tracked.
#[inline(never)]
pub fn release_fd(tgid: u32, fd: u32, how: u32) -> bool {
    let key = FdKey { tgid, fd };
    // SAFETY: copies out of a valid map value.
    let Some((seq, sk, flags)) = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).seq, (*e).sk, (*e).flags) })
    else {
        return false;
    };
    // Only the thread whose delete succeeds reports it (two threads may race to close).
    if OPEN_FDS.remove(&key).is_ok() {
        if sk != 0 {
            let _ = SOCKS.remove(&sk);
        }
        if flags & fd_flag::FOREIGN != 0 {
            return true;
        }
        let how = if flags & fd_flag::PASSED != 0 {
            how | release::PASSED
        } else {
            how
        };
        emit_release(tgid, fd, seq, how);
    }
    true
}

/// The acquisition id of a tracked descriptor (0 if untracked).
#[inline(always)]
pub fn seq_of(tgid: u32, fd: i32) -> u64 {
    if fd < 0 {
        return 0;
    }
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: copy out of a valid map value.
    OPEN_FDS.get_ptr(&key).map_or(0, |e| unsafe { (*e).seq })
}
