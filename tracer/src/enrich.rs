//! What a descriptor is (its kind) and what it refers to (path, socket addresses, pipe inode),
//! derived from the facts the kernel recorded at acquisition.
use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    path::Path,
};

use serde::{Deserialize, Serialize};
use tracer_common::{AcquireEvent, NAME_MAX, syscall as sys};

use crate::events::c_str;

/// The kind of a descriptor (the JSON `kind` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Socket,
    Pipe,
    Eventfd,
    Epoll,
    Timerfd,
    Signalfd,
    Inotify,
    Memfd,
    Pidfd,
    IoUring,
    Fanotify,
    PerfEvent,
    Bpf,
    Userfaultfd,
    /// A mount or filesystem context (open_tree, fsopen, fsmount, fspick).
    Mount,
    Mqueue,
    Landlock,
    Secretmem,
    Other,
}

impl Kind {
    /// Lower-case name as in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Socket => "socket",
            Kind::Pipe => "pipe",
            Kind::Eventfd => "eventfd",
            Kind::Epoll => "epoll",
            Kind::Timerfd => "timerfd",
            Kind::Signalfd => "signalfd",
            Kind::Inotify => "inotify",
            Kind::Memfd => "memfd",
            Kind::Pidfd => "pidfd",
            Kind::IoUring => "io_uring",
            Kind::Fanotify => "fanotify",
            Kind::PerfEvent => "perf_event",
            Kind::Bpf => "bpf",
            Kind::Userfaultfd => "userfaultfd",
            Kind::Mount => "mount",
            Kind::Mqueue => "mqueue",
            Kind::Landlock => "landlock",
            Kind::Secretmem => "secretmem",
            Kind::Other => "other",
        }
    }

    /// Kind from an inode's file-type bits (for descriptors whose origin says nothing more).
    pub fn from_mode(mode: u16) -> Kind {
        match u32::from(mode) & libc::S_IFMT {
            libc::S_IFIFO => Kind::Pipe,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFLNK => {
                Kind::File
            }
            _ => Kind::Other,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A socket's type, what it is connected or bound to, and its TCP state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub family: u16,
    pub ty: u16,
    pub local: Option<String>,
    pub peer: Option<String>,
    /// TCP state (kernel numbering) and since when (CLOCK_MONOTONIC ns), once known.
    pub state: Option<(u32, u64)>,
}

/// Name of a TCP state.
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Renders an address and port as `ip:port` (IPv4 in the first 4 bytes for AF_INET).
pub fn inet_addr(family: u16, addr: &[u8; 16], port: u16) -> String {
    if family as i32 == libc::AF_INET6 {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(*addr), port, 0, 0)).to_string()
    } else {
        let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
        SocketAddr::V4(SocketAddrV4::new(ip, port)).to_string()
    }
}

impl SocketInfo {
    fn proto(&self) -> String {
        let ty = self.ty & 0xf;
        match (self.family as i32, ty as i32) {
            (libc::AF_INET, libc::SOCK_STREAM) => "tcp".into(),
            (libc::AF_INET6, libc::SOCK_STREAM) => "tcp6".into(),
            (libc::AF_INET, libc::SOCK_DGRAM) => "udp".into(),
            (libc::AF_INET6, libc::SOCK_DGRAM) => "udp6".into(),
            (libc::AF_UNIX, libc::SOCK_STREAM) => "unix stream".into(),
            (libc::AF_UNIX, libc::SOCK_DGRAM) => "unix dgram".into(),
            (libc::AF_UNIX, libc::SOCK_SEQPACKET) => "unix seqpacket".into(),
            (libc::AF_NETLINK, _) => "netlink".into(),
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => "raw ip".into(),
            (f, t) => format!("socket(family {f}, type {t})"),
        }
    }
}

impl fmt::Display for SocketInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.proto())?;
        match (&self.local, &self.peer) {
            (Some(l), Some(p)) => write!(f, " {l} -> {p}")?,
            (Some(l), None) => write!(f, " {l}")?,
            (None, Some(p)) => write!(f, " -> {p}")?,
            (None, None) => {}
        }
        match self.state {
            Some((state, _)) => write!(f, " {}", tcp_state_name(state)),
            None => Ok(()),
        }
    }
}

/// The process holding the other end of a socket, on this machine (lsfd's ENDPOINTS): seen
/// while both ends were open.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub pid: u32,
    pub comm: String,
    /// Its command line, arguments joined by spaces (servers put their state there:
    /// `postgres: app db 127.0.0.1(5555) idle in transaction`).
    pub cmdline: String,
}

impl fmt::Display for Peer {
    /// `postgres[1234] "postgres: app db 127.0.0.1(5555) idle"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {:?}", self.comm, self.pid, self.cmdline)
    }
}

/// What a descriptor refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resource {
    Path(String),
    Socket(SocketInfo),
    /// Anonymous object: pipe, eventfd, epoll, ... with its inode when known.
    Anon {
        kind: Kind,
        ino: u64,
        name: Option<String>,
    },
    Unknown,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Path(p) => f.write_str(p),
            Resource::Socket(s) => s.fmt(f),
            Resource::Anon { kind, ino, name } => {
                let label = match kind {
                    Kind::Memfd => "memfd",
                    Kind::Pidfd => "pidfd",
                    other => other.as_str(),
                };
                match (name, ino) {
                    (Some(n), _) => write!(f, "{label}:{n}"),
                    (None, 0) => f.write_str(label),
                    (None, ino) => write!(f, "{label}:[{ino}]"),
                }
            }
            Resource::Unknown => f.write_str("?"),
        }
    }
}

/// Kind of a descriptor from the syscall that created it; `None` for duplicates, whose kind is
/// their source's.
pub fn kind_of(ev: &AcquireEvent) -> Option<Kind> {
    use tracer_common::syscall::kind as k;
    Some(match tracer_common::syscall::desc(ev.syscall)?.kind {
        k::BY_MODE_ELSE_FILE => match Kind::from_mode(ev.i_mode) {
            Kind::Other => Kind::File,
            kind => kind,
        },
        // A duplicate, another process's descriptor, one received over a socket, a fixed
        // file: only the inode says what it is.
        k::BY_MODE if ev.i_mode != 0 => Kind::from_mode(ev.i_mode),
        k::SOCKET => Kind::Socket,
        k::PIPE => Kind::Pipe,
        k::EVENTFD => Kind::Eventfd,
        k::EPOLL => Kind::Epoll,
        k::TIMERFD => Kind::Timerfd,
        k::SIGNALFD => Kind::Signalfd,
        k::INOTIFY => Kind::Inotify,
        k::MEMFD => Kind::Memfd,
        k::PIDFD => Kind::Pidfd,
        k::IO_URING => Kind::IoUring,
        k::FANOTIFY => Kind::Fanotify,
        k::PERF_EVENT => Kind::PerfEvent,
        k::BPF => Kind::Bpf,
        k::USERFAULTFD => Kind::Userfaultfd,
        k::MOUNT => Kind::Mount,
        k::MQUEUE => Kind::Mqueue,
        k::LANDLOCK => Kind::Landlock,
        k::SECRETMEM => Kind::Secretmem,
        _ => return None,
    })
}

/// Name of a bpf() command that creates a descriptor.
fn bpf_object(cmd: u64) -> &'static str {
    match cmd {
        0 => "map",
        5 => "prog",
        7 => "pinned object",
        13 => "prog",
        14 => "map",
        17 | 28 | 30 => "link",
        18 | 19 => "btf",
        32 => "stats",
        33 => "iter",
        36 => "token",
        _ => "object",
    }
}

/// The resource a new descriptor refers to. `cwd` resolves relative paths opened at AT_FDCWD;
/// `source` is the resource of the descriptor this one derives from (dup source, accept listener).
pub fn resource_of(
    ev: &AcquireEvent,
    kind: Kind,
    cwd: Option<&Path>,
    source: Option<&Resource>,
) -> Resource {
    let name = &ev.name[..(ev.name_len as usize).min(NAME_MAX)];
    match ev.syscall {
        sys::OPEN
        | sys::OPENAT
        | sys::OPENAT2
        | sys::CREAT
        | sys::IOURING_OPENAT
        | sys::IOURING_OPENAT2
        | sys::OPEN_TREE
        | sys::OPEN_TREE_ATTR
        | sys::FSPICK => {
            let raw = String::from_utf8_lossy(c_str(name)).into_owned();
            let dirfd = ev.arg as u32 as i32;
            let path = if raw.starts_with('/') {
                raw
            } else {
                match (dirfd, cwd, source) {
                    (libc::AT_FDCWD, Some(cwd), _) => cwd.join(&raw).display().to_string(),
                    _ => raw,
                }
            };
            if kind == Kind::Pipe {
                Resource::Anon {
                    kind,
                    ino: ev.ino[0],
                    name: Some(path),
                }
            } else {
                Resource::Path(path)
            }
        }
        sys::SOCKET | sys::SOCKETPAIR | sys::IOURING_SOCKET => Resource::Socket(SocketInfo {
            family: ev.arg as u16,
            ty: (ev.arg >> 16) as u16,
            local: None,
            peer: None,
            state: None,
        }),
        sys::ACCEPT | sys::ACCEPT4 => {
            let mut info = match source {
                Some(Resource::Socket(listener)) => SocketInfo {
                    family: listener.family,
                    ty: listener.ty,
                    local: listener.local.clone(),
                    peer: None,
                    state: None,
                },
                _ => SocketInfo {
                    family: sockaddr_family(name).unwrap_or(0),
                    ty: libc::SOCK_STREAM as u16,
                    local: None,
                    peer: None,
                    state: None,
                },
            };
            info.peer = parse_sockaddr(name);
            Resource::Socket(info)
        }
        sys::MEMFD_CREATE | sys::FSOPEN | sys::MQ_OPEN => Resource::Anon {
            kind,
            ino: ev.ino[0],
            name: Some(String::from_utf8_lossy(c_str(name)).into_owned()),
        },
        sys::BPF => Resource::Anon {
            kind,
            ino: 0,
            name: Some(bpf_object(ev.arg).into()),
        },
        // What arrived is what was sent: the sender's description when known.
        sys::RECVMSG | sys::RECVMMSG | sys::PIDFD_GETFD if source.is_some() => {
            source.cloned().unwrap_or(Resource::Unknown)
        }
        sys::PIDFD_OPEN => Resource::Anon {
            kind,
            ino: 0,
            name: None,
        },
        sys::DUP | sys::DUP2 | sys::DUP3 | sys::FCNTL => match source {
            Some(r) => r.clone(),
            None => Resource::Anon {
                kind,
                ino: ev.ino[0],
                name: None,
            },
        },
        _ => Resource::Anon {
            kind,
            ino: ev.ino[0],
            name: None,
        },
    }
}

fn sockaddr_family(raw: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(raw.get(..2)?.try_into().ok()?))
}

/// Renders a raw `struct sockaddr` (IPv4, IPv6, unix); `None` for unspecified ports (a bind to
/// port 0 says nothing about the port the kernel picked).
pub fn parse_sockaddr(raw: &[u8]) -> Option<String> {
    let family = sockaddr_family(raw)? as i32;
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family {
        libc::AF_INET | libc::AF_INET6 if raw.len() >= 4 && port(raw) == 0 => None,
        libc::AF_INET if raw.len() >= 8 => {
            let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port(raw))).to_string())
        }
        libc::AF_INET6 if raw.len() >= 24 => {
            let octets: [u8; 16] = raw[8..24].try_into().ok()?;
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port(raw), 0, 0)).to_string())
        }
        libc::AF_UNIX => {
            let path = raw.get(2..)?;
            match path.first() {
                None => Some("(unnamed)".into()),
                Some(0) if path.len() > 1 => {
                    Some(format!("@{}", String::from_utf8_lossy(c_str(&path[1..]))))
                }
                Some(0) => Some("(unnamed)".into()),
                Some(_) => Some(String::from_utf8_lossy(c_str(path)).into_owned()),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut v = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn sockaddrs() {
        assert_eq!(
            parse_sockaddr(&inet([127, 0, 0, 1], 8080)).as_deref(),
            Some("127.0.0.1:8080")
        );
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/run/x.sock\0");
        assert_eq!(parse_sockaddr(&un).as_deref(), Some("/run/x.sock"));
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(parse_sockaddr(&abs).as_deref(), Some("@name"));
        let mut v6 = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
        v6.extend_from_slice(&443u16.to_be_bytes());
        v6.extend_from_slice(&[0; 4]);
        let mut ip = [0u8; 16];
        ip[15] = 1;
        v6.extend_from_slice(&ip);
        assert_eq!(parse_sockaddr(&v6).as_deref(), Some("[::1]:443"));
        assert_eq!(parse_sockaddr(&[1]), None);
    }

    #[test]
    fn kinds_from_modes() {
        assert_eq!(Kind::from_mode(libc::S_IFIFO as u16), Kind::Pipe);
        assert_eq!(Kind::from_mode(libc::S_IFSOCK as u16), Kind::Socket);
        assert_eq!(Kind::from_mode(libc::S_IFREG as u16), Kind::File);
        assert_eq!(Kind::from_mode(0), Kind::Other);
    }

    #[test]
    fn socket_rendering() {
        let s = SocketInfo {
            family: libc::AF_INET as u16,
            ty: libc::SOCK_STREAM as u16 | libc::SOCK_CLOEXEC as u16,
            local: None,
            peer: Some("127.0.0.1:80".into()),
            state: None,
        };
        assert_eq!(s.to_string(), "tcp -> 127.0.0.1:80");
        let cw = SocketInfo {
            state: Some((8, 0)),
            ..s
        };
        assert_eq!(cw.to_string(), "tcp -> 127.0.0.1:80 CLOSE_WAIT");
        assert_eq!(
            inet_addr(2, &[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 443),
            "10.0.0.1:443"
        );
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        let mut ev: AcquireEvent = bytemuck::Zeroable::zeroed();
        ev.syscall = sys::OPENAT;
        ev.arg = libc::AT_FDCWD as u32 as u64;
        ev.name[..5].copy_from_slice(b"a.log");
        ev.name_len = 5;
        let r = resource_of(&ev, Kind::File, Some(Path::new("/tmp/x")), None);
        assert_eq!(r, Resource::Path("/tmp/x/a.log".into()));
    }
}
