//! Fails early with a clear message when bpf-linker is missing (run `cargo xtask setup`), and
//! declares the `bpf_target_arch` cfg that aya-build passes.
//!
//! bpf-linker's default `--bpf-expand-memcpy-in-order` also stops LLVM from expanding memset
//! into stores: every zeroed value of 16 bytes or more became a call to aya-ebpf's byte-by-byte
//! memset (about 80 instructions for 16 bytes, several on each acquisition's path).
fn main() {
    println!("cargo::rustc-link-arg=--disable-expand-memcpy-in-order");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    if let Err(err) = which::which("bpf-linker") {
        panic!("bpf-linker not found on PATH ({err}); run `cargo xtask setup` first");
    }
}
