//! Language runtimes read from the outside: Go (which goroutine created which, see [`go`]) and
//! CPython (the script's frames, see [`python`]). Each executable and library is analyzed once
//! (by file identity); what the kernel needs goes into its maps through [`Probes`], and the
//! records it sends back (Python frames and code objects) are kept here until the
//! acquisition they belong to arrives.
pub mod go;
pub mod python;

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use tracer_common::{PyCodeEvent, PyFrame, PyFramesEvent};

use crate::{
    probes::Probes,
    procmaps::{AddressSpace, FileId},
    unwind::{RawFrame, ScriptFrame},
};

use python::{PyBinary, PyCode};

/// What one file is to tracer.
#[derive(Clone)]
enum Analyzed {
    Neither,
    /// A Go executable whose goroutines are followed.
    Go,
    Python(Arc<PyBinary>),
    /// Links libpython: the interpreter is in the library (found once it is mapped).
    NeedsLibpython,
}

/// A CPython process being followed.
struct PyProc {
    /// The file holding the interpreter.
    file: FileId,
}

/// Runtime state of every traced process.
#[derive(Default)]
pub struct Runtimes {
    files: HashMap<FileId, Analyzed>,
    pythons: HashMap<u32, PyProc>,
    /// Processes linking libpython, not yet found mapped.
    pending: HashSet<u32>,
    codes: HashMap<(u32, u64), Arc<PyCode>>,
    /// The last Python stack of each thread: (acquisition id, frames).
    stacks: HashMap<(u32, u32), (u64, Vec<PyFrame>)>,
    /// What could not be followed, once per file (for reports).
    pub notes: Vec<String>,
}

/// The identity of the file at `path`.
fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

impl Runtimes {
    /// Prepares for a command about to be started: a Go binary's probes must be in place before
    /// its runtime creates the first goroutine.
    pub fn prepare(&mut self, probes: &mut Probes, program: &Path) {
        if let Some(id) = file_id(program) {
            self.analyze(probes, program, id);
        }
    }

    /// A process started a new program (or was first seen): follow its runtime.
    pub fn on_exec(&mut self, probes: &mut Probes, pid: u32, space: Option<&AddressSpace>) {
        self.forget(probes, pid);
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Some(id) = file_id(&exe) else {
            return;
        };
        let path = std::fs::read_link(&exe).unwrap_or(exe);
        match self.analyze(probes, &path, id) {
            Analyzed::Python(bin) => {
                if let Some(space) = space {
                    self.start_python(probes, pid, space, id, &bin);
                }
            }
            Analyzed::NeedsLibpython => {
                self.pending.insert(pid);
                if let Some(space) = space {
                    self.find_libpython(probes, pid, space);
                }
            }
            Analyzed::Go | Analyzed::Neither => {}
        }
    }

    /// Whether `pid` links libpython not yet seen mapped (its mappings are worth a look).
    pub fn pending(&self, pid: u32) -> bool {
        self.pending.contains(&pid)
    }

    /// Looks for the libpython a pending process maps.
    pub fn find_libpython(&mut self, probes: &mut Probes, pid: u32, space: &AddressSpace) {
        let lib = space.mappings.iter().find(|m| {
            m.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libpython3"))
        });
        let Some(lib) = lib else {
            return;
        };
        let (path, id) = (lib.path.clone(), lib.file);
        if let Analyzed::Python(bin) = self.analyze(probes, &path, id) {
            self.pending.remove(&pid);
            self.start_python(probes, pid, space, id, &bin);
        }
    }

    fn start_python(
        &mut self,
        probes: &mut Probes,
        pid: u32,
        space: &AddressSpace,
        file: FileId,
        bin: &PyBinary,
    ) {
        // The load bias, from the executable mapping of the file.
        let Some(m) = space.mappings.iter().find(|m| m.file == file) else {
            return;
        };
        let bias = m.start.wrapping_sub(m.pgoff).wrapping_sub(bin.text_delta);
        let runtime = bin.layout.runtime.wrapping_add(bias);
        let mut layout = bin.layout;
        layout.runtime = runtime;
        if let Err(e) = probes.python_process(pid, &layout) {
            self.note(format!("pid {pid}: Python frames are not shown ({e:#})"));
            return;
        }
        self.pythons.insert(pid, PyProc { file });
    }

    /// Analyzes a file once: Go probes attached, Python layouts kept; what cannot be
    /// followed is noted once.
    fn analyze(&mut self, probes: &mut Probes, path: &Path, id: FileId) -> Analyzed {
        if let Some(a) = self.files.get(&id) {
            return a.clone();
        }
        let analyzed = match analyze_file(path) {
            Ok(Found::Go(bin)) => {
                match probes.go_binary(path, &bin.layout, &bin.spawn_offsets, bin.exit_offset) {
                    Ok(()) => Analyzed::Go,
                    Err(e) => {
                        self.note(format!(
                            "{}: goroutines are not followed ({e:#})",
                            path.display()
                        ));
                        Analyzed::Neither
                    }
                }
            }
            Ok(Found::Python(bin)) => Analyzed::Python(Arc::new(bin)),
            Ok(Found::NeedsLibpython) => Analyzed::NeedsLibpython,
            Ok(Found::Neither) => Analyzed::Neither,
            Err(e) => {
                self.note(format!("{}: {e:#}", path.display()));
                Analyzed::Neither
            }
        };
        self.files.insert(id, analyzed.clone());
        analyzed
    }

    fn note(&mut self, note: String) {
        eprintln!("tracer: note: {note}");
        self.notes.push(note);
    }

    /// A process's image is gone (exit or exec).
    pub fn forget(&mut self, probes: &mut Probes, pid: u32) {
        self.pending.remove(&pid);
        if self.pythons.remove(&pid).is_some() {
            probes.forget_python(pid);
            self.codes.retain(|(p, _), _| *p != pid);
            self.stacks.retain(|(p, _), _| *p != pid);
        }
    }

    /// A thread's Python stack, sent just before the acquisitions of one syscall.
    pub fn on_frames(&mut self, ev: &PyFramesEvent) {
        let n = (ev.n as usize).min(ev.frames.len());
        self.stacks.insert(
            (ev.header.tgid, ev.tid),
            (ev.token, ev.frames[..n].to_vec()),
        );
    }

    /// A thread ended: its last Python stack is no longer needed.
    pub fn thread_ended(&mut self, pid: u32, tid: u32) {
        self.stacks.remove(&(pid, tid));
    }

    /// A code object described.
    pub fn on_code(&mut self, ev: &PyCodeEvent) {
        self.codes
            .insert((ev.header.tgid, ev.code), Arc::new(PyCode::from_event(ev)));
    }

    /// The stack of an acquisition whose Python stack has `token` (`AcquireEvent::py_stack`),
    /// with its Python frames in place of the interpreter's:
    /// the native frames above the interpreter's first (the C library, extension modules),
    /// then the script's. The interpreter's own C frames differ as it specializes its code:
    /// the same line of the script would be several sites.
    pub fn with_script(
        &mut self,
        pid: u32,
        tid: u32,
        token: u64,
        native: &[RawFrame],
    ) -> Option<Vec<RawFrame>> {
        if token == 0 {
            return None;
        }
        let proc = self.pythons.get(&pid)?;
        let (sent, frames) = self.stacks.get(&(pid, tid))?;
        if *sent != token || frames.is_empty() {
            return None;
        }
        let cut = native
            .iter()
            .position(|f| f.file == proc.file)
            .unwrap_or(native.len());
        let mut out = native[..cut].to_vec();
        for f in frames {
            let script = match self.codes.get(&(pid, f.code)) {
                Some(code) => ScriptFrame {
                    function: code.qualname.clone(),
                    line: python::line_of(&code.linetable, code.firstlineno, f.instr)
                        .map(|l| l.max(0) as u32),
                    file: code.filename.clone(),
                },
                None => ScriptFrame {
                    function: format!("<code {:#x}>", f.code),
                    file: String::new(),
                    line: None,
                },
            };
            out.push(RawFrame::script(script));
        }
        Some(out)
    }
}

/// What a file is.
enum Found {
    Neither,
    Go(go::GoBinary),
    Python(PyBinary),
    NeedsLibpython,
}

fn analyze_file(path: &Path) -> anyhow::Result<Found> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only mapping of an executable; a concurrent rewrite can at worst make the
    // analysis fail (tracer never trusts it for memory safety: every read is bounds-checked).
    let data = unsafe { memmap2::Mmap::map(&file) }?;
    let Ok(obj) = object::File::parse(&*data) else {
        return Ok(Found::Neither);
    };
    if go::is_go(&obj) {
        return Ok(go::analyze(&obj)?.map_or(Found::Neither, Found::Go));
    }
    if let Some(bin) = python::analyze(&obj)? {
        return Ok(Found::Python(bin));
    }
    Ok(if needs_libpython(&obj) {
        Found::NeedsLibpython
    } else {
        Found::Neither
    })
}

/// Whether the ELF's dynamic strings name libpython (a DT_NEEDED entry).
fn needs_libpython(obj: &object::File<'_>) -> bool {
    use object::{Object as _, ObjectSection as _};
    let Some(dynstr) = obj.section_by_name(".dynstr").and_then(|s| s.data().ok()) else {
        return false;
    };
    dynstr
        .split(|&b| b == 0)
        .any(|s| s.starts_with(b"libpython3"))
}
