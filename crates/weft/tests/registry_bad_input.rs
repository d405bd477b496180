//! The registry and messaging layers against hostile or stale peers.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::time::Duration;

use bytes::Bytes;

use common::{SECRET, config, sees_up, wait_for};
use weft::Node;
use weft::weft_proto::frame::{Header, MessageMeta, Tell};
use weft::weft_proto::registry::{EntryKey, Msg, table};
use weft::weft_proto::{Frame, NodeId, Pid};

const LIMIT: Duration = Duration::from_secs(30);

async fn pair() -> (Node, Node) {
    let n1 = Node::start(config("n1", &[])).await.expect("n1");
    let n2 = Node::start(config("n2", &[n1.addr()])).await.expect("n2");
    for n in [&n1, &n2] {
        wait_for("up", LIMIT, || sees_up(n, &["n1", "n2"])).await;
    }
    wait_for("linked", LIMIT, || {
        n1.membership().is_linked("n2") && n2.membership().is_linked("n1")
    })
    .await;
    (n1, n2)
}

fn rejected(n: &Node, label: &str) -> u64 {
    n.stats().registry_rejected.get(label).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_assert_entries_of_another_node() {
    let (n1, n2) = pair().await;
    let member = n2.mailboxes().spawn();
    n2.groups().join("g", member.pid()).expect("join");
    wait_for("n1 sees n2's member", LIMIT, || {
        n1.groups().members("g").len() == 1
    })
    .await;

    // "x" authenticates (it has the secret) but claims n2's entries: a
    // forged member on n2 and the removal of the real one.
    let mut x = raw_peer::dial(n1.addr(), "test", NodeId::new("x", 1), SECRET)
        .await
        .expect("x authenticates");
    let forged = Pid {
        node: "n2".into(),
        incarnation: n2.id().incarnation,
        id: 4242,
    };
    let claim = Msg::Snapshot {
        origin: n2.id().clone(),
        version: 99,
        entries: vec![(
            EntryKey::new(table::GROUPS, "g\u{0}4242"),
            postcard::to_allocvec(&forged).expect("enc"),
        )],
    };
    x.send(&Frame {
        header: Header::Registry,
        payload: Bytes::from(postcard::to_allocvec(&claim).expect("enc")),
    })
    .await;
    // x's own entries naming a pid of n2 are refused too (x is not a
    // member either, so its messages are not taken at all).
    let own = Msg::Snapshot {
        origin: NodeId::new("x", 1),
        version: 1,
        entries: vec![(
            EntryKey::new(table::GROUPS, "g\u{0}1"),
            postcard::to_allocvec(&forged).expect("enc"),
        )],
    };
    x.send(&Frame {
        header: Header::Registry,
        payload: Bytes::from(postcard::to_allocvec(&own).expect("enc")),
    })
    .await;
    // Garbage in a registry frame is counted, not fatal.
    x.send(&Frame {
        header: Header::Registry,
        payload: Bytes::from_static(&[0xff, 0xff, 0xff]),
    })
    .await;
    wait_for("foreign origin counted", LIMIT, || {
        rejected(&n1, "foreign_origin") >= 1
    })
    .await;
    wait_for("not-live counted", LIMIT, || rejected(&n1, "not_live") >= 1).await;
    wait_for("undecodable counted", LIMIT, || rejected(&n1, "undecodable") >= 1).await;
    assert_eq!(
        n1.groups().members("g"),
        vec![member.pid().clone()],
        "view unchanged"
    );

    // A message to a pid that does not exist is counted, no panic.
    x.send(&Frame {
        header: Header::Tell(Tell {
            to: 777,
            incarnation: n1.id().incarnation,
            meta: MessageMeta::default(),
        }),
        payload: Bytes::from_static(b"nobody"),
    })
    .await;
    wait_for("no such mailbox counted", LIMIT, || {
        n1.stats()
            .frames_dropped
            .get("no_such_mailbox")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;

    // The node still serves its real peer.
    let m2 = n1.mailboxes().spawn();
    n1.groups().join("g", m2.pid()).expect("join");
    wait_for("n2 sees both", LIMIT, || n2.groups().members("g").len() == 2).await;
    n1.shutdown(Duration::from_millis(200)).await;
    n2.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_incarnation_cannot_reconnect_or_resurrect_entries() {
    let (n1, n2) = pair().await;
    let member = n2.mailboxes().spawn();
    n2.groups().join("g", member.pid()).expect("join");
    wait_for("n1 sees n2's member", LIMIT, || {
        n1.groups().members("g").len() == 1
    })
    .await;
    // An older run of n2 tries to come back with its old entries.
    let old = NodeId::new("n2", n2.id().incarnation - 1);
    let e = raw_peer::dial(n1.addr(), "test", old, SECRET).await;
    assert!(e.is_err(), "stale incarnation refused at the handshake");
    wait_for("stale counted", LIMIT, || {
        n1.stats()
            .handshake_failures
            .get("stale_incarnation")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;
    assert_eq!(n1.groups().members("g"), vec![member.pid().clone()]);
    assert!(n1.membership().is_linked("n2"), "the live run keeps its link");
    n1.shutdown(Duration::from_millis(200)).await;
    n2.shutdown(Duration::from_millis(200)).await;
}
