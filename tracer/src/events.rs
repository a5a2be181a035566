//! Decoding of the ring-buffer records written by the eBPF programs.
use anyhow::{Result, anyhow, bail};
use bytemuck::{Pod, try_pod_read_unaligned};
use tracer_common::{
    AcquireEvent, EventHeader, ExecEvent, ExitEvent, ForkEvent, GoSpawnEvent, IoCompleteEvent,
    PyCodeEvent, PyFramesEvent, ReleaseBatch, SockAddrEvent, TaskExitEvent, event,
};

/// One decoded record; `Acquire` borrows its stack copy from the ring.
#[derive(Debug)]
pub enum Event<'a> {
    Acquire(Box<AcquireEvent>, &'a [u8]),
    Releases(Box<ReleaseBatch>),
    SockAddr(Box<SockAddrEvent>),
    Fork(ForkEvent),
    Exec(Box<ExecEvent>),
    Exit(Box<ExitEvent>),
    IoComplete(IoCompleteEvent),
    TaskExit(TaskExitEvent),
    GoSpawn(Box<GoSpawnEvent>),
    PyFrames(Box<PyFramesEvent>),
    PyCode(Box<PyCodeEvent>),
}

fn read<T: Pod>(bytes: &[u8]) -> Result<T> {
    let size = size_of::<T>();
    let head = bytes.get(..size).ok_or_else(|| {
        anyhow!(
            "truncated {} record: {} of {size} bytes",
            std::any::type_name::<T>(),
            bytes.len()
        )
    })?;
    try_pod_read_unaligned(head).map_err(|e| anyhow!("{e}"))
}

/// Decodes one record.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>> {
    let header: EventHeader = read(bytes)?;
    Ok(match header.kind {
        event::ACQUIRE => {
            let ev: AcquireEvent = read(bytes)?;
            let start = size_of::<AcquireEvent>();
            let end = start + ev.stack_len as usize;
            let stack = bytes
                .get(start..end)
                .ok_or_else(|| anyhow!("acquire record shorter than its stack length"))?;
            Event::Acquire(Box::new(ev), stack)
        }
        event::RELEASES => Event::Releases(Box::new(read(bytes)?)),
        event::SOCKADDR => Event::SockAddr(Box::new(read(bytes)?)),
        event::FORK => Event::Fork(read(bytes)?),
        event::EXEC => Event::Exec(Box::new(read(bytes)?)),
        event::EXIT => Event::Exit(Box::new(read(bytes)?)),
        event::IO_COMPLETE => Event::IoComplete(read(bytes)?),
        event::TASK_EXIT => Event::TaskExit(read(bytes)?),
        event::GO_SPAWN => Event::GoSpawn(Box::new(read(bytes)?)),
        event::PY_FRAMES => Event::PyFrames(Box::new(read(bytes)?)),
        event::PY_CODE => Event::PyCode(Box::new(read(bytes)?)),
        other => bail!("unknown record kind {other}"),
    })
}

/// The bytes of a NUL-terminated (or full) fixed-size string field.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::bytes_of;
    use tracer_common::{Released, UserRegs, release};

    #[test]
    fn decodes_release_batch() {
        let mut b: ReleaseBatch = bytemuck::Zeroable::zeroed();
        b.header.kind = event::RELEASES;
        b.number = 5;
        b.cpu = 1;
        b.n = tracer_common::RELEASE_BATCH as u32;
        b.items[3] = Released {
            seq: 42,
            tgid: 7,
            fd: 3,
            how: release::CLOSE,
            _pad: 0,
        };
        match decode(bytes_of(&b)).unwrap() {
            Event::Releases(r) => {
                assert_eq!((r.number, r.cpu), (5, 1));
                assert_eq!((r.items[3].tgid, r.items[3].seq, r.items[3].fd), (7, 42, 3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acquire_carries_its_stack() {
        let mut ev: AcquireEvent = bytemuck::Zeroable::zeroed();
        ev.header.kind = event::ACQUIRE;
        ev.stack_len = 4;
        ev.regs = UserRegs {
            ip: 1,
            sp: 2,
            bp: 3,
        };
        let mut bytes = bytes_of(&ev).to_vec();
        bytes.extend_from_slice(&[9, 8, 7, 6, 0, 0, 0, 0]);
        match decode(&bytes).unwrap() {
            Event::Acquire(a, stack) => {
                assert_eq!(stack, &[9, 8, 7, 6]);
                assert_eq!(a.regs.sp, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(&[1, 2, 3]).is_err());
        let mut ev: AcquireEvent = bytemuck::Zeroable::zeroed();
        ev.header.kind = event::ACQUIRE;
        ev.stack_len = 100;
        assert!(decode(bytes_of(&ev)).is_err());
        let bad = EventHeader {
            kind: 99,
            tgid: 0,
            ts_ns: 0,
        };
        assert!(decode(bytes_of(&bad)).is_err());
    }
}
