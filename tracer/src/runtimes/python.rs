//! CPython 3.11 to 3.13: where an interpreter keeps its threads, frames and code objects (the
//! offsets the kernel reads, per minor version), and how a code object's instruction index
//! becomes a line. Offsets are CPython's internal structures for x86-64 release builds, read
//! from each version's own headers and checked against live processes: 3.11 (3.11.2 and
//! 3.11.7 identical), 3.12 (3.12.1), 3.13 (3.13.0). Other versions are said to be unsupported.
use anyhow::{Context as _, Result, anyhow};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};
use tracer_common::PyLayout;

/// What tracer needs from one file holding an interpreter (the executable, or libpython).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyBinary {
    /// Python 3.minor.
    pub minor: u8,
    /// The layout, `runtime` being `_PyRuntime`'s address in the file (add the load bias).
    pub layout: PyLayout,
    /// Virtual address minus file offset of the executable segment: a process's load bias is
    /// its mapping's start minus its file offset minus this.
    pub text_delta: u64,
}

/// Reads an interpreter's layout. `Ok(None)`: the file holds no CPython interpreter.
pub fn analyze(obj: &object::File<'_>) -> Result<Option<PyBinary>> {
    let symbol = |name: &str| {
        obj.dynamic_symbols()
            .chain(obj.symbols())
            .find(|s| s.name() == Ok(name) && s.address() != 0)
    };
    let Some(runtime) = symbol("_PyRuntime") else {
        return Ok(None);
    };
    let version = symbol("Py_Version")
        .and_then(|s| read_u32(obj, s.address()))
        .ok_or_else(|| anyhow!("Python before 3.11 (no Py_Version): frames are not shown"))?;
    let (major, minor) = (version >> 24, (version >> 16) & 0xff);
    let mut layout = layout_of(major, minor).ok_or_else(|| {
        anyhow!("Python {major}.{minor} is not supported (3.11 to 3.13 are): frames are not shown")
    })?;
    layout.runtime = runtime.address();
    Ok(Some(PyBinary {
        minor: minor as u8,
        layout,
        text_delta: text_delta(obj).context("no executable segment")?,
    }))
}

/// The interpreter structures' offsets of Python `major.minor` (x86-64).
pub fn layout_of(major: u32, minor: u32) -> Option<PyLayout> {
    let common = PyLayout {
        runtime: 0,
        interpreters_head: 40,
        interp_next: 0,
        interp_threads_head: 0,
        tstate_next: 8,
        tstate_native_thread_id: 0,
        tstate_cframe: 56,
        cframe_current_frame: 0,
        frame_code: 0,
        frame_previous: 8,
        frame_instr: 56,
        frame_owner: 70,
        code_firstlineno: 68,
        code_filename: 112,
        code_qualname: 128,
        code_linetable: 136,
        code_adaptive: 0,
        unicode_state: 32,
        unicode_length: 16,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        bytes_size: 16,
        bytes_data: 32,
    };
    Some(match (major, minor) {
        (3, 11) => PyLayout {
            interp_threads_head: 16,
            tstate_native_thread_id: 160,
            cframe_current_frame: 8,
            frame_code: 32,
            frame_previous: 48,
            frame_owner: 69,
            code_firstlineno: 72,
            code_adaptive: 184,
            unicode_ascii_data: 48,
            unicode_compact_data: 72,
            ..common
        },
        (3, 12) => PyLayout {
            interp_threads_head: 72,
            tstate_native_thread_id: 144,
            code_adaptive: 192,
            ..common
        },
        (3, 13) => PyLayout {
            interpreters_head: 632,
            interp_next: 7264,
            interp_threads_head: 7344,
            tstate_native_thread_id: 160,
            // The current frame is in the thread state itself.
            tstate_cframe: 72,
            cframe_current_frame: u32::MAX,
            code_adaptive: 200,
            ..common
        },
        _ => return None,
    })
}

fn read_u32(obj: &object::File<'_>, addr: u64) -> Option<u32> {
    let s = obj
        .sections()
        .find(|s| s.address() <= addr && addr + 4 <= s.address() + s.size())?;
    let data = s.data().ok()?;
    let at = (addr - s.address()) as usize;
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// `p_vaddr - p_offset` of the executable PT_LOAD segment.
fn text_delta(obj: &object::File<'_>) -> Option<u64> {
    obj.segments().find_map(|seg| match seg.flags() {
        object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0 => {
            Some(seg.address().wrapping_sub(seg.file_range().0))
        }
        _ => None,
    })
}

/// A Python `str` copied by the kernel: `bytes` of its data, `state` its kind bits.
pub fn decode_str(bytes: &[u8], state: u32) -> String {
    const COMPACT: u32 = 0x20;
    const ASCII: u32 = 0x40;
    if state & COMPACT == 0 {
        return String::new();
    }
    if state & ASCII != 0 {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match (state >> 2) & 7 {
        1 => bytes.iter().map(|&b| b as char).collect(),
        2 => char::decode_utf16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        4 => bytes
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => String::new(),
    }
}

/// The line of instruction `index` (code units) in a code object with this location table
/// (PEP 626/657, the same format in 3.11 to 3.13). A negative index is a frame not started
/// yet: its first line. `None`: no line (or the table was cut short).
pub fn line_of(linetable: &[u8], firstlineno: i32, index: i64) -> Option<i32> {
    if index < 0 {
        return Some(firstlineno);
    }
    let mut bytes = linetable.iter().copied();
    let mut next = || bytes.next();
    let varint = |next: &mut dyn FnMut() -> Option<u8>| -> Option<u32> {
        let mut b = next()?;
        let mut value = (b & 63) as u32;
        let mut shift = 0;
        while b & 64 != 0 {
            b = next()?;
            shift += 6;
            value |= ((b & 63) as u32).checked_shl(shift)?;
        }
        Some(value)
    };
    let (mut unit, mut line) = (0i64, firstlineno);
    loop {
        let first = next()?;
        if first & 0x80 == 0 {
            return None;
        }
        let (code, len) = ((first >> 3) & 15, (first & 7) as i64 + 1);
        let here = match code {
            15 => None,
            14 => {
                let u = varint(&mut next)?;
                line += signed(u);
                for _ in 0..3 {
                    varint(&mut next)?;
                }
                Some(line)
            }
            13 => {
                let u = varint(&mut next)?;
                line += signed(u);
                Some(line)
            }
            10..=12 => {
                line += code as i32 - 10;
                next()?;
                next()?;
                Some(line)
            }
            _ => {
                next()?;
                Some(line)
            }
        };
        if index < unit + len {
            return here;
        }
        unit += len;
    }
}

fn signed(u: u32) -> i32 {
    if u & 1 != 0 {
        -((u >> 1) as i32)
    } else {
        (u >> 1) as i32
    }
}

/// A code object as the kernel described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyCode {
    pub qualname: String,
    pub filename: String,
    pub firstlineno: i32,
    pub linetable: Vec<u8>,
}

impl PyCode {
    /// From the kernel's record.
    pub fn from_event(ev: &tracer_common::PyCodeEvent) -> Self {
        let cut = |b: &[u8], n: u32| b[..(n as usize).min(b.len())].to_vec();
        Self {
            qualname: decode_str(&cut(&ev.qualname, ev.name_len), ev.name_state),
            filename: decode_str(&cut(&ev.filename, ev.file_len), ev.file_state),
            firstlineno: ev.firstlineno,
            linetable: cut(&ev.linetable, ev.linetable_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `co_linetable` and `co_positions()` lines of a 3.11 function (first line 2):
    /// `def f(path):\n    x = 1\n    return open(path)`.
    #[test]
    fn lines_from_location_tables() {
        let table = [
            128, 0, 216, 8, 9, 128, 65, 221, 11, 15, 144, 4, 137, 58, 140, 58, 208, 4, 21,
        ];
        let lines: Vec<_> = (0..18).map(|i| line_of(&table, 2, i).unwrap()).collect();
        assert_eq!(
            lines,
            [2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
        );
        assert_eq!(
            line_of(&table, 2, -1),
            Some(2),
            "not started: its first line"
        );
        assert_eq!(line_of(&table, 2, 18), None, "past the end");
        // LONG with a negative delta; NONE has no line; a table cut short has none.
        let long = [0x80 | (14 << 3), 0x05, 0, 1, 1, 0x80 | (15 << 3)];
        assert_eq!(line_of(&long, 10, 0), Some(8));
        assert_eq!(line_of(&long, 10, 1), None);
        assert_eq!(line_of(&[0x80 | (13 << 3), 0x40], 1, 0), None);
    }

    #[test]
    fn strings_of_every_kind() {
        assert_eq!(decode_str(b"open_all", 0x20 | 0x40 | 4), "open_all");
        assert_eq!(decode_str(&[0x77, 0xf6], 0x20 | 4), "w\u{f6}");
        assert_eq!(decode_str(&[0xc9, 0x03, 0x41, 0x00], 0x20 | 8), "\u{3c9}A");
        assert_eq!(
            decode_str(&[0x00, 0xf6, 0x01, 0x00], 0x20 | 16),
            "\u{1f600}"
        );
        assert_eq!(decode_str(b"x", 0), "", "not compact");
    }

    #[test]
    fn debian_python_is_understood() {
        // Debian 12's python3 (setup installs it).
        let data = std::fs::read("/usr/bin/python3.11").expect("reading python3.11");
        let obj = object::File::parse(&*data).expect("an ELF file");
        let bin = analyze(&obj)
            .expect("analyzing python3.11")
            .expect("python3.11 holds an interpreter");
        assert_eq!(bin.minor, 11);
        assert_eq!(bin.text_delta % 4096, 0);
    }
}
