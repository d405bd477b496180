//! Keyed proofs derived from the cluster secret.
//!
//! The secret never crosses the wire. A link handshake proves knowledge of
//! it with HMAC-SHA256 over both sides' fresh nonces and identities; the
//! membership datagram key is derived from it with HMAC-SHA256 as a PRF.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::node_id::NodeId;

type HmacSha256 = Hmac<Sha256>;

/// Which side of a connection computed a proof. Part of the MAC input, so a
/// proof cannot be reflected back to the node that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofRole {
    /// The side that opened the TCP connection.
    Dialer,
    /// The side that accepted it.
    Acceptor,
}

/// The inputs both sides of a handshake agree on.
#[derive(Clone, Debug)]
pub struct Transcript<'a> {
    /// Cluster name (identical on both sides by then).
    pub cluster: &'a str,
    /// Protocol version (identical on both sides by then).
    pub version: u8,
    /// The dialer's identity and nonce.
    pub dialer: (&'a NodeId, &'a [u8; 32]),
    /// The acceptor's identity and nonce.
    pub acceptor: (&'a NodeId, &'a [u8; 32]),
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match <HmacSha256 as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

fn put_str(m: &mut HmacSha256, s: &str) {
    m.update(&(s.len() as u64).to_be_bytes());
    m.update(s.as_bytes());
}

fn put_node(m: &mut HmacSha256, id: &NodeId, nonce: &[u8; 32]) {
    put_str(m, &id.name);
    m.update(&id.incarnation.to_be_bytes());
    m.update(nonce);
}

/// The proof a side of role `role` sends over the handshake `t`.
pub fn link_proof(secret: &[u8], role: ProofRole, t: &Transcript<'_>) -> [u8; 32] {
    let mut m = mac(secret);
    m.update(b"weft link proof v1");
    m.update(&[match role {
        ProofRole::Dialer => 1,
        ProofRole::Acceptor => 2,
    }]);
    m.update(&[t.version]);
    put_str(&mut m, t.cluster);
    put_node(&mut m, t.dialer.0, t.dialer.1);
    put_node(&mut m, t.acceptor.0, t.acceptor.1);
    m.finalize().into_bytes().into()
}

/// Checks a proof in constant time.
pub fn verify_link_proof(secret: &[u8], role: ProofRole, t: &Transcript<'_>, proof: &[u8; 32]) -> bool {
    let expected = link_proof(secret, role, t);
    // Constant-time comparison: fold the differences.
    expected
        .iter()
        .zip(proof.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Derives a 32-byte key for `purpose` from the secret and cluster name.
pub fn derive_key(secret: &[u8], cluster: &str, purpose: &str) -> [u8; 32] {
    let mut m = mac(secret);
    m.update(b"weft key v1");
    put_str(&mut m, cluster);
    put_str(&mut m, purpose);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_every_input() {
        let (a, b) = (NodeId::new("a", 1), NodeId::new("b", 2));
        let (na, nb) = ([1u8; 32], [2u8; 32]);
        let t = Transcript {
            cluster: "c",
            version: 1,
            dialer: (&a, &na),
            acceptor: (&b, &nb),
        };
        let p = link_proof(b"secret", ProofRole::Dialer, &t);
        assert!(verify_link_proof(b"secret", ProofRole::Dialer, &t, &p));
        assert!(!verify_link_proof(b"other", ProofRole::Dialer, &t, &p));
        assert!(!verify_link_proof(b"secret", ProofRole::Acceptor, &t, &p));
        let t2 = Transcript {
            cluster: "d",
            ..t.clone()
        };
        assert!(!verify_link_proof(b"secret", ProofRole::Dialer, &t2, &p));
        let nc = [3u8; 32];
        let t3 = Transcript {
            acceptor: (&b, &nc),
            ..t
        };
        assert!(!verify_link_proof(b"secret", ProofRole::Dialer, &t3, &p));
    }

    #[test]
    fn keys_are_separated_by_purpose_and_cluster() {
        let k1 = derive_key(b"s", "c", "membership");
        assert_ne!(k1, derive_key(b"s", "c", "other"));
        assert_ne!(k1, derive_key(b"s", "d", "membership"));
        assert_eq!(k1, derive_key(b"s", "c", "membership"));
    }
}
