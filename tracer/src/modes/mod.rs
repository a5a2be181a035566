//! What tracer does, one module per command: [`run`] a command, [`watch`] live processes,
//! [`record`] for later, [`report`] a record, [`doctor`] the machine.
pub mod doctor;
pub mod record;
pub mod report;
pub mod run;
pub mod watch;

use std::path::Path;

use crate::record::Summary;

/// Says what a finished record holds (and how to report it).
pub fn print_recorded(path: &Path, s: &Summary) {
    // The command to paste, quoted for the shell.
    let shown = path.to_string_lossy();
    let quoted = shlex::try_quote(&shown).unwrap_or(shown.clone());
    if let Some(why) = &s.failed {
        eprintln!(
            "tracer: the record {} is incomplete ({why}): `tracer report {quoted}` shows what \
             was written before",
            path.display(),
        );
        return;
    }
    let dropped = if s.dropped > 0 {
        format!(
            " ({} later changes left out: --max-size reached)",
            s.dropped
        )
    } else {
        String::new()
    };
    eprintln!(
        "tracer: recorded {} entries ({} bytes) to {}{dropped}; `tracer report {quoted}` shows \
         them",
        s.entries,
        s.bytes,
        path.display(),
    );
}
