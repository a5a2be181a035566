//! Stack memoization: teaches the kernel the stacks already unwound, so a repeated call site costs
//! a small record instead of a stack copy (exact; see `tracer_common::MemoKey`).
use std::collections::{HashMap, HashSet};

use tracer_common::{MEMO_WORDS, MemoKey, MemoSig, memo_hash};

use crate::{accounting::SiteId, probes::Probes};

/// What userspace taught the kernel, per process (to forget it when the process exits).
#[derive(Default)]
pub struct Memo {
    sigs: HashMap<MemoKey, Vec<u16>>,
    stacks: HashSet<u64>,
    owned: HashMap<u32, (Vec<MemoKey>, Vec<u64>)>,
}

impl Memo {
    /// Records that the stack copied at `key` (whose unwind read `reads`) is `site`.
    pub fn learn(
        &mut self,
        probes: &mut Probes,
        key: MemoKey,
        reads: &[u16],
        stack: &[u8],
        site: SiteId,
    ) {
        match self.sigs.get(&key) {
            // Another path from the same registers read other words: only the signature
            // installed first is exact for the kernel's hash.
            Some(installed) if installed != reads => return,
            Some(_) => {}
            None => {
                let mut sig = MemoSig {
                    n: reads.len() as u32,
                    span: reads.iter().map(|&w| (w as u32 + 1) * 8).max().unwrap_or(0),
                    words: [0; MEMO_WORDS],
                };
                sig.words[..reads.len()].copy_from_slice(reads);
                if probes.memo_add_sig(&key, &sig).is_err() {
                    return;
                }
                self.sigs.insert(key, reads.to_vec());
                self.owned.entry(key.tgid).or_default().0.push(key);
            }
        }
        let word = |i: u16| {
            let off = i as usize * 8;
            stack
                .get(off..off + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let hash = memo_hash(&key, reads, word);
        if self.stacks.insert(hash) && probes.memo_add_stack(hash, site).is_ok() {
            self.owned.entry(key.tgid).or_default().1.push(hash);
        }
    }

    /// Drops what was learnt about an exited process.
    pub fn forget(&mut self, probes: &mut Probes, tgid: u32) {
        let Some((keys, hashes)) = self.owned.remove(&tgid) else {
            return;
        };
        for key in keys {
            self.sigs.remove(&key);
            probes.memo_remove_sig(&key);
        }
        for hash in hashes {
            self.stacks.remove(&hash);
            probes.memo_remove_stack(hash);
        }
    }
}
