//! exec-fixed: exec-inherit's twin; secrets are opened close-on-exec, so the helper gets none.
use std::{io, path::Path};

use demos::secrets;

/// Opens one secret file for the service's lifetime.
fn load_secret(path: &Path) -> io::Result<i32> {
    let path = secrets::c_path(path)?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn main() -> io::Result<()> {
    secrets::run(load_secret)
}
