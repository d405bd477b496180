//! Request/response between node services over the links (control lane).
//!
//! Consensus and shard routing need "send a request to node X and wait for
//! its answer". A request carries an id and a method number; the receiver
//! runs the registered handler (in its own task, so a slow method never
//! blocks the link reader) and sends one reply with the same id. A request
//! to a node that goes down fails at once; one that gets no reply fails
//! after its timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;
use weft_proto::frame::{Header, RpcReply, RpcRequest};
use weft_proto::{Frame, NodeId};

use crate::link::Links;
use crate::replies::{Replies, WaitError};
use crate::stats::Stats;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The request could not be sent (unknown or down node, full queue).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No reply within the timeout.
    #[error("timed out")]
    Timeout,
    /// The remote method failed with this message.
    #[error("remote error: {0}")]
    Remote(String),
}

/// What a method handler returns.
pub(crate) type RpcFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

/// Serves requests of one node.
pub(crate) trait RpcHandler: Send + Sync + 'static {
    /// Handles `method` from `from`.
    fn handle(&self, from: NodeId, method: u8, payload: Bytes) -> RpcFuture;
}

/// The RPC endpoint of one node.
pub(crate) struct Rpc {
    links: Links,
    stats: Arc<Stats>,
    pending: Replies<Result<Bytes, RpcError>>,
    handler: OnceLock<Arc<dyn RpcHandler>>,
}

impl Rpc {
    pub(crate) fn new(links: Links, stats: Arc<Stats>) -> Self {
        Self {
            links,
            stats,
            pending: Replies::default(),
            handler: OnceLock::new(),
        }
    }

    pub(crate) fn set_handler(&self, handler: Arc<dyn RpcHandler>) {
        let _ = self.handler.set(handler);
    }

    /// Sends `payload` to `method` on `node` and waits for the reply.
    pub(crate) async fn call(
        &self,
        node: &str,
        method: u8,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let mut waiting = self.pending.register(Some(node));
        let frame = Frame {
            header: Header::RpcRequest(RpcRequest {
                id: waiting.id(),
                method,
            }),
            payload,
        };
        if let Err(e) = self.links.try_send(node, &frame) {
            return Err(RpcError::Unreachable(e.to_string()));
        }
        match waiting.wait(timeout).await {
            Ok(r) => r,
            Err(WaitError::Closed) => Err(RpcError::Unreachable(format!("{node} went away"))),
            Err(WaitError::Timeout) => Err(RpcError::Timeout),
        }
    }

    /// Handles an RPC frame from `from`.
    pub(crate) fn on_frame(&self, from: &NodeId, frame: Frame) {
        match frame.header {
            Header::RpcRequest(req) => {
                let Some(handler) = self.handler.get().cloned() else {
                    self.reply(&from.name, req.id, Err("no rpc handler".into()));
                    return;
                };
                let fut = handler.handle(from.clone(), req.method, frame.payload);
                let links = self.links.clone();
                let stats = self.stats.clone();
                let to = from.name.clone();
                tokio::spawn(async move {
                    let result = fut.await;
                    send_reply(&links, &stats, &to, req.id, result);
                });
            }
            Header::RpcReply(rep) => {
                let result = if rep.ok {
                    Ok(frame.payload)
                } else {
                    Err(RpcError::Remote(
                        String::from_utf8_lossy(&frame.payload).to_string(),
                    ))
                };
                if self.pending.complete(rep.id, result).is_err() {
                    self.stats.frames_dropped.inc("late_rpc_reply");
                }
            }
            _ => self.stats.frames_dropped.inc("unhandled_kind"),
        }
    }

    fn reply(&self, to: &str, id: u64, result: Result<Bytes, String>) {
        send_reply(&self.links, &self.stats, to, id, result);
    }

    /// Membership declared `node` down: its pending requests fail now.
    pub(crate) fn member_down(&self, node: &NodeId) {
        self.pending.fail_node(&node.name, || {
            Err(RpcError::Unreachable(format!("{} is down", node.name)))
        });
    }
}

fn send_reply(links: &Links, stats: &Stats, to: &str, id: u64, result: Result<Bytes, String>) {
    let (ok, payload) = match result {
        Ok(b) => (true, b),
        Err(e) => (false, Bytes::from(e)),
    };
    let frame = Frame {
        header: Header::RpcReply(RpcReply { id, ok }),
        payload,
    };
    if let Err(e) = links.try_send(to, &frame) {
        debug!(peer = to, error = %e, "rpc reply not queued");
        stats.frames_dropped.inc("rpc_reply_not_queued");
    }
}
