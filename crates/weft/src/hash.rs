//! The hasher for maps keyed by integer ids this node chose itself
//! (subscription ids, channel numbers): one multiplication (Fibonacci
//! hashing) instead of SipHash. The keys come from local counters, never
//! from a peer or a client, so there is nothing to defend against.

use std::hash::Hasher;

/// Fibonacci hashing of locally chosen integer ids.
#[derive(Clone, Copy, Default)]
pub(crate) struct LocalIdHasher(u64);

const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for LocalIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(PHI);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(PHI);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::hash::BuildHasherDefault;

    #[test]
    fn spreads_consecutive_ids_and_serves_as_a_map_hasher() {
        let hash = |n: u64| {
            let mut h = LocalIdHasher::default();
            h.write_u64(n);
            h.finish()
        };
        assert_ne!(hash(1), hash(2));
        assert_ne!(hash(1) >> 58, hash(2) >> 58, "top bits differ for neighbours");
        let mut m: HashMap<u32, u32, BuildHasherDefault<LocalIdHasher>> = HashMap::default();
        for i in 0..1000 {
            m.insert(i, i * 2);
        }
        assert!((0..1000).all(|i| m[&i] == i * 2));
    }
}
