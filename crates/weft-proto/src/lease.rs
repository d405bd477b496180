//! Shard ownership leases, sans-IO: when an owner may accept events, when
//! the Raft leader grants a renewal, and how long a new owner waits before
//! it may assume an unreachable old owner has stopped.
//!
//! The protocol (leader-confirmed leases):
//! - An owner asks the Raft leader to confirm its map epoch every
//!   [`LeaseTiming::renew_every`]. It notes its own clock *before* sending
//!   (`sent_at`).
//! - The leader confirms with a quorum that it still leads (a read index)
//!   and grants the renewal only if its applied map is still at the
//!   owner's epoch ([`grant`]). So a grant at epoch `e` means: no newer map
//!   had committed when the leader received the request, which was after
//!   `sent_at`.
//! - The owner then holds the lease until `sent_at + duration` on its own
//!   clock and accepts an event for a shard only while it holds a lease at
//!   an epoch at or after the one since which the shard is continuously its
//!   own ([`LeaseHolder::check`]). A node that cannot renew (cut off, no
//!   leader) stops accepting when its lease runs out.
//! - A node given a shard by the map at epoch `E` starts accepting it once
//!   every other node said it released the shard, or once
//!   [`successor_wait`] passed on its own clock since it applied `E`.
//!
//! Assumption: clocks are not synchronised, but each node's monotonic
//! clock runs at a rate within `1 ± drift` of real time
//! ([`LeaseTiming::drift`]). Then an old owner's last lease (granted on a
//! request received before `E` committed, so sent before the successor
//! applied `E`) ends in real time at most `duration / (1 - drift)` after it
//! was sent, and the successor's wait of `duration · (1 + drift) / (1 -
//! drift)` on its own clock covers at least that much real time. The
//! property test in `tests/lease_model.rs` checks this with drifting clocks.

use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Timing of leases. Every node of a cluster must use the same values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseTiming {
    /// How long a granted lease lasts, from the moment the owner sent the
    /// renewal that earned it (its own clock).
    pub duration: Duration,
    /// How often an owner renews; a third of `duration` or less leaves two
    /// tries before the lease runs out.
    pub renew_every: Duration,
    /// Bound on how far any node's clock *rate* may be off real time, as
    /// a fraction (0.01: a clock gains or loses at most 10 ms a second).
    /// Must be in `[0, 1)`.
    pub drift: f64,
}

impl LeaseTiming {
    /// How long a node given a shard waits, on its own clock since it
    /// applied the map, before it may assume every older lease has ended.
    pub fn successor_wait(&self) -> Duration {
        successor_wait(self.duration, self.drift)
    }
}

/// `duration · (1 + drift) / (1 - drift)`, rounded up to the millisecond:
/// on a clock that may run fast by `drift`, a wait that certainly covers
/// `duration` of a clock that may run slow by `drift`.
pub fn successor_wait(duration: Duration, drift: f64) -> Duration {
    let drift = drift.clamp(0.0, 0.99);
    let factor = (1.0 + drift) / (1.0 - drift);
    let ms = (duration.as_secs_f64() * 1000.0 * factor).ceil();
    Duration::from_millis(ms as u64)
}

/// The leader's answer to a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Renewal {
    /// The owner's epoch is the leader's applied (and quorum-confirmed)
    /// map epoch: the lease holds for `duration` from the request's send
    /// time.
    Granted,
    /// The leader's map is at `epoch`, not the owner's: no lease; the
    /// owner must catch up first.
    Refused {
        /// The leader's map epoch.
        epoch: u64,
    },
}

/// The leader's decision on a renewal for `requested` when its applied map
/// (after a quorum-confirmed read index) is at `applied`.
pub fn grant(requested: u64, applied: u64) -> Renewal {
    if requested == applied && applied > 0 {
        Renewal::Granted
    } else {
        Renewal::Refused { epoch: applied }
    }
}

/// Why an owner may not accept an event now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// It never held a lease (since start), or the last one ran out.
    #[error("no valid lease (last one at epoch {held_epoch})")]
    Expired {
        /// The epoch of the last lease held (0: none).
        held_epoch: u64,
    },
    /// Its lease is for a map older than the one that gave it the shard.
    #[error("lease at epoch {held_epoch} is older than the shard's ownership (since epoch {since})")]
    TooOld {
        /// The epoch of the lease held.
        held_epoch: u64,
        /// The epoch since which the shard is continuously this node's.
        since: u64,
    },
}

/// One renewal in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewRequest<I> {
    /// The owner's map epoch the leader is asked to confirm.
    pub epoch: u64,
    /// The owner's clock when it sent the request.
    pub sent_at: I,
}

/// An owner's side of its lease. `I` is its monotonic clock's instant.
#[derive(Clone, Debug)]
pub struct LeaseHolder<I> {
    timing: LeaseTiming,
    /// The best lease held: its epoch and when it ends.
    held: Option<(u64, I)>,
    /// The request in flight, if any.
    pending: Option<RenewRequest<I>>,
    /// When the last request was sent (for pacing).
    last_sent: Option<I>,
}

impl<I: Copy + Ord + Add<Duration, Output = I>> LeaseHolder<I> {
    /// No lease held.
    pub fn new(timing: LeaseTiming) -> Self {
        Self {
            timing,
            held: None,
            pending: None,
            last_sent: None,
        }
    }

    /// The timing in use.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// The renewal to send now for this node's map at `epoch`, if one is
    /// due: none is in flight (or the one in flight is older than a lease,
    /// so lost), and the held lease is not at `epoch` or is due for
    /// renewal. The caller sends it and reports the answer with
    /// [`Self::on_reply`].
    pub fn poll_renew(&mut self, now: I, epoch: u64) -> Option<RenewRequest<I>> {
        if epoch == 0 {
            return None;
        }
        if let Some(p) = self.pending {
            if now < p.sent_at + self.timing.duration {
                return None;
            }
            self.pending = None;
        }
        let due = match (self.held, self.last_sent) {
            (Some((held_epoch, _)), _) if held_epoch < epoch => true,
            (_, Some(last)) => now >= last + self.timing.renew_every,
            (_, None) => true,
        };
        if !due {
            return None;
        }
        let req = RenewRequest { epoch, sent_at: now };
        self.pending = Some(req);
        self.last_sent = Some(now);
        Some(req)
    }

    /// The answer to `req` (`None`: it failed or timed out). A grant
    /// extends the lease to `req.sent_at + duration` unless a lease held
    /// already reaches further at a newer epoch. Returns the refusal's
    /// epoch when the leader is at another map.
    pub fn on_reply(&mut self, req: RenewRequest<I>, reply: Option<Renewal>) -> Option<u64> {
        if self.pending == Some(req) {
            self.pending = None;
        }
        match reply {
            Some(Renewal::Granted) => {
                let until = req.sent_at + self.timing.duration;
                self.held = Some(match self.held {
                    Some((e, u)) if e > req.epoch => (e, u),
                    Some((e, u)) if e == req.epoch => (e, u.max(until)),
                    _ => (req.epoch, until),
                });
                None
            }
            Some(Renewal::Refused { epoch }) => Some(epoch),
            None => None,
        }
    }

    /// Whether this node may accept an event, at `now`, for a shard that
    /// is continuously its own since the map at epoch `since`.
    pub fn check(&self, now: I, since: u64) -> Result<u64, Fenced> {
        match self.held {
            None => Err(Fenced::Expired { held_epoch: 0 }),
            Some((e, until)) if now >= until => Err(Fenced::Expired { held_epoch: e }),
            Some((e, _)) if e < since => Err(Fenced::TooOld { held_epoch: e, since }),
            Some((e, _)) => Ok(e),
        }
    }

    /// When the held lease ends (`None`: none held).
    pub fn held(&self) -> Option<(u64, I)> {
        self.held
    }

    /// Forgets the lease (the node stops, or must not accept anything
    /// until it renews again).
    pub fn drop_lease(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Duration; // a clock: time since an origin

    fn timing() -> LeaseTiming {
        LeaseTiming {
            duration: Duration::from_millis(900),
            renew_every: Duration::from_millis(300),
            drift: 0.02,
        }
    }

    fn ms(v: u64) -> T {
        Duration::from_millis(v)
    }

    #[test]
    fn no_lease_no_acceptance_until_granted() {
        let mut h = LeaseHolder::<T>::new(timing());
        assert_eq!(h.check(ms(0), 1), Err(Fenced::Expired { held_epoch: 0 }));
        let r = h.poll_renew(ms(0), 1).expect("due at start");
        assert_eq!(h.poll_renew(ms(10), 1), None, "one in flight at a time");
        h.on_reply(r, Some(Renewal::Granted));
        assert_eq!(h.check(ms(899), 1), Ok(1));
        assert_eq!(h.check(ms(900), 1), Err(Fenced::Expired { held_epoch: 1 }));
    }

    #[test]
    fn the_lease_counts_from_the_send_time_not_the_reply() {
        let mut h = LeaseHolder::<T>::new(timing());
        let r = h.poll_renew(ms(100), 3).expect("due");
        h.on_reply(r, Some(Renewal::Granted));
        assert_eq!(h.held(), Some((3, ms(1000))));
    }

    #[test]
    fn a_refusal_names_the_leaders_epoch_and_grants_nothing() {
        let mut h = LeaseHolder::<T>::new(timing());
        let r = h.poll_renew(ms(0), 2).expect("due");
        assert_eq!(h.on_reply(r, Some(Renewal::Refused { epoch: 5 })), Some(5));
        assert!(h.check(ms(1), 2).is_err());
    }

    #[test]
    fn a_newer_map_needs_a_lease_at_its_epoch_for_shards_it_gave() {
        let mut h = LeaseHolder::<T>::new(timing());
        let r = h.poll_renew(ms(0), 4).expect("due");
        h.on_reply(r, Some(Renewal::Granted));
        // Epoch 5 gave us shard 9 (since 5): the lease at 4 does not cover
        // it, but still covers shards ours since 4 or before.
        assert_eq!(
            h.check(ms(10), 5),
            Err(Fenced::TooOld {
                held_epoch: 4,
                since: 5
            })
        );
        assert_eq!(h.check(ms(10), 4), Ok(4));
        // A renewal for the new epoch is due at once.
        let r5 = h.poll_renew(ms(11), 5).expect("due for the new epoch");
        h.on_reply(r5, Some(Renewal::Granted));
        assert_eq!(h.check(ms(12), 5), Ok(5));
    }

    #[test]
    fn renewals_are_paced_and_a_lost_one_is_retried() {
        let mut h = LeaseHolder::<T>::new(timing());
        let r = h.poll_renew(ms(0), 1).expect("due");
        h.on_reply(r, Some(Renewal::Granted));
        assert_eq!(h.poll_renew(ms(299), 1), None);
        let lost = h.poll_renew(ms(300), 1).expect("due after renew_every");
        assert_eq!(h.poll_renew(ms(600), 1), None, "still in flight");
        let again = h
            .poll_renew(ms(1200), 1)
            .expect("a lost request is given up after a lease");
        assert_ne!(lost, again);
        h.on_reply(lost, Some(Renewal::Granted)); // a late answer still counts
        assert_eq!(h.held(), Some((1, ms(1200))));
    }

    #[test]
    fn grant_only_at_the_leaders_epoch() {
        assert_eq!(grant(3, 3), Renewal::Granted);
        assert_eq!(grant(2, 3), Renewal::Refused { epoch: 3 });
        assert_eq!(grant(4, 3), Renewal::Refused { epoch: 3 });
        assert_eq!(grant(0, 0), Renewal::Refused { epoch: 0 });
    }

    #[test]
    fn successor_wait_covers_drift() {
        assert_eq!(
            successor_wait(Duration::from_secs(1), 0.0),
            Duration::from_secs(1)
        );
        let w = successor_wait(Duration::from_millis(1000), 0.02);
        assert_eq!(w, Duration::from_millis(1041));
    }
}
