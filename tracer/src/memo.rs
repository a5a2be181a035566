//! Stack memoization: teaches the kernel the stacks already unwound, so a repeated call site costs
//! a small record instead of a stack copy (exact; see `tracer_common::MemoKey`).
use std::collections::HashMap;

use tracer_common::{MEMO_WORDS, MemoKey, MemoSig, memo_hash};

use crate::{accounting::SiteId, probes::Probes};

/// What userspace taught the kernel, per process (to forget it when the process exits).
#[derive(Default)]
pub struct Memo {
    sigs: HashMap<MemoKey, Vec<u16>>,
    stacks: HashMap<u64, SiteId>,
    owned: HashMap<u32, (Vec<MemoKey>, Vec<u64>)>,
}

/// The stack word at word index `i` of a copy (0 past its end).
fn word(stack: &[u8], i: u16) -> u64 {
    let off = i as usize * 8;
    stack
        .get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
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
        let hash = memo_hash(&key, reads, |i| word(stack, i));
        match self.sigs.get(&key) {
            // Another path from the same registers read other words: only the signature
            // installed first is exact for the kernel's hash.
            Some(installed) if installed != reads => return,
            Some(_) => {}
            None => {
                // The first stack under a signature rides in it (one lookup in the kernel).
                let mut sig = MemoSig {
                    n: reads.len() as u32,
                    span: reads.iter().map(|&w| (w as u32 + 1) * 8).max().unwrap_or(0),
                    hash,
                    site,
                    _pad: 0,
                    words: [0; MEMO_WORDS],
                };
                sig.words[..reads.len()].copy_from_slice(reads);
                if probes.memo_add_sig(&key, &sig).is_err() {
                    return;
                }
                self.sigs.insert(key, reads.to_vec());
                self.owned.entry(key.tgid).or_default().0.push(key);
                self.stacks.insert(hash, site);
                self.owned.entry(key.tgid).or_default().1.push(hash);
                return;
            }
        }
        if self.stacks.insert(hash, site).is_none() {
            self.owned.entry(key.tgid).or_default().1.push(hash);
            let _ = probes.memo_add_stack(hash, site);
        }
    }

    /// The site of a stack copy, when it is one already learnt: the kernel's own check (same
    /// registers, same values at the words the unwind read), for copies sent before the kernel
    /// knew the site.
    pub fn recognize(&self, key: &MemoKey, stack: &[u8]) -> Option<SiteId> {
        let reads = self.sigs.get(key)?;
        if reads.iter().any(|&i| (i as usize + 1) * 8 > stack.len()) {
            return None;
        }
        let hash = memo_hash(key, reads, |i| word(stack, i));
        self.stacks.get(&hash).copied()
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
