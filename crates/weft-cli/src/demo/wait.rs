//! Bounded waits: every wait of the demo has a limit and says what it was
//! waiting for when the limit passes.

use std::time::{Duration, Instant};

use anyhow::bail;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` until it holds and returns how long that took; fails
/// naming `what` after `limit`.
pub async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if cond() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_that_never_holds_names_what_it_waited_for() {
        let err = until("the moon", Duration::from_millis(20), || false)
            .await
            .expect_err("times out");
        assert!(err.to_string().contains("waiting for the moon"), "{err}");
        until("now", Duration::from_millis(20), || true)
            .await
            .expect("holds at once");
    }
}
