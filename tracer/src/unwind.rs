//! Complete user stacks from the registers and stack bytes the kernel copied at the syscall.
//!
//! framehop walks the copy with each module's DWARF call-frame information (`.eh_frame`, or
//! `.debug_frame` for Go) and falls back to frame pointers where a module has none. This does not
//! depend on frame pointers, which glibc's syscall wrappers and Rust's std do not keep.
use std::{collections::HashMap, fs::File, ops::Range, path::Path, sync::Arc};

use anyhow::{Context as _, Result};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};
use tracer_common::{MEMO_SPAN, MEMO_WORDS, UserRegs};

use crate::procmaps::{AddressSpace, FileId, Mapping};

/// Most frames kept per stack.
pub const MAX_FRAMES: usize = 128;

/// An unwound stack.
#[derive(Debug, Default)]
pub struct Unwound {
    /// Innermost first.
    pub frames: Vec<RawFrame>,
    /// The stack words (index = byte offset / 8 from the stack pointer) the unwind read, in
    /// order, when they alone determine the result (every read inside the copy, the walk ended
    /// cleanly): the stack memo's signature.
    pub reads: Option<Vec<u16>>,
}

/// One frame of an unwound stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// The file the address belongs to (None: not in any known mapping), and which file it was.
    pub path: Option<Arc<Path>>,
    pub file: FileId,
    /// Address to look up in that file's own address space (return addresses minus one).
    pub svma: u64,
    /// Address in the process.
    pub avma: u64,
    /// A frame of an interpreted script (Python) rather than of machine code.
    pub script: Option<Arc<ScriptFrame>>,
}

/// A frame of an interpreted script: its function, file and line as the interpreter knows them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptFrame {
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
}

impl RawFrame {
    /// A script's frame.
    pub fn script(frame: ScriptFrame) -> Self {
        Self {
            path: None,
            file: FileId::default(),
            svma: 0,
            avma: 0,
            script: Some(Arc::new(frame)),
        }
    }
}

/// What unwinding needs from one ELF file, read once per file.
struct ObjectInfo {
    eh_frame: Option<(Range<u64>, Arc<[u8]>)>,
    eh_frame_hdr: Option<(Range<u64>, Arc<[u8]>)>,
    debug_frame: Option<Arc<[u8]>>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    loads: Vec<Load>,
}

/// A PT_LOAD segment.
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    exec: bool,
}

impl ObjectInfo {
    fn load(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: read-only mapping of a file we only read; a concurrent truncation could fault,
        // as with any mmap-based ELF reader.
        let data = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        let obj = object::File::parse(&*data)
            .with_context(|| format!("parsing ELF {}", path.display()))?;
        let section = |name: &str| -> Option<(Range<u64>, Arc<[u8]>)> {
            let s = obj.section_by_name(name)?;
            let bytes = s.uncompressed_data().ok()?;
            Some((s.address()..s.address() + s.size(), Arc::from(&*bytes)))
        };
        let range = |name: &str| {
            obj.section_by_name(name)
                .map(|s| s.address()..s.address() + s.size())
        };
        let eh_frame = section(".eh_frame");
        Ok(Self {
            // Go binaries have no .eh_frame; their (compressed) .debug_frame describes them.
            debug_frame: if eh_frame.is_none() {
                section(".debug_frame").map(|(_, d)| d)
            } else {
                None
            },
            eh_frame,
            eh_frame_hdr: section(".eh_frame_hdr"),
            text: range(".text"),
            got: range(".got"),
            loads: obj
                .segments()
                .map(|s| {
                    let (offset, filesz) = s.file_range();
                    let exec = matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
                    Load {
                        vaddr: s.address(),
                        offset,
                        filesz,
                        exec,
                    }
                })
                .collect(),
        })
    }

    /// Load bias (process address minus file address) of a mapping of this file. The loader
    /// maps each PT_LOAD segment from its page-aligned file offset, so the segment is the one
    /// whose aligned offset is the mapping's offset (executable segments first: with lld the
    /// read-only segment can extend into the page where the code starts).
    fn bias(&self, m: &Mapping) -> u64 {
        const PAGE: u64 = 4096;
        let aligned = |off: u64| off & !(PAGE - 1);
        let seg = self
            .loads
            .iter()
            .find(|l| l.exec && aligned(l.offset) == m.pgoff)
            .or_else(|| self.loads.iter().find(|l| aligned(l.offset) == m.pgoff))
            .or_else(|| {
                self.loads
                    .iter()
                    .find(|l| m.pgoff >= aligned(l.offset) && m.pgoff < l.offset + l.filesz.max(1))
            });
        match seg {
            Some(l) => m
                .start
                .wrapping_sub(l.vaddr.wrapping_sub(l.offset).wrapping_add(m.pgoff)),
            None => m.start.wrapping_sub(m.pgoff),
        }
    }

    fn module(&self, m: &Mapping, bias: u64) -> Module<Arc<[u8]>> {
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| d.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
            debug_frame: self.debug_frame.clone(),
            ..Default::default()
        };
        Module::new(m.path.display().to_string(), m.start..m.end, bias, info)
    }
}

/// The address in its file (the address symbol tables use) of a process address in mapping `m`.
#[cfg(test)]
pub fn file_address(m: &Mapping, avma: u64) -> Result<u64> {
    Ok(avma.wrapping_sub(ObjectInfo::load(&m.path)?.bias(m)))
}

/// A process's unwinder, rebuilt when its mappings change.
struct ProcUnwinder {
    generation: u64,
    unwinder: UnwinderX86_64<Arc<[u8]>>,
    cache: CacheX86_64,
    /// (range, path, file, bias) of each module, sorted by start.
    modules: Vec<(Range<u64>, Arc<Path>, FileId, u64)>,
    /// The unwind data it uses: held so that the cache keeps a file while a process maps it.
    _objects: Vec<Arc<ObjectInfo>>,
}

/// One walk over a stack copy.
struct Walk {
    /// (address for lookup, address) of each frame, innermost first.
    frames: Vec<(u64, u64)>,
    /// (word index, value) of each stack word read, first reads only, in order.
    reads: Vec<(u16, u64)>,
    /// Every read was an aligned word inside the copy and the memo's span, and the walk ended
    /// at the stack's root or at MAX_FRAMES.
    memoizable: bool,
}

impl ProcUnwinder {
    /// The frame of process address `avma`, looked up at `lookup`.
    fn frame(&self, lookup: u64, avma: u64) -> RawFrame {
        let module = self
            .modules
            .iter()
            .find(|(range, ..)| range.contains(&lookup));
        RawFrame {
            path: module.map(|(_, p, ..)| p.clone()),
            file: module.map_or_else(FileId::default, |(_, _, f, _)| *f),
            svma: module.map_or(lookup, |(.., bias)| lookup.wrapping_sub(*bias)),
            avma,
            script: None,
        }
    }

    /// Walks the stack; `replace` substitutes one word's value (a relevance test).
    fn walk(&mut self, regs: &UserRegs, stack: &[u8], replace: Option<(u16, u64)>) -> Walk {
        let sp = regs.sp;
        let mut reads: Vec<(u16, u64)> = Vec::new();
        let mut memoizable = true;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).map(|o| o as usize);
            let Some(bytes) = off.and_then(|o| stack.get(o..o + 8)) else {
                memoizable = false;
                return Err(());
            };
            let off = off.unwrap_or(0);
            let mut value = u64::from_le_bytes(bytes.try_into().map_err(|_| ())?);
            if !off.is_multiple_of(8) || off + 8 > MEMO_SPAN {
                memoizable = false;
                return Ok(value);
            }
            let word = (off / 8) as u16;
            if let Some((w, v)) = replace
                && w == word
            {
                value = v;
            }
            if !reads.iter().any(|(w, _)| *w == word) {
                reads.push((word, value));
            }
            Ok(value)
        };
        let mut frames = Vec::new();
        let mut clean_end = true;
        let mut iter = self.unwinder.iter_frames(
            regs.ip,
            UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
            &mut self.cache,
            &mut read_stack,
        );
        loop {
            let frame = match iter.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    clean_end = false;
                    break;
                }
            };
            let avma = match frame {
                FrameAddress::InstructionPointer(a) => a,
                FrameAddress::ReturnAddress(a) => a.get(),
            };
            frames.push((frame.address_for_lookup(), avma));
            if frames.len() >= MAX_FRAMES {
                break;
            }
        }
        Walk {
            frames,
            reads,
            memoizable: memoizable && clean_end,
        }
    }

    /// The words the result depends on: return addresses, and the other words read (saved
    /// frame pointers) only when changing them (to a distant address, to 0, to 1) changes the
    /// frames or which words are read. Without this, a caller keeping a loop variable in the
    /// frame-pointer register would make every stack look new to the memo.
    fn relevant_reads(&mut self, regs: &UserRegs, stack: &[u8], walk: &Walk) -> Vec<u16> {
        let returns: Vec<u64> = walk.frames.iter().map(|&(_, avma)| avma).collect();
        let mut relevant = Vec::with_capacity(walk.reads.len());
        for &(word, value) in &walk.reads {
            let keep = returns.contains(&value)
                || [value ^ 0x1000, 0, 1]
                    .into_iter()
                    .filter(|&alt| alt != value)
                    .any(|alt| {
                        let other = self.walk(regs, stack, Some((word, alt)));
                        other.frames != walk.frames
                            || !other.memoizable
                            || other
                                .reads
                                .iter()
                                .map(|r| r.0)
                                .ne(walk.reads.iter().map(|r| r.0))
                    });
            if keep {
                relevant.push(word);
            }
        }
        relevant
    }
}

/// Unwinds stacks of any number of processes, caching per-file unwind data by file identity
/// (a binary rebuilt at the same path is another file), as long as a process maps it.
#[derive(Default)]
pub struct Unwinder {
    objects: HashMap<(Arc<Path>, FileId), Option<Arc<ObjectInfo>>>,
    procs: HashMap<u32, ProcUnwinder>,
}

impl Unwinder {
    /// Unwinds one stack. The first frame is the instruction pointer (inside the syscall
    /// wrapper); unwinding stops at the stack's root, a frame outside the copy, or
    /// [`MAX_FRAMES`].
    pub fn unwind(
        &mut self,
        pid: u32,
        space: &AddressSpace,
        regs: &UserRegs,
        stack: &[u8],
    ) -> Unwound {
        let proc = self.proc_unwinder(pid, space);
        let walk = proc.walk(regs, stack, None);
        let frames = walk
            .frames
            .iter()
            .map(|&(lookup, avma)| proc.frame(lookup, avma))
            .collect();
        let reads = walk
            .memoizable
            .then(|| proc.relevant_reads(regs, stack, &walk))
            .filter(|r| !r.is_empty() && r.len() <= MEMO_WORDS);
        Unwound { frames, reads }
    }

    /// The frames of return addresses walked elsewhere (a goroutine creator's stack).
    pub fn frames_at(&mut self, pid: u32, space: &AddressSpace, pcs: &[u64]) -> Vec<RawFrame> {
        let proc = self.proc_unwinder(pid, space);
        pcs.iter()
            .map(|&pc| proc.frame(pc.wrapping_sub(1), pc))
            .collect()
    }

    /// Forgets a process's unwinder (its mappings are gone), and the files no process maps.
    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.objects
            .retain(|_, o| o.as_ref().is_some_and(|o| Arc::strong_count(o) > 1));
    }

    fn proc_unwinder(&mut self, pid: u32, space: &AddressSpace) -> &mut ProcUnwinder {
        let stale = self
            .procs
            .get(&pid)
            .is_none_or(|p| p.generation != space.generation);
        if stale {
            let mut unwinder = UnwinderX86_64::new();
            let mut modules = Vec::new();
            let mut objects = Vec::new();
            for m in &space.mappings {
                let Some(obj) = self.object(pid, m) else {
                    continue;
                };
                let bias = obj.bias(m);
                unwinder.add_module(obj.module(m, bias));
                modules.push((m.start..m.end, m.path.clone(), m.file, bias));
                objects.push(obj);
            }
            self.procs.insert(
                pid,
                ProcUnwinder {
                    generation: space.generation,
                    unwinder,
                    cache: CacheX86_64::new(),
                    modules,
                    _objects: objects,
                },
            );
        }
        self.procs.get_mut(&pid).expect("inserted above")
    }

    /// The unwind data of a mapping's file. When the path now holds another file (rebuilt,
    /// replaced), the mapped one is read through /proc/PID/map_files while the process lives;
    /// else the module is left out rather than unwound with another file's data.
    fn object(&mut self, pid: u32, m: &Mapping) -> Option<Arc<ObjectInfo>> {
        self.objects
            .entry((m.path.clone(), m.file))
            .or_insert_with(|| {
                let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
                let source = if m.file.is_at(&m.path) {
                    m.path.to_path_buf()
                } else {
                    std::path::PathBuf::from(mapped)
                };
                ObjectInfo::load(&source).ok().map(Arc::new)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::read_proc_maps;

    #[inline(never)]
    fn capture(out: &mut Option<(UserRegs, Vec<u8>)>) {
        // Registers and stack of this very frame, as the kernel would copy them at a syscall.
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads rip/rsp/rbp at one point without changing them.
        unsafe {
            std::arch::asm!("lea {}, [rip]", "mov {}, rsp", "mov {}, rbp", out(reg) ip, out(reg) sp, out(reg) bp)
        };
        let len = 16384usize;
        let mut bytes = vec![0u8; len];
        let top = stack_top(sp);
        let n = (top - sp).min(len as u64) as usize;
        // SAFETY: [sp, top) is this thread's mapped stack.
        unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, bytes.as_mut_ptr(), n) };
        bytes.truncate(n);
        *out = Some((UserRegs { ip, sp, bp }, bytes));
    }

    fn stack_top(sp: u64) -> u64 {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let range = line.split(' ').next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            if (a..b).contains(&sp) {
                return b;
            }
        }
        panic!("no mapping for sp");
    }

    #[test]
    fn unwinds_own_stack_through_std() {
        let mut out = None;
        capture(&mut out);
        let (regs, stack) = out.unwrap();
        let space = read_proc_maps(std::process::id(), 1).unwrap();
        let frames = Unwinder::default()
            .unwind(std::process::id(), &space, &regs, &stack)
            .frames;
        assert!(frames.len() >= 3, "{frames:?}");
        let exe = std::env::current_exe().unwrap();
        assert!(frames.iter().all(|f| f.path.is_some()));
        assert!(
            frames[..3]
                .iter()
                .any(|f| f.path.as_deref() == Some(exe.as_path()))
        );
    }
}
