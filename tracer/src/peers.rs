//! Who is on the other end of a socket. For sockets whose other end is on this machine (TCP over
//! loopback or a local address, unix sockets), the process holding it: pid, comm and command
//! line, as lsfd's ENDPOINTS. Looked up while both ends are open, once for a whole batch of
//! sockets: one read of each network namespace's TCP table, one sock_diag dump of the unix
//! sockets, one walk of `/proc/*/fd`.
use std::{
    collections::{HashMap, HashSet},
    fs,
    net::SocketAddr,
};

use anyhow::{Context as _, Result, bail};

use crate::{enrich::Peer, procfs};

/// A socket to look up: descriptor `fd` of live process `pid`, accounted as acquisition `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub pid: u32,
    pub fd: u32,
    pub seq: u64,
    /// A unix socket (else TCP).
    pub unix: bool,
}

/// Longest command line kept per peer.
const MAX_CMDLINE: usize = 1024;

/// The peers of `candidates`: for each socket found open, its peer, or `None` when no process
/// on this machine holds the other end (a remote host, a connection not accepted yet, a peer
/// gone). Sockets closed meanwhile, in a namespace tracer cannot see, or whose peer is exiting,
/// are left out.
pub fn resolve(candidates: &[Candidate]) -> Vec<(u64, Option<Peer>)> {
    let mut tcp: HashMap<String, TcpTable> = HashMap::new();
    let unix = candidates
        .iter()
        .any(|c| c.unix)
        .then(unix_peers)
        .and_then(Result::ok);
    // Each candidate's other end, by inode (None: not on this machine).
    let mut ends: Vec<(u64, Option<u64>)> = Vec::new();
    for c in candidates {
        let Some(ino) = procfs::socket_inode(c.pid, c.fd) else {
            continue;
        };
        let end = if c.unix {
            match unix.as_ref().and_then(|peers| peers.get(&ino)) {
                Some(end) => *end,
                None => continue,
            }
        } else {
            let netns = fs::read_link(format!("/proc/{}/ns/net", c.pid))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let table = tcp
                .entry(netns)
                .or_insert_with(|| TcpTable::new(&procfs::tcp_sockets(c.pid)));
            match table.other_end(ino) {
                Some(end) => end,
                None => continue,
            }
        };
        ends.push((c.seq, end));
    }
    let wanted: HashSet<u64> = ends.iter().filter_map(|(_, end)| *end).collect();
    let holders = holders_of(&wanted);
    let mut described: HashMap<u64, Option<Peer>> = HashMap::new();
    ends.into_iter()
        .filter_map(|(seq, end)| {
            let Some(ino) = end else {
                return Some((seq, None));
            };
            // A holder that could not be described (exiting: its command line is gone) is not
            // news: what was last seen stays.
            let Some(pids) = holders.get(&ino) else {
                return Some((seq, None));
            };
            let peer = described
                .entry(ino)
                .or_insert_with(|| describe(pids))
                .clone()?;
            Some((seq, Some(peer)))
        })
        .collect()
}

/// A network namespace's TCP sockets, by inode and by address pair.
struct TcpTable {
    by_ino: HashMap<u64, (SocketAddr, SocketAddr)>,
    by_pair: HashMap<(SocketAddr, SocketAddr), u64>,
}

impl TcpTable {
    fn new(sockets: &[procfs::TcpSocket]) -> Self {
        let mut t = TcpTable {
            by_ino: HashMap::new(),
            by_pair: HashMap::new(),
        };
        for s in sockets.iter().filter(|s| s.ino != 0) {
            t.by_ino.insert(s.ino, (s.local, s.remote));
            t.by_pair.insert((s.local, s.remote), s.ino);
        }
        t
    }

    /// The inode of the other end of socket `ino`: `Some(None)` when it is not in this
    /// namespace (remote, or not accepted yet), `None` when `ino` itself is not.
    fn other_end(&self, ino: u64) -> Option<Option<u64>> {
        let (local, remote) = self.by_ino.get(&ino)?;
        Some(
            self.by_pair
                .get(&(*remote, *local))
                .copied()
                .filter(|&end| end != ino),
        )
    }
}

/// Every unix socket of tracer's network namespace and the inode of its peer, from sock_diag
/// (`UNIX_DIAG_PEER`).
fn unix_peers() -> Result<HashMap<u64, Option<u64>>> {
    use netlink_packet_core::{
        NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_sock_diag::{
        SockDiagMessage,
        unix::{ShowFlags, StateFlags, UnixRequest},
    };
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag socket")?;
    socket.bind_auto().context("binding the sock_diag socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the sock_diag socket")?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let request = SockDiagMessage::UnixRequest(UnixRequest {
        state_flags: StateFlags::all(),
        inode: 0,
        show_flags: ShowFlags::PEER,
        cookie: [0xff; 8],
    });
    let mut message = NetlinkMessage::new(header, request.into());
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .context("sending the sock_diag request")?;
    let mut peers = HashMap::new();
    loop {
        let (data, _) = socket
            .recv_from_full()
            .context("reading the sock_diag answer")?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&data[offset..])
                .context("decoding the sock_diag answer")?;
            match reply.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => {
                    peers.insert(u64::from(r.header.inode), r.peer().map(u64::from));
                }
                NetlinkPayload::Done(_) => return Ok(peers),
                NetlinkPayload::Error(e) => bail!("sock_diag refused the request: {e:?}"),
                _ => {}
            }
            let len = reply.header.length as usize;
            if len == 0 {
                break;
            }
            // Netlink messages are 4-byte aligned.
            offset += (len + 3) & !3;
        }
    }
}

/// The processes holding each of `inodes` (sockets), from one walk of `/proc/*/fd`; tracer's
/// own process is not looked at.
fn holders_of(inodes: &HashSet<u64>) -> HashMap<u64, Vec<u32>> {
    let mut holders: HashMap<u64, Vec<u32>> = HashMap::new();
    if inodes.is_empty() {
        return holders;
    }
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return holders;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let ino = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            if let Some(ino) = ino.filter(|i| inodes.contains(i)) {
                let pids = holders.entry(ino).or_default();
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    holders
}

/// The peer among the processes holding one socket: the youngest (a server that forks per
/// connection holds it in the parent until the child has it).
fn describe(pids: &[u32]) -> Option<Peer> {
    let pid = *pids
        .iter()
        .max_by_key(|&&pid| (procfs::start_time(pid).unwrap_or(0), pid))?;
    // Empty while the process exits (its memory is gone): not described then.
    let mut cmdline = procfs::cmdline(pid).filter(|c| !c.is_empty())?;
    if cmdline.len() > MAX_CMDLINE {
        let mut end = MAX_CMDLINE;
        while !cmdline.is_char_boundary(end) {
            end -= 1;
        }
        cmdline.truncate(end);
    }
    Some(Peer {
        pid,
        comm: procfs::comm(pid)?,
        cmdline,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        os::fd::{AsRawFd, OwnedFd},
        os::unix::net::UnixStream,
        process::{Child, Command, Stdio},
    };

    use super::*;

    fn candidate(pid: u32, fd: &dyn AsRawFd, seq: u64, unix: bool) -> Candidate {
        Candidate {
            pid,
            fd: fd.as_raw_fd() as u32,
            seq,
            unix,
        }
    }

    /// These tests run one at a time: a child forked by one holds copies of every descriptor
    /// of the test process until it execs, the other's sockets included.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A child process holding sockets as its standard input and output, once it runs `sleep`.
    fn holder(stdin: OwnedFd, stdout: Option<OwnedFd>) -> Child {
        let mut c = Command::new("sleep");
        c.arg("30").stdin(Stdio::from(stdin));
        if let Some(out) = stdout {
            c.stdout(Stdio::from(out));
        }
        let child = c.spawn().unwrap();
        let started = std::time::Instant::now();
        while procfs::cmdline(child.id()).as_deref() != Some("sleep 30") {
            assert!(started.elapsed().as_secs() < 10, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    fn end(mut children: Vec<Child>) {
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn peer_of(found: &[(u64, Option<Peer>)], seq: u64) -> Option<Option<Peer>> {
        found
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, p)| p.clone())
    }

    #[test]
    fn tcp_and_unix_peers_in_other_processes() {
        let _one = ONE_AT_A_TIME.lock();
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let pending = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mine, theirs) = UnixStream::pair().unwrap();
        let tcp_child = holder(server.into(), None);
        let unix_child = holder(theirs.into(), None);
        let (tcp_pid, unix_pid) = (tcp_child.id(), unix_child.id());
        let found = resolve(&[
            candidate(me, &client, 1, false),
            candidate(me, &mine, 2, true),
            candidate(me, &pending, 3, false),
            candidate(me, &listener, 4, false),
        ]);
        end(vec![tcp_child, unix_child]);
        let tcp = peer_of(&found, 1).flatten().expect("the TCP peer");
        assert_eq!(
            (tcp.pid, tcp.comm.as_str(), tcp.cmdline.as_str()),
            (tcp_pid, "sleep", "sleep 30")
        );
        assert_eq!(peer_of(&found, 2).flatten().map(|p| p.pid), Some(unix_pid));
        // The other end exists but no process holds it yet; a listener has no other end.
        assert_eq!(peer_of(&found, 3), Some(None));
        assert_eq!(peer_of(&found, 4), Some(None));
    }

    #[test]
    fn a_socketpair_within_one_process_is_its_own_peer() {
        let _one = ONE_AT_A_TIME.lock();
        let (a, b) = UnixStream::pair().unwrap();
        let child = holder(a.into(), Some(b.into()));
        let pid = child.id();
        let found = resolve(&[Candidate {
            pid,
            fd: 0,
            seq: 9,
            unix: true,
        }]);
        end(vec![child]);
        assert_eq!(peer_of(&found, 9).flatten().map(|p| p.pid), Some(pid));
    }

    #[test]
    fn tracer_itself_is_never_a_peer() {
        let _one = ONE_AT_A_TIME.lock();
        let (a, _b) = UnixStream::pair().unwrap();
        let found = resolve(&[candidate(std::process::id(), &a, 7, true)]);
        assert_eq!(found, vec![(7, None)]);
        let closed = Candidate {
            pid: std::process::id(),
            fd: 999_999,
            seq: 8,
            unix: false,
        };
        assert!(resolve(&[closed]).is_empty(), "a closed socket is left out");
    }
}
