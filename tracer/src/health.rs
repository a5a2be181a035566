//! Health figures: what the kernel and the collector counted and dropped. Shown in every report
//! (`events`), written to records every second, never silently lost.
use serde::{Deserialize, Serialize};

/// Kernel counters summed over CPUs ([`tracer_common::counter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub acquired: u64,
    pub released: u64,
    pub events_lost: u64,
    pub fd_map_full: u64,
    pub stack_unreadable: u64,
    pub inflight_lost: u64,
    pub proc_map_full: u64,
    pub pending_lost: u64,
}

impl Counters {
    /// Every way the kernel dropped an event or an accounting entry.
    pub fn lost(&self) -> u64 {
        self.events_lost
            + self.fd_map_full
            + self.inflight_lost
            + self.proc_map_full
            + self.pending_lost
    }
}

/// Mismatches found when aligning a process with the kernel's map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// Descriptors the kernel holds that no event told us about (lost acquire events).
    pub unseen_acquisitions: u64,
    /// Descriptors we held that the kernel no longer has (lost release events).
    pub unseen_releases: u64,
}

/// The collector's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Ring records that failed to decode.
    pub bad_records: u64,
    /// Acquisitions that arrived without a stack copy.
    pub stacks_missing: u64,
    /// Stack copies that could not be unwound: the process's mappings were unknown.
    pub stacks_unmapped: u64,
    /// Mapping records the kernel dropped.
    pub mappings_lost: u64,
    /// Acquisitions that failed on a descriptor limit.
    pub limit_hits: u64,
    /// close() calls on descriptors that were not open.
    pub bad_closes: u64,
    /// Acquisitions whose call site the kernel recognized from the stack memo.
    pub memo_hits: u64,
    /// CPU time the collector thread used (decoding, unwinding, accounting), nanoseconds.
    pub collector_cpu_ns: u64,
    /// Differences repaired by reconciling with the kernel's map.
    pub reconciled: Reconciled,
}

/// Everything counted, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub counters: Counters,
    pub stats: Stats,
}

impl Health {
    /// Every drop, and every record that did not decode.
    pub fn lost(&self) -> u64 {
        self.counters.lost() + self.stats.bad_records
    }
}
