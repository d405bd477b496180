//! Model check of shard leases with drifting clocks: an old owner that is
//! cut off (it never learns that its shard moved) stops accepting before
//! the new owner starts, whatever the clock rates (within the drift
//! bound), network delays, renewal losses and commit moment.
//!
//! Real time is in milliseconds (f64); each node's monotonic clock is
//! `offset + rate · t` with `rate` in `[1 - drift, 1 + drift]`.

use std::time::Duration;

use proptest::prelude::*;
use weft_proto::lease::{LeaseHolder, LeaseTiming, RenewRequest, grant};

#[derive(Clone, Copy, Debug)]
struct Clock {
    offset_ms: f64,
    rate: f64,
}

impl Clock {
    fn local(&self, t: f64) -> Duration {
        Duration::from_secs_f64((self.offset_ms + self.rate * t) / 1000.0)
    }
    /// The first real time at which this clock shows `local`.
    fn real(&self, local: Duration) -> f64 {
        (local.as_secs_f64() * 1000.0 - self.offset_ms) / self.rate
    }
}

#[derive(Debug, Clone)]
struct Case {
    timing: LeaseTiming,
    old: Clock,
    new: Clock,
    /// Real time the map moving the shard commits.
    commit_at: f64,
    /// Delay until the new owner applies it.
    apply_delay: f64,
    /// Per request: delay to the leader, delay back, lost or not.
    delays: Vec<(f64, f64, bool)>,
}

fn clock(drift: f64) -> impl Strategy<Value = Clock> {
    (0.0f64..1e6, -1.0f64..=1.0).prop_map(move |(offset_ms, k)| Clock {
        offset_ms,
        rate: 1.0 + k * drift,
    })
}

fn case() -> impl Strategy<Value = Case> {
    (200u64..3000, 2u64..6, 0.0f64..0.2).prop_flat_map(|(lease_ms, parts, drift)| {
        let timing = LeaseTiming {
            duration: Duration::from_millis(lease_ms),
            renew_every: Duration::from_millis(lease_ms / parts),
            drift,
        };
        (
            Just(timing),
            clock(drift),
            clock(drift),
            100.0f64..5000.0,
            0.0f64..500.0,
            prop::collection::vec((0.0f64..400.0, 0.0f64..400.0, prop::bool::weighted(0.2)), 64),
        )
            .prop_map(|(timing, old, new, commit_at, apply_delay, delays)| Case {
                timing,
                old,
                new,
                commit_at,
                apply_delay,
                delays,
            })
    })
}

/// Runs the old owner (shard its own since epoch 1; the map at epoch 2
/// moves it away at `commit_at`, and the old owner never learns it) in
/// 1 ms steps. Returns the last real time it would accept an event and
/// the real time the new owner starts.
fn run(c: &Case) -> (Option<f64>, f64) {
    let mut holder = LeaseHolder::<Duration>::new(c.timing);
    let mut in_flight: Vec<(RenewRequest<Duration>, f64, Option<weft_proto::lease::Renewal>)> = Vec::new();
    let mut next_delay = c.delays.iter().cycle();
    let mut last_accept = None;
    let end = c.commit_at + 3.0 * c.timing.duration.as_secs_f64() * 1000.0 + 2000.0;
    let mut t = 0.0;
    while t < end {
        let now = c.old.local(t);
        // Answers that arrived by now.
        let mut i = 0;
        while i < in_flight.len() {
            if in_flight[i].1 <= t {
                let (req, _, reply) = in_flight.swap_remove(i);
                holder.on_reply(req, reply);
            } else {
                i += 1;
            }
        }
        if let Some(req) = holder.poll_renew(now, 1) {
            let (to, back, lost) = *next_delay.next().expect("cycle");
            let received = t + to;
            // The leader's applied map at receipt: epoch 2 once committed.
            let applied = if received >= c.commit_at { 2 } else { 1 };
            let reply = (!lost).then(|| grant(req.epoch, applied));
            in_flight.push((req, received + back, reply));
        }
        if holder.check(now, 1).is_ok() {
            last_accept = Some(t);
        }
        t += 1.0;
    }
    let applied_local = c.new.local(c.commit_at + c.apply_delay);
    let start = c.new.real(applied_local + c.timing.successor_wait());
    (last_accept, start)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_cut_off_owner_stops_before_its_successor_starts(c in case()) {
        let (last_accept, start) = run(&c);
        if let Some(last) = last_accept {
            // One model step of slack: acceptance is sampled every 1 ms.
            prop_assert!(last + 1.0 <= start + 1e-9,
                "old owner accepted at {last:.1} ms, successor started at {start:.1} ms ({c:?})");
        }
    }
}

#[test]
fn an_owner_that_keeps_renewing_keeps_its_lease() {
    let c = Case {
        timing: LeaseTiming {
            duration: Duration::from_millis(900),
            renew_every: Duration::from_millis(300),
            drift: 0.02,
        },
        old: Clock {
            offset_ms: 0.0,
            rate: 1.0,
        },
        new: Clock {
            offset_ms: 0.0,
            rate: 1.0,
        },
        commit_at: 10_000.0,
        apply_delay: 0.0,
        delays: vec![(2.0, 2.0, false)],
    };
    let (last, _) = run(&c);
    // Granted until the commit, then no renewal: the last lease ends
    // within one lease of the commit.
    let last = last.expect("it accepted");
    assert!(
        last >= 10_000.0 - 1.0,
        "kept its lease up to the commit (last {last})"
    );
    assert!(
        last < 10_000.0 + 900.0,
        "stopped within a lease of the commit (last {last})"
    );
}
