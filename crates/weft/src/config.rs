//! Node configuration: what a node needs to start, with working defaults.
//!
//! The tuning tables ([`LinkConfig`], [`MembershipConfig`],
//! [`MessagingConfig`], [`PubSubConfig`], [`RelayConfig`], [`ShardConfig`])
//! and [`TlsConfig`] are serde types, read by `weft node --config` straight
//! from the TOML tables of the same name (docs/guide.md section 2): every
//! key is optional and keeps its default, an unknown key is an error. A
//! duration `foo` is keyed `foo_ms` and holds integer milliseconds or a
//! string with a unit (`"250ms"`, `"5s"`); it may also be keyed `foo`
//! (`lease_renew_ms`: `lease_renew`). Written back, durations are whole
//! milliseconds under the `_ms` key.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_proto::codec::{DEFAULT_MAX_FRAME, MIN_MAX_FRAME};
use weft_proto::node_id::validate_name;

use crate::error::ConfigError;

mod millis;

/// The default cluster port.
pub const DEFAULT_PORT: u16 = 7420;
/// Fewest secret bytes accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The cluster secret. Never printed, never sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes (surrounding whitespace is the caller's business).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Mutual TLS for node links. Every node presents `cert` and accepts peers
/// whose certificate chains to `ca` and is valid for `server_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of this node.
    pub cert: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// PEM CA certificate(s) that sign every node's certificate.
    pub ca: PathBuf,
    /// DNS name every node certificate carries (default `weft`).
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "weft".into()
}

/// Link tuning. The defaults suit a LAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Largest frame sent or accepted, bytes after the length prefix.
    pub max_frame: usize,
    /// Bytes of data frames queued per peer before `send` waits and
    /// `try_send` returns `Full`. A single frame larger than this still
    /// passes when the queue is empty.
    pub send_queue_bytes: usize,
    /// Bytes of control frames queued per peer before they are refused.
    pub control_queue_bytes: usize,
    /// A ping is sent this often on every link.
    #[serde(
        rename = "heartbeat_interval_ms",
        alias = "heartbeat_interval",
        with = "millis"
    )]
    pub heartbeat_interval: Duration,
    /// A link that received nothing for this long is closed and redialled.
    #[serde(rename = "idle_timeout_ms", alias = "idle_timeout", with = "millis")]
    pub idle_timeout: Duration,
    /// A handshake not finished after this long is abandoned.
    #[serde(rename = "handshake_timeout_ms", alias = "handshake_timeout", with = "millis")]
    pub handshake_timeout: Duration,
    /// A TCP connect not finished after this long is abandoned.
    #[serde(rename = "connect_timeout_ms", alias = "connect_timeout", with = "millis")]
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`,
    /// with ±50% jitter.
    #[serde(rename = "backoff_min_ms", alias = "backoff_min", with = "millis")]
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    #[serde(rename = "backoff_max_ms", alias = "backoff_max", with = "millis")]
    pub backoff_max: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            send_queue_bytes: 8 * 1024 * 1024,
            control_queue_bytes: 4 * 1024 * 1024,
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// SWIM membership timing (foca). The defaults detect a dead node in
/// about 1.5–2 s on a LAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipConfig {
    /// How often a member is probed.
    #[serde(rename = "probe_period_ms", alias = "probe_period", with = "millis")]
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes start.
    #[serde(rename = "probe_rtt_ms", alias = "probe_rtt", with = "millis")]
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// How long a member stays suspect before it is declared down.
    #[serde(
        rename = "suspect_to_down_after_ms",
        alias = "suspect_to_down_after",
        with = "millis"
    )]
    pub suspect_to_down_after: Duration,
    /// How often updates are gossiped.
    #[serde(rename = "gossip_interval_ms", alias = "gossip_interval", with = "millis")]
    pub gossip_interval: Duration,
    /// How often seeds are contacted while no other member is known
    /// (ten times slower once the node has peers).
    #[serde(
        rename = "seed_announce_interval_ms",
        alias = "seed_announce_interval",
        with = "millis"
    )]
    pub seed_announce_interval: Duration,
    /// How long down members are remembered (to refuse their stale
    /// messages and show them as `down`).
    #[serde(rename = "remove_down_after_ms", alias = "remove_down_after", with = "millis")]
    pub remove_down_after: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(150),
            indirect_probes: 3,
            suspect_to_down_after: Duration::from_millis(900),
            gossip_interval: Duration::from_millis(100),
            seed_announce_interval: Duration::from_secs(1),
            remove_down_after: Duration::from_secs(30),
        }
    }
}

/// Messaging and registry tuning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// Receive queue of a mailbox, in bytes, unless given at spawn.
    pub mailbox_bytes: usize,
    /// How often registry digests are exchanged (anti-entropy).
    #[serde(
        rename = "anti_entropy_interval_ms",
        alias = "anti_entropy_interval",
        with = "millis"
    )]
    pub anti_entropy_interval: Duration,
    /// Receive queue of a pub/sub subscription, in bytes, unless given at
    /// subscribe time.
    pub subscription_bytes: usize,
    /// How long a call (`node.mailboxes().call(..)`) waits for its reply
    /// unless given `.timeout(..)`.
    #[serde(rename = "call_timeout_ms", alias = "call_timeout", with = "millis")]
    pub call_timeout: Duration,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            mailbox_bytes: 1024 * 1024,
            anti_entropy_interval: Duration::from_secs(1),
            subscription_bytes: 4 * 1024 * 1024,
            call_timeout: crate::api::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Where a queue group's messages go when its members are on several
/// nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueLocality {
    /// Each message goes to one member chosen across the whole cluster,
    /// each node weighted by its number of members in the group (as
    /// nats-server spreads a queue group over its routes). The default.
    #[default]
    Cluster,
    /// A message goes to a member on the publisher's node whenever the
    /// group has one there; to a remote member only otherwise. Saves the
    /// hop at the price of an uneven spread.
    Local,
}

/// Pub/sub tuning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubConfig {
    /// Where queue-group messages go; exactly one member gets each
    /// message either way while the cluster is stable.
    pub queue_locality: QueueLocality,
    /// How long an interest barrier (`Subscription::ready`,
    /// `InterestBarrier::wait`) waits for every up node to confirm before
    /// it fails naming the nodes that did not. Longer than failure
    /// detection, so that a crashed node is declared down (and stops
    /// counting) before a barrier waiting for it gives up.
    #[serde(
        rename = "interest_barrier_timeout_ms",
        alias = "interest_barrier_timeout",
        with = "millis"
    )]
    pub interest_barrier_timeout: Duration,
    /// How long a request (`node.pubsub().request(..)`) waits for its
    /// first reply unless given `.timeout(..)`.
    #[serde(rename = "request_timeout_ms", alias = "request_timeout", with = "millis")]
    pub request_timeout: Duration,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            queue_locality: QueueLocality::default(),
            interest_barrier_timeout: Duration::from_secs(5),
            request_timeout: crate::api::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Stream relay tuning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// An edge keeps pulling this long after its last subscriber left.
    #[serde(rename = "linger_ms", alias = "linger", with = "millis")]
    pub linger: Duration,
    /// An upstream silent (no frame, no heartbeat) this long is stalled.
    #[serde(rename = "stall_timeout_ms", alias = "stall_timeout", with = "millis")]
    pub stall_timeout: Duration,
    /// An origin heartbeats idle streams to its edges this often.
    #[serde(
        rename = "heartbeat_interval_ms",
        alias = "heartbeat_interval",
        with = "millis"
    )]
    pub heartbeat_interval: Duration,
    /// `subscribe_stream` on an edge waits this long for the origin to
    /// confirm the attach before failing with `AttachTimeout`.
    #[serde(rename = "attach_timeout_ms", alias = "attach_timeout", with = "millis")]
    pub attach_timeout: Duration,
    /// A subscriber's queue bound, frames.
    pub subscriber_frames: usize,
    /// A subscriber's queue bound, bytes.
    pub subscriber_bytes: usize,
    /// An edge's replay buffer bound, frames.
    pub gop_max_frames: usize,
    /// An edge's replay buffer bound, bytes.
    pub gop_max_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(3),
            heartbeat_interval: Duration::from_millis(500),
            attach_timeout: Duration::from_secs(10),
            subscriber_frames: 1024,
            subscriber_bytes: 16 * 1024 * 1024,
            gop_max_frames: 2048,
            gop_max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Sharded routing and its consensus group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    /// Number of shards, fixed when the cluster's first map commits.
    pub count: u32,
    /// Size of the voter set (the first members by name at bootstrap).
    /// Also the number of up members a new group waits for before it
    /// bootstraps, so that the two sides of a partition never start two
    /// groups: a cluster smaller than this has no shard map (set 1 for a
    /// single node).
    pub voters: usize,
    /// A voter down this long is replaced by an up learner.
    #[serde(
        rename = "voter_replace_after_ms",
        alias = "voter_replace_after",
        with = "millis"
    )]
    pub voter_replace_after: Duration,
    /// Wait this long after start before bootstrapping a new group.
    #[serde(rename = "bootstrap_delay_ms", alias = "bootstrap_delay", with = "millis")]
    pub bootstrap_delay: Duration,
    /// How often the leader checks voters and balance.
    #[serde(rename = "duty_interval_ms", alias = "duty_interval", with = "millis")]
    pub duty_interval: Duration,
    /// Whether the leader rebalances on membership changes by itself; when
    /// false only the first assignment is automatic and later rebalances
    /// happen through [`crate::api::Shards::rebalance`].
    pub auto_rebalance: bool,
    /// Total time a `route` may take, retries included.
    #[serde(rename = "route_timeout_ms", alias = "route_timeout", with = "millis")]
    pub route_timeout: Duration,
    /// How long a `route` waits for a committed map that assigns the key's
    /// shard (the first map after start, or an owner for an unassigned
    /// shard) before it fails with [`crate::RouteError::Unassigned`].
    /// Short on purpose: with no map there is nobody to retry against.
    #[serde(rename = "first_map_wait_ms", alias = "first_map_wait", with = "millis")]
    pub first_map_wait: Duration,
    /// Pause before routing again when the owner has not acquired its
    /// shard yet or answered with the same epoch as ours.
    #[serde(rename = "route_retry_pause_ms", alias = "route_retry_pause", with = "millis")]
    pub route_retry_pause: Duration,
    /// How long a `route` waits for a newer map after the owner was
    /// unreachable, timed out or failed, before it tries again.
    #[serde(
        rename = "route_unreachable_wait_ms",
        alias = "route_unreachable_wait",
        with = "millis"
    )]
    pub route_unreachable_wait: Duration,
    /// How long an owner waits for its map to reach a sender's newer
    /// epoch before it answers the sender with its own (older) epoch.
    #[serde(
        rename = "owner_catch_up_wait_ms",
        alias = "owner_catch_up_wait",
        with = "millis"
    )]
    pub owner_catch_up_wait: Duration,
    /// How often a node waiting to take shards over asks the other nodes
    /// again (it also asks at once on a release notice or a member down).
    #[serde(rename = "handoff_retry_ms", alias = "handoff_retry", with = "millis")]
    pub handoff_retry: Duration,
    /// Bound on one `STATUS` or read-index query to another node.
    #[serde(rename = "query_timeout_ms", alias = "query_timeout", with = "millis")]
    pub query_timeout: Duration,
    /// Bound on applying up to the leader's read index in one catch-up try
    /// after start.
    #[serde(rename = "catch_up_wait_ms", alias = "catch_up_wait", with = "millis")]
    pub catch_up_wait: Duration,
    /// Bound on one Raft RPC (append entries, vote); snapshots get at
    /// least this.
    #[serde(rename = "raft_rpc_timeout_ms", alias = "raft_rpc_timeout", with = "millis")]
    pub raft_rpc_timeout: Duration,
    /// Bound on a proposal forwarded to the leader, and on a release
    /// notice to the new owner.
    #[serde(rename = "propose_timeout_ms", alias = "propose_timeout", with = "millis")]
    pub propose_timeout: Duration,
    /// Raft heartbeat interval.
    #[serde(rename = "raft_heartbeat_ms", alias = "raft_heartbeat", with = "millis")]
    pub raft_heartbeat: Duration,
    /// Raft election timeout, lower bound.
    #[serde(rename = "raft_election_min_ms", alias = "raft_election_min", with = "millis")]
    pub raft_election_min: Duration,
    /// Raft election timeout, upper bound.
    #[serde(rename = "raft_election_max_ms", alias = "raft_election_max", with = "millis")]
    pub raft_election_max: Duration,
    /// How long an owner's lease lasts from the moment it asked the leader
    /// to confirm its map epoch. An owner accepts events only while it
    /// holds a lease; a node cut off from the leader stops accepting at
    /// most this long after its last successful renewal request.
    #[serde(rename = "lease_ms", alias = "lease", with = "millis")]
    pub lease: Duration,
    /// How often an owner renews its lease (at most a third of `lease`
    /// leaves two tries before it runs out).
    #[serde(rename = "lease_renew_ms", alias = "lease_renew", with = "millis")]
    pub lease_renew_every: Duration,
    /// Bound on how far any node's clock *rate* may be off real time, in
    /// parts per million (10000: 1 %). Clocks need not be synchronised.
    /// A node given a shard whose old owner did not confirm the release
    /// waits `lease · (1 + d) / (1 - d)` on its own clock before accepting.
    pub clock_drift_ppm: u32,
    /// Per shard, how many events an inbox consumer ([`crate::api::Shards::inbox`])
    /// may have queued or handed out and not acknowledged. When full,
    /// `route` waits for room (within `route_timeout`) and `try_route`
    /// fails with [`crate::RouteError::Full`]. Not used with a
    /// synchronous handler (it processes each event before the reply).
    pub inbox_capacity: usize,
}

impl ShardConfig {
    /// The lease timing these settings give (see `weft_proto::lease`).
    pub fn lease_timing(&self) -> weft_proto::lease::LeaseTiming {
        weft_proto::lease::LeaseTiming {
            duration: self.lease,
            renew_every: self.lease_renew_every,
            drift: f64::from(self.clock_drift_ppm.min(990_000)) / 1e6,
        }
    }
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            count: 64,
            voters: 3,
            voter_replace_after: Duration::from_secs(10),
            bootstrap_delay: Duration::from_secs(1),
            duty_interval: Duration::from_millis(250),
            auto_rebalance: true,
            route_timeout: Duration::from_secs(15),
            first_map_wait: Duration::from_secs(1),
            route_retry_pause: Duration::from_millis(10),
            route_unreachable_wait: Duration::from_millis(250),
            owner_catch_up_wait: Duration::from_secs(1),
            handoff_retry: Duration::from_millis(100),
            query_timeout: Duration::from_secs(1),
            catch_up_wait: Duration::from_secs(5),
            raft_rpc_timeout: Duration::from_secs(2),
            propose_timeout: Duration::from_secs(5),
            raft_heartbeat: Duration::from_millis(150),
            raft_election_min: Duration::from_millis(600),
            raft_election_max: Duration::from_millis(1200),
            lease: Duration::from_millis(1000),
            lease_renew_every: Duration::from_millis(250),
            clock_drift_ppm: 10_000,
            inbox_capacity: 1024,
        }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node name, unique in the cluster (`[A-Za-z0-9._-]`, 1–64 bytes).
    pub name: String,
    /// Cluster name; nodes of different clusters refuse each other.
    pub cluster: String,
    /// Cluster address to bind, TCP for links and UDP for membership.
    pub listen: SocketAddr,
    /// Address peers should use; defaults to `listen` (with port 0
    /// resolved, and an unspecified IP replaced by 127.0.0.1).
    pub advertise: Option<SocketAddr>,
    /// Seed addresses; one reachable seed is enough to learn the cluster.
    pub join: Vec<SocketAddr>,
    /// The cluster secret.
    pub secret: Secret,
    /// Fixed incarnation (tests); by default derived from the clock and,
    /// with a data dir, kept strictly increasing across restarts.
    pub incarnation: Option<u64>,
    /// Durable state directory, if any.
    pub data_dir: Option<PathBuf>,
    /// Mutual TLS for links, off by default.
    pub tls: Option<TlsConfig>,
    /// Link tuning.
    pub link: LinkConfig,
    /// Membership timing.
    pub membership: MembershipConfig,
    /// Messaging and registry tuning.
    pub messaging: MessagingConfig,
    /// Pub/sub tuning.
    pub pubsub: PubSubConfig,
    /// Stream relay tuning.
    pub relay: RelayConfig,
    /// Sharded routing.
    pub shards: ShardConfig,
    /// Seed for the node's random choices (nonces, jitter, SWIM); set in
    /// simulations for reproducible runs, drawn from the OS otherwise.
    pub rng_seed: Option<u64>,
}

impl NodeConfig {
    /// A single-node configuration on loopback with the default port.
    pub fn new(name: impl Into<String>, secret: Secret) -> Self {
        Self {
            name: name.into(),
            cluster: "weft".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            advertise: None,
            join: Vec::new(),
            secret,
            incarnation: None,
            data_dir: None,
            tls: None,
            link: LinkConfig::default(),
            membership: MembershipConfig::default(),
            messaging: MessagingConfig::default(),
            pubsub: PubSubConfig::default(),
            relay: RelayConfig::default(),
            shards: ShardConfig::default(),
            rng_seed: None,
        }
    }

    /// Checks the configuration, naming the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name).map_err(|e| ConfigError::Name(self.name.clone(), e))?;
        validate_name(&self.cluster).map_err(|e| ConfigError::Cluster(self.cluster.clone(), e))?;
        if self.secret.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort(self.secret.expose().len()));
        }
        if self.link.max_frame < MIN_MAX_FRAME || self.link.max_frame > u32::MAX as usize {
            return Err(ConfigError::MaxFrame(self.link.max_frame));
        }
        if self.link.send_queue_bytes == 0 || self.link.control_queue_bytes == 0 {
            return Err(ConfigError::Link("queue sizes must be positive"));
        }
        if self.membership.indirect_probes == 0 {
            return Err(ConfigError::Membership("indirect_probes must be at least 1"));
        }
        if self.link.idle_timeout <= self.link.heartbeat_interval {
            return Err(ConfigError::Link("idle_timeout must exceed heartbeat_interval"));
        }
        if self.messaging.mailbox_bytes == 0 || self.messaging.anti_entropy_interval.is_zero() {
            return Err(ConfigError::Messaging(
                "mailbox_bytes and anti_entropy_interval must be positive",
            ));
        }
        if self.pubsub.interest_barrier_timeout.is_zero() {
            return Err(ConfigError::Messaging(
                "interest_barrier_timeout must be positive",
            ));
        }
        if self.relay.stall_timeout <= self.relay.heartbeat_interval {
            return Err(ConfigError::Relay("stall_timeout must exceed heartbeat_interval"));
        }
        if self.relay.subscriber_frames == 0 || self.relay.subscriber_bytes == 0 {
            return Err(ConfigError::Relay("subscriber queue bounds must be positive"));
        }
        if self.shards.count == 0 || self.shards.voters == 0 {
            return Err(ConfigError::Shards("count and voters must be positive"));
        }
        if self.shards.lease_renew_every.is_zero() || self.shards.lease <= self.shards.lease_renew_every {
            return Err(ConfigError::Shards(
                "lease must exceed lease_renew_every, which must be positive",
            ));
        }
        if self.shards.clock_drift_ppm >= 500_000 {
            return Err(ConfigError::Shards("clock_drift_ppm must be below 500000 (50 %)"));
        }
        if self.shards.raft_election_min <= self.shards.raft_heartbeat
            || self.shards.raft_election_max <= self.shards.raft_election_min
        {
            return Err(ConfigError::Shards(
                "need raft_heartbeat < raft_election_min < raft_election_max",
            ));
        }
        let s = &self.shards;
        if [
            s.route_timeout,
            s.route_retry_pause,
            s.route_unreachable_wait,
            s.handoff_retry,
            s.query_timeout,
            s.catch_up_wait,
            s.raft_rpc_timeout,
            s.propose_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return Err(ConfigError::Shards(
                "route_timeout, route_retry_pause, route_unreachable_wait, handoff_retry, \
                 query_timeout, catch_up_wait, raft_rpc_timeout and propose_timeout must be positive",
            ));
        }
        if let Some(tls) = &self.tls {
            for p in [&tls.cert, &tls.key, &tls.ca] {
                if !p.exists() {
                    return Err(ConfigError::TlsFile(p.clone()));
                }
            }
        }
        Ok(())
    }
}
