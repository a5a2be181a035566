//! exec-inherit: secrets opened without O_CLOEXEC are inherited by every program the service
//! starts. The service closes its own copies, but its helper holds all `--count` of them until it
//! exits.
use std::{io, path::Path};

use demos::secrets;

/// Opens one secret file for the service's lifetime.
fn load_secret(path: &Path) -> io::Result<i32> {
    let path = secrets::c_path(path)?;
    // BUG: no O_CLOEXEC, so the descriptor survives into programs started later.
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) }; // tracer-demo: leak site
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn main() -> io::Result<()> {
    secrets::run(load_secret)
}
