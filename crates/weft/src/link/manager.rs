//! The link manager: one authenticated connection per peer.
//!
//! It owns the table of peers (by name): each peer has a send queue that
//! outlives individual TCP connections (frames queued while reconnecting
//! are sent on the next connection), traffic counters, and at most one
//! established connection. Membership tells it when a peer is up (dial)
//! or down (close, drop the queue, refuse sends).
//!
//! Duplicate connections (both sides dialling at once, or a reconnect
//! racing the old connection) are resolved inside the handshake, before
//! any link frame is written, by one rule both sides evaluate alike: the
//! acceptor keeps the connection dialled by the smaller [`NodeId`] when it
//! has its own dial in progress or established, and otherwise takes the
//! new connection (the peer only dials when it has none). The dialer treats
//! the acceptor's `Welcome` as final.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft_proto::frame::{Goodbye, Header, RejectCode};
use weft_proto::handshake::{Handshake, HandshakeConfig, HandshakeError, PeerInfo, Progress, Role};
use weft_proto::{EncodedFrame, Frame, NodeId};

use super::conn::{self, CloseReason, ConnParams, FrameHandler};
use super::tls::TlsContext;
use crate::config::NodeConfig;
use crate::error::SendError;
use crate::net::{BoxStream, Listener, Net};
use crate::queue::{ByteQueue, ByteSized, Pushed};
use crate::stats::{PeerCounters, Stats};

/// Most inbound handshakes in progress at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// A change in a peer link, for layers that react to link-up (registry
/// backfill) or link-down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A connection to the peer was established.
    Up(NodeId),
    /// The connection to the peer closed.
    Down(NodeId),
}

/// A peer link as shown by the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct LinkInfo {
    /// Peer name.
    pub peer: String,
    /// Peer incarnation, if known.
    pub incarnation: Option<u64>,
    /// Whether a connection is established.
    pub connected: bool,
    /// Whether this node dialled the current connection.
    pub dialed_by_us: bool,
    /// Bytes waiting in the send queue.
    pub queued_bytes: usize,
    /// Last measured heartbeat round trip, microseconds.
    pub rtt_micros: u64,
    /// Whether membership considers the peer down.
    pub down: bool,
}

struct Slot {
    id: u64,
    dialer: NodeId,
    cancel: CancellationToken,
    /// Whether `on_link_up` was called for this connection (it is, once
    /// the connection is up and membership reports the peer up).
    ready: bool,
}

#[derive(Default)]
struct PeerState {
    node: Option<NodeId>,
    addr: Option<SocketAddr>,
    down: bool,
    /// Membership reports this incarnation up.
    member: bool,
    conn: Option<Slot>,
    dialing: bool,
}

struct Peer {
    name: String,
    queue: Arc<ByteQueue<EncodedFrame>>,
    counters: Arc<PeerCounters>,
    rtt_micros: Arc<AtomicU64>,
    st: Mutex<PeerState>,
}

impl Peer {
    fn state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        crate::sync::lock(&self.st)
    }
}

/// Peer names are short names of authenticated members, looked up on
/// every send, where SipHash showed in profiles: FNV-1a.
type PeerMap = HashMap<String, Arc<Peer>, BuildHasherDefault<weft_proto::shard::Fnv1a>>;

struct Inner {
    local: NodeId,
    advertise: SocketAddr,
    cfg: Arc<NodeConfig>,
    net: Arc<dyn Net>,
    tls: Option<TlsContext>,
    stats: Arc<Stats>,
    handler: Arc<dyn FrameHandler>,
    /// Read-locked on every send, write-locked to change the table.
    peers: RwLock<PeerMap>,
    rng: Mutex<StdRng>,
    shutdown: CancellationToken,
    closing: AtomicBool,
    next_conn: AtomicU64,
    events: broadcast::Sender<LinkEvent>,
    epoch: Instant,
}

/// Handle to the link manager; cheap to clone.
#[derive(Clone)]
pub struct Links {
    inner: Arc<Inner>,
}

/// Inputs to [`Links::new`].
pub(crate) struct LinksParams {
    pub local: NodeId,
    pub advertise: SocketAddr,
    pub cfg: Arc<NodeConfig>,
    pub net: Arc<dyn Net>,
    pub tls: Option<TlsContext>,
    pub stats: Arc<Stats>,
    pub handler: Arc<dyn FrameHandler>,
    pub rng_seed: u64,
    pub shutdown: CancellationToken,
}

impl Links {
    pub(crate) fn new(p: LinksParams) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                local: p.local,
                advertise: p.advertise,
                cfg: p.cfg,
                net: p.net,
                tls: p.tls,
                stats: p.stats,
                handler: p.handler,
                peers: RwLock::new(PeerMap::default()),
                rng: Mutex::new(StdRng::seed_from_u64(p.rng_seed)),
                shutdown: p.shutdown,
                closing: AtomicBool::new(false),
                next_conn: AtomicU64::new(1),
                events,
                epoch: Instant::now(),
            }),
        }
    }

    /// Subscribes to link up/down events (bounded; a lagging receiver
    /// skips events and is told how many).
    pub fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.inner.events.subscribe()
    }

    /// The peer table for lookups (shared: the hot paths read it).
    fn peers(&self) -> std::sync::RwLockReadGuard<'_, PeerMap> {
        crate::sync::read(&self.inner.peers)
    }

    /// The peer table for changes.
    fn peers_mut(&self) -> std::sync::RwLockWriteGuard<'_, PeerMap> {
        crate::sync::write(&self.inner.peers)
    }

    fn peer_or_create(&self, name: &str) -> Arc<Peer> {
        if let Some(p) = self.peers().get(name) {
            return p.clone();
        }
        let mut peers = self.peers_mut();
        peers
            .entry(name.to_string())
            .or_insert_with(|| {
                let lc = &self.inner.cfg.link;
                Arc::new(Peer {
                    name: name.to_string(),
                    queue: Arc::new(ByteQueue::new(lc.send_queue_bytes, lc.control_queue_bytes)),
                    counters: self.inner.stats.peer(name),
                    rtt_micros: Arc::new(AtomicU64::new(0)),
                    st: Mutex::new(PeerState::default()),
                })
            })
            .clone()
    }

    fn nonce(&self) -> [u8; 32] {
        let mut n = [0u8; 32];
        crate::sync::lock(&self.inner.rng).fill(&mut n);
        n
    }

    fn handshake(&self, role: Role) -> Handshake {
        let cfg = &self.inner.cfg;
        Handshake::new(
            role,
            HandshakeConfig {
                cluster: cfg.cluster.clone(),
                local: self.inner.local.clone(),
                addr: self.inner.advertise.to_string(),
                secret: cfg.secret.expose().to_vec(),
                // Handshake frames are tiny: an unauthenticated peer must
                // not make us buffer a full-size frame.
                max_frame: cfg.link.max_frame.min(weft_proto::codec::MIN_MAX_FRAME),
            },
            self.nonce(),
            Instant::now().into_std(),
            cfg.link.handshake_timeout,
        )
    }

    /// Drops a peer's queued frames, counting them under `reason`.
    /// Drops the frames queued for a run of `peer` that ended; the
    /// handler sees them (dead letters for the tells among them).
    fn drop_queue(&self, peer: &Peer, reason: &'static str) {
        let items = peer.queue.take_all();
        let n: usize = items.iter().map(ByteSized::messages).sum();
        if n > 0 {
            debug!(peer = %peer.name, frames = n, reason, "dropping queued frames");
            self.inner.stats.frames_dropped.add(reason, n as u64);
            self.inner.handler.on_unsent(&peer.name, &items);
        }
    }

    /// Resets a peer whose incarnation changed: the old run's connection
    /// and queued frames are discarded.
    fn reset_for(&self, peer: &Peer, st: &mut PeerState, node: &NodeId) {
        if let Some(slot) = st.conn.take() {
            slot.cancel.cancel();
        }
        self.drop_queue(peer, "peer_restarted");
        st.node = Some(node.clone());
        st.down = false;
        st.member = false;
        peer.queue.reopen();
    }

    /// Membership says `node` is up at `addr`: make sure a link exists.
    pub fn member_up(&self, node: &NodeId, addr: SocketAddr) {
        if node.name == self.inner.local.name || self.inner.closing.load(Ordering::Relaxed) {
            return;
        }
        let peer = self.peer_or_create(&node.name);
        let (dial, ready_now) = {
            let mut st = peer.state();
            match &st.node {
                Some(known) if known.incarnation > node.incarnation => return,
                Some(known) if known.incarnation < node.incarnation => self.reset_for(&peer, &mut st, node),
                _ => {
                    st.node = Some(node.clone());
                    if st.down {
                        st.down = false;
                        peer.queue.reopen();
                    }
                }
            }
            st.addr = Some(addr);
            st.member = true;
            let dial = st.conn.is_none() && !st.dialing;
            if dial {
                st.dialing = true;
            }
            // A link that came up before membership knew the peer becomes
            // ready now.
            let ready_now = match st.conn.as_mut() {
                Some(slot) if !slot.ready => {
                    slot.ready = true;
                    true
                }
                _ => false,
            };
            (dial, ready_now)
        };
        if ready_now {
            self.inner.handler.on_link_up(node);
        }
        if dial {
            self.spawn_dial(peer, false);
        }
    }

    /// Membership says `node` is down: close its link, drop its queue
    /// (counted as `peer_down`), and refuse sends until it is up again.
    pub fn member_down(&self, node: &NodeId) {
        let Some(peer) = self.peers().get(&node.name).cloned() else {
            return;
        };
        let mut st = peer.state();
        if st.node.as_ref().is_some_and(|k| k.incarnation > node.incarnation) {
            return;
        }
        st.down = true;
        st.member = false;
        if let Some(slot) = st.conn.take() {
            slot.cancel.cancel();
        }
        peer.queue.close();
        self.drop_queue(&peer, "peer_down");
        drop(st);
        self.inner.handler.on_member_down(node);
    }

    /// Whether membership declared `peer` down (unknown peers are not).
    pub fn is_down(&self, peer: &str) -> bool {
        self.peers().get(peer).is_some_and(|p| p.state().down)
    }

    /// The incarnation known for `peer`, if any.
    pub fn peer_incarnation(&self, peer: &str) -> Option<u64> {
        let p = self.peers().get(peer).cloned()?;
        let st = p.state();
        st.node.as_ref().map(|n| n.incarnation)
    }

    /// Queues `frame` for `peer`, waiting for room in its send queue.
    pub async fn send(&self, peer: &str, frame: &Frame) -> Result<(), SendError> {
        // Fast path under the shared table lock: no `Arc<Peer>` clone, no
        // waiter registration. Only a full queue takes the waiting path.
        let (p, enc) = match self.prepare(peer, frame, |p, enc| {
            let control = enc.control;
            match p.queue.try_push(enc, control) {
                Ok(()) => Ok(None),
                Err(Pushed::Closed(_)) => Err(self.closed_error(p)),
                Err(Pushed::Full(back)) => Ok(Some((p.clone(), back))),
            }
        })? {
            None => return Ok(()),
            Some(wait) => wait,
        };
        let control = enc.control;
        // The waiting path is boxed so that this future stays small: every
        // caller embeds it in its own future and moves it on every send,
        // while the queue is rarely full.
        Box::pin(p.queue.push(enc, control))
            .await
            .map_err(|_| self.closed_error(&p))
    }

    /// Queues `frame` for `peer` without waiting; [`SendError::Full`] when
    /// its queue is full.
    pub fn try_send(&self, peer: &str, frame: &Frame) -> Result<(), SendError> {
        self.prepare(peer, frame, |p, enc| {
            let control = enc.control;
            match p.queue.try_push(enc, control) {
                Ok(()) => Ok(()),
                Err(Pushed::Full(_)) => Err(SendError::Full(peer.to_string())),
                Err(Pushed::Closed(_)) => Err(self.closed_error(p)),
            }
        })
    }

    /// Most bytes of one frame on these links.
    pub(crate) fn max_frame(&self) -> usize {
        self.inner.cfg.link.max_frame
    }

    /// Queues already encoded `frames` for `peer`, in order, with one lock
    /// of its send queue while there is room (waiting for room as
    /// [`Self::send`] does), then adds their number to the peer's counter
    /// chosen by `count` (the link holds the counters: no lookup per
    /// frame). On failure, returns the error and how many frames were not
    /// queued.
    pub(crate) async fn send_many(
        &self,
        peer: &str,
        frames: Vec<EncodedFrame>,
        count: impl Fn(&PeerCounters) -> &AtomicU64,
    ) -> Result<(), (SendError, usize)> {
        let count_frames = |items: &[EncodedFrame]| items.iter().map(ByteSized::messages).sum::<usize>();
        let n = count_frames(&frames);
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err((SendError::ShuttingDown, n));
        }
        let p = {
            let peers = crate::sync::read(&self.inner.peers);
            match peers.get(peer) {
                Some(p) => p.clone(),
                None => return Err((SendError::UnknownPeer(peer.to_string()), n)),
            }
        };
        match Box::pin(p.queue.push_many(frames, false)).await {
            Ok(()) => {
                count(&p.counters).fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(back) => {
                let lost = count_frames(&back);
                count(&p.counters).fetch_add((n - lost) as u64, Ordering::Relaxed);
                Err((self.closed_error(&p), lost))
            }
        }
    }

    fn closed_error(&self, p: &Peer) -> SendError {
        if self.inner.closing.load(Ordering::Relaxed) {
            SendError::ShuttingDown
        } else {
            SendError::NodeDown(p.name.clone())
        }
    }

    /// Looks `peer` up and encodes `frame`, then hands both to `then`
    /// while the peer table is read-locked (so the common case needs no
    /// `Arc<Peer>` clone).
    ///
    /// There is no look at `PeerState::down` here (a second lock per
    /// send): a down peer's queue is closed (`member_down` closes it under
    /// the state lock, and it is reopened only where `down` is cleared), so
    /// the push fails with `Closed`, reported as `NodeDown` by
    /// [`Self::closed_error`].
    fn prepare<R>(
        &self,
        peer: &str,
        frame: &Frame,
        then: impl FnOnce(&Arc<Peer>, EncodedFrame) -> Result<R, SendError>,
    ) -> Result<R, SendError> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err(SendError::ShuttingDown);
        }
        let peers = crate::sync::read(&self.inner.peers);
        let p = peers
            .get(peer)
            .ok_or_else(|| SendError::UnknownPeer(peer.to_string()))?;
        let max = self.inner.cfg.link.max_frame;
        let enc = frame.encode(max).map_err(|_| SendError::TooLarge {
            len: frame.payload.len(),
            max,
        })?;
        then(p, enc)
    }

    /// The state of every known peer link.
    pub fn infos(&self) -> Vec<LinkInfo> {
        let peers: Vec<Arc<Peer>> = self.peers().values().cloned().collect();
        let mut out: Vec<LinkInfo> = peers
            .iter()
            .map(|p| {
                let st = p.state();
                LinkInfo {
                    peer: p.name.clone(),
                    incarnation: st.node.as_ref().map(|n| n.incarnation),
                    connected: st.conn.is_some(),
                    dialed_by_us: st.conn.as_ref().is_some_and(|s| s.dialer == self.inner.local),
                    queued_bytes: p.queue.queued_bytes(),
                    rtt_micros: p.rtt_micros.load(Ordering::Relaxed),
                    down: st.down,
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Whether a connection to `peer` is established.
    pub fn is_connected(&self, peer: &str) -> bool {
        self.peers().get(peer).is_some_and(|p| p.state().conn.is_some())
    }

    /// Accepts connections until shutdown. At most
    /// [`MAX_PENDING_HANDSHAKES`] handshakes run at once; a connection
    /// beyond that is closed at once and counted as `busy`.
    pub(crate) async fn accept_loop(self, mut listener: Box<dyn Listener>) {
        let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        loop {
            let accepted = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, from)) => {
                    let Ok(permit) = pending.clone().try_acquire_owned() else {
                        warn!(%from, "too many handshakes in progress; connection refused");
                        self.inner.stats.handshake_failures.inc("busy");
                        drop(stream);
                        continue;
                    };
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.accept_one(stream, from).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    self.inner.stats.link_errors.inc("accept");
                    // Back off briefly: EMFILE and friends persist.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn fail_handshake(&self, from: &str, err: &HandshakeError) {
        self.inner.stats.handshake_failures.inc(err.label());
        match err {
            HandshakeError::Refused {
                code: RejectCode::Duplicate,
                ..
            }
            | HandshakeError::Rejected {
                code: RejectCode::Duplicate,
                ..
            } => debug!(%from, "duplicate connection closed by tie-break"),
            _ => {
                warn!(%from, reason = err.label(), error = %err, "handshake failed; connection closed")
            }
        }
    }

    async fn accept_one(self, stream: BoxStream, from: SocketAddr) {
        let mut stream = match &self.inner.tls {
            Some(tls) => {
                match tokio::time::timeout(self.inner.cfg.link.handshake_timeout, tls.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        self.inner.stats.handshake_failures.inc("tls");
                        warn!(%from, error = %e, "TLS accept failed");
                        return;
                    }
                    Err(_) => {
                        self.inner.stats.handshake_failures.inc("timeout");
                        warn!(%from, "TLS accept timed out");
                        return;
                    }
                }
            }
            None => stream,
        };
        let mut hs = self.handshake(Role::Acceptor);
        let mut buf = BytesMut::with_capacity(4096);
        let (decided, result) = drive(&mut stream, &mut hs, &mut buf, |peer| self.decide(peer)).await;
        match (decided, result) {
            (Some((peer, slot_id, cancel)), Ok(info)) => {
                self.run_connection(peer, info.node, slot_id, cancel, stream, buf);
            }
            (decided, result) => {
                if let Some((peer, slot_id, _)) = decided {
                    // Accepted, then the Welcome could not be written.
                    let mut st = peer.state();
                    if st.conn.as_ref().is_some_and(|s| s.id == slot_id) {
                        st.conn = None;
                    }
                }
                let e = result.err().unwrap_or(HandshakeError::Closed);
                self.fail_handshake(&from.to_string(), &e);
                let _ = stream.shutdown().await;
            }
        }
    }

    /// Acceptor's decision on an authenticated peer; installs the new slot
    /// atomically when accepting.
    fn decide(&self, info: &PeerInfo) -> Result<(Arc<Peer>, u64, CancellationToken), (RejectCode, String)> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err((RejectCode::ShuttingDown, "node is shutting down".into()));
        }
        let peer = self.peer_or_create(&info.node.name);
        let mut st = peer.state();
        match &st.node {
            Some(known) if known.incarnation > info.node.incarnation => {
                return Err((RejectCode::StaleIncarnation, format!("{known} is newer")));
            }
            Some(known) if known.incarnation < info.node.incarnation => {
                self.reset_for(&peer, &mut st, &info.node)
            }
            Some(_) => {}
            None => st.node = Some(info.node.clone()),
        }
        let we_win = self.inner.local < info.node;
        let ours_in_play = st.dialing || st.conn.as_ref().is_some_and(|s| s.dialer == self.inner.local);
        if ours_in_play && we_win {
            return Err((
                RejectCode::Duplicate,
                "keeping the connection dialled by the smaller node".into(),
            ));
        }
        if st.down {
            st.down = false;
            peer.queue.reopen();
        }
        let (id, cancel) = self.install(&peer, &mut st, info.node.clone());
        drop(st);
        Ok((peer, id, cancel))
    }

    fn install(&self, peer: &Peer, st: &mut PeerState, dialer: NodeId) -> (u64, CancellationToken) {
        if let Some(old) = st.conn.take() {
            debug!(peer = %peer.name, "replacing connection");
            old.cancel.cancel();
        }
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let cancel = self.inner.shutdown.child_token();
        st.conn = Some(Slot {
            id,
            dialer,
            cancel: cancel.clone(),
            ready: false,
        });
        (id, cancel)
    }

    fn run_connection(
        &self,
        peer: Arc<Peer>,
        node: NodeId,
        slot_id: u64,
        cancel: CancellationToken,
        stream: BoxStream,
        leftover: BytesMut,
    ) {
        let lc = &self.inner.cfg.link;
        let params = ConnParams {
            peer: node.clone(),
            queue: peer.queue.clone(),
            counters: peer.counters.clone(),
            stats: self.inner.stats.clone(),
            handler: self.inner.handler.clone(),
            max_frame: lc.max_frame,
            heartbeat: lc.heartbeat_interval,
            idle_timeout: lc.idle_timeout,
            cancel,
            rtt_micros: peer.rtt_micros.clone(),
            epoch: self.inner.epoch,
        };
        self.inner.stats.links_up.fetch_add(1, Ordering::Relaxed);
        peer.counters.connections.fetch_add(1, Ordering::Relaxed);
        info!(peer = %node, "link up");
        let ready = {
            let mut st = peer.state();
            let member = st.member;
            match st.conn.as_mut() {
                Some(slot) if slot.id == slot_id && member => {
                    slot.ready = true;
                    true
                }
                _ => false,
            }
        };
        if ready {
            self.inner.handler.on_link_up(&node);
        }
        let _ = self.inner.events.send(LinkEvent::Up(node.clone()));
        let me = self.clone();
        tokio::spawn(async move {
            let reason = conn::run(stream, leftover, params).await;
            me.connection_closed(&peer, &node, slot_id, reason);
        });
    }

    fn connection_closed(&self, peer: &Arc<Peer>, node: &NodeId, slot_id: u64, reason: CloseReason) {
        self.inner.stats.links_down.fetch_add(1, Ordering::Relaxed);
        if reason != CloseReason::Local {
            self.inner.stats.link_errors.inc(reason.label());
        }
        let (current, was_ready, redial) = {
            let mut st = peer.state();
            let current = st.conn.as_ref().is_some_and(|s| s.id == slot_id);
            let mut was_ready = false;
            if current {
                was_ready = st.conn.take().is_some_and(|s| s.ready);
            }
            let redial = current
                && !st.down
                && !st.dialing
                && reason != CloseReason::PeerLeft
                && !self.inner.closing.load(Ordering::Relaxed);
            if redial {
                st.dialing = true;
            }
            (current, was_ready, redial)
        };
        info!(peer = %node, reason = reason.label(), "link down");
        if current {
            // A replaced connection's end is not the link's end.
            if was_ready {
                self.inner.handler.on_link_down(node);
            }
            let _ = self.inner.events.send(LinkEvent::Down(node.clone()));
        }
        if redial {
            self.spawn_dial(peer.clone(), true);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let lc = &self.inner.cfg.link;
        let base = lc
            .backoff_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(lc.backoff_max);
        let jitter: f64 = crate::sync::lock(&self.inner.rng).random_range(0.5..1.5);
        base.mul_f64(jitter)
    }

    fn spawn_dial(&self, peer: Arc<Peer>, delay_first: bool) {
        let me = self.clone();
        tokio::spawn(async move {
            me.dial_loop(&peer, delay_first).await;
            peer.state().dialing = false;
        });
    }

    async fn dial_loop(&self, peer: &Arc<Peer>, delay_first: bool) {
        let mut attempt = 0u32;
        if delay_first {
            let d = self.backoff(0);
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(d) => {}
            }
        }
        loop {
            let addr = {
                let st = peer.state();
                if st.down || st.conn.is_some() || self.inner.closing.load(Ordering::Relaxed) {
                    return;
                }
                match st.addr {
                    Some(a) => a,
                    None => return,
                }
            };
            match self.dial_once(peer, addr).await {
                Ok(()) => return,
                Err(e) => {
                    if let Some(e) = &e {
                        self.fail_handshake(&peer.name, e);
                    }
                    if peer.state().conn.is_some() {
                        return;
                    }
                }
            }
            let d = self.backoff(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(d) => {}
            }
        }
    }

    /// One connection attempt. `Err(None)`: failed before the handshake
    /// (already counted).
    async fn dial_once(&self, peer: &Arc<Peer>, addr: SocketAddr) -> Result<(), Option<HandshakeError>> {
        let lc = &self.inner.cfg.link;
        let stream = match tokio::time::timeout(lc.connect_timeout, self.inner.net.connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(peer = %peer.name, %addr, error = %e, "connect failed");
                self.inner.stats.dial_failures.fetch_add(1, Ordering::Relaxed);
                return Err(None);
            }
            Err(_) => {
                debug!(peer = %peer.name, %addr, "connect timed out");
                self.inner.stats.dial_failures.fetch_add(1, Ordering::Relaxed);
                return Err(None);
            }
        };
        let mut stream = match &self.inner.tls {
            Some(tls) => match tokio::time::timeout(lc.handshake_timeout, tls.connect(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(peer = %peer.name, error = %e, "TLS connect failed");
                    self.inner.stats.handshake_failures.inc("tls");
                    return Err(None);
                }
                Err(_) => {
                    self.inner.stats.handshake_failures.inc("timeout");
                    return Err(None);
                }
            },
            None => stream,
        };
        let mut hs = self.handshake(Role::Dialer);
        let mut buf = BytesMut::with_capacity(4096);
        let (_, established) = drive(&mut stream, &mut hs, &mut buf, |_| {
            Err::<(), _>((RejectCode::Protocol, String::new()))
        })
        .await;
        match established {
            Ok(info) => {
                if info.node.name != peer.name {
                    // The address now belongs to another node; membership
                    // will catch up. Keep this link under its real name.
                    warn!(expected = %peer.name, got = %info.node, "dialled address answered as another node");
                }
                let target = self.peer_or_create(&info.node.name);
                let (id, cancel) = {
                    let mut st = target.state();
                    match &st.node {
                        Some(k) if k.incarnation > info.node.incarnation => {
                            return Err(Some(HandshakeError::Refused {
                                code: RejectCode::StaleIncarnation,
                                detail: format!("{k} is newer"),
                            }));
                        }
                        Some(k) if k.incarnation < info.node.incarnation => {
                            self.reset_for(&target, &mut st, &info.node)
                        }
                        Some(_) => {}
                        None => st.node = Some(info.node.clone()),
                    }
                    if st.down {
                        st.down = false;
                        target.queue.reopen();
                    }
                    self.install(&target, &mut st, self.inner.local.clone())
                };
                self.run_connection(target, info.node, id, cancel, stream, buf);
                Ok(())
            }
            Err(e) => {
                let _ = stream.shutdown().await;
                Err(Some(e))
            }
        }
    }

    /// Graceful close: says goodbye on every link, waits up to `drain` for
    /// queued frames to be written, then closes every connection.
    pub async fn shutdown(&self, drain: Duration) {
        self.inner.closing.store(true, Ordering::Relaxed);
        let peers: Vec<Arc<Peer>> = self.peers().values().cloned().collect();
        for p in &peers {
            if p.state().conn.is_some()
                && let Ok(bye) = Frame::control(Header::Goodbye(Goodbye {
                    reason: "shutting down".into(),
                }))
                .encode(self.inner.cfg.link.max_frame)
            {
                let _ = p.queue.try_push(bye, false);
            }
        }
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline
            && peers
                .iter()
                .any(|p| !p.queue.is_empty() && p.state().conn.is_some())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for p in &peers {
            p.queue.close();
            let n = p.queue.clear();
            if n > 0 {
                self.inner.stats.frames_dropped.add("shutdown", n as u64);
            }
        }
        self.inner.shutdown.cancel();
    }
}

async fn write_out(
    stream: &mut BoxStream,
    hs: &mut Handshake,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    while let Some(out) = hs.poll_transmit() {
        match tokio::time::timeout_at(deadline, stream.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(HandshakeError::Closed),
            Err(_) => return Err(HandshakeError::Timeout),
        }
    }
    Ok(())
}

/// Runs a handshake over `stream` to completion. For the acceptor,
/// `decide` is called once the peer is authenticated; its `Ok` value is
/// returned with the peer.
async fn drive<T>(
    stream: &mut BoxStream,
    hs: &mut Handshake,
    buf: &mut BytesMut,
    mut decide: impl FnMut(&PeerInfo) -> Result<T, (RejectCode, String)>,
) -> (Option<T>, Result<PeerInfo, HandshakeError>) {
    let deadline = Instant::from_std(hs.poll_timeout());
    let mut decided = None;
    let result = loop {
        if let Err(e) = write_out(stream, hs, deadline).await {
            break Err(e);
        }
        match hs.handle_input(buf) {
            Ok(Progress::Pending) => {
                // Input may have produced frames (our Auth): send them
                // before waiting for more.
                if let Err(e) = write_out(stream, hs, deadline).await {
                    break Err(e);
                }
            }
            Ok(Progress::Authenticated(info)) => match decide(&info) {
                Ok(v) => {
                    decided = Some(v);
                    if let Err(e) = hs.accept() {
                        break Err(e);
                    }
                    continue;
                }
                Err((code, detail)) => break Err(hs.reject(code, detail)),
            },
            Ok(Progress::Established(info)) => {
                // Flush our final frame (the acceptor's Welcome).
                match write_out(stream, hs, deadline).await {
                    Ok(()) => break Ok(info),
                    Err(e) => break Err(e),
                }
            }
            Err(e) => break Err(e),
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0)) => break Err(HandshakeError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break Err(HandshakeError::Closed),
            Err(_) => {
                let _ = hs.handle_timeout(deadline.into_std());
                break Err(HandshakeError::Timeout);
            }
        }
    };
    if result.is_err() {
        // Best effort: tell the peer why (a queued Reject), briefly.
        if let Some(out) = hs.poll_transmit() {
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&out)).await;
        }
    }
    (decided, result)
}
