//! Reading a task's descriptor table: the table itself, its open bitmap, the open file behind a
//! number, and what an open file is (inode, socket).
use aya_ebpf::helpers::generated::bpf_get_current_task_btf;

use crate::{kmem::kread, maps::off};

/// File type bits of `i_mode`.
pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;

/// The descriptor table (`struct fdtable *`) of a task given as a plain address (a raw
/// tracepoint's argument, which the verifier cannot load through: hence the helper reads).
#[inline(always)]
pub fn task_fdt(task: u64) -> Option<u64> {
    let files: u64 = kread(task, off!(task_files))?;
    kread(files, off!(files_fdt))
}

/// The current task's descriptor table. Loaded through the task's BTF pointer rather than with
/// helper calls: the offsets are constants to the verifier (CONFIG is frozen read-only data),
/// and a fault reads 0.
#[inline(always)]
pub fn current_fdt() -> Option<u64> {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    // SAFETY: `task` is a BTF pointer and both offsets are of pointer fields (task->files,
    // files->fdt): the verifier checks them against BTF and turns them into fault-safe loads.
    let files = unsafe { *((task + off!(task_files)) as *const u64) };
    if files == 0 {
        return None;
    }
    // SAFETY: as above; `files` is a BTF pointer to the task's files_struct.
    let fdt = unsafe { *((files + off!(files_fdt)) as *const u64) };
    (fdt != 0).then_some(fdt)
}

/// The number of slots of a table.
#[inline(always)]
pub fn max_fds(fdt: u64) -> Option<u32> {
    kread(fdt, off!(fdt_max_fds))
}

/// The open file (`struct file *`) behind `fd` in table `fdt` (0 if none).
#[inline(always)]
pub fn fd_file(fdt: u64, fd: i32) -> u64 {
    if fd < 0 {
        return 0;
    }
    kread::<u64>(fdt, off!(fdt_fd))
        .and_then(|arr| kread::<u64>(arr, fd as u64 * 8))
        .unwrap_or(0)
}

/// Inode number and file type bits of an open file.
#[inline(always)]
pub fn file_inode(file: u64) -> (u64, u16) {
    match kread::<u64>(file, off!(file_inode)) {
        Some(inode) => (
            kread(inode, off!(inode_ino)).unwrap_or(0),
            kread::<u16>(inode, off!(inode_mode)).unwrap_or(0) & S_IFMT,
        ),
        None => (0, 0),
    }
}

/// The `struct sock *` of a socket file (0 if unknown). Only valid for socket files.
#[inline(always)]
pub fn file_socket(file: u64) -> u64 {
    kread::<u64>(file, off!(file_private_data))
        .and_then(|socket| kread::<u64>(socket, off!(socket_sk)))
        .unwrap_or(0)
}

/// A table's open-descriptor bitmap, read a word at a time (loops over numbers share a word).
#[repr(C)]
pub struct OpenBits {
    fdt: u64,
    word: u64,
    /// Index of the cached word (u32::MAX: none yet).
    word_index: u32,
    /// Words that could not be read (read as all closed).
    pub failures: u32,
}

impl OpenBits {
    pub const fn new(fdt: u64) -> Self {
        Self {
            fdt,
            word: 0,
            word_index: u32::MAX,
            failures: 0,
        }
    }

    /// The table these bits are of.
    pub const fn fdt(&self) -> u64 {
        self.fdt
    }

    /// Whether `fd` is open.
    #[inline(always)]
    pub fn is_open(&mut self, fd: u32) -> bool {
        let index = fd / 64;
        if index != self.word_index {
            // The bitmap has a bit per slot: a number past the table's end is not open (what
            // follows the bitmap is other data). Tables are whole words of slots.
            let word = match max_fds(self.fdt) {
                Some(max) if fd >= max => Some(0),
                Some(_) => kread::<u64>(self.fdt, off!(fdt_open_fds))
                    .and_then(|bits| kread::<u64>(bits, index as u64 * 8)),
                None => None,
            };
            self.word = match word {
                Some(w) => w,
                None => {
                    self.failures += 1;
                    0
                }
            };
            self.word_index = index;
        }
        self.word & (1u64 << (fd % 64)) != 0
    }
}
