//! The step runner of `weft demo`: numbered, named steps, each bounded by
//! a timeout, printed as a heading and a result line; the first failure
//! stops the run and names its step.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// A failed step: its number, its name and why.
#[derive(Debug)]
pub struct StepFailure {
    /// Step number, as printed in the heading.
    pub number: u8,
    /// Step name, as printed in the heading.
    pub name: &'static str,
    /// What went wrong (with its context chain).
    pub error: anyhow::Error,
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({}) failed: {:#}", self.number, self.name, self.error)
    }
}

impl std::error::Error for StepFailure {}

/// Runs steps in order and prints their headings and outcomes.
#[derive(Debug)]
pub struct Runner {
    /// Step whose (successful) body is turned into a failure, for tests.
    fail_step: Option<u8>,
    /// Steps that passed, with their durations.
    passed: Vec<(u8, &'static str, Duration)>,
}

impl Runner {
    /// A runner that injects a failure after step `fail_step`, if given.
    pub fn new(fail_step: Option<u8>) -> Self {
        Self {
            fail_step,
            passed: Vec::new(),
        }
    }

    /// Runs step `number` named `name`: prints its heading, runs `body`
    /// for at most `limit`, prints the outcome. A body error, a timeout
    /// or an injected failure becomes a [`StepFailure`] naming the step.
    pub async fn step<T, F>(
        &mut self,
        number: u8,
        name: &'static str,
        limit: Duration,
        body: F,
    ) -> Result<T, StepFailure>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        println!();
        println!("{}", heading(number, name));
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, body).await {
            Ok(Ok(value)) if self.fail_step == Some(number) => {
                drop(value);
                Err(anyhow::anyhow!("injected failure (--fail-step {number})"))
            }
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("did not finish within {limit:?}")),
        };
        let took = started.elapsed();
        match outcome {
            Ok(value) => {
                println!("   ok ({})", secs(took));
                self.passed.push((number, name, took));
                Ok(value)
            }
            Err(error) => {
                println!("   FAILED after {}: {error:#}", secs(took));
                Err(StepFailure { number, name, error })
            }
        }
    }

    /// The steps that passed so far, with their durations.
    pub fn passed(&self) -> &[(u8, &'static str, Duration)] {
        &self.passed
    }
}

/// The heading printed for a step (the integration test looks for it).
pub fn heading(number: u8, name: &str) -> String {
    format!("Step {number}: {name}")
}

/// Prints one narrative line of the current step.
pub fn say(line: impl fmt::Display) {
    println!("   {line}");
}

/// `1.23 s`, `45 ms` or `0.4 ms`.
pub fn secs(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `count` per second over `d`, rounded, with thousands separators.
pub fn rate(count: u64, d: Duration) -> String {
    let per_sec = count as f64 / d.as_secs_f64().max(1e-6);
    format!("{}/s", thousands(per_sec.round() as u64))
}

/// `12345678` as `12,345,678`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_step_is_named_and_stops_nothing_else() {
        let mut runner = Runner::new(None);
        let one = runner
            .step(1, "first", Duration::from_secs(5), async { Ok(1) })
            .await
            .expect("step 1 passes");
        assert_eq!(one, 1);
        let err = runner
            .step(4, "sharded routing", Duration::from_secs(5), async {
                Err::<(), _>(anyhow::anyhow!("3 events not acknowledged"))
            })
            .await
            .expect_err("step 4 fails");
        assert_eq!(
            err.to_string(),
            "step 4 (sharded routing) failed: 3 events not acknowledged"
        );
        assert_eq!(runner.passed().len(), 1);
    }

    #[tokio::test]
    async fn an_injected_failure_names_its_step() {
        let mut runner = Runner::new(Some(2));
        runner
            .step(1, "a", Duration::from_secs(5), async { Ok(()) })
            .await
            .expect("step 1 passes");
        let err = runner
            .step(2, "queue group", Duration::from_secs(5), async { Ok(()) })
            .await
            .expect_err("injected");
        assert!(
            err.to_string()
                .starts_with("step 2 (queue group) failed: injected failure"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_step_that_hangs_fails_at_its_limit() {
        let mut runner = Runner::new(None);
        let err = runner
            .step(3, "live stream", Duration::from_millis(50), async {
                std::future::pending::<anyhow::Result<()>>().await
            })
            .await
            .expect_err("times out");
        assert!(
            err.to_string()
                .starts_with("step 3 (live stream) failed: did not finish within"),
            "{err}"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
        assert_eq!(secs(Duration::from_millis(45)), "45 ms");
        assert_eq!(secs(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(secs(Duration::from_millis(1_234)), "1.23 s");
        assert_eq!(rate(500, Duration::from_millis(250)), "2,000/s");
    }
}
