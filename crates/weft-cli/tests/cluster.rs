//! Clusters of real `weft node` processes on loopback: convergence,
//! crash detection, restart with a larger incarnation, a node with the
//! wrong secret, and graceful shutdown on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{NodeSpec, SECRET, all_see, free_port, http_get, member, member_names, wait_for};

#[test]
fn crash_restart_and_wrong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let trio = common::Trio::new(dir.path());
    let (names, ports, https) = (trio.names, trio.ports.clone(), trio.https.clone());
    let mut nodes = trio.start();
    let (_, first_incarnation) = member(https[0], "n3").unwrap();

    // A crash: the others detect it and report n3 down.
    nodes[2].kill();
    wait_for("n1 and n2 see n3 down", || all_see(&https[..2], &["n3"], "down"));

    // Restart with the same name and data dir: a new, larger incarnation.
    let _n3 = trio.spec(2).start();
    wait_for("n3 back up with a larger incarnation everywhere", || {
        https
            .iter()
            .all(|&h| member(h, "n3").is_some_and(|(state, inc)| state == "up" && inc > first_incarnation))
    });
    wait_for("all three up again", || all_see(&https, &names, "up"));

    // A node with the wrong secret is refused and counted.
    let wrong = common::secret_file(dir.path(), "wrong", "not-the-cluster-secret-at-all");
    let http4 = free_port();
    let data4 = dir.path().join("n4");
    let _n4 = NodeSpec {
        name: "n4",
        port: free_port(),
        http: http4,
        join: Some(ports[0]),
        secret_file: &wrong,
        data_dir: &data4,
    }
    .start();
    wait_for("n4 serving its admin API", || {
        http_get(http4, "/healthz").is_some()
    });
    wait_for("n1 counts refused traffic from n4", || {
        let Some((200, m)) = http_get(https[0], "/metrics") else {
            return false;
        };
        m.lines().any(|l| {
            (l.starts_with("weft_membership_datagrams_rejected_total{")
                || l.starts_with("weft_link_handshake_failures_total{reason=\"auth_failed\"}"))
                && l.rsplit_once(' ')
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
        })
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for &h in &https {
            let names = member_names(h);
            assert!(
                !names.iter().any(|n| n == "n4"),
                "n4 joined despite a wrong secret: {names:?}"
            );
        }
        assert_eq!(member_names(http4), vec!["n4".to_string()], "n4 sees no one");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(all_see(&https, &names, "up"));
}

#[test]
fn sigterm_exits_zero_and_peers_see_down() {
    let dir = tempfile::tempdir().unwrap();
    let secret = common::secret_file(dir.path(), "secret", SECRET);
    let (p1, p2) = (free_port(), free_port());
    let (h1, h2) = (free_port(), free_port());
    let (d1, d2) = (dir.path().join("n1"), dir.path().join("n2"));
    let _n1 = NodeSpec {
        name: "n1",
        port: p1,
        http: h1,
        join: None,
        secret_file: &secret,
        data_dir: &d1,
    }
    .start();
    let mut n2 = NodeSpec {
        name: "n2",
        port: p2,
        http: h2,
        join: Some(p1),
        secret_file: &secret,
        data_dir: &d2,
    }
    .start();
    wait_for("both nodes up in both views", || {
        all_see(&[h1, h2], &["n1", "n2"], "up")
    });

    n2.signal("TERM");
    let status = n2.wait_exit(common::LIMIT);
    assert!(status.success(), "n2 exited with {status}: {}", n2.log());
    wait_for("n1 sees n2 down", || all_see(&[h1], &["n2"], "down"));
    assert!(!common::accepts(h2), "n2's admin port still open");
    assert!(common::port_is_free(p2), "n2's cluster port still bound");
}
