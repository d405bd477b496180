//! The NATS server of one weft node: accept loop, client tasks, graceful
//! shutdown, and the advertisement of this node's client address.
//!
//! The client address is advertised cluster-wide through weft's process
//! groups (the public registry mechanism): a one-slot mailbox of this node
//! joins the group `weft-nats/url/<host:port>`. Every node lists those
//! groups for the `connect_urls` of its `INFO`; a node that goes down is
//! purged from them like from any group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft::{Mailbox, Node};

use crate::config::NatsConfig;
use crate::error::NatsError;
use crate::stats::{self, NatsStats, NatsStatsSnapshot};

use crate::ctx::Ctx;
pub use crate::ctx::{URL_GROUP_PREFIX, VERSION};

/// A running NATS front end on one weft node. Stop it with
/// [`NatsServer::shutdown`]; dropping it stops accepting and closes every
/// client too, without waiting.
pub struct NatsServer {
    addr: SocketAddr,
    advertise: String,
    stats: Arc<NatsStats>,
    token: CancellationToken,
    accept: Option<JoinHandle<()>>,
    _url: Mailbox,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl NatsServer {
    /// Validates `config`, binds its address and starts serving NATS
    /// clients on top of `node`.
    pub async fn start(node: Node, config: NatsConfig) -> Result<NatsServer, NatsError> {
        config.validate()?;
        let bind_err = |source| NatsError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let advertise = config.advertise.clone().unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                SocketAddr::new(node.addr().ip(), local.port()).to_string()
            } else {
                local.to_string()
            }
        });
        let url = node.mailboxes().spawn_with_capacity(1);
        if let Err(e) = node
            .groups()
            .join(&format!("{URL_GROUP_PREFIX}{advertise}"), url.pid())
        {
            warn!(error = %e, "cannot advertise the NATS client address");
        }
        let id = node.id();
        let ctx = Arc::new(Ctx {
            server_id: format!("{}-{}", id.name, id.incarnation),
            node: node.clone(),
            pubsub: node.pubsub(),
            config,
            stats: Arc::new(NatsStats::default()),
            refuse_log: crate::refuse::RefuseLog::new(),
            advertise: advertise.clone(),
            local,
        });
        let token = CancellationToken::new();
        let stats = ctx.stats.clone();
        info!(client = %local, %advertise, "NATS clients served");
        let accept = tokio::spawn(run(listener, ctx, token.clone()));
        Ok(NatsServer {
            addr: local,
            advertise,
            stats,
            token,
            accept: Some(accept),
            _url: url,
        })
    }

    /// The bound client address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `host:port` advertised to other nodes' clients.
    pub fn advertised(&self) -> &str {
        &self.advertise
    }

    /// A copy of every counter.
    pub fn stats(&self) -> NatsStatsSnapshot {
        self.stats.snapshot()
    }

    /// The live counters (to read them after the server is moved).
    pub fn stats_handle(&self) -> Arc<NatsStats> {
        self.stats.clone()
    }

    /// Stops accepting, closes every client (flushing what is queued for
    /// each, up to `grace` in total) and waits for their tasks.
    pub async fn shutdown(mut self, grace: Duration) {
        self.token.cancel();
        if let Some(task) = self.accept.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace + Duration::from_millis(100), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// The accept loop: serves clients until `token` is cancelled, then
/// waits up to one second for the client tasks to finish.
pub(crate) async fn run(listener: TcpListener, ctx: Arc<Ctx>, token: CancellationToken) {
    let next_cid = AtomicU64::new(1);
    let mut clients = JoinSet::new();
    loop {
        while clients.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, say: back off instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ctx.stats.clients_connected.load(Ordering::Relaxed) as usize >= ctx.config.max_connections {
            stats::add(&ctx.stats.clients_refused, 1);
            tokio::spawn(refuse(stream));
            continue;
        }
        let cid = next_cid.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        let child = token.child_token();
        clients.spawn(async move {
            stats::add(&ctx.stats.clients_total, 1);
            ctx.stats.clients_connected.fetch_add(1, Ordering::Relaxed);
            crate::client::run(ctx.clone(), stream, peer, cid, child).await;
            ctx.stats.clients_connected.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    clients.abort_all();
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        stream.write_all(b"-ERR 'maximum connections exceeded'\r\n"),
    )
    .await;
}
