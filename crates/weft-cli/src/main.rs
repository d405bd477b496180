//! The `weft` binary: run a node (`weft node`) or a local cluster
//! (`weft up`), with an admin HTTP endpoint for health, cluster state and
//! Prometheus metrics.

mod addr;
mod admin;
mod bench;
mod cli;
mod config;
mod demo;
mod error;
mod metrics;
mod nats_metrics;
mod node_cmd;
mod probe;
mod secret;
mod signals;
mod status;
mod up;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its story on stdout; node logs only when asked.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn,openraft=error",
        // openraft logs its whole state at info on every start: warn keeps
        // the node log readable (RUST_LOG=openraft=info brings it back).
        _ => "info,async_nats=warn,openraft=warn",
    };
    init_logging(default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => node_cmd::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(cli::BenchCommand::Nats(args)) => bench::run_nats(args).await,
            Command::Status(args) => status::run(args).await,
        }
    });
    // Do not wait for stray blocking tasks (name lookups, stdin).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`).
fn init_logging(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
