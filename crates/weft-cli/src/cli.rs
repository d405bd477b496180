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
    /// NATS protocol client address (accepted and validated; not served yet).
    #[arg(long, value_name = "HOST:PORT")]
    pub client: Option<String>,
    /// Admin HTTP address (/healthz, /api/v1/cluster, /metrics); off when not given.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Directory for durable state (keeps incarnations increasing across restarts).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
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
