//! Waiting for the request to stop: SIGINT, SIGTERM, or (optionally) the
//! end of standard input.

use std::io::Read;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// Why the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// Standard input closed (the parent went away).
    StdinClosed,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Interrupt => "SIGINT",
            StopReason::Terminate => "SIGTERM",
            StopReason::StdinClosed => "standard input closed",
        })
    }
}

/// Signal handlers installed up front, so a signal that arrives while the
/// program is still starting is not lost (and does not kill it).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    stdin_closed: Option<oneshot::Receiver<()>>,
}

impl StopSignals {
    /// Installs the SIGINT and SIGTERM handlers; with `watch_stdin`, also
    /// treats the end of standard input as a stop request.
    pub fn install(watch_stdin: bool) -> anyhow::Result<Self> {
        let interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let stdin_closed = watch_stdin.then(|| {
            let (tx, rx) = oneshot::channel();
            // A plain thread, not tokio's blocking pool: a read blocked on
            // stdin must not keep the runtime from shutting down.
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            });
            rx
        });
        Ok(Self {
            interrupt,
            terminate,
            stdin_closed,
        })
    }

    /// Resolves at the first stop request.
    pub async fn wait(&mut self) -> StopReason {
        let stdin_rx = &mut self.stdin_closed;
        let stdin = async move {
            match stdin_rx.as_mut() {
                Some(rx) => {
                    let _ = rx.await;
                    // Polling a finished receiver again would panic.
                    *stdin_rx = None;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => StopReason::Interrupt,
            _ = self.terminate.recv() => StopReason::Terminate,
            () = stdin => StopReason::StdinClosed,
        }
    }
}
