//! Addresses to functions, source files and lines (with inlined frames and demangled names),
//! from the ELF files alone: works after the traced process has exited.
use std::{collections::HashMap, path::Path, sync::Arc};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer as Blaze,
    source::{Elf, Source},
};

use crate::procmaps::FileId;

/// One symbolized frame (an address can expand into several through inlining).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Inlined into the frame that follows it.
    pub inlined: bool,
}

/// Caching symbolizer, keyed by file identity (a binary rebuilt at the same path is another
/// file).
pub struct Symbolizer {
    blaze: Blaze,
    cache: HashMap<(Arc<Path>, FileId, u64), Arc<[SymFrame]>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self {
            blaze: Blaze::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            cache: HashMap::new(),
        }
    }
}

impl Symbolizer {
    /// Symbolizes file addresses of one ELF file, `file`; each result lists frames innermost
    /// first. When the path now holds another file, nothing is symbolized (no wrong names).
    pub fn symbolize(
        &mut self,
        path: &Arc<Path>,
        file: FileId,
        svmas: &[u64],
    ) -> Vec<Arc<[SymFrame]>> {
        let missing: Vec<u64> = svmas
            .iter()
            .copied()
            .filter(|a| !self.cache.contains_key(&(path.clone(), file, *a)))
            .collect();
        if !missing.is_empty() && !file.is_at(path) {
            for addr in &missing {
                self.cache.insert(
                    (path.clone(), file, *addr),
                    vec![SymFrame::default()].into(),
                );
            }
        } else if !missing.is_empty() {
            let src = Source::Elf(Elf::new(path.to_path_buf()));
            let results = self
                .blaze
                .symbolize(&src, Input::VirtOffset(&missing))
                .unwrap_or_default();
            for (i, addr) in missing.iter().enumerate() {
                let frames = match results.get(i) {
                    Some(Symbolized::Sym(sym)) => expand(sym),
                    _ => vec![SymFrame::default()],
                };
                self.cache
                    .insert((path.clone(), file, *addr), frames.into());
            }
        }
        svmas
            .iter()
            .map(|a| self.cache[&(path.clone(), file, *a)].clone())
            .collect()
    }
}

/// A symbol and its inlined callees as frames, innermost first. blazesym gives the outer
/// function with the location of its call into the first inlined function, then each inlined
/// function with the location inside it.
fn expand(sym: &blazesym::symbolize::Sym<'_>) -> Vec<SymFrame> {
    let code = |ci: Option<&blazesym::symbolize::CodeInfo<'_>>| match ci {
        Some(ci) => (Some(ci.to_path().display().to_string()), ci.line),
        None => (None, None),
    };
    let mut frames = Vec::with_capacity(sym.inlined.len() + 1);
    for f in sym.inlined.iter().rev() {
        let (file, line) = code(f.code_info.as_ref());
        frames.push(SymFrame {
            function: Some(f.name.to_string()),
            file,
            line,
            inlined: true,
        });
    }
    let (file, line) = code(sym.code_info.as_deref());
    frames.push(SymFrame {
        function: Some(sym.name.to_string()),
        file,
        line,
        inlined: false,
    });
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn symbolizes_own_function_with_line() {
        let exe: Arc<Path> = Arc::from(std::env::current_exe().unwrap().as_path());
        let space = crate::procmaps::read_proc_maps(std::process::id(), 1).unwrap();
        let addr = marker as *const () as usize as u64;
        let m = space.find(addr).unwrap().clone();
        let svma = crate::unwind::file_address(&m, addr).unwrap();
        let frames = Symbolizer::default().symbolize(&exe, m.file, &[svma]);
        // Another file at that path: nothing, rather than another file's names.
        let other = crate::procmaps::FileId { dev: 1, ino: 1 };
        assert!(
            Symbolizer::default().symbolize(&exe, other, &[svma])[0][0]
                .function
                .is_none()
        );
        let f = frames[0].last().unwrap();
        assert!(f.function.as_deref().unwrap().ends_with("marker"), "{f:?}");
        assert!(
            f.file.as_deref().unwrap().ends_with("symbolize.rs"),
            "{f:?}"
        );
        assert!(f.line.is_some());
    }
}
