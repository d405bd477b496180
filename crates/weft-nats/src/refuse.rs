//! Refused publishes: every one is counted under its reason
//! (`weft_nats_publish_refused_total{reason}`) and logged at warn, at most
//! once per [`LOG_EVERY`] per reason with the number of refusals not
//! logged since; a client flooding bad publishes cannot flood the log.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::stats::{self, NatsStats, RefuseReason};

/// At most one warn line per reason this often.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);

/// Per-reason log throttle, shared by every client of a server.
pub(crate) struct RefuseLog {
    start: Instant,
    /// Milliseconds since `start` of the next allowed line, per reason.
    next_ms: [AtomicU64; RefuseReason::COUNT],
    /// Refusals not logged since the last line, per reason.
    suppressed: [AtomicU64; RefuseReason::COUNT],
}

impl RefuseLog {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            next_ms: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Whether a line for reason `i` may be logged at `now_ms`: if so,
    /// the number of refusals not logged since the last line (and the
    /// next line is allowed [`LOG_EVERY`] later); if not, `None` (and
    /// this refusal is added to that number).
    fn admit(&self, i: usize, now_ms: u64) -> Option<u64> {
        let next = self.next_ms[i].load(Ordering::Relaxed);
        let due = now_ms >= next
            && self.next_ms[i]
                .compare_exchange(
                    next,
                    now_ms + LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !due {
            self.suppressed[i].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed[i].swap(0, Ordering::Relaxed))
    }

    /// Counts a refusal of client `cid`'s publish and logs it (with
    /// `detail`, which names the subject) unless a line for `reason` was
    /// logged less than [`LOG_EVERY`] ago.
    pub(crate) fn refused(&self, stats: &NatsStats, reason: RefuseReason, cid: u64, detail: &dyn Display) {
        let i = reason.index();
        stats::add(&stats.publish_refused[i], 1);
        let now_ms = self.start.elapsed().as_millis() as u64;
        let Some(suppressed) = self.admit(i, now_ms) else {
            return;
        };
        warn!(
            cid,
            reason = reason.label(),
            error = %detail,
            not_logged_before = suppressed,
            "NATS publish refused (counted in weft_nats_publish_refused_total)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_period_with_the_count_not_logged() {
        let log = RefuseLog::new();
        let every = LOG_EVERY.as_millis() as u64;
        assert_eq!(log.admit(0, 0), Some(0));
        assert_eq!(log.admit(0, 1), None);
        assert_eq!(log.admit(0, every - 1), None);
        // Another reason has its own period.
        assert_eq!(log.admit(2, 5), Some(0));
        assert_eq!(log.admit(0, every), Some(2));
        assert_eq!(log.admit(0, every + 1), None);
        assert_eq!(log.admit(0, 3 * every), Some(1));
    }

    #[test]
    fn every_refusal_is_counted_under_its_reason() {
        let (log, stats) = (RefuseLog::new(), NatsStats::default());
        for _ in 0..3 {
            log.refused(&stats, RefuseReason::BadHeaders, 1, &"bad block");
        }
        log.refused(&stats, RefuseReason::NotUtf8, 1, &"not utf-8");
        let snap = stats.snapshot();
        assert_eq!(snap.refused(RefuseReason::BadHeaders), 3);
        assert_eq!(snap.refused(RefuseReason::NotUtf8), 1);
        assert_eq!(snap.refused_total(), 4);
    }
}
