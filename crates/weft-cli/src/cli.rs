//! Command-line surface of the `weft` binary (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weft: a cluster fabric for real-time streams and messages.
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one cluster node in the foreground until SIGINT or SIGTERM.
    Node(NodeArgs),
    /// Start a local cluster of N nodes as child processes on 127.0.0.1.
    Up(UpArgs),
    /// Guided tour: start a local 3-node cluster in this process and walk
    /// through pub/sub, queue groups, a live stream, sharded routing and a
    /// node crash, with live numbers (exits non-zero naming a failed step).
    Demo(DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the cluster as one node sees it, from its admin HTTP API.
    Status(StatusArgs),
}

/// Flags of `weft status`.
///
/// Exit codes: 0 printed; 2 bad URL or flags; 3 the node cannot be
/// reached, does not answer in time, or does not answer with a weft
/// cluster view.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 printed; 2 bad URL or flags; 3 the node cannot be reached, \
does not answer in time, or does not answer with a weft cluster view."
)]
pub struct StatusArgs {
    /// Admin URL of any node, e.g. http://127.0.0.1:8420 (as given to `weft node --http`).
    #[arg(long, value_name = "URL")]
    pub http: String,
    /// Print the raw JSON of /api/v1/cluster instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// NATS front end: throughput and request/reply latency of a 3-node
    /// weft cluster, side by side with a 3-node nats-server cluster.
    Nats(BenchNatsArgs),
}

/// Flags of `weft bench nats`.
#[derive(Debug, Args)]
pub struct BenchNatsArgs {
    /// Client URLs of a running 3-node weft cluster, comma-separated
    /// (publisher and requester on the first) instead of starting one.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    pub urls: Vec<String>,
    /// Also start a 3-node nats-server cluster and run the same load on it.
    #[arg(long)]
    pub nats_server: bool,
    /// The nats-server binary [default: nats-server on PATH].
    #[arg(long, value_name = "PATH")]
    pub nats_server_bin: Option<PathBuf>,
    /// Seconds each measurement publishes (0.2-60).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub duration: f64,
    /// Most messages in flight: published but not yet received by the
    /// slowest subscriber.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub window: u64,
    /// Most bytes in flight (bounds the window for large messages).
    #[arg(long, value_name = "BYTES", default_value_t = 2 * 1024 * 1024)]
    pub window_bytes: u64,
    /// First port of the local clusters: weft uses BASE..BASE+23,
    /// nats-server BASE+30..BASE+43.
    #[arg(long, value_name = "PORT", default_value_t = 27400, value_parser = clap::value_parser!(u16).range(1024..=65000))]
    pub base_port: u16,
    /// The weft binary for the local cluster [default: this executable].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `weft node`. Every flag overrides the same key of `--config`.
#[derive(Debug, Default, Args)]
pub struct NodeArgs {
    /// TOML configuration file (keys as the flags, plus [tls], [link], [membership]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node name, unique in the cluster ([A-Za-z0-9._-], 1-64 bytes) [default: HOSTNAME-PORT].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Cluster name; nodes of different clusters refuse each other [default: weft].
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Cluster address: TCP links and UDP membership on the same port [default: 127.0.0.1:7420].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address peers should use to reach this node [default: the listen address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Seed node to join (repeatable; hostnames are resolved at start).
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Vec<String>,
    /// File holding the cluster secret (at least 16 bytes, surrounding whitespace trimmed).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// NATS protocol client address: existing NATS clients connect here (auth and limits: [nats] in --config).
    #[arg(long, value_name = "HOST:PORT")]
    pub client: Option<String>,
    /// Admin HTTP address (dashboard at /, /api/v1/cluster, /metrics, /healthz); off when not given.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Directory for durable state (keeps incarnations increasing across restarts).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Voters of the shard map group; also how many members must be up
    /// before the group first forms (clusters smaller than this have no
    /// shard map) [default: 3, or [shards] voters].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    pub shard_voters: Option<u16>,
    /// Shut down gracefully when standard input closes (used by `weft up`
    /// so nodes never outlive it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// Flags of `weft up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes (1-100).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub nodes: u16,
    /// Cluster port of n1; node nI listens on BASE+I-1.
    #[arg(long, value_name = "PORT", default_value_t = 7420)]
    pub base_port: u16,
    /// Admin HTTP port of n1 [default: BASE+1000]; node nI uses it +I-1.
    #[arg(long, value_name = "PORT")]
    pub http_base_port: Option<u16>,
    /// NATS client port of n1 [default: BASE+2000]; node nI uses it +I-1.
    #[arg(long, value_name = "PORT")]
    pub client_base_port: Option<u16>,
    /// The weft binary to run for each node [default: this executable].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

/// Flags of `weft demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Messages published in the pub/sub step.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: u64,
    /// Messages published to the queue group.
    #[arg(long, value_name = "N", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub jobs: u64,
    /// Keyed events routed in the sharding step (a fifth of it again after
    /// the crash).
    #[arg(long, value_name = "N", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(5..=1_000_000))]
    pub events: u64,
    /// Cluster port of n1 (n2 and n3 use the next two) [default: free ports].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..=65533))]
    pub base_port: Option<u16>,
    /// Turn step N into a failure once it passed (tests the failure path).
    #[arg(long, value_name = "N", hide = true)]
    pub fail_step: Option<u8>,
}
