//! Stack frames as reports show them: symbolized (function, file:line, inlined frames) and
//! classified as the program's own code or a library's. Shared by reports and records.
use std::{collections::HashMap, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{procmaps::FileId, symbolize::Symbolizer, unwind::RawFrame};

/// One stack frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Address in the process, hex.
    pub address: String,
    /// Address in the module file (for offline symbolization), hex.
    pub offset: String,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub module: String,
    pub inlined: bool,
    /// Part of the program's own code rather than a library, runtime or toolchain.
    pub own_code: bool,
}

/// A frame's identity in source terms (module and offset when there are no symbols).
pub fn source_location(f: &Frame) -> String {
    match (&f.function, &f.file, f.line) {
        (Some(func), Some(file), line) => format!("{func}@{file}:{}", line.unwrap_or(0)),
        (Some(func), None, _) => format!("{func}@{}+{}", f.module, f.offset),
        _ => format!("{}+{}", f.module, f.offset),
    }
}

/// Symbolizes a stack; each address may become several frames through inlining.
pub fn symbolize_stack(raw: &[RawFrame], symbolizer: &mut Symbolizer) -> Vec<Frame> {
    let mut by_module: HashMap<(Arc<Path>, FileId), Vec<u64>> = HashMap::new();
    for f in raw {
        if let Some(p) = &f.path {
            by_module
                .entry((p.clone(), f.file))
                .or_default()
                .push(f.svma);
        }
    }
    let mut resolved: HashMap<(Arc<Path>, u64), Arc<[crate::symbolize::SymFrame]>> = HashMap::new();
    for ((path, file), addrs) in by_module {
        for (addr, syms) in addrs.iter().zip(symbolizer.symbolize(&path, file, &addrs)) {
            resolved.insert((path.clone(), *addr), syms);
        }
    }
    let mut out = Vec::new();
    for f in raw {
        if let Some(script) = &f.script {
            let mut frame = Frame {
                address: "0x0".into(),
                offset: "0x0".into(),
                function: Some(script.function.clone()),
                file: (!script.file.is_empty()).then(|| script.file.clone()),
                line: script.line,
                module: SCRIPT_MODULE.into(),
                inlined: false,
                own_code: false,
            };
            frame.own_code = is_own_code(&frame);
            out.push(frame);
            continue;
        }
        let module = f
            .path
            .as_ref()
            .map_or_else(|| "[unknown]".to_string(), |p| p.display().to_string());
        let syms = f
            .path
            .as_ref()
            .and_then(|p| resolved.get(&(p.clone(), f.svma)).cloned());
        match syms {
            Some(syms) => {
                for s in syms.iter() {
                    let mut frame = Frame {
                        address: format!("{:#x}", f.avma),
                        offset: format!("{:#x}", f.svma),
                        function: s.function.clone(),
                        file: s.file.clone(),
                        line: s.line,
                        module: module.clone(),
                        inlined: s.inlined,
                        own_code: false,
                    };
                    frame.own_code = is_own_code(&frame);
                    out.push(frame);
                }
            }
            None => out.push(Frame {
                address: format!("{:#x}", f.avma),
                offset: format!("{:#x}", f.svma),
                function: None,
                file: None,
                line: None,
                module,
                inlined: false,
                own_code: false,
            }),
        }
    }
    // The C `main` a Rust binary's runtime calls the program's main through is not the program.
    for i in 1..out.len() {
        let shim = out[i].function.as_deref() == Some("main")
            && out[i].file.is_none()
            && out[i - 1]
                .function
                .as_deref()
                .is_some_and(|f| f.starts_with("std::rt::lang_start"));
        if shim {
            out[i].own_code = false;
        }
    }
    out
}

/// The module of an interpreted script's frames.
pub const SCRIPT_MODULE: &str = "[python]";

/// Source paths of toolchains, package caches, system headers and interpreters' libraries.
const LIBRARY_SOURCE_MARKERS: &[&str] = &[
    "/lib/python3",
    "/site-packages/",
    "/dist-packages/",
    "/rustc/",
    "/.cargo/registry/",
    "/.cargo/git/",
    "/cargo/registry/",
    "/.rustup/toolchains/",
    "/usr/lib/go",
    "/usr/local/go/",
    "/go/pkg/mod/",
    // Debian's Go library packages (golang-*-dev).
    "/usr/share/gocode/",
    "/usr/include/",
    "/usr/lib/gcc/",
];

/// Directories of system libraries.
const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
];

/// Function-name prefixes of language runtimes and standard libraries (used without file info).
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    "runtime.",
    "syscall.",
    "internal/",
    "os.",
    "net.",
    "net/",
    "io.",
    "bufio.",
    "__libc_",
    "_start",
    "__GI_",
    // Go's cgo runtime (C code compiled into every cgo binary).
    "_cgo_",
    "x_cgo_",
    "crosscall",
    "threadentry",
];

/// Whether a frame belongs to the program's own code rather than a library or runtime.
pub fn is_own_code(f: &Frame) -> bool {
    let Some(function) = &f.function else {
        return false;
    };
    if SYSTEM_LIBRARY_DIRS.iter().any(|d| f.module.starts_with(d)) {
        return false;
    }
    match &f.file {
        Some(file) => {
            // Python's frozen modules and compiled strings.
            !file.starts_with('<')
                && !LIBRARY_SOURCE_MARKERS.iter().any(|m| file.contains(m))
                // glibc and other system sources are recorded relative to their build tree.
                && !file.starts_with("./")
                && !file.starts_with("../")
        }
        None => !RUNTIME_PREFIXES.iter().any(|p| function.starts_with(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>, module: &str) -> Frame {
        Frame {
            address: "0x1".into(),
            offset: "0x1".into(),
            function: Some(function.into()),
            file: file.map(Into::into),
            line: Some(1),
            module: module.into(),
            inlined: false,
            own_code: false,
        }
    }

    #[test]
    fn own_code_classification() {
        assert!(is_own_code(&frame(
            "demo::leak",
            Some("/src/demo/main.rs"),
            "/src/demo/target/demo"
        )));
        assert!(!is_own_code(&frame(
            "std::fs::File::open",
            Some("/rustc/abc/library/std/src/fs.rs"),
            "/src/demo/target/demo"
        )));
        assert!(!is_own_code(&frame(
            "__libc_open64",
            Some("../sysdeps/unix/open64.c"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        )));
        assert!(!is_own_code(&frame(
            "os.OpenFile",
            Some("/usr/lib/go-1.19/src/os/file.go"),
            "/tmp/goleak"
        )));
        assert!(!is_own_code(&frame(
            "github.com/lib/pq.dial",
            Some("/usr/share/gocode/src/github.com/lib/pq/conn.go"),
            "/tmp/goleak"
        )));
        assert!(is_own_code(&frame(
            "main.leak",
            Some("/tmp/leak.go"),
            "/tmp/goleak"
        )));
        assert!(!is_own_code(&frame("runtime.goexit", None, "/tmp/goleak")));
        assert!(is_own_code(&frame("leak_file", None, "/tmp/leakc")));
    }
}
