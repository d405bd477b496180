//! Mutual TLS under the link handshake, with certificates made by rcgen.
//!
//! Two nodes whose certificates come from one CA link up and exchange data;
//! a third node whose certificate comes from another CA never links with
//! them (n1 counts `tls` handshake failures) while the first two keep
//! working.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{config, sees_up, wait_for};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use weft::{Node, NodeConfig, TlsConfig};

const LIMIT: Duration = Duration::from_secs(30);
const CH: u32 = 11;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority that signs node certificates into `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    ca_path: PathBuf,
}

impl Ca {
    /// Creates a self-signed CA named `name` and writes `<name>.pem`.
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("weft test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("self-sign ca");
        let ca_path = dir.join(format!("{name}.pem"));
        std::fs::write(&ca_path, cert.pem()).expect("write ca");
        Ca {
            issuer: Issuer::new(params, key),
            ca_path,
        }
    }

    /// Issues a certificate for node `node` (SAN `weft`, usable as client
    /// and server) and returns the node's TLS configuration.
    fn node(&self, dir: &Path, node: &str) -> TlsConfig {
        let mut params = CertificateParams::new(vec!["weft".to_string()]).expect("node params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("weft node {node}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign node");
        let cert_path = dir.join(format!("{node}.crt"));
        let key_path = dir.join(format!("{node}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        TlsConfig {
            cert: cert_path,
            key: key_path,
            ca: self.ca_path.clone(),
            server_name: "weft".into(),
        }
    }
}

fn tls_config(name: &str, seeds: &[std::net::SocketAddr], tls: TlsConfig) -> NodeConfig {
    let mut c = config(name, seeds);
    c.tls = Some(tls);
    c
}

fn tls_failures(n: &Node) -> u64 {
    n.stats().handshake_failures.get("tls").copied().unwrap_or(0)
}

/// Sends `count` messages from `from` to `to` on [`CH`] and checks they
/// arrive in order.
async fn exchange(from: &Node, to: &str, rx: &weft::ChannelReceiver, tag: &str, count: u32) {
    for i in 0..count {
        from.channels()
            .send(to, CH, Bytes::from(format!("{tag} {i}")))
            .await
            .expect("queue");
    }
    for i in 0..count {
        let d = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("delivery in time")
            .expect("channel open");
        assert_eq!(d.from.name, from.id().name);
        assert_eq!(d.payload, Bytes::from(format!("{tag} {i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_links_same_ca_and_refuses_another() {
    common::logs();
    let dir = TempDir::new("tls");
    let ca = Ca::new(&dir.0, "ca1");
    let rogue_ca = Ca::new(&dir.0, "ca2");

    let n1 = Node::start(tls_config("n1", &[], ca.node(&dir.0, "n1")))
        .await
        .expect("n1 starts");
    let n2 = Node::start(tls_config("n2", &[n1.addr()], ca.node(&dir.0, "n2")))
        .await
        .expect("n2 starts");
    for n in [&n1, &n2] {
        wait_for("n1 and n2 up", LIMIT, || sees_up(n, &["n1", "n2"])).await;
    }
    wait_for("n1 and n2 linked over TLS", LIMIT, || {
        n1.membership().is_linked("n2") && n2.membership().is_linked("n1")
    })
    .await;
    let rx1 = n1.channels().open(CH, 1 << 20).expect("channel on n1");
    let rx2 = n2.channels().open(CH, 1 << 20).expect("channel on n2");
    exchange(&n2, "n1", &rx1, "to n1", 100).await;
    exchange(&n1, "n2", &rx2, "to n2", 100).await;

    // n3 knows the secret (so SWIM over UDP admits it) but its certificate
    // comes from another CA: no TLS link with n1 or n2 can form.
    let before = tls_failures(&n1);
    let n3 = Node::start(tls_config("n3", &[n1.addr()], rogue_ca.node(&dir.0, "n3")))
        .await
        .expect("n3 starts");
    wait_for("n1 counts a tls failure", LIMIT, || tls_failures(&n1) > before).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        for (n, peer) in [(&n1, "n3"), (&n2, "n3"), (&n3, "n1"), (&n3, "n2")] {
            assert!(!n.membership().is_linked(peer), "{} linked to {peer}", n.id());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n1.membership().is_linked("n2") && n2.membership().is_linked("n1"));
    exchange(&n2, "n1", &rx1, "again to n1", 100).await;
    exchange(&n1, "n2", &rx2, "again to n2", 100).await;

    n3.shutdown(Duration::from_secs(1)).await;
    n2.shutdown(Duration::from_secs(1)).await;
    n1.shutdown(Duration::from_secs(1)).await;
}
