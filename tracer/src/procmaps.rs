//! The executable mappings of every process, kept current from the kernel's perf MMAP2, FORK and
//! EXIT records, so a stack can be unwound and symbolized after its process has
//! exited (`/proc/PID/maps` is empty by then). Processes that existed before tracer started are
//! read from `/proc/PID/maps` on first use.
use std::{
    collections::{HashMap, VecDeque},
    fs,
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use perf_event::{Builder, Sampler, data::Record, events::Software};

/// Which file a mapping maps: its device and inode (0, 0: unknown). A binary rebuilt at the
/// same path is another file: caches are keyed by this, not by the path alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of a mapping from its device numbers and inode.
    pub fn new(major: u32, minor: u32, ino: u64) -> Self {
        Self {
            dev: libc::makedev(major, minor),
            ino,
        }
    }

    /// Whether `path` is still this file (an unknown identity always is).
    pub fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        if *self == Self::default() {
            return true;
        }
        fs::metadata(path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// One executable file mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub pgoff: u64,
    pub path: Arc<Path>,
    pub file: FileId,
}

/// The executable mappings of one process, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    pub mappings: Vec<Mapping>,
    /// Changes whenever the mappings change (unwinders rebuild their module lists then).
    pub generation: u64,
}

impl AddressSpace {
    /// Adds a mapping, replacing whatever it overlaps.
    pub fn insert(&mut self, m: Mapping, generation: u64) {
        self.mappings
            .retain(|o| o.end <= m.start || o.start >= m.end);
        let at = self.mappings.partition_point(|o| o.start < m.start);
        self.mappings.insert(at, m);
        self.generation = generation;
    }

    /// The mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        i.checked_sub(1)
            .map(|i| &self.mappings[i])
            .filter(|m| addr < m.end)
    }
}

/// How long an exited process's mappings are kept for late stack processing.
const KEEP_EXITED: Duration = Duration::from_secs(60);

/// Per-CPU perf buffer size for mapping records.
const PERF_BUFFER: usize = 256 << 10;

/// Mappings of all processes, fed by perf records.
pub struct ProcMaps {
    spaces: HashMap<u32, AddressSpace>,
    samplers: Vec<Sampler>,
    exited: VecDeque<(Instant, u32)>,
    generation: u64,
    /// Mapping records the kernel dropped (perf buffer full) or that did not parse.
    pub lost: u64,
}

impl ProcMaps {
    /// Starts watching mapping changes on every CPU.
    pub fn new() -> Result<Self> {
        let cpus = online_cpus();
        let mut samplers = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let counter = Builder::new(Software::DUMMY)
                .any_pid()
                .one_cpu(cpu)
                .mmap(true)
                .mmap2(true)
                .task(true)
                .exclude_kernel(true)
                .build()
                .with_context(|| format!("perf_event_open (mapping records) on CPU {cpu}"))?;
            let mut sampler = counter
                .sampled(PERF_BUFFER)
                .context("mapping the perf buffer")?;
            sampler.enable().context("enabling mapping records")?;
            samplers.push(sampler);
        }
        Ok(Self {
            spaces: HashMap::new(),
            samplers,
            exited: VecDeque::new(),
            generation: 1,
            lost: 0,
        })
    }

    /// Applies every pending mapping record.
    pub fn poll(&mut self) {
        for i in 0..self.samplers.len() {
            while let Some(record) = self.samplers[i].next_record() {
                let Ok(parsed) = record.parse_record() else {
                    self.lost += 1;
                    continue;
                };
                apply(
                    &mut self.spaces,
                    &mut self.exited,
                    &mut self.generation,
                    &mut self.lost,
                    parsed,
                );
            }
        }
        let now = Instant::now();
        while let Some(&(at, pid)) = self.exited.front() {
            if now.duration_since(at) < KEEP_EXITED {
                break;
            }
            self.exited.pop_front();
            self.spaces.remove(&pid);
        }
    }

    /// The address space of `pid`: from records, else read from `/proc` (live processes).
    pub fn space(&mut self, pid: u32) -> Option<&AddressSpace> {
        if !self.spaces.contains_key(&pid) {
            let space = read_proc_maps(pid, self.next_generation())?;
            self.spaces.insert(pid, space);
        }
        self.spaces.get(&pid)
    }

    /// Adds what `/proc/PID/maps` says now (used when an address is not covered). Merged, never
    /// replacing: a process that has just exited reads as empty there, while the mappings its
    /// perf records gave are still what its stacks need.
    pub fn refresh(&mut self, pid: u32) {
        let generation = self.next_generation();
        if let Some(fresh) = read_proc_maps(pid, generation) {
            let space = self.spaces.entry(pid).or_default();
            for m in fresh.mappings {
                space.insert(m, generation);
            }
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

fn apply(
    spaces: &mut HashMap<u32, AddressSpace>,
    exited: &mut VecDeque<(Instant, u32)>,
    generation: &mut u64,
    lost: &mut u64,
    record: Record<'_>,
) {
    *generation += 1;
    match record {
        Record::Mmap2(m) => {
            if m.prot & libc::PROT_EXEC as u32 == 0 || !m.filename.starts_with(b"/") {
                return;
            }
            let path = Path::new(std::ffi::OsStr::from_bytes(&m.filename));
            // A process first met through one of its mapping records (records began while it
            // was loading) starts from what /proc says, or it would lack what it mapped before.
            spaces
                .entry(m.pid)
                .or_insert_with(|| read_proc_maps(m.pid, *generation).unwrap_or_default())
                .insert(
                    Mapping {
                        start: m.addr,
                        end: m.addr + m.len,
                        pgoff: m.pgoff,
                        path: Arc::from(path),
                        file: match (m.maj(), m.min(), m.ino()) {
                            (Some(maj), Some(min), Some(ino)) => FileId::new(maj, min, ino),
                            _ => FileId::default(),
                        },
                    },
                    *generation,
                );
        }
        // Records from different CPUs arrive out of order, so neither an exec nor a fork may
        // discard mappings: an exec's new mappings replace whatever they overlap (nothing else
        // of the old image is ever executed again), and a fork's copy of the parent goes under
        // whatever the child already mapped.
        Record::Fork(f) if f.pid != f.ppid => {
            if let Some(parent) = spaces.get(&f.ppid).cloned() {
                let child = spaces.entry(f.pid).or_default();
                let own = std::mem::replace(&mut child.mappings, parent.mappings);
                for m in own {
                    child.insert(m, *generation);
                }
                child.generation = *generation;
            }
        }
        Record::Exit(e) if e.pid == e.tid => exited.push_back((Instant::now(), e.pid)),
        Record::Lost(l) => *lost += l.lost,
        _ => {}
    }
}

/// Executable file mappings of a live process from `/proc/PID/maps`.
pub fn read_proc_maps(pid: u32, generation: u64) -> Option<AddressSpace> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut space = AddressSpace {
        mappings: Vec::new(),
        generation,
    };
    for line in text.lines() {
        if let Some(m) = parse_maps_line(line) {
            space.insert(m, generation);
        }
    }
    Some(space)
}

/// Parses one `/proc/PID/maps` line, keeping executable file mappings.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut parts = line.splitn(6, ' ');
    let range = parts.next()?;
    let perms = parts.next()?;
    let offset = parts.next()?;
    let dev = parts.next()?;
    let inode = parts.next()?;
    let path = parts.next()?.trim_start();
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        pgoff: u64::from_str_radix(offset, 16).ok()?,
        path: Arc::from(Path::new(path)),
        file: FileId::new(
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
            inode.parse().ok()?,
        ),
    })
}

fn online_cpus() -> Vec<usize> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    if cpus.is_empty() {
        cpus.extend(0..std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(start: u64, end: u64, path: &str) -> Mapping {
        Mapping {
            start,
            end,
            pgoff: 0,
            path: Arc::from(Path::new(path)),
            file: FileId::default(),
        }
    }

    #[test]
    fn insert_replaces_overlaps_and_find_works() {
        let mut s = AddressSpace::default();
        s.insert(m(0x1000, 0x2000, "/a"), 1);
        s.insert(m(0x3000, 0x4000, "/b"), 2);
        assert_eq!(&*s.find(0x1800).unwrap().path, Path::new("/a"));
        assert!(s.find(0x2800).is_none());
        s.insert(m(0x1800, 0x3800, "/c"), 3);
        assert_eq!(s.mappings.len(), 1);
        assert_eq!(&*s.find(0x3000).unwrap().path, Path::new("/c"));
        assert!(s.find(0x1000).is_none());
        assert_eq!(s.generation, 3);
    }

    #[test]
    fn parses_maps_lines() {
        let l = "7f1c2a428000-7f1c2a5bd000 r-xp 00028000 fe:00 1573 /usr/lib/x86_64-linux-gnu/libc.so.6";
        let got = parse_maps_line(l).unwrap();
        assert_eq!(
            (got.start, got.end, got.pgoff),
            (0x7f1c2a428000, 0x7f1c2a5bd000, 0x28000)
        );
        assert_eq!(got.file, FileId::new(0xfe, 0, 1573));
        assert!(parse_maps_line("7ffd-7ffe rw-p 00000000 00:00 0 [stack]").is_none());
        assert!(parse_maps_line("1000-2000 r-xp 00000000 00:00 0 [vdso]").is_none());
    }

    #[test]
    fn reads_own_maps() {
        let space = read_proc_maps(std::process::id(), 1).unwrap();
        let here = parses_maps_lines as *const () as usize as u64;
        let m = space.find(here).unwrap();
        assert!(
            m.file.is_at(&m.path),
            "the mapping is of the file at its path"
        );
        assert!(!FileId { dev: 1, ino: 1 }.is_at(&m.path));
    }

    #[test]
    fn parses_cpu_lists() {
        assert!(!online_cpus().is_empty());
    }
}
