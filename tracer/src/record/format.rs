//! The record's on-disk format, versioned: what [`super`] writes and reads. Its types are its
//! own (not the report's), so that either can change without the other noticing; the
//! accounting's journal entries ([`Change`]) are the event-sourced history itself.
//!
//! Layout: the 8 bytes `TRACEREC`, a little-endian u16 format [`VERSION`], then chunks. A chunk
//! is a little-endian u32 payload length, the payload's CRC-32 (u32), and the payload:
//! [`Entry`]s encoded one after the other with postcard (varints).
use serde::{Deserialize, Serialize};

use crate::{
    accounting::{Change, SiteId},
    frames::Frame,
    health::Health,
};

/// First bytes of every record.
pub const MAGIC: &[u8; 8] = b"TRACEREC";
/// Version of the layout and of [`Entry`]; readers refuse newer ones.
pub const VERSION: u16 = 4;
/// Largest chunk a reader accepts (a larger length means corruption).
pub const MAX_CHUNK: u32 = 64 << 20;

/// One entry of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// First entry: what was traced.
    Begin(Begin),
    /// A change to the accounting.
    Change(Change),
    /// A call site's frames, symbolized.
    Site(SiteId, Vec<SiteFrame>),
    /// A module the frames refer to, with its GNU build id (hex) when it has one.
    Module(String, Option<String>),
    /// Loss and health counters so far (every second, and at the end), at `ts_ns`.
    Totals { ts_ns: u64, health: Health },
    /// The record reached `--max-size` here: later changes are not in it.
    Stopped { bytes: u64, ts_ns: u64 },
    /// Last entry: how the run ended.
    End(End),
}

/// What was traced, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin {
    pub tool_version: String,
    pub command: Vec<String>,
    pub started_ns: u64,
    pub hostname: String,
    pub kernel: String,
    /// Attached to running processes (`--pid`).
    pub attached: bool,
    /// A live mode (watching), as opposed to `tracer run`.
    pub live: bool,
}

/// How the run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub exit_code: i32,
    pub duration_ms: u64,
    pub now_ns: u64,
    pub coverage_lost: Vec<String>,
}

/// A frame of a recorded call site: symbolized at record time, with its addresses, so that it
/// can be symbolized again elsewhere from the module (by build id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteFrame {
    /// Address in the process.
    pub address: u64,
    /// Address in the module file.
    pub offset: u64,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub module: String,
    pub inlined: bool,
    pub own_code: bool,
}

impl From<&Frame> for SiteFrame {
    fn from(f: &Frame) -> Self {
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0);
        Self {
            address: hex(&f.address),
            offset: hex(&f.offset),
            function: f.function.clone(),
            file: f.file.clone(),
            line: f.line,
            module: f.module.clone(),
            inlined: f.inlined,
            own_code: f.own_code,
        }
    }
}

impl From<&SiteFrame> for Frame {
    fn from(f: &SiteFrame) -> Self {
        Self {
            address: format!("{:#x}", f.address),
            offset: format!("{:#x}", f.offset),
            function: f.function.clone(),
            file: f.file.clone(),
            line: f.line,
            module: f.module.clone(),
            inlined: f.inlined,
            own_code: f.own_code,
        }
    }
}
