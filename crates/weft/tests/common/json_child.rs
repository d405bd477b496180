//! A child process driven through its stdin that answers one JSON value
//! per stdout line (the protocol of the `pg_node`, `relay_node` and
//! `shard_node` examples).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use serde_json::Value;

/// Spawns `cmd` with piped stdin and stdout (stderr as the caller set it);
/// a thread parses stdout lines as JSON into the returned channel, skipping
/// lines that are not JSON, until stdout closes or the receiver is gone.
pub fn spawn(mut cmd: Command, what: &str) -> (Child, ChildStdin, Receiver<Value>) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    (child, stdin, rx)
}
