//! `weft node` settings: the TOML file, the flags that override it, and
//! the resulting [`weft::NodeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use weft::config::DEFAULT_PORT;
use weft::{
    LinkConfig, MembershipConfig, MessagingConfig, NodeConfig, PubSubConfig, RelayConfig, Secret,
    ShardConfig, TlsConfig,
};
use weft_nats::{Auth, NatsConfig};

use crate::addr;
use crate::cli::NodeArgs;
use crate::secret;

/// The configuration file. Top-level keys mirror the flags; the tuning
/// tables are the library's own configuration types, so every library
/// setting has a key and the file cannot drift from the library. Unknown
/// keys are errors.
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
    /// Mutual TLS for links (paths relative to the configuration file).
    pub tls: Option<TlsConfig>,
    /// `[link]`: link tuning.
    #[serde(default)]
    pub link: LinkConfig,
    /// `[membership]`: membership timing.
    #[serde(default)]
    pub membership: MembershipConfig,
    /// `[messaging]`: mailbox and registry tuning.
    #[serde(default)]
    pub messaging: MessagingConfig,
    /// `[pubsub]`: pub/sub tuning.
    #[serde(default)]
    pub pubsub: PubSubConfig,
    /// `[relay]`: stream relay tuning.
    #[serde(default)]
    pub relay: RelayConfig,
    /// `[shards]`: sharded routing and its consensus group.
    #[serde(default)]
    pub shards: ShardConfig,
    /// `[nats]`: the NATS front end's authentication and limits.
    pub nats: Option<NatsFile>,
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
        node.tls = file.tls;
        node.link = file.link;
        node.membership = file.membership;
        node.messaging = file.messaging;
        node.pubsub = file.pubsub;
        node.relay = file.relay;
        node.shards = file.shards;
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
    use weft::QueueLocality;

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
    fn every_library_table_is_read_with_readable_durations() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("weft.toml");
        std::fs::write(
            &cfg,
            r#"
[tls]
cert = "c.pem"
key = "k.pem"
ca = "ca.pem"
[link]
idle_timeout = "7s"
[messaging]
mailbox_bytes = 4096
anti_entropy_interval_ms = 2000
subscription_bytes = 8192
call_timeout_ms = 2500
[pubsub]
request_timeout = "750ms"
[relay]
linger = "1m 30s"
stall_timeout_ms = 4000
heartbeat_interval_ms = 600
attach_timeout_ms = 11000
subscriber_frames = 10
subscriber_bytes = 20
gop_max_frames = 30
gop_max_bytes = 40
[shards]
duty_interval_ms = 300
raft_heartbeat_ms = 100
raft_election_min = "700ms"
raft_election_max_ms = 1400
lease_renew = "200ms"
"#,
        )
        .unwrap();
        let file = FileConfig::load(&cfg).unwrap();
        let ms = Duration::from_millis;
        let tls = file.tls.expect("tls");
        assert_eq!(tls.cert, dir.path().join("c.pem"));
        assert_eq!(tls.ca, dir.path().join("ca.pem"));
        assert_eq!(tls.server_name, "weft");
        assert_eq!(file.link.idle_timeout, ms(7000));
        assert_eq!(file.link.max_frame, LinkConfig::default().max_frame);
        let m = file.messaging;
        assert_eq!(
            (m.mailbox_bytes, m.anti_entropy_interval, m.subscription_bytes),
            (4096, ms(2000), 8192)
        );
        assert_eq!(m.call_timeout, ms(2500));
        assert_eq!(file.pubsub.request_timeout, ms(750));
        let r = file.relay;
        assert_eq!(r.linger, ms(90_000));
        assert_eq!(
            (r.stall_timeout, r.heartbeat_interval, r.attach_timeout),
            (ms(4000), ms(600), ms(11000))
        );
        assert_eq!(
            (
                r.subscriber_frames,
                r.subscriber_bytes,
                r.gop_max_frames,
                r.gop_max_bytes
            ),
            (10, 20, 30, 40)
        );
        let s = file.shards;
        assert_eq!(s.duty_interval, ms(300));
        assert_eq!(s.raft_heartbeat, ms(100));
        assert_eq!((s.raft_election_min, s.raft_election_max), (ms(700), ms(1400)));
        assert_eq!(s.lease_renew_every, ms(200));
        assert_eq!(s.count, ShardConfig::default().count);
        // Both spellings of one key, a bad duration and a bad validation
        // are one-line errors naming the problem.
        let mut a = args();
        a.config = Some(cfg.clone());
        for (text, needle) in [
            (
                "[link]\nidle_timeout = \"7s\"\nidle_timeout_ms = 7000\n",
                "duplicate field",
            ),
            ("[relay]\nlinger = \"soon\"\n", "bad duration"),
            ("[relay]\nlinger_ms = -1\n", "invalid value"),
            ("[relay]\nstall_timeout_ms = 100\n", "stall_timeout"),
            ("[messaging]\nmailbox_bytes = 0\n", "mailbox_bytes"),
            ("[shards]\nraft_election_max_ms = 100\n", "raft_election_max"),
            ("[tls]\ncert = \"c\"\n", "missing field"),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let err = format!("{:#}", Settings::from_args(&a).unwrap_err());
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
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
