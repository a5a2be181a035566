//! Every syscall (and pseudo-syscall) tracer knows, in one table: its stable identifier, name,
//! x86_64 number, what the kernel side does with it and what kind of descriptor it makes.
//! Adding a syscall that fits an existing shape is one row of [`TABLE`].
//!
//! Userspace writes each hooked row's [`Shape`] into the kernel's `SYSCALLS` array (indexed by
//! syscall number) and attaches the kernel programs to the row's `sys_enter_<name>` or
//! `sys_exit_<name>` tracepoint; the kernel dispatches on the shape alone.

pub const OPEN: u16 = 1;
pub const OPENAT: u16 = 2;
pub const OPENAT2: u16 = 3;
pub const CREAT: u16 = 4;
pub const SOCKET: u16 = 5;
pub const SOCKETPAIR: u16 = 6;
pub const ACCEPT: u16 = 7;
pub const ACCEPT4: u16 = 8;
pub const PIPE: u16 = 9;
pub const PIPE2: u16 = 10;
pub const DUP: u16 = 11;
pub const DUP2: u16 = 12;
pub const DUP3: u16 = 13;
pub const FCNTL: u16 = 14;
pub const EVENTFD: u16 = 15;
pub const EVENTFD2: u16 = 16;
pub const EPOLL_CREATE: u16 = 17;
pub const EPOLL_CREATE1: u16 = 18;
pub const TIMERFD_CREATE: u16 = 19;
pub const SIGNALFD: u16 = 20;
pub const SIGNALFD4: u16 = 21;
pub const INOTIFY_INIT: u16 = 22;
pub const INOTIFY_INIT1: u16 = 23;
pub const MEMFD_CREATE: u16 = 24;
pub const PIDFD_OPEN: u16 = 25;
pub const PIDFD_GETFD: u16 = 26;
pub const FANOTIFY_INIT: u16 = 27;
pub const PERF_EVENT_OPEN: u16 = 28;
pub const BPF: u16 = 29;
pub const USERFAULTFD: u16 = 30;
pub const OPEN_BY_HANDLE_AT: u16 = 31;
pub const OPEN_TREE: u16 = 32;
pub const FSOPEN: u16 = 33;
pub const FSMOUNT: u16 = 34;
pub const FSPICK: u16 = 35;
pub const IO_URING_SETUP: u16 = 36;
pub const RECVMSG: u16 = 37;
pub const RECVMMSG: u16 = 38;
pub const CONNECT: u16 = 40;
pub const BIND: u16 = 41;
pub const EXECVE: u16 = 42;
pub const EXECVEAT: u16 = 43;
pub const CLOSE: u16 = 44;
pub const CLOSE_RANGE: u16 = 45;
pub const SENDMSG: u16 = 46;
pub const SENDMMSG: u16 = 47;
pub const PRE_EXISTING: u16 = 50;
pub const IOURING_OPENAT: u16 = 51;
pub const IOURING_OPENAT2: u16 = 52;
pub const IOURING_SOCKET: u16 = 53;
pub const IOURING_ACCEPT: u16 = 54;
pub const IOURING_CLOSE: u16 = 55;
pub const IOURING_PIPE: u16 = 56;
pub const IOURING_FD_INSTALL: u16 = 57;
pub const MQ_OPEN: u16 = 58;
pub const MEMFD_SECRET: u16 = 59;
pub const LANDLOCK_CREATE_RULESET: u16 = 60;
pub const CLONE: u16 = 61;
pub const CLONE3: u16 = 62;
pub const OPEN_TREE_ATTR: u16 = 63;
/// A thread created by clone()/clone3() with CLONE_THREAD (not a descriptor: a resource).
pub const THREAD: u16 = 64;
/// A goroutine created by a `go` statement (Go runtime, through a uprobe).
pub const GOROUTINE: u16 = 65;
/// Size of the identifier space (array bound for per-identifier tables).
pub const COUNT: usize = 66;

/// What the kernel does with a syscall ([`Shape::role`]).
pub mod role {
    /// Not hooked (pseudo-syscalls: io_uring requests, descriptors open before attach).
    pub const NONE: u8 = 0;
    /// Creates descriptors: accounted at a successful exit, with the user stack.
    pub const ACQUIRE: u8 = 1;
    /// sendmsg/sendmmsg: remembers who sent the files of SCM_RIGHTS messages.
    pub const SEND_RIGHTS: u8 = 2;
    /// recvmsg/recvmmsg: accounts the descriptors received in SCM_RIGHTS messages.
    pub const RECV_RIGHTS: u8 = 3;
    /// connect/bind: records the address of a tracked socket.
    pub const SOCKADDR: u8 = 4;
    /// close(): released at entry, while the number cannot be reused.
    pub const CLOSE: u8 = 5;
    /// close_range(): released at entry.
    pub const CLOSE_RANGE: u8 = 6;
    /// execve/execveat: remembers the table size at entry (exec releases close-on-exec ones).
    pub const EXEC: u8 = 7;
}

/// Where the new descriptor is ([`Shape::fd_from`]).
pub mod fd_from {
    /// The syscall's return value.
    pub const RET: u8 = 0;
    /// Two ints written to the user pointer in argument `fd_arg` (pipe, socketpair).
    pub const PAIR: u8 = 1;
    /// clone(CLONE_PIDFD): the int written to the pointer in argument 2.
    pub const CLONE_PIDFD: u8 = 2;
    /// clone3 with CLONE_PIDFD: the int written to `clone_args.pidfd`.
    pub const CLONE3_PIDFD: u8 = 3;
}

/// When an acquiring syscall really acquires ([`Shape::guard`]; arguments in `guard_arg`).
pub mod guard {
    /// Always.
    pub const NONE: u8 = 0;
    /// The argument is one of the two `guard_values` (fcntl F_DUPFD, F_DUPFD_CLOEXEC).
    pub const ARG_IS_EITHER: u8 = 1;
    /// The argument, as an int, is -1 (signalfd making a new descriptor).
    pub const ARG_IS_MINUS_ONE: u8 = 2;
    /// The argument is below 64 and its bit is set in `guard_values[0]` (bpf() commands).
    pub const ARG_BIT_IN: u8 = 3;
    /// The argument has none of the bits of `guard_values[0]` (landlock version queries).
    pub const ARG_MASK_CLEAR: u8 = 4;
}

/// Where the acquisition's name comes from ([`Shape::name_from`]).
pub mod name_from {
    pub const NONE: u8 = 0;
    /// A NUL-terminated user string in argument `name_arg` (a path, a memfd name).
    pub const STRING: u8 = 1;
    /// A sockaddr at argument `name_arg` whose length is at the pointer in `name_len_arg`.
    pub const SOCKADDR: u8 = 2;
}

/// What [`crate::AcquireEvent::arg`] carries ([`Shape::detail`]).
pub mod detail {
    pub const NONE: u8 = 0;
    /// domain | type << 16 | protocol << 32 (socket, socketpair).
    pub const SOCKET_TRIPLE: u8 = 1;
    /// AT_FDCWD: a relative path of open/creat is resolved against the working directory.
    pub const AT_FDCWD: u8 = 2;
    /// Argument `detail_arg`, low 32 bits (the directory descriptor of *at calls).
    pub const ARG32: u8 = 3;
    /// Argument `detail_arg` whole (the bpf() command).
    pub const ARG: u8 = 4;
    /// pidfd | fd << 32 (pidfd_getfd: whose descriptor).
    pub const PIDFD_GETFD: u8 = 5;
    /// The source descriptor ([`Shape::src_fd_arg`]: dup, accept).
    pub const SRC_FD: u8 = 6;
}

/// [`Shape::flags`] bits.
pub mod flag {
    /// Read the new descriptors' inodes (the syscall does not say what they are; pipes get
    /// named by inode).
    pub const NEED_INODE: u8 = 1;
    /// Remember the socket behind the descriptor to follow its TCP state.
    pub const SOCKET: u8 = 2;
    /// dup2/dup3: a no-op on the same number; the target's old descriptor is released as
    /// [`crate::release::DUP2`].
    pub const DUP2: u8 = 4;
    /// The descriptor may be a socket (known only from its inode): follow it if it is.
    pub const SOCKET_IF_INODE: u8 = 8;
}

/// What kind of descriptor a syscall makes ([`Desc::kind`]); userspace maps these to its kinds.
pub mod kind {
    /// Decided by the file's type (open*: a regular file unless it is a FIFO, socket, ...).
    pub const BY_MODE_ELSE_FILE: u8 = 0;
    /// Known only from the inode's type (a duplicate, another process's or a received one).
    pub const BY_MODE: u8 = 1;
    pub const SOCKET: u8 = 2;
    pub const PIPE: u8 = 3;
    pub const EVENTFD: u8 = 4;
    pub const EPOLL: u8 = 5;
    pub const TIMERFD: u8 = 6;
    pub const SIGNALFD: u8 = 7;
    pub const INOTIFY: u8 = 8;
    pub const MEMFD: u8 = 9;
    pub const PIDFD: u8 = 10;
    pub const IO_URING: u8 = 11;
    pub const FANOTIFY: u8 = 12;
    pub const PERF_EVENT: u8 = 13;
    pub const BPF: u8 = 14;
    pub const USERFAULTFD: u8 = 15;
    pub const MOUNT: u8 = 16;
    pub const MQUEUE: u8 = 17;
    pub const LANDLOCK: u8 = 18;
    pub const SECRETMEM: u8 = 19;
    /// Not a descriptor (releases, annotations).
    pub const NONE: u8 = 20;
    /// A thread or a goroutine.
    pub const TASK: u8 = 21;
}

/// Marks an argument slot as unused.
pub const NO_ARG: u8 = 0xff;

/// The kernel's view of a hooked syscall: written by userspace into the `SYSCALLS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Shape {
    /// Stable identifier (0: not hooked).
    pub id: u16,
    /// [`role`].
    pub role: u8,
    /// [`fd_from`], and for [`fd_from::PAIR`] the argument holding the pointer.
    pub fd_from: u8,
    pub fd_arg: u8,
    /// [`guard`] and its argument.
    pub guard: u8,
    pub guard_arg: u8,
    /// Argument holding the source descriptor (dup, accept), or [`NO_ARG`].
    pub src_fd_arg: u8,
    /// [`name_from`] and its arguments.
    pub name_from: u8,
    pub name_arg: u8,
    pub name_len_arg: u8,
    /// [`detail`] and its argument.
    pub detail: u8,
    pub detail_arg: u8,
    /// [`flag`] bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Values the guard compares with.
    pub guard_values: [u64; 2],
}

/// One row of [`TABLE`].
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub id: u16,
    /// As in `syscalls:sys_enter_<name>`.
    pub name: &'static str,
    /// As in reports.
    pub label: &'static str,
    /// x86_64 syscall number (0: not a syscall).
    pub nr: u32,
    /// [`kind`] of the descriptor made.
    pub kind: u8,
    pub shape: Shape,
}

impl Desc {
    /// Whether the syscall is hooked in the kernel.
    pub const fn hooked(&self) -> bool {
        self.shape.role != role::NONE
    }

    /// Whether the kernel handles it at syscall entry (else at exit).
    pub const fn at_entry(&self) -> bool {
        matches!(
            self.shape.role,
            role::CLOSE | role::CLOSE_RANGE | role::EXEC
        )
    }

    /// The kernel program that handles it, attached to its entry or exit tracepoint.
    pub const fn program(&self) -> &'static str {
        if self.at_entry() {
            "sys_enter"
        } else if matches!(self.shape.role, role::SEND_RIGHTS | role::RECV_RIGHTS) {
            "sys_exit_rights"
        } else {
            "sys_exit"
        }
    }
}

const fn shape(id: u16, role: u8) -> Shape {
    Shape {
        id,
        role,
        fd_from: fd_from::RET,
        fd_arg: NO_ARG,
        guard: guard::NONE,
        guard_arg: NO_ARG,
        src_fd_arg: NO_ARG,
        name_from: name_from::NONE,
        name_arg: NO_ARG,
        name_len_arg: NO_ARG,
        detail: detail::NONE,
        detail_arg: NO_ARG,
        flags: 0,
        _pad: [0; 2],
        guard_values: [0; 2],
    }
}

/// A row under construction.
const fn row(id: u16, name: &'static str, nr: u32, kind: u8, role: u8) -> Desc {
    Desc {
        id,
        name,
        label: name,
        nr,
        kind,
        shape: shape(id, role),
    }
}

const fn acquire(id: u16, name: &'static str, nr: u32, kind: u8) -> Desc {
    row(id, name, nr, kind, role::ACQUIRE)
}

const fn pseudo(id: u16, name: &'static str, kind: u8) -> Desc {
    row(id, name, 0, kind, role::NONE)
}

impl Desc {
    const fn label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }
    const fn path(mut self, arg: u8) -> Self {
        self.shape.name_from = name_from::STRING;
        self.shape.name_arg = arg;
        self
    }
    const fn sockaddr(mut self, arg: u8, len_arg: u8) -> Self {
        self.shape.name_from = name_from::SOCKADDR;
        self.shape.name_arg = arg;
        self.shape.name_len_arg = len_arg;
        self
    }
    const fn detail(mut self, detail: u8, arg: u8) -> Self {
        self.shape.detail = detail;
        self.shape.detail_arg = arg;
        self
    }
    const fn src_fd(mut self, arg: u8) -> Self {
        self.shape.src_fd_arg = arg;
        self.shape.detail = detail::SRC_FD;
        self
    }
    const fn pair(mut self, arg: u8) -> Self {
        self.shape.fd_from = fd_from::PAIR;
        self.shape.fd_arg = arg;
        self.shape.flags |= flag::NEED_INODE;
        self
    }
    const fn fd_from(mut self, from: u8) -> Self {
        self.shape.fd_from = from;
        self
    }
    const fn flags(mut self, flags: u8) -> Self {
        self.shape.flags |= flags;
        self
    }
    const fn guard(mut self, guard: u8, arg: u8, values: [u64; 2]) -> Self {
        self.shape.guard = guard;
        self.shape.guard_arg = arg;
        self.shape.guard_values = values;
        self
    }
}

/// bpf() commands that return a new descriptor (bit per command number).
const BPF_FD_CMDS: u64 = (1 << 0)   // MAP_CREATE
    | (1 << 5)   // PROG_LOAD
    | (1 << 7)   // OBJ_GET
    | (1 << 13)  // PROG_GET_FD_BY_ID
    | (1 << 14)  // MAP_GET_FD_BY_ID
    | (1 << 17)  // RAW_TRACEPOINT_OPEN
    | (1 << 18)  // BTF_LOAD
    | (1 << 19)  // BTF_GET_FD_BY_ID
    | (1 << 28)  // LINK_CREATE
    | (1 << 30)  // LINK_GET_FD_BY_ID
    | (1 << 32)  // ENABLE_STATS
    | (1 << 33)  // ITER_CREATE
    | (1 << 36); // TOKEN_CREATE

/// landlock_create_ruleset flags that make it return a version or errata, not a descriptor.
const LANDLOCK_QUERY_FLAGS: u64 = 3;

use kind as k;

/// Every syscall and pseudo-syscall tracer knows. x86_64 numbers (the unified table's for the
/// newer ones); legacy syscalls that only some architectures have are included.
pub const TABLE: &[Desc] = &[
    acquire(OPEN, "open", 2, k::BY_MODE_ELSE_FILE)
        .path(0)
        .detail(detail::AT_FDCWD, NO_ARG),
    acquire(OPENAT, "openat", 257, k::BY_MODE_ELSE_FILE)
        .path(1)
        .detail(detail::ARG32, 0),
    acquire(OPENAT2, "openat2", 437, k::BY_MODE_ELSE_FILE)
        .path(1)
        .detail(detail::ARG32, 0),
    acquire(CREAT, "creat", 85, k::BY_MODE_ELSE_FILE)
        .path(0)
        .detail(detail::AT_FDCWD, NO_ARG),
    acquire(SOCKET, "socket", 41, k::SOCKET)
        .detail(detail::SOCKET_TRIPLE, NO_ARG)
        .flags(flag::SOCKET),
    acquire(SOCKETPAIR, "socketpair", 53, k::SOCKET)
        .pair(3)
        .detail(detail::SOCKET_TRIPLE, NO_ARG),
    acquire(ACCEPT, "accept", 43, k::SOCKET)
        .src_fd(0)
        .sockaddr(1, 2)
        .flags(flag::SOCKET),
    acquire(ACCEPT4, "accept4", 288, k::SOCKET)
        .src_fd(0)
        .sockaddr(1, 2)
        .flags(flag::SOCKET),
    acquire(PIPE, "pipe", 22, k::PIPE).pair(0),
    acquire(PIPE2, "pipe2", 293, k::PIPE).pair(0),
    acquire(DUP, "dup", 32, k::BY_MODE).src_fd(0),
    acquire(DUP2, "dup2", 33, k::BY_MODE)
        .src_fd(0)
        .flags(flag::DUP2),
    acquire(DUP3, "dup3", 292, k::BY_MODE)
        .src_fd(0)
        .flags(flag::DUP2),
    acquire(FCNTL, "fcntl", 72, k::BY_MODE)
        .label("fcntl(F_DUPFD)")
        .src_fd(0)
        .guard(
            guard::ARG_IS_EITHER,
            1,
            [crate::F_DUPFD, crate::F_DUPFD_CLOEXEC],
        ),
    acquire(EVENTFD, "eventfd", 284, k::EVENTFD),
    acquire(EVENTFD2, "eventfd2", 290, k::EVENTFD),
    acquire(EPOLL_CREATE, "epoll_create", 213, k::EPOLL),
    acquire(EPOLL_CREATE1, "epoll_create1", 291, k::EPOLL),
    acquire(TIMERFD_CREATE, "timerfd_create", 283, k::TIMERFD),
    // signalfd on an existing descriptor only changes its mask.
    acquire(SIGNALFD, "signalfd", 282, k::SIGNALFD).guard(guard::ARG_IS_MINUS_ONE, 0, [0; 2]),
    acquire(SIGNALFD4, "signalfd4", 289, k::SIGNALFD).guard(guard::ARG_IS_MINUS_ONE, 0, [0; 2]),
    acquire(INOTIFY_INIT, "inotify_init", 253, k::INOTIFY),
    acquire(INOTIFY_INIT1, "inotify_init1", 294, k::INOTIFY),
    acquire(MEMFD_CREATE, "memfd_create", 319, k::MEMFD).path(0),
    acquire(PIDFD_OPEN, "pidfd_open", 434, k::PIDFD),
    acquire(PIDFD_GETFD, "pidfd_getfd", 438, k::BY_MODE)
        .detail(detail::PIDFD_GETFD, NO_ARG)
        .flags(flag::NEED_INODE | flag::SOCKET_IF_INODE),
    acquire(FANOTIFY_INIT, "fanotify_init", 300, k::FANOTIFY),
    acquire(PERF_EVENT_OPEN, "perf_event_open", 298, k::PERF_EVENT),
    acquire(BPF, "bpf", 321, k::BPF)
        .guard(guard::ARG_BIT_IN, 0, [BPF_FD_CMDS, 0])
        .detail(detail::ARG, 0),
    acquire(USERFAULTFD, "userfaultfd", 323, k::USERFAULTFD),
    acquire(
        OPEN_BY_HANDLE_AT,
        "open_by_handle_at",
        304,
        k::BY_MODE_ELSE_FILE,
    )
    .flags(flag::NEED_INODE),
    acquire(OPEN_TREE, "open_tree", 428, k::MOUNT)
        .path(1)
        .detail(detail::ARG32, 0),
    acquire(OPEN_TREE_ATTR, "open_tree_attr", 467, k::MOUNT)
        .path(1)
        .detail(detail::ARG32, 0),
    acquire(FSOPEN, "fsopen", 430, k::MOUNT).path(0),
    acquire(FSMOUNT, "fsmount", 432, k::MOUNT),
    acquire(FSPICK, "fspick", 433, k::MOUNT)
        .path(1)
        .detail(detail::ARG32, 0),
    acquire(IO_URING_SETUP, "io_uring_setup", 425, k::IO_URING),
    acquire(MQ_OPEN, "mq_open", 240, k::MQUEUE).path(0),
    acquire(MEMFD_SECRET, "memfd_secret", 447, k::SECRETMEM),
    acquire(
        LANDLOCK_CREATE_RULESET,
        "landlock_create_ruleset",
        444,
        k::LANDLOCK,
    )
    .guard(guard::ARG_MASK_CLEAR, 2, [LANDLOCK_QUERY_FLAGS, 0]),
    // The pidfd of clone(CLONE_PIDFD) / clone3, in the parent; threads they create are
    // followed by the scheduler hooks.
    acquire(CLONE, "clone", 56, k::PIDFD).fd_from(fd_from::CLONE_PIDFD),
    acquire(CLONE3, "clone3", 435, k::PIDFD).fd_from(fd_from::CLONE3_PIDFD),
    row(RECVMSG, "recvmsg", 47, k::BY_MODE, role::RECV_RIGHTS),
    row(RECVMMSG, "recvmmsg", 299, k::BY_MODE, role::RECV_RIGHTS),
    row(SENDMSG, "sendmsg", 46, k::NONE, role::SEND_RIGHTS),
    row(SENDMMSG, "sendmmsg", 307, k::NONE, role::SEND_RIGHTS),
    row(CONNECT, "connect", 42, k::NONE, role::SOCKADDR),
    row(BIND, "bind", 49, k::NONE, role::SOCKADDR),
    row(EXECVE, "execve", 59, k::NONE, role::EXEC),
    row(EXECVEAT, "execveat", 322, k::NONE, role::EXEC),
    row(CLOSE, "close", 3, k::NONE, role::CLOSE),
    row(CLOSE_RANGE, "close_range", 436, k::NONE, role::CLOSE_RANGE),
    pseudo(PRE_EXISTING, "(open before attach)", k::BY_MODE),
    pseudo(IOURING_OPENAT, "io_uring openat", k::BY_MODE_ELSE_FILE),
    pseudo(IOURING_OPENAT2, "io_uring openat2", k::BY_MODE_ELSE_FILE),
    pseudo(IOURING_SOCKET, "io_uring socket", k::SOCKET),
    pseudo(IOURING_ACCEPT, "io_uring accept", k::SOCKET),
    pseudo(IOURING_CLOSE, "io_uring close", k::NONE),
    pseudo(IOURING_PIPE, "io_uring pipe", k::PIPE),
    pseudo(IOURING_FD_INSTALL, "io_uring fixed_fd_install", k::BY_MODE),
    pseudo(THREAD, "clone(CLONE_THREAD)", k::TASK),
    pseudo(GOROUTINE, "go statement", k::TASK),
];

/// The row of identifier `id`.
pub fn desc(id: u16) -> Option<&'static Desc> {
    TABLE.iter().find(|d| d.id == id)
}

/// Whether `id` creates descriptors (as opposed to releasing them or annotating).
pub fn acquires(id: u16) -> bool {
    desc(id).is_some_and(|d| d.kind != kind::NONE && d.kind != kind::TASK)
}

/// Whether `id` is an io_uring request (acquired at completion, stack of the submission).
pub const fn is_io_uring(id: u16) -> bool {
    id >= IOURING_OPENAT && id <= IOURING_FD_INSTALL
}
