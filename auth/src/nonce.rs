//! The values each exchange draws fresh: challenges, and sequence numbers (S1 from the
//! controller, S2 from the host) from one counter for the process, starting at a random value,
//! incremented per challenge and never 0 (0 means "no challenge" in a Reply), as Linux's
//! `nvme_auth_get_seqnum` (SPDK keeps one per subsystem).

use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The next sequence number.
pub(crate) fn sequence_number() -> u32 {
    loop {
        let current = NEXT.load(Ordering::Relaxed);
        let next = if current == 0 {
            let mut start = [0u8; 4];
            // A fixed start if the generator fails: sequence numbers need not be secret.
            getrandom::fill(&mut start).unwrap_or_default();
            u32::from_ne_bytes(start).max(1)
        } else {
            current.wrapping_add(1).max(1)
        };
        if NEXT
            .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return next;
        }
    }
}

/// `len` random bytes: a challenge.
pub(crate) fn challenge(len: usize) -> Result<Vec<u8>, getrandom::Error> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}
