//! Records: everything a report needs, written as tracing goes, read back anywhere.
//!
//! A record is the accounting's journal ([`Change`]s, the same calls the live run made), the
//! call sites' stacks already symbolized (with each module's build id and every frame's file
//! offset, to symbolize again elsewhere), the kernel's and the collector's loss counters, and
//! how the run ended. `tracer report` replays it through the same accounting and report code,
//! so it prints what the live run printed, without root and without the traced binaries.
//!
//! The layout is in [`format`]. A chunk is what the collector handed over since the previous one
//! (about 10 ms of events), at most about 64 KiB; each is written by a thread of its own and
//! flushed, so a tracer killed with -9 or a full disk leaves a readable prefix: the reader stops
//! at a partial last chunk and says so. Size: about 15 bytes per
//! release and 30 plus the resource's name per acquisition (the 4-thread stress run's 80,000
//! events: 1.9 MB, 24 bytes per event).
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufWriter, Read as _, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    thread::JoinHandle,
};

use anyhow::{Context as _, Result, anyhow, bail};

mod format;

pub use format::{Begin, End};

use format::{Entry, MAGIC, MAX_CHUNK, SiteFrame, VERSION};

use crate::{
    accounting::{Accounting, Change, SiteId},
    frames::{Frame, symbolize_stack},
    health::Health,
    report::{RunFacts, Snapshot, Stacks},
    symbolize::Symbolizer,
    unwind::RawFrame,
};

/// A chunk is written once it holds this much, even within a batch: at most this much is lost
/// when tracer is killed.
const CHUNK_BYTES: usize = 64 << 10;
/// Room kept under `--max-size` for the entries written after it is reached (where it stopped,
/// the last totals, the end), so that the file stays within the limit.
const TAIL_BYTES: u64 = 4096;

/// What the collector hands the recorder between two drains.
#[derive(Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub sites: Vec<(SiteId, Arc<[RawFrame]>)>,
    pub totals: Option<(u64, Health)>,
    pub end: Option<End>,
}

/// What a finished record holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub bytes: u64,
    /// Changes left out after `--max-size` was reached.
    pub dropped: u64,
    /// Why recording stopped early (a write failed: full disk, ...); the file holds what came
    /// before.
    pub failed: Option<String>,
}

/// The recording thread.
pub struct Recorder {
    tx: mpsc::Sender<Batch>,
    thread: JoinHandle<Result<Summary>>,
    path: PathBuf,
}

impl Recorder {
    /// Creates the record file (header and [`Begin`]) and starts writing batches as they come.
    pub fn start(path: &Path, max_bytes: Option<u64>, begin: Begin) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating the record {}", path.display()))?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 16, file),
            chunk: Vec::new(),
            bytes: 0,
            max_bytes,
            stopped: false,
            summary: Summary::default(),
            modules: HashSet::new(),
        };
        w.header()?;
        w.entry(&Entry::Begin(begin), true)?;
        w.flush()?;
        w.summary.bytes = w.bytes;
        let (tx, rx) = mpsc::channel::<Batch>();
        let where_ = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                // The symbolizer is not Send: it lives on this thread.
                let mut symbolizer = Symbolizer::default();
                for batch in rx {
                    if w.summary.failed.is_some() {
                        continue;
                    }
                    if let Err(e) = w.batch(batch, &mut symbolizer) {
                        let why = format!("{e:#}");
                        eprintln!(
                            "tracer: warning: recording to {where_} stopped: {why} (tracing goes \
                             on; the record holds what came before)"
                        );
                        w.summary.failed = Some(why);
                    }
                }
                if w.summary.failed.is_none() {
                    w.flush()
                        .with_context(|| format!("writing the record {where_}"))?;
                }
                Ok(w.summary)
            })
            .context("starting the recorder thread")?;
        Ok(Self {
            tx,
            thread,
            path: path.to_path_buf(),
        })
    }

    /// Queues a batch (never blocks the collector).
    pub fn send(&self, batch: Batch) {
        let _ = self.tx.send(batch);
    }

    /// Writes the last entries and closes the record.
    pub fn finish(self) -> Result<Summary> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| anyhow!("the recorder thread panicked"))?
            .with_context(|| format!("recording to {}", self.path.display()))
    }
}

/// The writing side, on the recorder thread.
struct Writer {
    out: BufWriter<File>,
    /// Entries of the chunk being built.
    chunk: Vec<u8>,
    bytes: u64,
    max_bytes: Option<u64>,
    stopped: bool,
    summary: Summary,
    modules: HashSet<Arc<Path>>,
}

impl Writer {
    fn header(&mut self) -> Result<()> {
        self.out.write_all(MAGIC)?;
        self.out.write_all(&VERSION.to_le_bytes())?;
        self.bytes += MAGIC.len() as u64 + 2;
        self.summary.bytes = self.bytes;
        Ok(())
    }

    /// Adds one entry to the chunk; `always` entries are kept past `--max-size` (they are few
    /// and small: the end of the story).
    fn entry(&mut self, entry: &Entry, always: bool) -> Result<()> {
        let encoded = postcard::to_stdvec(entry).context("encoding a record entry")?;
        let size = encoded.len() as u64;
        let pending = 8 + self.chunk.len() as u64;
        if !always
            && !self.stopped
            && self
                .max_bytes
                .is_some_and(|m| self.bytes + pending + size + TAIL_BYTES > m)
        {
            self.stopped = true;
            let ts_ns = crate::probes::monotonic_ns();
            let bytes = self.bytes + pending;
            self.entry(&Entry::Stopped { bytes, ts_ns }, true)?;
            eprintln!(
                "tracer: the record reached --max-size ({bytes} bytes): later events are not \
                 recorded (the report will say so)"
            );
        }
        if self.stopped && !always {
            self.summary.dropped += 1;
            return Ok(());
        }
        self.chunk.extend_from_slice(&encoded);
        self.summary.entries += 1;
        if self.chunk.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn batch(&mut self, batch: Batch, symbolizer: &mut Symbolizer) -> Result<()> {
        for (id, raw) in batch.sites {
            for path in raw.iter().filter_map(|f| f.path.clone()) {
                if self.modules.insert(path.clone()) {
                    let m = Entry::Module(path.display().to_string(), build_id(&path));
                    self.entry(&m, false)?;
                }
            }
            let frames = symbolize_stack(&raw, symbolizer);
            let frames = frames.iter().map(SiteFrame::from).collect();
            self.entry(&Entry::Site(id, frames), false)?;
        }
        for c in batch.changes {
            self.entry(&Entry::Change(c), false)?;
        }
        // Past --max-size only the last totals are kept (the file stays within its limit).
        if let Some((ts_ns, health)) = batch.totals
            && (!self.stopped || batch.end.is_some())
        {
            self.entry(&Entry::Totals { ts_ns, health }, true)?;
        }
        if let Some(end) = batch.end {
            self.entry(&Entry::End(end), true)?;
        }
        self.flush()
    }

    /// Writes the chunk built so far and flushes it to the file.
    fn flush(&mut self) -> Result<()> {
        if !self.chunk.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            self.out.write_all(&(chunk.len() as u32).to_le_bytes())?;
            self.out.write_all(&crc32fast::hash(&chunk).to_le_bytes())?;
            self.out.write_all(&chunk)?;
            self.bytes += 8 + chunk.len() as u64;
            self.summary.bytes = self.bytes;
        }
        self.out.flush().context("flushing the record")
    }
}

/// The GNU build id of an ELF file, hex.
fn build_id(path: &Path) -> Option<String> {
    use object::Object as _;
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// A record read back.
#[derive(Default)]
pub struct Recorded {
    pub begin: Begin,
    pub acct: Accounting,
    pub frames: HashMap<SiteId, Vec<Frame>>,
    pub modules: HashMap<String, Option<String>>,
    pub totals: Health,
    /// The latest time in the record (CLOCK_MONOTONIC): how far a record without an end got.
    pub last_ts_ns: u64,
    /// Descriptors acquired and released in the record's changes (the totals of a record
    /// without an end may be older than its last changes).
    pub replayed: (u64, u64),
    pub end: Option<End>,
    /// Where `--max-size` stopped the recording.
    pub stopped: Option<(u64, u64)>,
    /// The record ends inside an entry at this byte offset (tracer was killed, or the disk
    /// filled): what precedes it is reported.
    pub truncated_at: Option<u64>,
    pub entries: u64,
}

impl Recorded {
    /// The report's input: the replayed accounting and the recorded stacks. A record without
    /// its end reports up to its latest entry; `incomplete` says what is missing, and then
    /// what happened after the record ends is unknown (a process running then may still have
    /// released its descriptors: no `leak` verdict for it).
    pub fn snapshot(self, incomplete: Option<String>) -> Snapshot {
        let end = self.end.clone().unwrap_or_else(|| End {
            exit_code: 0,
            duration_ms: self.last_ts_ns.saturating_sub(self.begin.started_ns) / 1_000_000,
            now_ns: self.last_ts_ns,
            coverage_lost: vec![],
        });
        let mut health = self.totals;
        if self.end.is_none() {
            // The kernel's counters ran ahead of what the record kept: count what it holds.
            (health.counters.acquired, health.counters.released) = self.replayed;
        }
        Snapshot {
            acct: self.acct,
            stacks: Stacks::Recorded(Arc::new(self.frames)),
            health,
            run: RunFacts {
                command: self.begin.command,
                exit_code: self.end.as_ref().map(|e| e.exit_code),
                duration_ms: end.duration_ms,
                now_ns: end.now_ns,
                attached: self.begin.attached,
                live: self.begin.live || incomplete.is_some(),
                coverage_lost: end.coverage_lost,
                incomplete,
            },
        }
    }
}

/// Reads a record. A newer format, a corrupt entry or a file that is not a record is an error
/// naming the file and the byte offset; a partial last entry is not (see
/// [`Recorded::truncated_at`]).
pub fn read(path: &Path) -> Result<Recorded> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .with_context(|| format!("reading the record {}", path.display()))?;
    parse(&data).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Parses a whole record.
pub fn parse(data: &[u8]) -> Result<Recorded> {
    let head = MAGIC.len() + 2;
    if !data.starts_with(MAGIC) {
        bail!(
            "not a tracer record (it does not start with {:?})",
            "TRACEREC"
        );
    }
    if data.len() < head {
        bail!("truncated before its format version: nothing was recorded");
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if version > VERSION {
        bail!(
            "record format version {version} is newer than this tracer reads ({VERSION}): \
             use a newer tracer"
        );
    }
    if version < VERSION {
        bail!(
            "record format version {version} is older than this tracer reads ({VERSION}): \
             report it with the tracer that recorded it"
        );
    }
    let mut rec = Recorded::default();
    let mut pos = head;
    let mut begun = false;
    while pos < data.len() {
        let Some(frame) = data.get(pos..pos + 8) else {
            rec.truncated_at = Some(pos as u64);
            break;
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_CHUNK {
            bail!("corrupt chunk at byte {pos}: length {len} is impossible");
        }
        let Some(mut payload) = data.get(pos + 8..pos + 8 + len as usize) else {
            rec.truncated_at = Some(pos as u64);
            break;
        };
        if crc32fast::hash(payload) != crc {
            bail!("corrupt chunk at byte {pos}: checksum mismatch");
        }
        while !payload.is_empty() {
            let (entry, rest) = postcard::take_from_bytes::<Entry>(payload).map_err(|e| {
                let at = pos + 8 + (len as usize - payload.len());
                anyhow!("corrupt entry at byte {at}: {e}")
            })?;
            payload = rest;
            match entry {
                Entry::Begin(b) if !begun => {
                    rec.begin = b;
                    begun = true;
                }
                _ if !begun => {
                    bail!("corrupt record: chunk at byte {pos} starts before its beginning")
                }
                Entry::Begin(_) => {
                    bail!("corrupt record: a second beginning in the chunk at byte {pos}")
                }
                Entry::Change(c) => {
                    rec.last_ts_ns = rec.last_ts_ns.max(c.ts_ns().unwrap_or(0));
                    match &c {
                        Change::Acquire { fds, .. } => {
                            rec.replayed.0 += fds.iter().filter(|&&fd| fd >= 0).count() as u64;
                        }
                        Change::Release { .. } => rec.replayed.1 += 1,
                        _ => {}
                    }
                    rec.acct.apply(c)
                }
                Entry::Site(id, frames) => {
                    rec.frames
                        .insert(id, frames.iter().map(Frame::from).collect());
                }
                Entry::Module(path, id) => {
                    rec.modules.insert(path, id);
                }
                Entry::Totals { ts_ns, health } => {
                    rec.totals = health;
                    rec.last_ts_ns = rec.last_ts_ns.max(ts_ns);
                }
                Entry::Stopped { bytes, ts_ns } => rec.stopped = Some((bytes, ts_ns)),
                Entry::End(e) => rec.end = Some(e),
            }
            rec.entries += 1;
        }
        pos += 8 + len as usize;
    }
    if !begun {
        bail!("truncated before its first entry: nothing was recorded");
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accounting::{Acquisition, GroupKey},
        enrich::{Kind, Resource},
    };

    /// A small record: a beginning, a few changes, a site, the end.
    pub(crate) fn sample() -> Vec<u8> {
        let mut entries = vec![Entry::Begin(Begin {
            command: vec!["demo".into()],
            ..Default::default()
        })];
        let key = GroupKey {
            site: Some(0),
            syscall: tracer_common::syscall::OPENAT,
            chain: None,
        };
        for i in 0..3 {
            entries.push(Entry::Change(Change::Acquire {
                pid: 7,
                fds: vec![3 + i],
                seq: 100 + i as u64,
                acq: Box::new(Acquisition::new(
                    key,
                    Kind::File,
                    Resource::Path(format!("/tmp/f{i}")),
                    10,
                )),
            }));
        }
        entries.push(Entry::Change(Change::Release {
            pid: 7,
            fd: 3,
            seq: 100,
            passed: false,
        }));
        entries.push(Entry::Change(Change::Exit {
            pid: 7,
            status: 0,
            ts_ns: 20,
        }));
        entries.push(Entry::Site(0, vec![]));
        entries.push(Entry::End(End {
            exit_code: 0,
            duration_ms: 5,
            now_ns: 30,
            coverage_lost: vec![],
        }));
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in entries {
            let p = postcard::to_stdvec(&e).unwrap();
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
            out.extend_from_slice(&p);
        }
        out
    }

    #[test]
    fn round_trip() {
        let rec = parse(&sample()).unwrap();
        assert_eq!(rec.entries, 8);
        assert_eq!(rec.begin.command, ["demo"]);
        let p = rec.acct.process(7).unwrap();
        assert_eq!(p.open.len(), 2);
        assert_eq!(p.exit_code(), Some(0));
        assert!(rec.end.is_some() && rec.truncated_at.is_none());
    }

    #[test]
    fn truncation_keeps_the_prefix() {
        let data = sample();
        let rec = parse(&data[..data.len() - 3]).unwrap();
        assert!(rec.end.is_none());
        assert!(rec.truncated_at.is_some());
        assert_eq!(rec.acct.process(7).unwrap().exit_code(), Some(0));
    }

    /// Parses `data` and, when it is a record, builds and renders its report: the whole path
    /// `tracer report` takes, which must never panic.
    fn report_of(data: &[u8]) {
        let Ok(rec) = parse(data) else { return };
        let snap = rec.snapshot(None);
        let policy = crate::report::verdict::Policy::new(2, None);
        let report = crate::report::Report::build(
            &snap,
            &policy,
            &mut crate::symbolize::Symbolizer::default(),
        );
        for format in [crate::output::Format::Text, crate::output::Format::Json] {
            let _ = report.render(format, false);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut with_header = MAGIC.to_vec();
            with_header.extend_from_slice(&VERSION.to_le_bytes());
            with_header.extend_from_slice(&data);
            report_of(&data);
            report_of(&with_header);
        }

        #[test]
        fn damaged_records_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let mut data = sample();
            for (at, byte) in flips {
                let i = at % data.len();
                data[i] = byte;
            }
            let cut = cut % (data.len() + 1);
            report_of(&data[..cut]);
            report_of(&data);
        }

        #[test]
        fn recomputed_checksums_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            // Damage inside chunks whose checksum is then fixed: the decoder and the replay
            // see arbitrary entries.
            let mut data = sample();
            let mut pos = MAGIC.len() + 2;
            let mut chunks = Vec::new();
            while pos + 8 <= data.len() {
                let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
                chunks.push((pos, len));
                pos += 8 + len;
            }
            for (at, byte) in flips {
                let (start, len) = chunks[at % chunks.len()];
                if len > 0 {
                    data[start + 8 + (at / chunks.len()) % len] = byte;
                    let crc = crc32fast::hash(&data[start + 8..start + 8 + len]);
                    data[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
                }
            }
            report_of(&data);
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let data = sample();
        let err = |d: &[u8]| parse(d).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(b"hello world").contains("not a tracer record"));
        let mut newer = data.clone();
        newer[8] = 9;
        assert!(err(&newer).contains("version 9 is newer"));
        let mut flipped = data.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(
            err(&flipped).contains("checksum mismatch"),
            "{}",
            err(&flipped)
        );
        assert!(err(&data[..12]).contains("nothing was recorded"));
    }
}
