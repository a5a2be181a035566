//! Host-side placeholder: the real programs are the `tracer` binary built for bpfel-unknown-none.
#![no_std]
