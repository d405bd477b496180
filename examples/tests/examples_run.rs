//! Every example is built and run to completion: it must exit 0 by itself
//! (each bounds its own run) and print `done`.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A safety bound against hangs, far above what any example needs.
const LIMIT: Duration = Duration::from_secs(180);

/// Kills the example if the test panics or times out.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(name: &str, bin: &str) {
    let child = Command::new(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut running = Running(child);
    // Drain the pipes on threads so a chatty example never blocks.
    let mut out = running.0.stdout.take().expect("piped stdout");
    let mut err = running.0.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait for the example") {
            break status;
        }
        assert!(Instant::now() < deadline, "{name} still running after {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    );
    println!("--- {name} stdout\n{out}--- {name} stderr\n{err}");
    assert!(status.success(), "{name} exited with {status}");
    assert!(
        out.lines().any(|l| l == "done"),
        "{name} did not finish its script"
    );
}

#[test]
fn pubsub_cluster() {
    run("pubsub_cluster", env!("CARGO_BIN_EXE_pubsub_cluster"));
}

#[test]
fn actors() {
    run("actors", env!("CARGO_BIN_EXE_actors"));
}

#[test]
fn relay() {
    run("relay", env!("CARGO_BIN_EXE_relay"));
}

#[test]
fn sharded() {
    run("sharded", env!("CARGO_BIN_EXE_sharded"));
}
