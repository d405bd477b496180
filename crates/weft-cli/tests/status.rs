//! `weft status --http URL` against a live 3-node cluster, a dead port,
//! and servers answering garbage, errors, chunked bodies or nothing.

mod common;
mod fake_http;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Proc, free_port, wait_for};
use fake_http::{FakeServer, Reply};

/// Exit code of `weft status` when there is no cluster view to show.
const EXIT_UNAVAILABLE: i32 = 3;
/// Exit code for a bad URL (usage error).
const EXIT_USAGE: i32 = 2;

/// Runs `weft status ARGS`: exit code, stdout, stderr.
fn status(args: &[&str], dir: &Path) -> (i32, String, String) {
    let run = free_port();
    let out = dir.join(format!("status-{run}.out"));
    let err = dir.join(format!("status-{run}.err"));
    let child = Command::new(common::bin())
        .arg("status")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn weft status");
    let mut proc = Proc::from_child("weft status", child, Some(&err));
    let code = proc.wait_exit(common::LIMIT).code().unwrap_or(-1);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out), read(&err))
}

/// The rows of the members table: (name, state).
fn member_rows(out: &str) -> Vec<(String, String)> {
    out.lines()
        .skip_while(|l| !l.starts_with("Members:"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let mut cols = l.split_whitespace().filter(|c| *c != "*");
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect()
}

#[test]
fn status_of_a_live_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trio = common::Trio::new(dir.path());
    let (names, ports, https) = (trio.names, trio.ports.clone(), trio.https.clone());
    let _nodes = trio.start();
    wait_for("shard map committed", || {
        common::cluster(https[1]).is_some_and(|v| v["shards"]["epoch"].as_u64().unwrap_or(0) >= 1)
    });

    // Any node answers; ask n2, with a bare HOST:PORT.
    let url = format!("127.0.0.1:{}", https[1]);
    let (code, out, err) = status(&["--http", &url], dir.path());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("as seen by n2"), "{out}");
    assert!(out.contains("Members: 3 (3 up, 0 suspect, 0 down)"), "{out}");
    let mut rows = member_rows(&out);
    rows.sort();
    let up = |n: &str| (n.to_string(), "up".to_string());
    assert_eq!(rows, [up("n1"), up("n2"), up("n3")], "{out}");
    for (n, port) in names.iter().zip(&ports) {
        let addr = format!("127.0.0.1:{port}");
        assert!(
            out.lines().any(|l| l.contains(n) && l.contains(&addr)),
            "{n} at {addr} missing:\n{out}"
        );
    }
    assert!(out.contains("Shards: epoch "), "{out}");
    assert!(out.contains('█'), "shard bars:\n{out}");
    assert!(out.contains("Streams: ") && out.contains("Groups: "), "{out}");

    // --json: the raw view, as /api/v1/cluster serves it.
    let (code, out, err) = status(
        &["--json", "--http", &format!("http://127.0.0.1:{}/", https[0])],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(view["node"]["name"], "n1");
    assert_eq!(view["members"].as_array().map(Vec::len), Some(3));
}

#[test]
fn status_of_a_dead_port_and_bad_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (code, out, err) = status(&["--http", &format!("http://127.0.0.1:{port}")], dir.path());
    assert_eq!(code, EXIT_UNAVAILABLE, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "cannot reach http://127.0.0.1:{port}/api/v1/cluster: connection refused"
        )),
        "{err}"
    );

    for bad in [
        "https://127.0.0.1:1",
        "http://127.0.0.1:0",
        "http://127.0.0.1:x",
        "ftp://h",
    ] {
        let (code, _, err) = status(&["--http", bad], dir.path());
        assert_eq!(code, EXIT_USAGE, "{bad}: {err}");
        assert!(err.contains("bad admin URL"), "{bad}: {err}");
    }
    let (code, _, err) = status(&[], dir.path());
    assert_eq!(code, EXIT_USAGE, "--http is required: {err}");
}

#[test]
fn status_refuses_answers_that_are_not_a_cluster_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let view = serde_json::json!({
        "node": {"name": "c1", "incarnation": 5, "addr": "127.0.0.1:1", "cluster": "weft"},
        "members": [
            {"name": "c1", "incarnation": 5, "addr": "127.0.0.1:1", "state": "up"},
            {"name": "c2", "incarnation": 6, "addr": "127.0.0.1:2", "state": "suspect"}
        ],
        "shards": {"epoch": 2, "count": 8, "owners": {"c1": 5, "c2": 3}, "leader": "c1", "voters": ["c1", "c2"]},
        "streams": [{"key": "live/a", "origin": "c1", "origins": ["c1"], "role": "origin",
                     "subscribers": 1, "edges": ["c2"]}],
        "groups": {"g": 2},
        "links": []
    })
    .to_string();
    let server = FakeServer::start(move |path, _| match path {
        "/text/api/v1/cluster" => fake_http::response("200 OK", "text/plain", b"hello, I am not weft"),
        "/other-json/api/v1/cluster" => {
            fake_http::response("200 OK", "application/json", b"{\"status\":\"ok\"}")
        }
        "/not-http/api/v1/cluster" => Reply::Raw(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
        "/closes/api/v1/cluster" => Reply::Close,
        "/silent/api/v1/cluster" => Reply::Silent,
        "/error/api/v1/cluster" => fake_http::response(
            "503 Service Unavailable",
            "application/json",
            b"{\"error\":\"stopping\"}",
        ),
        "/chunked/api/v1/cluster" => fake_http::chunked("application/json", view.as_bytes(), 7),
        _ => fake_http::response("404 Not Found", "application/json", b"{\"error\":\"not found\"}"),
    });
    let base = server.url();
    let cases: &[(&str, &str)] = &[
        ("text", "did not answer with a weft cluster view: not JSON"),
        ("other-json", "did not answer with a weft cluster view"),
        ("not-http", "not an HTTP/1.x answer"),
        ("closes", "bad answer from"),
        ("error", "answered HTTP 503: stopping"),
        ("nowhere", "answered HTTP 404: not found"),
    ];
    for (prefix, expected) in cases {
        let url = format!("{base}/{prefix}");
        let (code, out, err) = status(&["--http", &url], dir.path());
        assert_eq!(code, EXIT_UNAVAILABLE, "{prefix}: {err}");
        assert!(out.is_empty(), "{prefix}: printed {out}");
        assert!(err.contains(expected), "{prefix}: expected {expected:?} in {err}");
        assert!(
            err.contains(&format!("{url}/api/v1/cluster")),
            "{prefix}: URL named: {err}"
        );
    }
    // --json refuses the same answers.
    let (code, out, _) = status(&["--json", "--http", &format!("{base}/text")], dir.path());
    assert_eq!((code, out.as_str()), (EXIT_UNAVAILABLE, ""));

    // A server that accepts and never answers: bounded by --timeout.
    let (code, _, err) = status(
        &["--timeout", "1", "--http", &format!("{base}/silent")],
        dir.path(),
    );
    assert_eq!(code, EXIT_UNAVAILABLE, "{err}");
    assert!(err.contains("no complete answer within 1 s"), "{err}");

    // A chunked answer is read whole.
    let (code, out, err) = status(&["--http", &format!("{base}/chunked")], dir.path());
    assert_eq!(code, 0, "{err}");
    let mut rows = member_rows(&out);
    rows.sort();
    assert_eq!(
        rows,
        [
            ("c1".to_string(), "up".to_string()),
            ("c2".to_string(), "suspect".to_string())
        ],
        "{out}"
    );
    assert!(out.contains("Shards: epoch 2, 8 shards, leader c1"), "{out}");
    assert!(out.contains("live/a"), "{out}");
    let (code, out, _) = status(&["--json", "--http", &format!("{base}/chunked")], dir.path());
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(parsed["node"]["name"], "c1");
}
