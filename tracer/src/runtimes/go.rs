//! Go binaries: where the runtime keeps the current goroutine and its ancestry, read from the
//! binary itself (symbols, DWARF, code) for the kernel's uprobes on goroutine creation and
//! exit. Works for Go 1.19+ binaries with their symbol table and DWARF (the default build);
//! a stripped one is said so.
use anyhow::{Context as _, Result, anyhow, bail};
use gimli::{EndianSlice, RunTimeEndian};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use tracer_common::GoLayout;

/// What tracer needs from one Go binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    pub layout: GoLayout,
    /// File offsets of the RET instructions of `runtime.newproc1` (uprobes there).
    pub spawn_offsets: Vec<u64>,
    /// File offset of `runtime.goexit0` (a uprobe at its entry).
    pub exit_offset: u64,
}

/// Whether `data` is a Go executable (its build info section).
pub fn is_go(obj: &object::File<'_>) -> bool {
    obj.section_by_name(".go.buildinfo").is_some()
}

/// Reads a Go binary's layout. `Ok(None)`: not a Go binary; an error says why a Go binary
/// cannot be followed (no symbols, no DWARF, an unknown runtime).
pub fn analyze(obj: &object::File<'_>) -> Result<Option<GoBinary>> {
    if !is_go(obj) {
        return Ok(None);
    }
    let symbol = |name: &str| obj.symbols().find(|s| s.name() == Ok(name));
    let newproc1 = symbol("runtime.newproc1").ok_or_else(|| {
        anyhow!("it has no symbol table (built with -ldflags=-s?): goroutines are not followed")
    })?;
    let goexit0 = symbol("runtime.goexit0").context("no runtime.goexit0 symbol")?;
    let offsets = dwarf_offsets(obj)?;
    let tls_g = tls_offset(obj, symbol("runtime.tlsg").map(|s| s.address()));
    let rets = ret_addresses(obj, newproc1.address(), newproc1.size())?;
    if rets.is_empty() {
        bail!("runtime.newproc1 has no RET instruction");
    }
    let spawn_offsets = rets
        .into_iter()
        .map(|a| file_offset(obj, a))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(GoBinary {
        layout: GoLayout {
            tls_g,
            g_goid: offsets.g_goid,
            g_m: offsets.g_m,
            g_sched_bp: offsets.g_sched + offsets.gobuf_bp,
            g_parent_goid: offsets.g_parent_goid.unwrap_or(0),
            m_g0: offsets.m_g0,
            m_curg: offsets.m_curg,
        },
        spawn_offsets,
        exit_offset: file_offset(obj, goexit0.address())?,
    }))
}

/// The fields of the runtime's structures tracer reads.
#[derive(Debug, Default)]
struct Offsets {
    g_goid: u32,
    g_m: u32,
    g_sched: u32,
    g_parent_goid: Option<u32>,
    gobuf_bp: u32,
    m_g0: u32,
    m_curg: u32,
}

/// The DWARF sections reading compile units may need.
const SECTIONS: &[gimli::SectionId] = &[
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugAddr,
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugLine,
    gimli::SectionId::DebugLineStr,
    gimli::SectionId::DebugLoc,
    gimli::SectionId::DebugLocLists,
    gimli::SectionId::DebugRanges,
    gimli::SectionId::DebugRngLists,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugStrOffsets,
];

/// Member offsets of `runtime.g`, `runtime.m` and `runtime.gobuf` from the binary's DWARF.
fn dwarf_offsets(obj: &object::File<'_>) -> Result<Offsets> {
    let endian = RunTimeEndian::Little;
    if obj.section_by_name(".debug_info").is_none() {
        bail!("it has no DWARF (built with -ldflags=-w?): goroutines are not followed");
    }
    // Every section gimli may ask for, decompressed once (Go compresses its DWARF).
    let sections: Vec<(gimli::SectionId, Vec<u8>)> = SECTIONS
        .iter()
        .map(|&id| {
            let data = obj
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .map(|d| d.into_owned())
                .unwrap_or_default();
            (id, data)
        })
        .collect();
    let dwarf = gimli::Dwarf::load(|id| -> Result<EndianSlice<'_, RunTimeEndian>> {
        let data = sections
            .iter()
            .find(|(s, _)| *s == id)
            .map_or(&[][..], |(_, d)| d.as_slice());
        Ok(EndianSlice::new(data, endian))
    })?;
    let mut found: Vec<(String, Vec<(String, u32)>)> = Vec::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        // The structure being read, and its depth (its members are one deeper).
        let mut current: Option<(usize, isize)> = None;
        while let Some(entry) = entries.next_dfs()? {
            let depth = entry.depth();
            if current.is_some_and(|(_, d)| depth <= d) {
                current = None;
            }
            match entry.tag() {
                gimli::DW_TAG_structure_type => {
                    if let Some(name) = entry.attr_value(gimli::DW_AT_name) {
                        let name = dwarf
                            .attr_string(&unit, name)?
                            .to_string_lossy()
                            .into_owned();
                        if matches!(name.as_str(), "runtime.g" | "runtime.m" | "runtime.gobuf") {
                            found.push((name, Vec::new()));
                            current = Some((found.len() - 1, depth));
                        }
                    }
                }
                gimli::DW_TAG_member => {
                    if let Some((i, d)) = current
                        && depth == d + 1
                        && let (Some(name), Some(loc)) = (
                            entry.attr_value(gimli::DW_AT_name),
                            entry.attr_value(gimli::DW_AT_data_member_location),
                        )
                        && let Some(off) = loc.udata_value()
                    {
                        let name = dwarf
                            .attr_string(&unit, name)?
                            .to_string_lossy()
                            .into_owned();
                        found[i].1.push((name, off as u32));
                    }
                }
                _ => {}
            }
        }
    }
    let member = |ty: &str, field: &str| -> Option<u32> {
        found
            .iter()
            .filter(|(t, _)| t == ty)
            .flat_map(|(_, m)| m)
            .find(|(n, _)| n == field)
            .map(|(_, o)| *o)
    };
    let need = |ty: &str, field: &str| {
        member(ty, field).ok_or_else(|| anyhow!("its DWARF describes no {ty}.{field}"))
    };
    Ok(Offsets {
        g_goid: need("runtime.g", "goid")?,
        g_m: need("runtime.g", "m")?,
        g_sched: need("runtime.g", "sched")?,
        g_parent_goid: member("runtime.g", "parentGoid"),
        gobuf_bp: need("runtime.gobuf", "bp")?,
        m_g0: need("runtime.m", "g0")?,
        m_curg: need("runtime.m", "curg")?,
    })
}

/// Where the g pointer is relative to the thread pointer: -8 for a Go-only binary; with other
/// thread-local data (cgo and C `__thread` variables), `runtime.tlsg` in the TLS block, which
/// ends at the thread pointer (x86-64 TLS variant II).
fn tls_offset(obj: &object::File<'_>, tlsg: Option<u64>) -> i64 {
    let (Some(tlsg), Some((memsz, align))) = (tlsg, pt_tls(obj)) else {
        return -8;
    };
    let align = align.max(1);
    let block = memsz.div_ceil(align) * align;
    tlsg as i64 - block as i64
}

/// The PT_TLS segment's (memsz, align), if any.
fn pt_tls(obj: &object::File<'_>) -> Option<(u64, u64)> {
    use object::read::elf::ProgramHeader as _;
    let elf = match obj {
        object::File::Elf64(elf) => elf,
        _ => return None,
    };
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == object::elf::PT_TLS)
        .map(|ph| (ph.p_memsz(endian), ph.p_align(endian)))
}

/// Addresses of the RET instructions of the function at `start` (`size` bytes). Go pads
/// functions with INT3 and keeps no data in .text, so a linear sweep decodes exactly.
fn ret_addresses(obj: &object::File<'_>, start: u64, size: u64) -> Result<Vec<u64>> {
    let text = obj
        .sections()
        .find(|s| s.address() <= start && start < s.address() + s.size())
        .context("the function is in no section")?;
    let data = text.data()?;
    let from = (start - text.address()) as usize;
    let bytes = data
        .get(from..from + size as usize)
        .context("the function lies outside its section")?;
    let mut rets = Vec::new();
    for insn in Decoder::with_ip(64, bytes, start, DecoderOptions::NONE) {
        if insn.mnemonic() == Mnemonic::Ret {
            rets.push(insn.ip());
        }
    }
    Ok(rets)
}

/// The file offset of a virtual address (what uprobes attach at).
fn file_offset(obj: &object::File<'_>, addr: u64) -> Result<u64> {
    let s = obj
        .sections()
        .find(|s| s.address() <= addr && addr < s.address() + s.size())
        .with_context(|| format!("address {addr:#x} is in no section"))?;
    let (offset, _) = s.file_range().context("a section without file data")?;
    Ok(addr - s.address() + offset)
}
