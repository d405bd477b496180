//! `weft up`: a local cluster of child processes, stopped together.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{LIMIT, Proc, accepts, all_see, free_ports, port_is_free, wait_for};

#[test]
fn up_starts_three_nodes_and_stops_them_on_signal() {
    let n = 3;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("up.log");
    let (base, http, client) = (free_ports(n), free_ports(n), free_ports(n));
    let mut child = Command::new(common::bin())
        .args(["up", "--nodes", "3"])
        .args(["--base-port", &base.to_string()])
        .args(["--http-base-port", &http.to_string()])
        .args(["--client-base-port", &client.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut up = Proc::from_child("weft up", child, Some(&log));
    up.polite = true;

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !out.iter().any(|l: &String| l.starts_with("cluster ready")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(e) => panic!("no ready line ({e}); output so far: {out:#?}"),
        }
    }
    let text = out.join("\n");
    let data_dir = text
        .split_once("data under ")
        .and_then(|(_, rest)| rest.split(')').next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no data dir printed:\n{text}"));
    assert!(data_dir.join("secret").is_file());
    for i in 0..n {
        for url in [
            format!("cluster 127.0.0.1:{}", base + i),
            format!("nats://127.0.0.1:{}", client + i),
            format!("http://127.0.0.1:{}", http + i),
        ] {
            assert!(text.contains(&url), "{url} not printed:\n{text}");
        }
    }
    let https: Vec<u16> = (0..n).map(|i| http + i).collect();
    wait_for("n1..n3 up everywhere", || {
        all_see(&https, &["n1", "n2", "n3"], "up")
    });

    up.signal("INT");
    let status = up.wait_exit(LIMIT);
    assert!(status.success(), "weft up exited with {status}; output:\n{text}");
    for i in 0..n {
        assert!(!accepts(http + i), "admin port of n{} still open", i + 1);
        wait_for("cluster port released", || port_is_free(base + i));
    }
    assert!(
        !data_dir.exists(),
        "temporary directory {} left behind",
        data_dir.display()
    );
}

#[test]
fn up_refuses_busy_ports() {
    let base = free_ports(2);
    let _taken = std::net::UdpSocket::bind(("127.0.0.1", base + 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = common::run_to_exit(
        &["up", "--nodes", "2", "--base-port", &base.to_string()],
        dir.path(),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cluster UDP port 127.0.0.1:{}", base + 1)),
        "{stderr}"
    );
}
