//! The link handshake as a sans-IO state machine.
//!
//! Both sides send, without waiting: the preamble (`WEFT`, version) and a
//! [`Hello`] (cluster, identity, 32-byte fresh nonce). On the peer's hello
//! each side checks cluster name and identity and sends an [`Auth`]: an
//! HMAC-SHA256 of the whole transcript under the cluster secret, labelled
//! with its role so a proof cannot be reflected. On the peer's auth each
//! side verifies it. The acceptor then asks its owner to decide (a
//! duplicate link may lose the tie-break) and sends `Welcome` or `Reject`;
//! the dialer waits for that answer. Only after `Welcome` may either side
//! send link frames, so no frame is ever written on a connection that the
//! tie-break then closes.
//!
//! Any failure has a specific [`HandshakeError`]; where the peer can
//! understand it, a [`Reject`] frame is queued first so its log says why.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::auth::{ProofRole, Transcript, link_proof, verify_link_proof};
use crate::codec::{FrameDecoder, FrameError, PROTOCOL_VERSION, decode_preamble, encode_preamble};
use crate::frame::{Auth, Frame, Header, Hello, Reject, RejectCode};
use crate::node_id::NodeId;

/// Which end of the TCP connection this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection.
    Dialer,
    /// Accepted the connection.
    Acceptor,
}

impl Role {
    fn proof(self) -> ProofRole {
        match self {
            Role::Dialer => ProofRole::Dialer,
            Role::Acceptor => ProofRole::Acceptor,
        }
    }
}

/// What this node brings to a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// Cluster name; a peer with another name is refused.
    pub cluster: String,
    /// This node's identity.
    pub local: NodeId,
    /// This node's advertised cluster address, sent for information.
    pub addr: String,
    /// The cluster secret (never sent).
    pub secret: Vec<u8>,
    /// Largest frame accepted during the handshake.
    pub max_frame: usize,
}

/// The authenticated peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its identity.
    pub node: NodeId,
    /// The cluster address it advertises.
    pub addr: String,
}

/// How far the handshake got after some input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed.
    Pending,
    /// Acceptor only: the peer proved the secret. Call
    /// [`Handshake::accept`] or [`Handshake::reject`].
    Authenticated(PeerInfo),
    /// The link is up. Bytes still in the buffer are link frames.
    Established(PeerInfo),
}

/// Why a handshake failed. Each variant is a distinct, countable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not send the weft magic (an HTTP client, noise).
    #[error("peer is not speaking weft: {0}")]
    BadMagic(FrameError),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// The peer's version.
        theirs: u8,
    },
    /// The peer belongs to another cluster.
    #[error("cluster name mismatch: ours {ours:?}, theirs {theirs:?}")]
    ClusterMismatch {
        /// Our cluster name.
        ours: String,
        /// The peer's cluster name.
        theirs: String,
    },
    /// The peer's proof did not verify (different secret).
    #[error("peer {peer} failed authentication (wrong secret)")]
    AuthFailed {
        /// Who the peer claimed to be.
        peer: NodeId,
    },
    /// The peer refused us and said why.
    #[error("peer rejected the handshake: {code:?}: {detail}")]
    Rejected {
        /// Its reason code.
        code: RejectCode,
        /// Its explanation.
        detail: String,
    },
    /// We refused the peer (decision of our owner).
    #[error("we refused the peer: {code:?}: {detail}")]
    Refused {
        /// Our reason code.
        code: RejectCode,
        /// Our explanation.
        detail: String,
    },
    /// The peer claims our own node name.
    #[error("peer claims our own name {0:?} (self-connect or duplicate name)")]
    SelfConnect(String),
    /// A frame that has no place at this step of the handshake.
    #[error("unexpected {0} frame during the handshake")]
    Unexpected(&'static str),
    /// Undecodable or oversized frame.
    #[error("bad frame during the handshake: {0}")]
    Frame(FrameError),
    /// The handshake did not finish before its deadline.
    #[error("handshake timed out")]
    Timeout,
    /// The connection closed before the handshake finished.
    #[error("connection closed during the handshake")]
    Closed,
}

impl HandshakeError {
    /// A short static label for the `reason` of a metric.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeError::BadMagic(_) => "bad_magic",
            HandshakeError::VersionMismatch { .. } => "version_mismatch",
            HandshakeError::ClusterMismatch { .. } => "cluster_mismatch",
            HandshakeError::AuthFailed { .. } => "auth_failed",
            HandshakeError::Rejected { code, .. } => match code {
                RejectCode::AuthFailed => "rejected_auth",
                RejectCode::ClusterMismatch => "rejected_cluster",
                RejectCode::Duplicate => "rejected_duplicate",
                RejectCode::SelfConnect => "rejected_self",
                RejectCode::ShuttingDown => "rejected_shutdown",
                RejectCode::StaleIncarnation => "rejected_stale",
                RejectCode::Protocol => "rejected_protocol",
            },
            HandshakeError::Refused { code, .. } => match code {
                RejectCode::Duplicate => "duplicate",
                RejectCode::ShuttingDown => "shutting_down",
                RejectCode::StaleIncarnation => "stale_incarnation",
                _ => "refused",
            },
            HandshakeError::SelfConnect(_) => "self_connect",
            HandshakeError::Unexpected(_) => "protocol",
            HandshakeError::Frame(e) => e.label(),
            HandshakeError::Timeout => "timeout",
            HandshakeError::Closed => "closed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Preamble,
    Hello,
    Auth,
    Decision,
    Welcome,
    Done,
    Failed,
}

/// One side of a link handshake.
///
/// Contract: call [`poll_transmit`](Self::poll_transmit) after every call
/// and write what it returns, in order; feed every received byte to
/// [`handle_input`](Self::handle_input); call
/// [`handle_timeout`](Self::handle_timeout) at [`deadline`](Self::deadline).
/// After an error, write the remaining transmit bytes (a `Reject`, if any)
/// and close the connection.
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    config: HandshakeConfig,
    nonce: [u8; 32],
    step: Step,
    peer: Option<Hello>,
    decoder: FrameDecoder,
    out: BytesMut,
    deadline: Instant,
}

impl Handshake {
    /// Starts a handshake; the preamble and hello are queued at once.
    /// `nonce` must be 32 fresh random bytes.
    pub fn new(
        role: Role,
        config: HandshakeConfig,
        nonce: [u8; 32],
        now: Instant,
        timeout: Duration,
    ) -> Self {
        let mut out = BytesMut::with_capacity(256);
        encode_preamble(&mut out);
        let hello = Frame::control(Header::Hello(Hello {
            cluster: config.cluster.clone(),
            node: config.local.clone(),
            nonce,
            addr: config.addr.clone(),
        }));
        let mut hs = Self {
            role,
            decoder: FrameDecoder::new(config.max_frame),
            config,
            nonce,
            step: Step::Preamble,
            peer: None,
            out,
            deadline: now + timeout,
        };
        hs.push(&hello);
        hs
    }

    fn push(&mut self, frame: &Frame) {
        // Handshake frames are tiny; the maximum can only be hit by a
        // misconfiguration below MIN_MAX_FRAME, which the config refuses.
        if frame.encode_into(self.config.max_frame, &mut self.out).is_err() {
            self.step = Step::Failed;
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Bytes to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// When the handshake times out (the driver calls [`Self::handle_timeout`] then).
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    /// Fails the handshake if `now` is past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if now >= self.deadline && !matches!(self.step, Step::Done | Step::Failed) {
            self.step = Step::Failed;
            return Err(HandshakeError::Timeout);
        }
        Ok(())
    }

    fn fail(&mut self, err: HandshakeError, reject: Option<(RejectCode, String)>) -> HandshakeError {
        if let Some((code, detail)) = reject {
            self.push(&Frame::control(Header::Reject(Reject { code, detail })));
        }
        self.step = Step::Failed;
        err
    }

    fn transcript_proof(&self, role: Role, peer: &Hello) -> [u8; 32] {
        let me = (&self.config.local, &self.nonce);
        let them = (&peer.node, &peer.nonce);
        let (dialer, acceptor) = match self.role {
            Role::Dialer => (me, them),
            Role::Acceptor => (them, me),
        };
        let t = Transcript {
            cluster: &self.config.cluster,
            version: PROTOCOL_VERSION,
            dialer,
            acceptor,
        };
        link_proof(&self.config.secret, role.proof(), &t)
    }

    fn verify(&self, peer: &Hello, mac: &[u8; 32]) -> bool {
        let me = (&self.config.local, &self.nonce);
        let them = (&peer.node, &peer.nonce);
        let (dialer, acceptor, peer_role) = match self.role {
            Role::Dialer => (me, them, ProofRole::Acceptor),
            Role::Acceptor => (them, me, ProofRole::Dialer),
        };
        let t = Transcript {
            cluster: &self.config.cluster,
            version: PROTOCOL_VERSION,
            dialer,
            acceptor,
        };
        verify_link_proof(&self.config.secret, peer_role, &t, mac)
    }

    fn peer_info(&self) -> Option<PeerInfo> {
        self.peer.as_ref().map(|h| PeerInfo {
            node: h.node.clone(),
            addr: h.addr.clone(),
        })
    }

    /// Consumes handshake bytes from the front of `buf`.
    ///
    /// Stops after the frame that completes (or decides) the handshake, so
    /// bytes that follow stay in `buf` for the link.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<Progress, HandshakeError> {
        loop {
            match self.step {
                Step::Failed => return Err(HandshakeError::Unexpected("any")),
                Step::Done => {
                    return self
                        .peer_info()
                        .map(Progress::Established)
                        .ok_or(HandshakeError::Closed);
                }
                Step::Decision => return Ok(Progress::Pending),
                Step::Preamble => match decode_preamble(buf) {
                    Ok(None) => return Ok(Progress::Pending),
                    Ok(Some(v)) if v == PROTOCOL_VERSION => self.step = Step::Hello,
                    Ok(Some(v)) => {
                        return Err(self.fail(
                            HandshakeError::VersionMismatch {
                                ours: PROTOCOL_VERSION,
                                theirs: v,
                            },
                            None,
                        ));
                    }
                    Err(e) => return Err(self.fail(HandshakeError::BadMagic(e), None)),
                },
                Step::Hello | Step::Auth | Step::Welcome => {
                    let frame = match self.decoder.decode(buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => return Ok(Progress::Pending),
                        Err(e) => {
                            return Err(self.fail(
                                HandshakeError::Frame(e.clone()),
                                Some((RejectCode::Protocol, e.to_string())),
                            ));
                        }
                    };
                    if let Some(progress) = self.on_frame(frame)? {
                        return Ok(progress);
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Progress>, HandshakeError> {
        if let Header::Reject(r) = frame.header {
            return Err(self.fail(
                HandshakeError::Rejected {
                    code: r.code,
                    detail: r.detail,
                },
                None,
            ));
        }
        match (self.step, frame.header) {
            (Step::Hello, Header::Hello(hello)) => {
                if hello.cluster != self.config.cluster {
                    let detail = format!("cluster is {:?}", self.config.cluster);
                    return Err(self.fail(
                        HandshakeError::ClusterMismatch {
                            ours: self.config.cluster.clone(),
                            theirs: hello.cluster,
                        },
                        Some((RejectCode::ClusterMismatch, detail)),
                    ));
                }
                if hello.node.name == self.config.local.name {
                    let detail = format!("name {:?} is ours", hello.node.name);
                    return Err(self.fail(
                        HandshakeError::SelfConnect(hello.node.name),
                        Some((RejectCode::SelfConnect, detail)),
                    ));
                }
                let mac = self.transcript_proof(self.role, &hello);
                self.peer = Some(hello);
                self.push(&Frame::control(Header::Auth(Auth { mac })));
                self.step = Step::Auth;
                Ok(None)
            }
            (Step::Auth, Header::Auth(auth)) => {
                let Some(peer) = self.peer.clone() else {
                    return Err(self.fail(HandshakeError::Unexpected("auth"), None));
                };
                if !self.verify(&peer, &auth.mac) {
                    return Err(self.fail(
                        HandshakeError::AuthFailed { peer: peer.node },
                        Some((RejectCode::AuthFailed, "proof did not verify".into())),
                    ));
                }
                match self.role {
                    Role::Acceptor => {
                        self.step = Step::Decision;
                        Ok(self.peer_info().map(Progress::Authenticated))
                    }
                    Role::Dialer => {
                        self.step = Step::Welcome;
                        Ok(None)
                    }
                }
            }
            (Step::Welcome, Header::Welcome) => {
                self.step = Step::Done;
                Ok(self.peer_info().map(Progress::Established))
            }
            (_, header) => {
                let name = header.name();
                Err(self.fail(
                    HandshakeError::Unexpected(name),
                    Some((RejectCode::Protocol, format!("unexpected {name} frame"))),
                ))
            }
        }
    }

    /// Acceptor: confirms the link after [`Progress::Authenticated`].
    pub fn accept(&mut self) -> Result<PeerInfo, HandshakeError> {
        if self.step != Step::Decision {
            return Err(HandshakeError::Unexpected("accept"));
        }
        self.push(&Frame::control(Header::Welcome));
        self.step = Step::Done;
        self.peer_info().ok_or(HandshakeError::Closed)
    }

    /// Refuses the peer after [`Progress::Authenticated`]; queues a
    /// `Reject` with `code` and `detail` and returns the matching error.
    pub fn reject(&mut self, code: RejectCode, detail: impl Into<String>) -> HandshakeError {
        let detail = detail.into();
        self.fail(
            HandshakeError::Refused {
                code,
                detail: detail.clone(),
            },
            Some((code, detail)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(name: &str, cluster: &str, secret: &[u8]) -> HandshakeConfig {
        HandshakeConfig {
            cluster: cluster.into(),
            local: NodeId::new(name, 1),
            addr: format!("{name}:1"),
            secret: secret.to_vec(),
            max_frame: 64 * 1024,
        }
    }

    struct Pair {
        d: Handshake,
        a: Handshake,
        to_a: BytesMut,
        to_d: BytesMut,
    }

    impl Pair {
        fn new(dc: HandshakeConfig, ac: HandshakeConfig) -> Self {
            let now = Instant::now();
            Pair {
                d: Handshake::new(Role::Dialer, dc, [1; 32], now, Duration::from_secs(5)),
                a: Handshake::new(Role::Acceptor, ac, [2; 32], now, Duration::from_secs(5)),
                to_a: BytesMut::new(),
                to_d: BytesMut::new(),
            }
        }
        fn pump(&mut self) {
            while let Some(b) = self.d.poll_transmit() {
                self.to_a.extend_from_slice(&b);
            }
            while let Some(b) = self.a.poll_transmit() {
                self.to_d.extend_from_slice(&b);
            }
        }
        /// Runs until both sides stop progressing; returns the last results.
        fn run(&mut self) -> (Result<Progress, HandshakeError>, Result<Progress, HandshakeError>) {
            let mut rd = Ok(Progress::Pending);
            let mut ra = Ok(Progress::Pending);
            for _ in 0..8 {
                self.pump();
                if !matches!(ra, Ok(Progress::Authenticated(_)) | Err(_)) {
                    ra = self.a.handle_input(&mut self.to_a);
                }
                if let Ok(Progress::Authenticated(_)) = ra {
                    // The test accepts by default.
                    ra = self.a.accept().map(Progress::Established);
                }
                self.pump();
                if !matches!(rd, Ok(Progress::Established(_)) | Err(_)) {
                    rd = self.d.handle_input(&mut self.to_d);
                }
            }
            (rd, ra)
        }
    }

    #[test]
    fn both_sides_establish() {
        let mut p = Pair::new(cfg("a", "c", b"s"), cfg("b", "c", b"s"));
        let (d, a) = p.run();
        assert_eq!(
            d,
            Ok(Progress::Established(PeerInfo {
                node: NodeId::new("b", 1),
                addr: "b:1".into()
            }))
        );
        assert!(matches!(a, Ok(Progress::Established(ref p)) if p.node.name == "a"));
    }

    #[test]
    fn wrong_secret_fails_on_both_sides() {
        let mut p = Pair::new(cfg("a", "c", b"s"), cfg("b", "c", b"other"));
        let (d, a) = p.run();
        assert!(matches!(a, Err(HandshakeError::AuthFailed { .. })), "{a:?}");
        assert!(
            matches!(
                d,
                Err(HandshakeError::AuthFailed { .. }) | Err(HandshakeError::Rejected { .. })
            ),
            "{d:?}"
        );
    }

    #[test]
    fn cluster_mismatch_is_named() {
        let mut p = Pair::new(cfg("a", "c1", b"s"), cfg("b", "c2", b"s"));
        let (d, a) = p.run();
        assert!(matches!(a, Err(HandshakeError::ClusterMismatch { .. })));
        assert!(matches!(d, Err(HandshakeError::ClusterMismatch { .. })));
        assert_eq!(d.expect_err("fails").label(), "cluster_mismatch");
    }

    #[test]
    fn self_connect_is_refused() {
        let mut p = Pair::new(cfg("a", "c", b"s"), cfg("a", "c", b"s"));
        let (d, _) = p.run();
        assert!(matches!(d, Err(HandshakeError::SelfConnect(_))));
    }

    #[test]
    fn acceptor_rejection_reaches_the_dialer() {
        let mut p = Pair::new(cfg("a", "c", b"s"), cfg("b", "c", b"s"));
        p.pump();
        let _ = p.a.handle_input(&mut p.to_a);
        p.pump();
        let _ = p.d.handle_input(&mut p.to_d);
        p.pump();
        let r = p.a.handle_input(&mut p.to_a);
        assert!(matches!(r, Ok(Progress::Authenticated(_))), "{r:?}");
        let e = p.a.reject(RejectCode::Duplicate, "tie-break");
        assert_eq!(e.label(), "duplicate");
        p.pump();
        let d = p.d.handle_input(&mut p.to_d);
        assert!(matches!(
            d,
            Err(HandshakeError::Rejected {
                code: RejectCode::Duplicate,
                ..
            })
        ));
    }

    #[test]
    fn wrong_version_and_garbage() {
        let now = Instant::now();
        let mut a = Handshake::new(
            Role::Acceptor,
            cfg("b", "c", b"s"),
            [2; 32],
            now,
            Duration::from_secs(1),
        );
        let mut buf = BytesMut::from(&b"WEFT\x09"[..]);
        assert!(matches!(
            a.handle_input(&mut buf),
            Err(HandshakeError::VersionMismatch { theirs: 9, .. })
        ));
        let mut a = Handshake::new(
            Role::Acceptor,
            cfg("b", "c", b"s"),
            [2; 32],
            now,
            Duration::from_secs(1),
        );
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let e = a.handle_input(&mut buf).expect_err("garbage");
        assert_eq!(e.label(), "bad_magic");
    }

    #[test]
    fn data_before_welcome_is_a_protocol_error() {
        let now = Instant::now();
        let mut a = Handshake::new(
            Role::Acceptor,
            cfg("b", "c", b"s"),
            [2; 32],
            now,
            Duration::from_secs(1),
        );
        let mut buf = BytesMut::new();
        encode_preamble(&mut buf);
        Frame::data(1, Bytes::from_static(b"x"))
            .encode_into(1024, &mut buf)
            .expect("encode");
        let e = a.handle_input(&mut buf).expect_err("refused");
        assert_eq!(e, HandshakeError::Unexpected("data"));
        // A Reject is queued for the peer after the hello.
        assert!(a.poll_transmit().is_some_and(|b| b.len() > 40));
    }

    #[test]
    fn timeout_fires_only_after_deadline() {
        let now = Instant::now();
        let mut a = Handshake::new(
            Role::Acceptor,
            cfg("b", "c", b"s"),
            [2; 32],
            now,
            Duration::from_secs(1),
        );
        assert_eq!(a.handle_timeout(now), Ok(()));
        assert_eq!(a.handle_timeout(a.poll_timeout()), Err(HandshakeError::Timeout));
    }

    #[test]
    fn reflected_proof_is_refused() {
        // An attacker without the secret connects to `b` and replays b's own
        // hello and auth back at it: the role label makes the proof invalid.
        let now = Instant::now();
        let mut b = Handshake::new(
            Role::Acceptor,
            cfg("b", "c", b"s"),
            [2; 32],
            now,
            Duration::from_secs(1),
        );
        let mut attacker_hello = BytesMut::new();
        encode_preamble(&mut attacker_hello);
        let hello = Hello {
            cluster: "c".into(),
            node: NodeId::new("x", 1),
            nonce: [2; 32],
            addr: String::new(),
        };
        Frame::control(Header::Hello(hello.clone()))
            .encode_into(1024, &mut attacker_hello)
            .expect("encode");
        assert_eq!(b.handle_input(&mut attacker_hello), Ok(Progress::Pending));
        // b's own proof for this transcript, as if reflected.
        let reflected = b.transcript_proof(Role::Acceptor, &hello);
        let mut auth = BytesMut::new();
        Frame::control(Header::Auth(Auth { mac: reflected }))
            .encode_into(1024, &mut auth)
            .expect("encode");
        assert!(matches!(
            b.handle_input(&mut auth),
            Err(HandshakeError::AuthFailed { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8), preamble in any::<bool>()) {
            let now = Instant::now();
            let mut a = Handshake::new(Role::Acceptor, cfg("b", "c", b"s"), [2; 32], now, Duration::from_secs(1));
            let mut buf = BytesMut::new();
            if preamble {
                encode_preamble(&mut buf);
            }
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                if a.handle_input(&mut buf).is_err() {
                    break;
                }
                let _ = a.poll_transmit();
            }
        }
    }
}
