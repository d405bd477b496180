//! Authenticated encryption of membership datagrams.
//!
//! SWIM traffic runs over UDP, so each datagram is sealed on its own with
//! ChaCha20-Poly1305 under a key derived from the cluster secret:
//!
//! ```text
//! "WFM" (3 bytes) | version (u8) | nonce (12 bytes) | ciphertext | tag (16)
//! ```
//! The 4-byte prefix is also the associated data. Nonces are random (96
//! bits): the caller supplies them, keeping this module free of RNG state.
//! A datagram that does not open (wrong secret, corrupted, truncated) is
//! refused with [`SealError`] and must be counted and dropped.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::auth::derive_key;
use crate::codec::PROTOCOL_VERSION;

/// Bytes added to every sealed datagram: prefix, nonce and tag.
pub const SEAL_OVERHEAD: usize = 4 + 12 + 16;
const PREFIX: [u8; 4] = [b'W', b'F', b'M', PROTOCOL_VERSION];

/// Why a datagram could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than the fixed overhead.
    #[error("datagram of {0} bytes is too short to be sealed")]
    TooShort(usize),
    /// The prefix is not `WFM` with our protocol version.
    #[error("datagram prefix is not weft membership v{PROTOCOL_VERSION}")]
    BadPrefix,
    /// The tag did not verify: wrong secret or cluster, or corrupted.
    #[error("datagram failed authentication (wrong secret or corrupted)")]
    Unauthentic,
    /// The plaintext could not be encrypted (never expected in practice).
    #[error("encryption failed")]
    Encrypt,
}

/// Seals and opens membership datagrams for one cluster.
#[derive(Clone)]
pub struct DatagramSealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for DatagramSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatagramSealer { .. }")
    }
}

impl DatagramSealer {
    /// A sealer keyed from the cluster secret and name.
    pub fn new(secret: &[u8], cluster: &str) -> Self {
        let key = derive_key(secret, cluster, "membership datagrams");
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Seals `plain` with the caller's fresh random `nonce`.
    pub fn seal(&self, nonce: [u8; 12], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &PREFIX,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
        out.extend_from_slice(&PREFIX);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a sealed datagram, returning the plaintext.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::TooShort(sealed.len()));
        }
        if sealed[..4] != PREFIX {
            return Err(SealError::BadPrefix);
        }
        let nonce = Nonce::from_slice(&sealed[4..16]);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[16..],
                    aad: &PREFIX,
                },
            )
            .map_err(|_| SealError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let s = DatagramSealer::new(b"secret", "c");
        let sealed = s.seal([7; 12], b"swim").expect("seal");
        assert_eq!(s.open(&sealed).expect("open"), b"swim");
        let other = DatagramSealer::new(b"wrong", "c");
        assert_eq!(other.open(&sealed), Err(SealError::Unauthentic));
        let other_cluster = DatagramSealer::new(b"secret", "d");
        assert_eq!(other_cluster.open(&sealed), Err(SealError::Unauthentic));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(s.open(&flipped), Err(SealError::Unauthentic));
        assert_eq!(s.open(&sealed[..10]), Err(SealError::TooShort(10)));
    }

    proptest! {
        #[test]
        fn garbage_never_opens(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = DatagramSealer::new(b"secret", "c");
            prop_assert!(s.open(&data).is_err());
        }
    }
}
