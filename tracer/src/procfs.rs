//! What `/proc` says about a live process: its descriptor table (kind and resource of each
//! descriptor, for those open before tracer attached), its descriptor limit, its identity.
use std::{
    collections::HashMap,
    fs,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    path::PathBuf,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    accounting::Described,
    enrich::{Kind, Resource, SocketInfo, tcp_state_name},
};

/// One open descriptor as `/proc/PID/fd` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFd {
    pub fd: u32,
    pub kind: Kind,
    pub resource: Resource,
    /// Inode of the open file (from fdinfo), 0 if unknown.
    pub ino: u64,
}

/// Fails with one clear line unless `pid` is a live process.
pub fn check_pid(pid: u32) -> Result<()> {
    /// `PF_KTHREAD` in the flags of /proc/PID/stat.
    const KERNEL_THREAD: u64 = 0x0020_0000;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        bail!("no process with pid {pid}");
    };
    // After "pid (comm) ": state, ppid, pgrp, session, tty_nr, tpgid, flags.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    if fields.first() == Some(&"Z") {
        bail!("process {pid} has exited (it is a zombie)");
    }
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    if flags & KERNEL_THREAD != 0 {
        bail!("pid {pid} is a kernel thread: it holds no descriptors to trace");
    }
    Ok(())
}

/// The process's name (`comm`).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The process's executable.
pub fn exe(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string())
}

/// A live process's identity: name, executable, parent.
pub fn describe(pid: u32) -> Described {
    Described {
        ppid: ppid(pid),
        comm: comm(pid),
        exe: exe(pid),
        ..Default::default()
    }
}

/// Parent pid.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized comm: state ppid ...
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Soft RLIMIT_NOFILE of a process.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// Number of descriptors a process has open.
pub fn count_fds(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Every descriptor a live process has open, with its kind and resource.
pub fn open_fds(pid: u32) -> Result<Vec<OpenFd>> {
    let dir = format!("/proc/{pid}/fd");
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    let sockets = SocketTable::read(pid);
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(target) = fs::read_link(e.path()) else {
            continue; // closed meanwhile
        };
        let ino = fdinfo_ino(pid, fd).unwrap_or(0);
        let (kind, resource) = classify(&target.display().to_string(), ino, &sockets);
        out.push(OpenFd {
            fd,
            kind,
            resource,
            ino,
        });
    }
    out.sort_by_key(|f| f.fd);
    Ok(out)
}

fn fdinfo_ino(pid: u32, fd: u32) -> Option<u64> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("ino:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Kind and resource from a `/proc/PID/fd` link target.
pub fn classify(target: &str, ino: u64, sockets: &SocketTable) -> (Kind, Resource) {
    let anon = |kind: Kind| {
        (
            kind,
            Resource::Anon {
                kind,
                ino,
                name: None,
            },
        )
    };
    if let Some(n) = bracketed(target, "socket:[") {
        let info = sockets.get(n).cloned().unwrap_or_default();
        return (Kind::Socket, Resource::Socket(info));
    }
    if let Some(n) = bracketed(target, "pipe:[") {
        return (
            Kind::Pipe,
            Resource::Anon {
                kind: Kind::Pipe,
                ino: n,
                name: None,
            },
        );
    }
    match target {
        "anon_inode:[eventfd]" => return anon(Kind::Eventfd),
        "anon_inode:[eventpoll]" => return anon(Kind::Epoll),
        "anon_inode:[timerfd]" => return anon(Kind::Timerfd),
        "anon_inode:[signalfd]" => return anon(Kind::Signalfd),
        "anon_inode:inotify" => return anon(Kind::Inotify),
        "anon_inode:[pidfd]" => return anon(Kind::Pidfd),
        "anon_inode:[io_uring]" => return anon(Kind::IoUring),
        "anon_inode:[fanotify]" => return anon(Kind::Fanotify),
        "anon_inode:[perf_event]" => return anon(Kind::PerfEvent),
        "anon_inode:[userfaultfd]" => return anon(Kind::Userfaultfd),
        "anon_inode:[fscontext]" => return anon(Kind::Mount),
        "anon_inode:[landlock-ruleset]" => return anon(Kind::Landlock),
        "anon_inode:bpf-map"
        | "anon_inode:bpf-prog"
        | "anon_inode:bpf_link"
        | "anon_inode:bpf_iter"
        | "anon_inode:btf"
        | "anon_inode:[bpf-token]" => {
            return anon(Kind::Bpf);
        }
        "/secretmem (deleted)" => return anon(Kind::Secretmem),
        _ => {}
    }
    if bracketed(target, "pidfd:[").is_some() {
        return anon(Kind::Pidfd);
    }
    if let Some(name) = target.strip_prefix("/memfd:") {
        let name = name.strip_suffix(" (deleted)").unwrap_or(name);
        return (
            Kind::Memfd,
            Resource::Anon {
                kind: Kind::Memfd,
                ino,
                name: Some(name.to_string()),
            },
        );
    }
    if target.starts_with('/') {
        return (Kind::File, Resource::Path(target.to_string()));
    }
    (Kind::Other, Resource::Path(target.to_string()))
}

/// Whether a descriptor accounted as `accounted` can be what /proc shows as `seen` (/proc
/// shows mounts and message queues as paths, and some anonymous objects without a name).
pub fn same_kind(accounted: Kind, seen: Kind) -> bool {
    accounted == seen
        || seen == Kind::Other
        || (seen == Kind::File && matches!(accounted, Kind::Mount | Kind::Mqueue | Kind::Other))
}

fn bracketed(target: &str, prefix: &str) -> Option<u64> {
    target.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

/// A process's sockets by inode, from `/proc/PID/net/{tcp,tcp6,udp,udp6,unix}`.
#[derive(Default)]
pub struct SocketTable(HashMap<u64, SocketInfo>);

impl SocketTable {
    /// Reads the tables of the process's network namespace.
    pub fn read(pid: u32) -> Self {
        let mut t = HashMap::new();
        let base = PathBuf::from(format!("/proc/{pid}/net"));
        for (file, family, ty) in [
            ("tcp", libc::AF_INET, libc::SOCK_STREAM),
            ("tcp6", libc::AF_INET6, libc::SOCK_STREAM),
            ("udp", libc::AF_INET, libc::SOCK_DGRAM),
            ("udp6", libc::AF_INET6, libc::SOCK_DGRAM),
        ] {
            if let Ok(text) = fs::read_to_string(base.join(file)) {
                for line in text.lines().skip(1) {
                    if let Some((ino, info)) = parse_inet_line(line, family as u16, ty as u16) {
                        t.insert(ino, info);
                    }
                }
            }
        }
        if let Ok(text) = fs::read_to_string(base.join("unix")) {
            for line in text.lines().skip(1) {
                if let Some((ino, info)) = parse_unix_line(line) {
                    t.insert(ino, info);
                }
            }
        }
        Self(t)
    }

    pub fn get(&self, ino: u64) -> Option<&SocketInfo> {
        self.0.get(&ino)
    }
}

/// `sl local_address rem_address st ... inode` of /proc/net/tcp{,6} and udp{,6}.
fn parse_inet_line(line: &str, family: u16, ty: u16) -> Option<(u64, SocketInfo)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = parse_hex_addr(f.get(1)?)?;
    let peer = parse_hex_addr(f.get(2)?)?;
    let state = u32::from_str_radix(f.get(3)?, 16).ok()?;
    let ino: u64 = f.get(9)?.parse().ok()?;
    let tcp = ty == libc::SOCK_STREAM as u16;
    let listening = tcp && tcp_state_name(state) == "LISTEN";
    Some((
        ino,
        SocketInfo {
            family,
            ty,
            local: Some(local),
            peer: (!listening && !peer.ends_with(":0")).then_some(peer),
            state: tcp.then_some((state, 0)),
        },
    ))
}

/// `ADDR:PORT` in the kernel's hex (network-order words) to `ip:port`.
fn parse_hex_addr(s: &str) -> Option<String> {
    parse_hex_socket(s).map(|a| a.to_string())
}

/// `ADDR:PORT` in the kernel's hex (network-order words), as a socket address.
fn parse_hex_socket(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Some(match bytes.len() {
        4 => SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]),
            port,
        )),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
        }
        _ => return None,
    })
}

/// A TCP socket of a network namespace: its addresses and inode (0 for a connection no
/// process holds yet: not accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub ino: u64,
}

/// Every TCP socket (IPv4 and IPv6) of `pid`'s network namespace, from
/// `/proc/PID/net/tcp{,6}`; IPv4-mapped IPv6 addresses as IPv4, so both ends of a connection
/// between the two families compare equal.
pub fn tcp_sockets(pid: u32) -> Vec<TcpSocket> {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(ino)) = (
                f.get(1).and_then(|s| parse_hex_socket(s)),
                f.get(2).and_then(|s| parse_hex_socket(s)),
                f.get(9).and_then(|s| s.parse().ok()),
            ) else {
                continue;
            };
            out.push(TcpSocket {
                local: canonical(local),
                remote: canonical(remote),
                ino,
            });
        }
    }
    out
}

/// The inode of the socket `pid` holds as descriptor `fd`, if it is a socket.
pub fn socket_inode(pid: u32, fd: u32) -> Option<u64> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    bracketed(target.to_str()?, "socket:[")
}

/// The process's command line, its arguments joined by spaces (as `ps` shows it).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" ").trim_end().to_string())
}

/// When the process started (clock ticks since boot, field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    // After "pid (comm) ", field 3 (state) is the first.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `Num RefCount Protocol Flags Type St Inode [Path]` of /proc/net/unix.
fn parse_unix_line(line: &str) -> Option<(u64, SocketInfo)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let ty = u16::from_str_radix(f.get(4)?, 16).ok()?;
    let ino: u64 = f.get(6)?.parse().ok()?;
    Some((
        ino,
        SocketInfo {
            family: libc::AF_UNIX as u16,
            ty,
            local: f.get(7).map(|p| p.to_string()),
            peer: None,
            state: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_link_targets() {
        let t = SocketTable::default();
        assert_eq!(classify("anon_inode:[eventfd]", 9, &t).0, Kind::Eventfd);
        assert_eq!(classify("anon_inode:[eventpoll]", 9, &t).0, Kind::Epoll);
        assert_eq!(classify("anon_inode:inotify", 9, &t).0, Kind::Inotify);
        assert_eq!(
            classify("pipe:[4242]", 4242, &t),
            (
                Kind::Pipe,
                Resource::Anon {
                    kind: Kind::Pipe,
                    ino: 4242,
                    name: None
                }
            )
        );
        assert_eq!(
            classify("/etc/passwd", 1, &t),
            (Kind::File, Resource::Path("/etc/passwd".into()))
        );
        let (k, r) = classify("/memfd:buf (deleted)", 7, &t);
        assert_eq!((k, r.to_string()), (Kind::Memfd, "memfd:buf".to_string()));
        assert_eq!(classify("socket:[77]", 77, &t).0, Kind::Socket);
    }

    #[test]
    fn parses_proc_net_lines() {
        let l = "   1: 0100007F:1F90 0100007F:D2F4 08 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 20 4 30 10 -1";
        let (ino, s) = parse_inet_line(l, libc::AF_INET as u16, libc::SOCK_STREAM as u16).unwrap();
        assert_eq!(ino, 31337);
        assert_eq!(
            s.to_string(),
            "tcp 127.0.0.1:8080 -> 127.0.0.1:54004 CLOSE_WAIT"
        );
        let u = "0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/x.sock";
        let (ino, s) = parse_unix_line(u).unwrap();
        assert_eq!(
            (ino, s.to_string()),
            (4242, "unix stream /run/x.sock".to_string())
        );
    }

    #[test]
    fn reads_tcp_tables_and_identities() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let me = std::process::id();
        let fd = |s: &dyn std::os::fd::AsRawFd| s.as_raw_fd() as u32;
        let ino = socket_inode(me, fd(&client)).unwrap();
        let table = tcp_sockets(me);
        let mine = table.iter().find(|s| s.ino == ino).unwrap();
        assert_eq!(mine.local, client.local_addr().unwrap());
        assert_eq!(mine.remote, server.local_addr().unwrap());
        assert_eq!(
            parse_hex_socket("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert!(cmdline(me).unwrap().contains("tracer"));
        assert!(start_time(me).unwrap() > 0);
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(socket_inode(me, fd(&file)), None);
    }

    #[test]
    fn reads_own_table() {
        let fds = open_fds(std::process::id()).unwrap();
        assert!(fds.iter().any(|f| f.fd == 0));
        assert!(nofile_limit(std::process::id()).unwrap() > 0);
        assert!(check_pid(std::process::id()).is_ok());
        assert!(check_pid(u32::MAX - 1).is_err());
    }
}
