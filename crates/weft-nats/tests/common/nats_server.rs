//! A nats-server child process to compare weft with, byte for byte.
//!
//! [`NatsServerProcess::start`] returns `None` (after a loud warning) when
//! `nats-server` is not on PATH, unless `WEFT_REQUIRE_NATS_SERVER` is set,
//! in which case it panics. The process is killed when the guard drops,
//! also when a test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// A running nats-server, killed on drop.
pub struct NatsServerProcess {
    child: Child,
    /// Its log lines (stderr), after the one naming the port.
    log: Mutex<mpsc::Receiver<String>>,
    config: PathBuf,
    /// Its client address (127.0.0.1, a port it chose).
    pub addr: SocketAddr,
}

impl Drop for NatsServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl NatsServerProcess {
    /// Starts `nats-server` on 127.0.0.1 with a port of its choosing and
    /// the extra configuration lines `extra` (e.g. `max_pending: 262144`).
    /// `None` when nats-server is not installed (see the module docs).
    pub fn start(extra: &str) -> Option<NatsServerProcess> {
        if !available() {
            assert!(
                std::env::var_os("WEFT_REQUIRE_NATS_SERVER").is_none(),
                "WEFT_REQUIRE_NATS_SERVER is set but nats-server is not on PATH"
            );
            eprintln!(
                "WARNING: nats-server not on PATH: the nats-server half of this test is SKIPPED \
                 (apt-get install nats-server; set WEFT_REQUIRE_NATS_SERVER=1 to make this fatal)"
            );
            return None;
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let config = std::env::temp_dir().join(format!(
            "weft-nats-compat-{}-{}.conf",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&config, format!("host: 127.0.0.1\nport: -1\n{extra}\n"))
            .expect("write nats-server config");
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("stderr piped");
        // The port is in the log line "Listening for client connections
        // on 127.0.0.1:<port>"; the log keeps being drained afterwards (into
        // the test's output, shown when it fails) so that the server never
        // blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("nats-server: {line}");
                let _ = tx.send(line);
            }
        });
        let mut guard = NatsServerProcess {
            child,
            log: Mutex::new(rx),
            config,
            addr: "127.0.0.1:0".parse().expect("addr"),
        };
        let listening = guard
            .next_log_with("Listening for client connections on ", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("nats-server did not start; config:\n{extra}"));
        guard.addr = listening
            .split("Listening for client connections on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .expect("nats-server address");
        Some(guard)
    }

    /// The next log line containing `needle`, waiting at most `limit`
    /// (blocking: call it from a blocking context or with a short limit).
    fn next_log_with(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = if left.is_zero() {
                log.try_recv().ok()?
            } else {
                log.recv_timeout(left).ok()?
            };
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Waits (polling, at most [`super::LIMIT`]) for a log line containing
    /// `needle`; panics after that.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + super::LIMIT;
        loop {
            if let Some(line) = self.next_log_with(needle, Duration::ZERO) {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for a nats-server log line with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
