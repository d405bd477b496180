//! `weft node`: run one node until SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{error, info, warn};
use weft::{Node, StartError};
use weft_nats::{NatsError, NatsServer};

use crate::admin::{self, AdminState};
use crate::cli::NodeArgs;
use crate::config::Settings;
use crate::error::{Failure, OrFail, Result};
use crate::signals::StopSignals;

/// How long the node drains its send queues on shutdown.
const DRAIN: Duration = Duration::from_secs(2);
/// How long NATS clients get to receive what is queued for them.
const NATS_GRACE: Duration = Duration::from_secs(1);
/// How long the admin server may take to finish open requests.
const ADMIN_GRACE: Duration = Duration::from_secs(2);

/// Runs `weft node` to completion.
pub async fn run(args: NodeArgs) -> Result<()> {
    // Handlers first: a signal during start-up must not kill the process
    // before it can leave the cluster politely.
    let mut signals = StopSignals::install(args.exit_on_stdin_eof).or_runtime()?;
    let settings = Settings::from_args(&args).or_config()?;
    if settings.secret_generated {
        if !settings.node.join.is_empty() {
            return Err(Failure::config(anyhow!(
                "--join needs the cluster secret: give --secret-file (or secret_file in --config)"
            )));
        }
        warn!("no secret file given: using a random secret, so no other node can join this one");
    }
    let admin_listener = match settings.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind http address {addr}"))
                .or_config()?,
        ),
        None => None,
    };
    let metrics = crate::metrics::install().or_runtime()?;
    let node = Node::start(settings.node).await.map_err(start_failure)?;
    let (nats, nats_metrics) = match settings.nats {
        Some(cfg) => match NatsServer::start(node.clone(), cfg).await {
            Ok(server) => {
                let copier = crate::nats_metrics::spawn(server.stats_handle());
                info!(client = %server.local_addr(), "NATS clients: nats://{}", server.local_addr());
                (Some(server), Some(copier))
            }
            Err(e) => {
                node.shutdown(DRAIN).await;
                return Err(nats_failure(e));
            }
        },
        None => (None, None),
    };

    let serving = Arc::new(AtomicBool::new(true));
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let mut admin_task = match admin_listener {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .context("admin listener address")
                .or_runtime()?;
            let app = admin::router(AdminState {
                node: node.clone(),
                metrics,
                serving: serving.clone(),
            });
            info!(http = %addr, "admin HTTP serving /healthz, /api/v1/cluster, /metrics");
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = admin_stopped.await;
                    })
                    .await
            }))
        }
        None => None,
    };

    let admin_done = async {
        match admin_task.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        reason = signals.wait() => {
            info!(%reason, "shutting down");
            Ok(())
        }
        () = node.stopped() => Err(Failure::runtime(anyhow!("the node stopped unexpectedly"))),
        res = admin_done => {
            let why = match res {
                Ok(Ok(())) => "stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            error!(error = %why, "admin HTTP server failed");
            admin_task = None;
            Err(Failure::runtime(anyhow!("admin HTTP server failed: {why}")))
        }
    };

    serving.store(false, Ordering::Release);
    if let Some(nats) = nats {
        nats.shutdown(NATS_GRACE).await;
    }
    if let Some(copier) = nats_metrics {
        copier.abort();
    }
    node.shutdown(DRAIN).await;
    let _ = stop_admin.send(());
    if let Some(mut task) = admin_task
        && tokio::time::timeout(ADMIN_GRACE, &mut task).await.is_err()
    {
        task.abort();
    }
    info!("stopped");
    outcome
}

/// A NATS front end that cannot start is a configuration problem too.
fn nats_failure(e: NatsError) -> Failure {
    match &e {
        NatsError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
            Failure::config(anyhow!("{e} (is another server using this client port?)"))
        }
        _ => Failure::config(e),
    }
}

/// Start errors are all about the configuration or the environment
/// (exit code 2), with a hint for the common "port in use".
fn start_failure(e: StartError) -> Failure {
    match &e {
        StartError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
            Failure::config(anyhow!("{e} (is another node running on this port?)"))
        }
        _ => Failure::config(e),
    }
}
