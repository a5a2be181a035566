//! The kernel's releases come in per-CPU batches ([`ReleaseBatch`]): as ring records once a
//! batch is full, and read in place from the `RELEASES` map before then. This merges the two
//! so that each release is taken once.
use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
};

use tracer_common::{RELEASE_BATCH, ReleaseBatch};

/// What was taken of one CPU's batches.
#[derive(Default)]
struct Cpu {
    /// Every batch before this one came from the ring.
    done: u64,
    /// Items taken in place from later batches, by batch.
    taken: BTreeMap<u64, usize>,
}

/// Which releases of each CPU's batches were taken.
#[derive(Default)]
pub struct Releases {
    cpus: HashMap<u32, Cpu>,
}

impl Releases {
    /// The items of a batch record from the ring not taken yet.
    pub fn sent(&mut self, b: &ReleaseBatch) -> Range<usize> {
        let c = self.cpus.entry(b.cpu).or_default();
        if b.number < c.done {
            return 0..0;
        }
        let from = c.taken.remove(&b.number).unwrap_or(0);
        c.done = b.number + 1;
        // Batches the ring lost (counted by the kernel) are not coming.
        c.taken.retain(|&g, _| g > b.number);
        let n = (b.n as usize).min(RELEASE_BATCH);
        from.min(n)..n
    }

    /// The items of CPU `cpu`'s batch, read in place, not taken yet.
    pub fn read_in_place(&mut self, cpu: u32, b: &ReleaseBatch) -> Range<usize> {
        let c = self.cpus.entry(cpu).or_default();
        if b.number < c.done {
            return 0..0;
        }
        let n = (b.n as usize).min(RELEASE_BATCH);
        let taken = c.taken.entry(b.number).or_default();
        let from = (*taken).min(n);
        *taken = (*taken).max(n);
        from..n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(cpu: u32, g: u64, n: u32) -> ReleaseBatch {
        let mut b: ReleaseBatch = bytemuck::Zeroable::zeroed();
        (b.cpu, b.number, b.n) = (cpu, g, n);
        b
    }

    #[test]
    fn each_release_is_taken_once() {
        let mut r = Releases::default();
        let full = RELEASE_BATCH as u32;
        // Read in place twice as the batch fills, then it arrives whole from the ring.
        assert_eq!(r.read_in_place(1, &batch(1, 0, 5)), 0..5);
        assert_eq!(r.read_in_place(1, &batch(1, 0, 9)), 5..9);
        assert_eq!(r.read_in_place(1, &batch(1, 0, 9)), 9..9);
        assert_eq!(r.sent(&batch(1, 0, full)), 9..RELEASE_BATCH);
        // The next batch: nothing read in place; a stale in-place read after it arrived.
        assert_eq!(r.sent(&batch(1, 1, full)), 0..RELEASE_BATCH);
        assert_eq!(r.read_in_place(1, &batch(1, 1, 3)), 0..0);
        // CPUs are apart.
        assert_eq!(r.read_in_place(0, &batch(0, 0, 2)), 0..2);
        assert_eq!(r.read_in_place(1, &batch(1, 2, 2)), 0..2);
    }

    #[test]
    fn in_place_reads_can_run_ahead_of_the_ring() {
        let mut r = Releases::default();
        let full = RELEASE_BATCH as u32;
        // Batch 2 read in place while batches 0 and 1 are still in the ring, not drained.
        assert_eq!(r.read_in_place(0, &batch(0, 2, 4)), 0..4);
        assert_eq!(r.sent(&batch(0, 0, full)), 0..RELEASE_BATCH);
        assert_eq!(r.sent(&batch(0, 1, full)), 0..RELEASE_BATCH);
        assert_eq!(r.read_in_place(0, &batch(0, 2, 6)), 4..6);
        assert_eq!(r.sent(&batch(0, 2, full)), 6..RELEASE_BATCH);
    }

    #[test]
    fn a_lost_batch_is_skipped() {
        let mut r = Releases::default();
        let full = RELEASE_BATCH as u32;
        assert_eq!(r.read_in_place(0, &batch(0, 0, 4)), 0..4);
        // Batch 0 never arrives (the ring was full): batch 1 does.
        assert_eq!(r.sent(&batch(0, 1, full)), 0..RELEASE_BATCH);
        assert_eq!(r.sent(&batch(0, 0, full)), 0..0);
    }
}
