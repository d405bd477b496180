//! The lease driver: renews this node's shard lease through the Raft
//! leader, serves renewals when this node leads, and answers whether an
//! owned shard may accept events now. The rules are in
//! `weft_proto::lease`; this file only moves messages and reads clocks.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use openraft::ReadPolicy;
use openraft::error::{LinearizableReadError, RaftError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use weft_proto::lease::{Fenced, Renewal, grant};

use super::network::{CallError, call_json, method};
use super::service::Shards;
use super::types::TypeConfig;

/// The leader's reply to `RENEW`: a grant or refusal, or openraft's typed
/// reason it could not confirm a quorum (not the leader, stopping).
pub(super) type RenewReply = Result<Renewal, RaftError<TypeConfig, LinearizableReadError<TypeConfig>>>;

impl Shards {
    /// Serves `RENEW` (and this node's own renewals when it leads): a
    /// quorum-confirmed read index first, so that a leader cut off from
    /// the majority grants nothing, then the epoch comparison.
    pub(super) async fn serve_renew(&self, epoch: u64) -> RenewReply {
        self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await?;
        // Applied at least up to the read index: a map committed before
        // the request arrived is visible here.
        let applied = self.committed_rx.borrow().map.epoch;
        Ok(grant(epoch, applied))
    }

    /// Asks the leader (or this node, when it leads) to confirm `epoch`.
    /// `None` when there is no answer (no leader known, unreachable, no
    /// quorum, timed out).
    async fn ask_renewal(&self, epoch: u64) -> Option<Renewal> {
        let timeout = self.config.query_timeout.min(self.config.lease);
        if self.is_leader() {
            return match tokio::time::timeout(timeout, self.serve_renew(epoch)).await {
                Ok(Ok(r)) => Some(r),
                Ok(Err(e)) => {
                    debug!(error = %e, "lease renewal as leader");
                    None
                }
                Err(_) => None,
            };
        }
        let leader = self.leader().filter(|l| *l != self.local.name)?;
        let reply: Result<RenewReply, CallError> =
            call_json(&self.rpc, &leader, method::RENEW, &epoch, timeout).await;
        match reply {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                debug!(leader = %leader, error = %e, "lease renewal refused by raft");
                None
            }
            Err(e) => {
                debug!(leader = %leader, error = %e, "lease renewal");
                None
            }
        }
    }

    /// One renewal, if due: for the epoch this node's ownership reflects,
    /// only while it owns (or is taking over) any shard.
    async fn renew_if_due(&self) {
        let (epoch, owns) = {
            let own = self.ownership();
            (own.epoch, !own.shards.is_empty())
        };
        if !owns {
            return;
        }
        let Some(req) = self.lease().poll_renew(Instant::now(), epoch) else {
            return;
        };
        let reply = self.ask_renewal(req.epoch).await;
        let label = match reply {
            Some(Renewal::Granted) => "granted",
            Some(Renewal::Refused { .. }) => "refused",
            None => "failed",
        };
        self.stats.lease_renewals.inc(label);
        let was_valid = self.lease().check(Instant::now(), 0).is_ok();
        if let Some(theirs) = self.lease().on_reply(req, reply) {
            debug!(
                ours = req.epoch,
                theirs, "lease refused: the leader's map is at another epoch"
            );
        }
        let valid = self.lease().check(Instant::now(), 0).is_ok();
        if was_valid != valid {
            info!(epoch = req.epoch, valid, "shard lease changed");
        }
    }

    /// Whether an event for `shard`, continuously this node's since the
    /// map at `since`, may be accepted now.
    pub(super) fn lease_allows(&self, since: u64) -> Result<u64, Fenced> {
        let r = self.lease().check(Instant::now(), since);
        if r.is_err() {
            self.stats.route_fenced.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// Renews the lease every `lease_renew_every / 2` (the holder decides
/// whether one is due), and at once when a new map applied.
pub(super) async fn lease_loop(shards: Weak<Shards>, stop: CancellationToken) {
    let (wake, tick) = match shards.upgrade() {
        Some(s) => (s.lease_wake.clone(), s.config.lease_renew_every / 2),
        None => return,
    };
    loop {
        match shards.upgrade() {
            Some(s) => s.renew_if_due().await,
            None => return,
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
