//! `weft node --client` serves the NATS protocol, with `[nats]` auth from
//! the configuration file and `weft_nats_*` metrics.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{NodeSpec, SECRET, free_port, http_get, sample, wait_for};

/// Reads from `s` until the text read contains `needle` (bounded).
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(common::addr(port)).expect("connect to the client port");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

#[test]
fn node_serves_nats_clients_with_token_auth_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let secret = common::secret_file(dir.path(), "secret", SECRET);
    let (port, http, client) = (free_port(), free_port(), free_port());
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!("client = \"127.0.0.1:{client}\"\n[nats]\ntoken = \"t0k\"\nmax_payload = 4096\n"),
    )
    .unwrap();
    let data = dir.path().join("a");
    let spec = NodeSpec {
        name: "a",
        port,
        http,
        join: None,
        secret_file: &secret,
        data_dir: &data,
    };
    let mut cmd = spec.command();
    cmd.arg("--config").arg(&config);
    let _node = common::Proc::spawn("a", cmd, &dir.path().join("a.log"));
    wait_for("client port open", || common::accepts(client));

    let mut bad = connect(client);
    let info = read_until(&mut bad, "\r\n");
    assert!(
        info.contains("\"auth_required\":true") && info.contains("\"max_payload\":4096"),
        "{info}"
    );
    bad.write_all(b"CONNECT {\"auth_token\":\"nope\"}\r\n").unwrap();
    assert!(read_until(&mut bad, "Violation").contains("-ERR 'Authorization Violation'"));

    let mut good = connect(client);
    read_until(&mut good, "\r\n");
    good.write_all(b"CONNECT {\"auth_token\":\"t0k\"}\r\nSUB greet.* 1\r\nPUB greet.a 2\r\nhi\r\n")
        .unwrap();
    assert!(read_until(&mut good, "hi\r\n").contains("MSG greet.a 1 2\r\nhi\r\n"));

    wait_for("weft_nats metrics", || {
        http_get(http, "/metrics").is_some_and(|(_, body)| {
            sample(&body, "weft_nats_msgs_in_total") == Some(1.0)
                && sample(&body, "weft_nats_errors_total{kind=\"auth\"}") == Some(1.0)
                && sample(&body, "weft_nats_connections") == Some(1.0)
        })
    });
}
