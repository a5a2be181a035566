//! The syscalls tracer hooks: their stable identifiers ([`tracer_common::syscall`]), tracepoint
//! names and this architecture's syscall numbers.
use tracer_common::syscall as id;

/// A syscall the `sys_enter` / `sys_exit` programs handle.
#[derive(Clone, Copy, Debug)]
pub struct Hooked {
    /// Stable identifier shared with the kernel side.
    pub id: u16,
    /// Name as in `syscalls:sys_enter_<name>`.
    pub name: &'static str,
    /// This architecture's syscall number.
    pub nr: i64,
}

const fn hooked(id: u16, name: &'static str, nr: i64) -> Hooked {
    Hooked { id, name, nr }
}

/// Every syscall the kernel side handles.
pub fn hooked_syscalls() -> Vec<Hooked> {
    let mut v = vec![
        hooked(id::OPENAT, "openat", libc::SYS_openat),
        hooked(id::OPENAT2, "openat2", libc::SYS_openat2),
        hooked(id::SOCKET, "socket", libc::SYS_socket),
        hooked(id::SOCKETPAIR, "socketpair", libc::SYS_socketpair),
        hooked(id::ACCEPT, "accept", libc::SYS_accept),
        hooked(id::ACCEPT4, "accept4", libc::SYS_accept4),
        hooked(id::PIPE2, "pipe2", libc::SYS_pipe2),
        hooked(id::DUP, "dup", libc::SYS_dup),
        hooked(id::DUP3, "dup3", libc::SYS_dup3),
        hooked(id::FCNTL, "fcntl", libc::SYS_fcntl),
        hooked(id::EVENTFD2, "eventfd2", libc::SYS_eventfd2),
        hooked(id::EPOLL_CREATE1, "epoll_create1", libc::SYS_epoll_create1),
        hooked(
            id::TIMERFD_CREATE,
            "timerfd_create",
            libc::SYS_timerfd_create,
        ),
        hooked(id::SIGNALFD4, "signalfd4", libc::SYS_signalfd4),
        hooked(id::INOTIFY_INIT1, "inotify_init1", libc::SYS_inotify_init1),
        hooked(id::MEMFD_CREATE, "memfd_create", libc::SYS_memfd_create),
        hooked(id::PIDFD_OPEN, "pidfd_open", libc::SYS_pidfd_open),
        hooked(id::PIDFD_GETFD, "pidfd_getfd", libc::SYS_pidfd_getfd),
        hooked(id::FANOTIFY_INIT, "fanotify_init", libc::SYS_fanotify_init),
        hooked(
            id::PERF_EVENT_OPEN,
            "perf_event_open",
            libc::SYS_perf_event_open,
        ),
        hooked(id::BPF, "bpf", libc::SYS_bpf),
        hooked(id::USERFAULTFD, "userfaultfd", libc::SYS_userfaultfd),
        hooked(
            id::OPEN_BY_HANDLE_AT,
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
        ),
        hooked(id::OPEN_TREE, "open_tree", libc::SYS_open_tree),
        hooked(id::FSOPEN, "fsopen", libc::SYS_fsopen),
        hooked(id::FSMOUNT, "fsmount", libc::SYS_fsmount),
        hooked(id::FSPICK, "fspick", libc::SYS_fspick),
        hooked(
            id::IO_URING_SETUP,
            "io_uring_setup",
            libc::SYS_io_uring_setup,
        ),
        hooked(id::RECVMSG, "recvmsg", libc::SYS_recvmsg),
        hooked(id::RECVMMSG, "recvmmsg", libc::SYS_recvmmsg),
        hooked(id::SENDMSG, "sendmsg", libc::SYS_sendmsg),
        hooked(id::SENDMMSG, "sendmmsg", libc::SYS_sendmmsg),
        hooked(id::MQ_OPEN, "mq_open", libc::SYS_mq_open),
        hooked(id::MEMFD_SECRET, "memfd_secret", libc::SYS_memfd_secret),
        hooked(
            id::LANDLOCK_CREATE_RULESET,
            "landlock_create_ruleset",
            libc::SYS_landlock_create_ruleset,
        ),
        hooked(id::CLONE, "clone", libc::SYS_clone),
        hooked(id::CLONE3, "clone3", libc::SYS_clone3),
        // open_tree_attr (Linux 6.15) has no libc constant yet; its number is the same on
        // every architecture (the unified syscall table).
        hooked(id::OPEN_TREE_ATTR, "open_tree_attr", 467),
        hooked(id::CONNECT, "connect", libc::SYS_connect),
        hooked(id::BIND, "bind", libc::SYS_bind),
        hooked(id::EXECVE, "execve", libc::SYS_execve),
        hooked(id::EXECVEAT, "execveat", libc::SYS_execveat),
        hooked(id::CLOSE, "close", libc::SYS_close),
        hooked(id::CLOSE_RANGE, "close_range", libc::SYS_close_range),
    ];
    // Legacy syscalls that only some architectures have.
    #[cfg(target_arch = "x86_64")]
    v.extend([
        hooked(id::OPEN, "open", libc::SYS_open),
        hooked(id::CREAT, "creat", libc::SYS_creat),
        hooked(id::PIPE, "pipe", libc::SYS_pipe),
        hooked(id::DUP2, "dup2", libc::SYS_dup2),
        hooked(id::EVENTFD, "eventfd", libc::SYS_eventfd),
        hooked(id::EPOLL_CREATE, "epoll_create", libc::SYS_epoll_create),
        hooked(id::SIGNALFD, "signalfd", libc::SYS_signalfd),
        hooked(id::INOTIFY_INIT, "inotify_init", libc::SYS_inotify_init),
    ]);
    v
}

/// The syscall's name for reports.
pub fn name(syscall: u16) -> &'static str {
    match syscall {
        id::OPEN => "open",
        id::OPENAT => "openat",
        id::OPENAT2 => "openat2",
        id::CREAT => "creat",
        id::SOCKET => "socket",
        id::SOCKETPAIR => "socketpair",
        id::ACCEPT => "accept",
        id::ACCEPT4 => "accept4",
        id::PIPE => "pipe",
        id::PIPE2 => "pipe2",
        id::DUP => "dup",
        id::DUP2 => "dup2",
        id::DUP3 => "dup3",
        id::FCNTL => "fcntl(F_DUPFD)",
        id::EVENTFD => "eventfd",
        id::EVENTFD2 => "eventfd2",
        id::EPOLL_CREATE => "epoll_create",
        id::EPOLL_CREATE1 => "epoll_create1",
        id::TIMERFD_CREATE => "timerfd_create",
        id::SIGNALFD => "signalfd",
        id::SIGNALFD4 => "signalfd4",
        id::INOTIFY_INIT => "inotify_init",
        id::INOTIFY_INIT1 => "inotify_init1",
        id::MEMFD_CREATE => "memfd_create",
        id::PIDFD_OPEN => "pidfd_open",
        id::PIDFD_GETFD => "pidfd_getfd",
        id::FANOTIFY_INIT => "fanotify_init",
        id::PERF_EVENT_OPEN => "perf_event_open",
        id::BPF => "bpf",
        id::USERFAULTFD => "userfaultfd",
        id::OPEN_BY_HANDLE_AT => "open_by_handle_at",
        id::OPEN_TREE => "open_tree",
        id::FSOPEN => "fsopen",
        id::FSMOUNT => "fsmount",
        id::FSPICK => "fspick",
        id::IO_URING_SETUP => "io_uring_setup",
        id::RECVMSG => "recvmsg",
        id::RECVMMSG => "recvmmsg",
        id::MQ_OPEN => "mq_open",
        id::MEMFD_SECRET => "memfd_secret",
        id::LANDLOCK_CREATE_RULESET => "landlock_create_ruleset",
        id::CLONE => "clone",
        id::CLONE3 => "clone3",
        id::OPEN_TREE_ATTR => "open_tree_attr",
        id::CLOSE => "close",
        id::PRE_EXISTING => "(open before attach)",
        id::IOURING_OPENAT => "io_uring openat",
        id::IOURING_OPENAT2 => "io_uring openat2",
        id::IOURING_SOCKET => "io_uring socket",
        id::IOURING_ACCEPT => "io_uring accept",
        id::IOURING_PIPE => "io_uring pipe",
        id::IOURING_FD_INSTALL => "io_uring fixed_fd_install",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_numbers_are_unique() {
        let all = hooked_syscalls();
        let mut ids: Vec<_> = all.iter().map(|h| h.id).collect();
        let mut nrs: Vec<_> = all.iter().map(|h| h.nr).collect();
        ids.sort();
        ids.dedup();
        nrs.sort();
        nrs.dedup();
        assert_eq!(ids.len(), all.len());
        assert_eq!(nrs.len(), all.len());
        assert!(
            all.iter()
                .all(|h| (h.nr as usize) < 1024 && (h.id as usize) < id::COUNT)
        );
    }

    #[test]
    fn every_acquiring_syscall_has_a_name() {
        for h in hooked_syscalls() {
            if id::acquires(h.id) {
                assert_eq!(name(h.id), h.name.replace("fcntl", "fcntl(F_DUPFD)"));
            }
        }
    }
}
