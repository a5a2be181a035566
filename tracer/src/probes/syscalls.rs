//! The syscalls tracer hooks, as `tracer_common::syscall::TABLE` describes them: which
//! tracepoint each program attaches to, and their names for reports.
use tracer_common::syscall::{Desc, TABLE, desc};

/// Every syscall the kernel side handles.
pub fn hooked() -> impl Iterator<Item = &'static Desc> {
    TABLE.iter().filter(|d| d.hooked())
}

/// The tracepoint (in the `syscalls` category) a hooked syscall's program attaches to.
pub fn tracepoint(d: &Desc) -> String {
    if d.at_entry() {
        format!("sys_enter_{}", d.name)
    } else {
        format!("sys_exit_{}", d.name)
    }
}

/// The syscall's name for reports.
pub fn name(syscall: u16) -> &'static str {
    desc(syscall).map_or("unknown", |d| d.label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::syscall as id;

    #[test]
    fn identifiers_and_numbers_are_unique() {
        let mut ids: Vec<u16> = TABLE.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
        let mut nrs: Vec<u32> = hooked().map(|d| d.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), hooked().count());
        assert!(
            TABLE
                .iter()
                .all(|d| d.nr < 1024 && (d.id as usize) < id::COUNT)
        );
        assert!(hooked().all(|d| d.shape.id == d.id));
    }

    #[test]
    fn numbers_are_this_architectures() {
        let libc_numbers: &[(&str, i64)] = &[
            ("open", libc::SYS_open),
            ("openat", libc::SYS_openat),
            ("openat2", libc::SYS_openat2),
            ("creat", libc::SYS_creat),
            ("socket", libc::SYS_socket),
            ("socketpair", libc::SYS_socketpair),
            ("accept", libc::SYS_accept),
            ("accept4", libc::SYS_accept4),
            ("pipe", libc::SYS_pipe),
            ("pipe2", libc::SYS_pipe2),
            ("dup", libc::SYS_dup),
            ("dup2", libc::SYS_dup2),
            ("dup3", libc::SYS_dup3),
            ("fcntl", libc::SYS_fcntl),
            ("eventfd", libc::SYS_eventfd),
            ("eventfd2", libc::SYS_eventfd2),
            ("epoll_create", libc::SYS_epoll_create),
            ("epoll_create1", libc::SYS_epoll_create1),
            ("timerfd_create", libc::SYS_timerfd_create),
            ("signalfd", libc::SYS_signalfd),
            ("signalfd4", libc::SYS_signalfd4),
            ("inotify_init", libc::SYS_inotify_init),
            ("inotify_init1", libc::SYS_inotify_init1),
            ("memfd_create", libc::SYS_memfd_create),
            ("pidfd_open", libc::SYS_pidfd_open),
            ("pidfd_getfd", libc::SYS_pidfd_getfd),
            ("fanotify_init", libc::SYS_fanotify_init),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("bpf", libc::SYS_bpf),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("open_tree", libc::SYS_open_tree),
            // open_tree_attr (Linux 6.15) has no libc constant yet; the unified table's number.
            ("open_tree_attr", 467),
            ("fsopen", libc::SYS_fsopen),
            ("fsmount", libc::SYS_fsmount),
            ("fspick", libc::SYS_fspick),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("mq_open", libc::SYS_mq_open),
            ("memfd_secret", libc::SYS_memfd_secret),
            ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("recvmsg", libc::SYS_recvmsg),
            ("recvmmsg", libc::SYS_recvmmsg),
            ("sendmsg", libc::SYS_sendmsg),
            ("sendmmsg", libc::SYS_sendmmsg),
            ("connect", libc::SYS_connect),
            ("bind", libc::SYS_bind),
            ("execve", libc::SYS_execve),
            ("execveat", libc::SYS_execveat),
            ("close", libc::SYS_close),
            ("close_range", libc::SYS_close_range),
        ];
        assert_eq!(libc_numbers.len(), hooked().count());
        for (name, nr) in libc_numbers {
            let d = hooked()
                .find(|d| d.name == *name)
                .unwrap_or_else(|| panic!("{name} is not hooked"));
            assert_eq!(i64::from(d.nr), *nr, "{name}");
        }
    }

    #[test]
    fn every_hooked_syscall_has_its_tracepoint() {
        // The tracepoints exist on this kernel (the names are the kernel's own).
        super::super::preflight::tracefs().expect("tracefs (the tests run as root)");
        let events = std::path::Path::new("/sys/kernel/tracing/events/syscalls");
        for d in hooked() {
            assert!(events.join(tracepoint(d)).exists(), "{}", tracepoint(d));
        }
        assert_eq!(name(id::FCNTL), "fcntl(F_DUPFD)");
        assert_eq!(name(id::OPENAT), "openat");
    }
}
