//! Fails early with a clear message when bpf-linker is missing (run `cargo xtask setup`).
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Err(err) = which::which("bpf-linker") {
        panic!("bpf-linker not found on PATH ({err}); run `cargo xtask setup` first");
    }
}
