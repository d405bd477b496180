//! `weft node` refuses bad configurations with exit code 2 and a one-line
//! message naming the problem.

mod common;

use std::net::{Ipv4Addr, TcpListener};

use common::{SECRET, free_port, run_to_exit};

/// A port on 127.0.0.1 and the listener holding it. A port found free
/// can be taken by someone else before the bind (seen once in CI), so a
/// few are tried.
fn port_taken() -> (u16, TcpListener) {
    for _ in 0..20 {
        let port = free_port();
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (port, l);
        }
    }
    panic!("no port could be bound on 127.0.0.1");
}

/// The `error:` line of a failed run.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

fn expect_config_error(args: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, stderr) = run_to_exit(args, dir.path());
    assert_eq!(status.code(), Some(2), "{args:?}: {status}\n{stderr}");
    let line = error_line(&stderr);
    for needle in needles {
        assert!(line.contains(needle), "{args:?}: {needle:?} not in {line:?}");
    }
}

#[test]
fn missing_secret_file() {
    expect_config_error(
        &[
            "node",
            "--secret-file",
            "/nonexistent/weft/secret",
            "--listen",
            "127.0.0.1:0",
        ],
        &["secret file", "/nonexistent/weft/secret"],
    );
}

#[test]
fn secret_too_short() {
    let dir = tempfile::tempdir().unwrap();
    let secret = common::secret_file(dir.path(), "secret", "  short  ");
    let secret = secret.to_str().unwrap();
    expect_config_error(
        &["node", "--secret-file", secret, "--listen", "127.0.0.1:0"],
        &["5 bytes", "at least 16"],
    );
}

#[test]
fn unparsable_addresses() {
    expect_config_error(
        &["node", "--listen", "not-an-address"],
        &["listen address", "not-an-address"],
    );
    expect_config_error(&["node", "--listen", "127.0.0.1:99999"], &["listen address"]);
    expect_config_error(
        &["node", "--listen", "127.0.0.1:0", "--http", "localhost"],
        &["http address"],
    );
    expect_config_error(
        &["node", "--listen", "127.0.0.1:0", "--client", "x:y"],
        &["client address"],
    );
}

#[test]
fn cluster_port_in_use() {
    let (port, _taken) = port_taken();
    let listen = format!("127.0.0.1:{port}");
    expect_config_error(
        &["node", "--listen", &listen],
        &["cannot bind cluster address", &listen],
    );
}

#[test]
fn http_port_in_use() {
    let (port, _taken) = port_taken();
    let http = format!("127.0.0.1:{port}");
    expect_config_error(
        &["node", "--listen", "127.0.0.1:0", "--http", &http],
        &["cannot bind http address", &http],
    );
}

#[test]
fn bad_toml() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weft.toml");
    std::fs::write(&cfg, "name = \"x\"\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n").unwrap();
    expect_config_error(
        &["node", "--config", cfg.to_str().unwrap()],
        &["weft.toml", "line 3", "bogus_key"],
    );
    std::fs::write(&cfg, "name = \n").unwrap();
    expect_config_error(
        &["node", "--config", cfg.to_str().unwrap()],
        &["weft.toml", "line 1"],
    );
    expect_config_error(
        &["node", "--config", "/nonexistent/weft.toml"],
        &["cannot read config file"],
    );
}

#[test]
fn join_without_secret() {
    expect_config_error(
        &["node", "--listen", "127.0.0.1:0", "--join", "127.0.0.1:7420"],
        &["--join needs", "--secret-file"],
    );
}

#[test]
fn config_file_values_are_used() {
    // A valid file whose secret is too short proves the file was read and
    // its relative secret path resolved next to it.
    let dir = tempfile::tempdir().unwrap();
    common::secret_file(dir.path(), "secret", &SECRET[..10]);
    let cfg = dir.path().join("weft.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\nsecret_file = \"secret\"\n[link]\nheartbeat_interval_ms = 200\n",
    )
    .unwrap();
    expect_config_error(&["node", "--config", cfg.to_str().unwrap()], &["10 bytes"]);
}
