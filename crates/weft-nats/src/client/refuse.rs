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
    next_ms: [AtomicU64; 4],
    /// Refusals not logged since the last line, per reason.
    suppressed: [AtomicU64; 4],
}

impl RefuseLog {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            next_ms: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Counts a refusal of client `cid`'s publish and logs it (with
    /// `detail`, which names the subject) unless a line for `reason` was
    /// logged less than [`LOG_EVERY`] ago.
    pub(crate) fn refused(&self, stats: &NatsStats, reason: RefuseReason, cid: u64, detail: &dyn Display) {
        let i = reason.index();
        stats::add(&stats.publish_refused[i], 1);
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms[i].load(Ordering::Relaxed);
        let due = now >= next
            && self.next_ms[i]
                .compare_exchange(
                    next,
                    now + LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !due {
            self.suppressed[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed[i].swap(0, Ordering::Relaxed);
        warn!(
            cid,
            reason = reason.label(),
            error = %detail,
            not_logged_before = suppressed,
            "NATS publish refused (counted in weft_nats_publish_refused_total)"
        );
    }
}
