//! Fails early with a clear message when bpf-linker is missing (run `cargo xtask setup`), and
//! declares the `bpf_target_arch` cfg that aya-build passes.
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    if let Err(err) = which::which("bpf-linker") {
        panic!("bpf-linker not found on PATH ({err}); run `cargo xtask setup` first");
    }
}
