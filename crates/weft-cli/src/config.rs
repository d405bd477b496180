//! `weft node` settings: the TOML file, the flags that override it, and
//! the resulting [`weft::NodeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use weft::config::DEFAULT_PORT;
use weft::{
    LinkConfig, MembershipConfig, NodeConfig, PubSubConfig, QueueLocality, Secret, ShardConfig, TlsConfig,
};
use weft_nats::{Auth, NatsConfig};

use crate::addr;
use crate::cli::NodeArgs;
use crate::secret;

/// The configuration file. Keys mirror the flags; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Node name.
    pub name: Option<String>,
    /// Cluster name.
    pub cluster: Option<String>,
    /// Cluster address (`HOST:PORT`).
    pub listen: Option<String>,
    /// Address advertised to peers (`HOST:PORT`).
    pub advertise: Option<String>,
    /// Seed addresses.
    pub join: Option<Vec<String>>,
    /// Secret file path (relative to the configuration file).
    pub secret_file: Option<PathBuf>,
    /// NATS client address (`HOST:PORT`).
    pub client: Option<String>,
    /// Admin HTTP address.
    pub http: Option<String>,
    /// Data directory (relative to the configuration file).
    pub data_dir: Option<PathBuf>,
    /// Mutual TLS for links.
    pub tls: Option<TlsFile>,
    /// Link tuning.
    pub link: Option<LinkFile>,
    /// Membership timing.
    pub membership: Option<MembershipFile>,
    /// NATS front end: authentication and limits.
    pub nats: Option<NatsFile>,
    /// Sharded routing and its consensus group.
    pub shards: Option<ShardsFile>,
    /// Pub/sub.
    pub pubsub: Option<PubSubFile>,
}

/// The `[pubsub]` table (durations in milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubFile {
    /// [`PubSubConfig::queue_locality`]: `"cluster"` or `"local"`.
    pub queue_locality: Option<QueueLocalityFile>,
    /// [`PubSubConfig::interest_barrier_timeout`].
    pub interest_barrier_timeout_ms: Option<u64>,
}

/// `queue_locality` values in the configuration file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueLocalityFile {
    /// [`QueueLocality::Cluster`].
    Cluster,
    /// [`QueueLocality::Local`].
    Local,
}

impl From<QueueLocalityFile> for QueueLocality {
    fn from(f: QueueLocalityFile) -> Self {
        match f {
            QueueLocalityFile::Cluster => QueueLocality::Cluster,
            QueueLocalityFile::Local => QueueLocality::Local,
        }
    }
}

/// The `[shards]` table (durations in milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardsFile {
    /// [`ShardConfig::count`].
    pub count: Option<u32>,
    /// [`ShardConfig::voters`].
    pub voters: Option<usize>,
    /// [`ShardConfig::voter_replace_after`].
    pub voter_replace_after_ms: Option<u64>,
    /// [`ShardConfig::bootstrap_delay`].
    pub bootstrap_delay_ms: Option<u64>,
    /// [`ShardConfig::auto_rebalance`].
    pub auto_rebalance: Option<bool>,
    /// [`ShardConfig::route_timeout`].
    pub route_timeout_ms: Option<u64>,
    /// [`ShardConfig::first_map_wait`].
    pub first_map_wait_ms: Option<u64>,
    /// [`ShardConfig::route_retry_pause`].
    pub route_retry_pause_ms: Option<u64>,
    /// [`ShardConfig::route_unreachable_wait`].
    pub route_unreachable_wait_ms: Option<u64>,
    /// [`ShardConfig::owner_catch_up_wait`].
    pub owner_catch_up_wait_ms: Option<u64>,
    /// [`ShardConfig::handoff_retry`].
    pub handoff_retry_ms: Option<u64>,
    /// [`ShardConfig::query_timeout`].
    pub query_timeout_ms: Option<u64>,
    /// [`ShardConfig::catch_up_wait`].
    pub catch_up_wait_ms: Option<u64>,
    /// [`ShardConfig::raft_rpc_timeout`].
    pub raft_rpc_timeout_ms: Option<u64>,
    /// [`ShardConfig::propose_timeout`].
    pub propose_timeout_ms: Option<u64>,
    /// [`ShardConfig::lease`].
    pub lease_ms: Option<u64>,
    /// [`ShardConfig::lease_renew_every`].
    pub lease_renew_ms: Option<u64>,
    /// [`ShardConfig::clock_drift_ppm`].
    pub clock_drift_ppm: Option<u32>,
    /// [`ShardConfig::inbox_capacity`].
    pub inbox_capacity: Option<usize>,
}

/// The `[nats]` table (durations in milliseconds, sizes in bytes). Used
/// when a client address is given (`--client` or `client`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    /// Token clients must send (`auth_token`); not with `user`.
    pub token: Option<String>,
    /// User name clients must send; needs `password`.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// `HOST:PORT` other nodes' clients are told (`connect_urls`).
    pub advertise: Option<String>,
    /// [`NatsConfig::max_payload`].
    pub max_payload: Option<usize>,
    /// [`NatsConfig::max_pending`].
    pub max_pending: Option<usize>,
    /// [`NatsConfig::max_control_line`].
    pub max_control_line: Option<usize>,
    /// [`NatsConfig::ping_interval`].
    pub ping_interval_ms: Option<u64>,
    /// [`NatsConfig::max_pings_out`].
    pub max_pings_out: Option<u32>,
    /// [`NatsConfig::write_deadline`].
    pub write_deadline_ms: Option<u64>,
    /// [`NatsConfig::auth_timeout`].
    pub auth_timeout_ms: Option<u64>,
    /// [`NatsConfig::max_subscriptions`].
    pub max_subscriptions: Option<usize>,
    /// [`NatsConfig::max_connections`].
    pub max_connections: Option<usize>,
    /// [`NatsConfig::interest_barrier_timeout`].
    pub interest_barrier_timeout_ms: Option<u64>,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain of this node.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s).
    pub ca: PathBuf,
    /// DNS name in every node certificate (default `weft`).
    pub server_name: Option<String>,
}

/// The `[link]` table (durations in milliseconds, sizes in bytes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    /// [`LinkConfig::max_frame`].
    pub max_frame: Option<usize>,
    /// [`LinkConfig::send_queue_bytes`].
    pub send_queue_bytes: Option<usize>,
    /// [`LinkConfig::control_queue_bytes`].
    pub control_queue_bytes: Option<usize>,
    /// [`LinkConfig::heartbeat_interval`].
    pub heartbeat_interval_ms: Option<u64>,
    /// [`LinkConfig::idle_timeout`].
    pub idle_timeout_ms: Option<u64>,
    /// [`LinkConfig::handshake_timeout`].
    pub handshake_timeout_ms: Option<u64>,
    /// [`LinkConfig::connect_timeout`].
    pub connect_timeout_ms: Option<u64>,
    /// [`LinkConfig::backoff_min`].
    pub backoff_min_ms: Option<u64>,
    /// [`LinkConfig::backoff_max`].
    pub backoff_max_ms: Option<u64>,
}

/// The `[membership]` table (durations in milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipFile {
    /// [`MembershipConfig::probe_period`].
    pub probe_period_ms: Option<u64>,
    /// [`MembershipConfig::probe_rtt`].
    pub probe_rtt_ms: Option<u64>,
    /// [`MembershipConfig::indirect_probes`].
    pub indirect_probes: Option<usize>,
    /// [`MembershipConfig::suspect_to_down_after`].
    pub suspect_to_down_after_ms: Option<u64>,
    /// [`MembershipConfig::gossip_interval`].
    pub gossip_interval_ms: Option<u64>,
    /// [`MembershipConfig::seed_announce_interval`].
    pub seed_announce_interval_ms: Option<u64>,
    /// [`MembershipConfig::remove_down_after`].
    pub remove_down_after_ms: Option<u64>,
}

impl FileConfig {
    /// Reads and parses a configuration file. Relative paths inside it
    /// are made relative to the file's directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
            // toml's message spans several lines (source excerpt); keep one.
            let msg = e.message().to_string();
            match e.span().map(|s| line_of(&text, s.start)) {
                Some(line) => anyhow!("config file {} line {line}: {msg}", path.display()),
                None => anyhow!("config file {}: {msg}", path.display()),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = file.secret_file.as_mut() {
            rebase(p);
        }
        if let Some(p) = file.data_dir.as_mut() {
            rebase(p);
        }
        if let Some(tls) = file.tls.as_mut() {
            rebase(&mut tls.cert);
            rebase(&mut tls.key);
            rebase(&mut tls.ca);
        }
        Ok(file)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Everything `weft node` runs with, validated.
#[derive(Debug)]
pub struct Settings {
    /// The node's configuration.
    pub node: NodeConfig,
    /// The NATS front end's configuration, when a client address is given.
    pub nats: Option<NatsConfig>,
    /// Admin HTTP address, if given.
    pub http: Option<SocketAddr>,
    /// Whether the secret was generated because no secret file was given.
    pub secret_generated: bool,
}

impl Settings {
    /// Merges the flags over the configuration file (if any) and
    /// validates the result. Errors are one line and name the problem.
    pub fn from_args(args: &NodeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let listen_text = args.listen.clone().or(file.listen);
        let listen = match listen_text {
            Some(t) => addr::resolve("listen address", &t)?,
            None => SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
        };
        let advertise = args
            .advertise
            .clone()
            .or(file.advertise)
            .map(|t| {
                addr::resolve("advertise address", &t)
                    .and_then(|a| addr::require_port("advertise address", a))
            })
            .transpose()?;
        let join_texts = if args.join.is_empty() {
            file.join.unwrap_or_default()
        } else {
            args.join.clone()
        };
        let join = addr::resolve_all("join address", &join_texts)?
            .into_iter()
            .map(|a| addr::require_port("join address", a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client = args
            .client
            .clone()
            .or(file.client)
            .map(|t| addr::resolve("client address", &t))
            .transpose()?;
        let http = args
            .http
            .clone()
            .or(file.http)
            .map(|t| addr::resolve("http address", &t))
            .transpose()?;
        let secret_file = args.secret_file.clone().or(file.secret_file);
        let (secret, secret_generated) = match &secret_file {
            Some(path) => (secret::read(path)?, false),
            None => (Secret::new(secret::generate_hex()), true),
        };
        let name = args
            .name
            .clone()
            .or(file.name)
            .unwrap_or_else(|| default_name(listen.port()));

        let mut node = NodeConfig::new(name, secret);
        node.listen = listen;
        node.advertise = advertise;
        node.join = join;
        node.data_dir = args.data_dir.clone().or(file.data_dir);
        if let Some(cluster) = args.cluster.clone().or(file.cluster) {
            node.cluster = cluster;
        }
        node.tls = file.tls.map(|t| TlsConfig {
            cert: t.cert,
            key: t.key,
            ca: t.ca,
            server_name: t.server_name.unwrap_or_else(|| "weft".into()),
        });
        if let Some(l) = file.link {
            apply_link(&mut node.link, l);
        }
        if let Some(m) = file.membership {
            apply_membership(&mut node.membership, m);
        }
        if let Some(f) = file.shards {
            apply_shards(&mut node.shards, f);
        }
        if let Some(f) = file.pubsub {
            apply_pubsub(&mut node.pubsub, f);
        }
        set(&mut node.shards.voters, args.shard_voters.map(usize::from));
        node.validate()?;
        let nats = match client {
            Some(addr) => Some(nats_config(addr, file.nats.unwrap_or_default())?),
            None => None,
        };
        Ok(Settings {
            node,
            nats,
            http,
            secret_generated,
        })
    }
}

fn apply_link(c: &mut LinkConfig, f: LinkFile) {
    let ms = Duration::from_millis;
    set(&mut c.max_frame, f.max_frame);
    set(&mut c.send_queue_bytes, f.send_queue_bytes);
    set(&mut c.control_queue_bytes, f.control_queue_bytes);
    set(&mut c.heartbeat_interval, f.heartbeat_interval_ms.map(ms));
    set(&mut c.idle_timeout, f.idle_timeout_ms.map(ms));
    set(&mut c.handshake_timeout, f.handshake_timeout_ms.map(ms));
    set(&mut c.connect_timeout, f.connect_timeout_ms.map(ms));
    set(&mut c.backoff_min, f.backoff_min_ms.map(ms));
    set(&mut c.backoff_max, f.backoff_max_ms.map(ms));
}

fn apply_pubsub(c: &mut PubSubConfig, f: PubSubFile) {
    set(&mut c.queue_locality, f.queue_locality.map(QueueLocality::from));
    set(
        &mut c.interest_barrier_timeout,
        f.interest_barrier_timeout_ms.map(Duration::from_millis),
    );
}

fn apply_membership(c: &mut MembershipConfig, f: MembershipFile) {
    let ms = Duration::from_millis;
    set(&mut c.probe_period, f.probe_period_ms.map(ms));
    set(&mut c.probe_rtt, f.probe_rtt_ms.map(ms));
    set(&mut c.indirect_probes, f.indirect_probes);
    set(&mut c.suspect_to_down_after, f.suspect_to_down_after_ms.map(ms));
    set(&mut c.gossip_interval, f.gossip_interval_ms.map(ms));
    set(&mut c.seed_announce_interval, f.seed_announce_interval_ms.map(ms));
    set(&mut c.remove_down_after, f.remove_down_after_ms.map(ms));
}

fn apply_shards(c: &mut ShardConfig, f: ShardsFile) {
    let ms = Duration::from_millis;
    set(&mut c.count, f.count);
    set(&mut c.voters, f.voters);
    set(&mut c.voter_replace_after, f.voter_replace_after_ms.map(ms));
    set(&mut c.bootstrap_delay, f.bootstrap_delay_ms.map(ms));
    set(&mut c.auto_rebalance, f.auto_rebalance);
    set(&mut c.route_timeout, f.route_timeout_ms.map(ms));
    set(&mut c.first_map_wait, f.first_map_wait_ms.map(ms));
    set(&mut c.route_retry_pause, f.route_retry_pause_ms.map(ms));
    set(&mut c.route_unreachable_wait, f.route_unreachable_wait_ms.map(ms));
    set(&mut c.owner_catch_up_wait, f.owner_catch_up_wait_ms.map(ms));
    set(&mut c.handoff_retry, f.handoff_retry_ms.map(ms));
    set(&mut c.query_timeout, f.query_timeout_ms.map(ms));
    set(&mut c.catch_up_wait, f.catch_up_wait_ms.map(ms));
    set(&mut c.raft_rpc_timeout, f.raft_rpc_timeout_ms.map(ms));
    set(&mut c.propose_timeout, f.propose_timeout_ms.map(ms));
    set(&mut c.lease, f.lease_ms.map(ms));
    set(&mut c.lease_renew_every, f.lease_renew_ms.map(ms));
    set(&mut c.clock_drift_ppm, f.clock_drift_ppm);
    set(&mut c.inbox_capacity, f.inbox_capacity);
}

/// The NATS front end's configuration from the `[nats]` table.
fn nats_config(listen: SocketAddr, f: NatsFile) -> anyhow::Result<NatsConfig> {
    let ms = Duration::from_millis;
    let mut c = NatsConfig::new(listen);
    c.auth = match (f.token, f.user, f.password) {
        (None, None, None) => Auth::None,
        (Some(token), None, None) if !token.is_empty() => Auth::Token(token),
        (None, Some(user), Some(password)) if !user.is_empty() => Auth::UserPassword { user, password },
        (Some(_), _, _) => anyhow::bail!("[nats]: give either a non-empty token or user and password"),
        _ => anyhow::bail!("[nats]: user and password go together (user non-empty)"),
    };
    c.advertise = f.advertise;
    set(&mut c.max_payload, f.max_payload);
    set(&mut c.max_pending, f.max_pending);
    set(&mut c.max_control_line, f.max_control_line);
    set(&mut c.ping_interval, f.ping_interval_ms.map(ms));
    set(&mut c.max_pings_out, f.max_pings_out);
    set(&mut c.write_deadline, f.write_deadline_ms.map(ms));
    set(&mut c.auth_timeout, f.auth_timeout_ms.map(ms));
    set(&mut c.max_subscriptions, f.max_subscriptions);
    set(&mut c.max_connections, f.max_connections);
    set(
        &mut c.interest_barrier_timeout,
        f.interest_barrier_timeout_ms.map(ms),
    );
    c.validate().map_err(|e| anyhow!("[nats]: {e}"))?;
    Ok(c)
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// The default node name: the short host name and the cluster port, so
/// that nodes on one host differ (`myhost-7420`); `weft-PORT` when the
/// host name is unknown.
fn default_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let short: String = host
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    if short.is_empty() {
        format!("weft-{port}")
    } else {
        format!("{short}-{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeArgs {
        NodeArgs::default()
    }

    #[test]
    fn defaults_make_a_lone_loopback_node() {
        let s = Settings::from_args(&args()).unwrap();
        assert_eq!(s.node.pubsub.queue_locality, QueueLocality::Cluster);
        assert_eq!(s.node.listen, "127.0.0.1:7420".parse().unwrap());
        assert!(s.secret_generated);
        assert!(s.node.join.is_empty());
        assert!(s.http.is_none());
        assert!(s.node.name.ends_with("-7420"), "{}", s.node.name);
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "0123456789abcdef0123\n").unwrap();
        let cfg = dir.path().join("weft.toml");
        std::fs::write(
            &cfg,
            r#"
name = "a"
cluster = "prod"
listen = "127.0.0.1:9000"
join = ["127.0.0.1:9001", "localhost:9002"]
secret_file = "secret"
http = "127.0.0.1:9100"
client = "127.0.0.1:4222"
data_dir = "data"
[link]
heartbeat_interval_ms = 250
max_frame = 65536
[membership]
probe_period_ms = 500
indirect_probes = 2
[nats]
token = "t0k"
max_payload = 65536
ping_interval_ms = 5000
interest_barrier_timeout_ms = 2500
[shards]
count = 16
voters = 5
auto_rebalance = false
route_timeout_ms = 2000
[pubsub]
queue_locality = "local"
interest_barrier_timeout_ms = 1500
"#,
        )
        .unwrap();
        let mut a = args();
        a.config = Some(cfg);
        a.name = Some("b".into());
        a.join = vec!["127.0.0.1:9009".into()];
        let s = Settings::from_args(&a).unwrap();
        assert_eq!(s.node.name, "b");
        assert_eq!(s.node.cluster, "prod");
        assert_eq!(s.node.listen.port(), 9000);
        assert_eq!(s.node.join, vec!["127.0.0.1:9009".parse().unwrap()]);
        assert_eq!(s.node.secret.expose(), b"0123456789abcdef0123");
        assert_eq!(s.node.data_dir, Some(dir.path().join("data")));
        assert_eq!(s.node.link.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(s.node.link.max_frame, 65536);
        assert_eq!(s.node.membership.probe_period, Duration::from_millis(500));
        assert_eq!(s.node.membership.indirect_probes, 2);
        assert_eq!(
            s.node.pubsub.interest_barrier_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(s.http, Some("127.0.0.1:9100".parse().unwrap()));
        let nats = s.nats.expect("nats configured");
        assert_eq!(nats.listen, "127.0.0.1:4222".parse().unwrap());
        assert_eq!(nats.auth, Auth::Token("t0k".into()));
        assert_eq!(nats.max_payload, 65536);
        assert_eq!(nats.ping_interval, Duration::from_millis(5000));
        assert_eq!(nats.interest_barrier_timeout, Duration::from_millis(2500));
        assert_eq!(s.node.shards.count, 16);
        assert_eq!(s.node.shards.voters, 5);
        assert!(!s.node.shards.auto_rebalance);
        assert_eq!(s.node.shards.route_timeout, Duration::from_millis(2000));
        assert_eq!(s.node.pubsub.queue_locality, QueueLocality::Local);
        assert!(!s.secret_generated);
        // The flag wins over the file.
        a.shard_voters = Some(2);
        assert_eq!(Settings::from_args(&a).unwrap().node.shards.voters, 2);
    }

    #[test]
    fn shards_table_sets_every_routing_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("weft.toml");
        std::fs::write(
            &cfg,
            r#"
[shards]
route_timeout_ms = 30000
first_map_wait_ms = 200
route_retry_pause_ms = 7
route_unreachable_wait_ms = 300
owner_catch_up_wait_ms = 400
handoff_retry_ms = 50
query_timeout_ms = 600
catch_up_wait_ms = 7000
raft_rpc_timeout_ms = 800
propose_timeout_ms = 900
inbox_capacity = 64
"#,
        )
        .unwrap();
        let mut a = args();
        a.config = Some(cfg.clone());
        let s = Settings::from_args(&a).unwrap().node.shards;
        let ms = Duration::from_millis;
        assert_eq!(s.route_timeout, ms(30000));
        assert_eq!(s.first_map_wait, ms(200));
        assert_eq!(s.route_retry_pause, ms(7));
        assert_eq!(s.route_unreachable_wait, ms(300));
        assert_eq!(s.owner_catch_up_wait, ms(400));
        assert_eq!(s.handoff_retry, ms(50));
        assert_eq!(s.query_timeout, ms(600));
        assert_eq!(s.catch_up_wait, ms(7000));
        assert_eq!(s.raft_rpc_timeout, ms(800));
        assert_eq!(s.propose_timeout, ms(900));
        assert_eq!(s.inbox_capacity, 64);
        // Keys left out keep their defaults; a zero bound is refused.
        std::fs::write(
            &cfg,
            "[shards]
first_map_wait_ms = 0
",
        )
        .unwrap();
        let s = Settings::from_args(&a).unwrap().node.shards;
        assert_eq!(s.first_map_wait, Duration::ZERO);
        assert_eq!(s.handoff_retry, weft::ShardConfig::default().handoff_retry);
        std::fs::write(
            &cfg,
            "[shards]
query_timeout_ms = 0
",
        )
        .unwrap();
        let err = format!("{:#}", Settings::from_args(&a).unwrap_err());
        assert!(err.contains("query_timeout"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("weft.toml");
        for (text, needle) in [
            ("nmae = \"x\"\n", "unknown field"),
            ("[link]\nheartbeat_ms = 1\n", "unknown field"),
            ("listen = 5\n", "line 1"),
            ("listen = \"nope\"\n", "listen address"),
            ("name = \"bad name\"\n", "node name"),
            (
                "client = \"127.0.0.1:4222\"\n[nats]\ntokn = \"x\"\n",
                "unknown field",
            ),
            ("client = \"127.0.0.1:4222\"\n[nats]\nuser = \"a\"\n", "[nats]"),
            (
                "client = \"127.0.0.1:4222\"\n[nats]\ntoken = \"a\"\nuser = \"b\"\npassword = \"c\"\n",
                "[nats]",
            ),
            (
                "client = \"127.0.0.1:4222\"\n[nats]\nmax_payload = 0\n",
                "max_payload",
            ),
            ("[pubsub]\nqueue_locality = \"nearest\"\n", "unknown variant"),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let mut a = args();
            a.config = Some(cfg.clone());
            let err = format!("{:#}", Settings::from_args(&a).unwrap_err());
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }
}
