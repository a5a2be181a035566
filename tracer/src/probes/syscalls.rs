//! The syscalls tracer hooks: their stable identifiers ([`tracer_common::syscall`]), tracepoint
//! names and this architecture's syscall numbers.
use tracer_common::syscall as id;

/// A syscall whose entry and exit tracepoints carry `fd_enter` / `fd_exit`.
#[derive(Clone, Copy, Debug)]
pub struct Hooked {
    /// Stable identifier shared with the kernel side.
    pub id: u16,
    /// Name as in `syscalls:sys_enter_<name>`.
    pub name: &'static str,
    /// This architecture's syscall number.
    pub nr: i64,
    /// Whether tracing works without it (older kernels lack some syscalls).
    pub required: bool,
}

const fn hooked(id: u16, name: &'static str, nr: i64, required: bool) -> Hooked {
    Hooked {
        id,
        name,
        nr,
        required,
    }
}

/// Every syscall routed through `fd_enter` / `fd_exit`.
pub fn hooked_syscalls() -> Vec<Hooked> {
    let mut v = vec![
        hooked(id::OPENAT, "openat", libc::SYS_openat, true),
        hooked(id::OPENAT2, "openat2", libc::SYS_openat2, false),
        hooked(id::SOCKET, "socket", libc::SYS_socket, true),
        hooked(id::SOCKETPAIR, "socketpair", libc::SYS_socketpair, true),
        hooked(id::ACCEPT, "accept", libc::SYS_accept, true),
        hooked(id::ACCEPT4, "accept4", libc::SYS_accept4, true),
        hooked(id::PIPE2, "pipe2", libc::SYS_pipe2, true),
        hooked(id::DUP, "dup", libc::SYS_dup, true),
        hooked(id::DUP3, "dup3", libc::SYS_dup3, true),
        hooked(id::FCNTL, "fcntl", libc::SYS_fcntl, true),
        hooked(id::EVENTFD2, "eventfd2", libc::SYS_eventfd2, true),
        hooked(
            id::EPOLL_CREATE1,
            "epoll_create1",
            libc::SYS_epoll_create1,
            true,
        ),
        hooked(
            id::TIMERFD_CREATE,
            "timerfd_create",
            libc::SYS_timerfd_create,
            true,
        ),
        hooked(id::SIGNALFD4, "signalfd4", libc::SYS_signalfd4, true),
        hooked(
            id::INOTIFY_INIT1,
            "inotify_init1",
            libc::SYS_inotify_init1,
            true,
        ),
        hooked(
            id::MEMFD_CREATE,
            "memfd_create",
            libc::SYS_memfd_create,
            false,
        ),
        hooked(id::PIDFD_OPEN, "pidfd_open", libc::SYS_pidfd_open, false),
        hooked(id::CONNECT, "connect", libc::SYS_connect, true),
        hooked(id::BIND, "bind", libc::SYS_bind, true),
        hooked(id::EXECVE, "execve", libc::SYS_execve, true),
        hooked(id::EXECVEAT, "execveat", libc::SYS_execveat, false),
    ];
    // Legacy syscalls that only some architectures have.
    #[cfg(target_arch = "x86_64")]
    v.extend([
        hooked(id::OPEN, "open", libc::SYS_open, true),
        hooked(id::CREAT, "creat", libc::SYS_creat, true),
        hooked(id::PIPE, "pipe", libc::SYS_pipe, true),
        hooked(id::DUP2, "dup2", libc::SYS_dup2, true),
        hooked(id::EVENTFD, "eventfd", libc::SYS_eventfd, true),
        hooked(
            id::EPOLL_CREATE,
            "epoll_create",
            libc::SYS_epoll_create,
            true,
        ),
        hooked(id::SIGNALFD, "signalfd", libc::SYS_signalfd, true),
        hooked(
            id::INOTIFY_INIT,
            "inotify_init",
            libc::SYS_inotify_init,
            true,
        ),
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
            if h.id < id::CONNECT {
                assert_eq!(name(h.id), h.name.replace("fcntl", "fcntl(F_DUPFD)"));
            }
        }
    }
}
