//! Frame kinds and their headers.
//!
//! A frame is a kind byte, a postcard-encoded header whose type depends on
//! the kind, and opaque payload bytes. The kind byte is explicit (not the
//! postcard enum tag) so that a node can skip a frame kind it does not know
//! and keep the connection: see `docs/wire.md` for the evolution rules.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::node_id::NodeId;
use crate::pid::Pid;

/// Kind bytes. Values are part of the wire protocol and never reused.
pub mod kind {
    /// [`super::Hello`]: first frame of the handshake.
    pub const HELLO: u8 = 1;
    /// [`super::Auth`]: proof of the cluster secret.
    pub const AUTH: u8 = 2;
    /// Acceptor's final "link established" (no header fields).
    pub const WELCOME: u8 = 3;
    /// [`super::Reject`]: the sender closes the connection and says why.
    pub const REJECT: u8 = 4;
    /// [`super::Ping`]: link heartbeat request.
    pub const PING: u8 = 16;
    /// [`super::Ping`] echoed back as a heartbeat answer.
    pub const PONG: u8 = 17;
    /// [`super::Goodbye`]: the sender is leaving and closes the link.
    pub const GOODBYE: u8 = 18;
    /// Registry message (postcard [`crate::registry::Msg`] in the payload).
    pub const REGISTRY: u8 = 20;
    /// [`super::RegistryAck`]: the receiver applied the origin's registry
    /// entries up to a version (interest barrier).
    pub const REGISTRY_ACK: u8 = 21;
    /// [`super::RpcRequest`]: a request expecting one reply.
    pub const RPC_REQUEST: u8 = 24;
    /// [`super::RpcReply`]: the reply to a request.
    pub const RPC_REPLY: u8 = 25;
    /// [`super::DeadLetter`]: messages the sender's node sent that the
    /// receiver dropped. Never answered (no dead letter for a dead letter).
    pub const DEAD_LETTER: u8 = 26;
    /// [`super::Data`]: application bytes on a numbered channel.
    pub const DATA: u8 = 64;
    /// [`super::Tell`]: a message to a mailbox by pid.
    pub const TELL: u8 = 65;
    /// [`super::TellNamed`]: a message to a mailbox by registered name.
    pub const TELL_NAMED: u8 = 66;
    /// [`super::Reply`]: the answer to a call.
    pub const REPLY: u8 = 67;
    /// [`super::GroupPublish`]: a message to every local member of a group.
    pub const GROUP_PUBLISH: u8 = 68;
    /// [`super::Publish`]: a pub/sub message for the receiver's subscribers.
    pub const PUBLISH: u8 = 69;
    /// [`super::StreamKey`]: an edge asks the origin for a stream.
    pub const STREAM_SUBSCRIBE: u8 = 70;
    /// [`super::StreamData`]: one stream frame from origin to edge.
    pub const STREAM_DATA: u8 = 71;
    /// [`super::StreamKey`]: the edge no longer wants the stream.
    pub const STREAM_UNSUBSCRIBE: u8 = 72;
    /// [`super::StreamEnd`]: the stream ended (or is not here).
    pub const STREAM_END: u8 = 73;
    /// [`super::StreamHeartbeat`]: the origin is alive for this stream.
    pub const STREAM_HEARTBEAT: u8 = 74;
    /// [`super::StreamAttached`]: the origin attached an edge; the replay
    /// and live frames follow on the same link.
    pub const STREAM_ATTACHED: u8 = 75;
    /// [`super::StreamAttach`]: an edge asks the origin for a stream and
    /// an acknowledgement ([`STREAM_ATTACHED`]).
    pub const STREAM_ATTACH: u8 = 76;

    /// Kinds below this value are link control: they are queued ahead of
    /// data frames. The class is a property of the kind, so both sides
    /// agree on it without negotiation.
    pub const FIRST_DATA_KIND: u8 = 64;
}

/// First handshake frame: who the sender is and its fresh nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Cluster name; both sides must agree exactly.
    pub cluster: String,
    /// The sender's identity.
    pub node: NodeId,
    /// 32 fresh random bytes, never reused.
    pub nonce: [u8; 32],
    /// The sender's advertised cluster address (`host:port`), informational.
    pub addr: String,
}

/// Second handshake frame: HMAC-SHA256 over both hellos, keyed by the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The 32-byte MAC computed by [`crate::auth::link_proof`].
    pub mac: [u8; 32],
}

/// Why a connection was refused; sent to the peer before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// The peer's cluster name differs from ours.
    ClusterMismatch,
    /// The peer's proof did not verify: different secret.
    AuthFailed,
    /// A link to this peer already exists or wins the tie-break.
    Duplicate,
    /// The peer claimed our own identity (a node connected to itself).
    SelfConnect,
    /// The receiving node is shutting down.
    ShuttingDown,
    /// The peer is a stale incarnation of a node we already know newer.
    StaleIncarnation,
    /// A protocol violation (unexpected frame, malformed header).
    Protocol,
}

/// Final frame of a refused handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// Human-readable detail for the peer's log.
    pub detail: String,
}

/// Heartbeat request; the receiver echoes it unchanged as a pong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Sender-chosen sequence number.
    pub seq: u64,
    /// Sender's clock in microseconds, echoed back to measure round trips.
    pub sent_micros: u64,
}

/// The sender is leaving (shutdown) and will close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Human-readable reason.
    pub reason: String,
}

/// Application bytes on a numbered channel (the payload is the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// Channel number chosen by the application; weft does not interpret it.
    pub channel: u32,
}

/// Application-visible message metadata carried by every messaging frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Type tag chosen by the application (e.g. `"chat.Post"`).
    pub manifest: String,
    /// Optional headers, in order.
    pub headers: Vec<(String, String)>,
    /// The sending mailbox, if the message was sent from one.
    pub from: Option<Pid>,
    /// Set on a call: the id the reply must carry.
    pub call: Option<u64>,
}

/// A message to one mailbox by pid; the payload is the message body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tell {
    /// Target mailbox id on the receiving node.
    pub to: u64,
    /// The receiving node's incarnation the pid was issued by.
    pub incarnation: u64,
    /// Manifest, headers, sender, call id.
    pub meta: MessageMeta,
}

/// A message to a mailbox registered under `name` on the receiving node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TellNamed {
    /// The registered name.
    pub name: String,
    /// Manifest, headers, sender, call id.
    pub meta: MessageMeta,
}

/// Outcome carried by a [`Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyStatus {
    /// The payload is the callee's answer.
    Ok,
    /// No mailbox with that pid (or name) exists on the node.
    NoSuchMailbox,
    /// The target mailbox's queue was full; the call was dropped.
    MailboxFull,
}

/// The answer to a call; the payload is the reply body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The call id from [`MessageMeta::call`].
    pub call: u64,
    /// Whether the call reached its target.
    pub status: ReplyStatus,
    /// Manifest and headers of the reply (`from` is the replier).
    pub meta: MessageMeta,
}

/// A message for every member of `group` on the receiving node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPublish {
    /// Group name.
    pub group: String,
    /// Manifest, headers, sender.
    pub meta: MessageMeta,
}

/// A message published on `subject`, sent once to each node with
/// matching interest. The receiver delivers it to all its matching plain
/// subscriptions and to one member of each queue group in `queues` (the
/// groups for which the sender chose this node); the payload is the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The subject (no wildcards).
    pub subject: String,
    /// Where replies go, if the publisher expects them.
    pub reply: Option<String>,
    /// Optional headers, in order.
    pub headers: Vec<(String, String)>,
    /// Queue groups this node must deliver to (one member each).
    pub queues: Vec<String>,
}

/// [`Publish`] with borrowed fields, for the sender's hot path: it
/// encodes to exactly the bytes of the owned [`Publish`] with the same
/// values (serde writes `&str` as `String` and a slice as a `Vec`), so a
/// publisher never copies the subject, reply or headers into a frame.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PublishRef<'a> {
    /// The subject (no wildcards).
    pub subject: &'a str,
    /// Where replies go, if the publisher expects them.
    pub reply: Option<&'a str>,
    /// Optional headers, in order.
    pub headers: &'a [(String, String)],
    /// Queue groups the receiving node must deliver to (one member each).
    pub queues: &'a [String],
}

/// Names a stream (subscribe and unsubscribe requests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamKey {
    /// The stream key, e.g. `live/cam1`.
    pub key: String,
}

/// One frame of a stream; the payload is the frame's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamData {
    /// The stream key.
    pub key: String,
    /// Sequence number at the origin.
    pub seq: u64,
    /// Presentation timestamp.
    pub timestamp: u64,
    /// A decoder can start here.
    pub keyframe: bool,
    /// Configuration frame (codec headers).
    pub config: bool,
    /// Frames the origin skipped for this edge just before this one (the
    /// edge's link was full); the edge reports them to its viewers.
    pub skipped: u64,
}

/// Why a stream ended for the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEndReason {
    /// The publisher finished.
    Finished,
    /// The sender does not (or no longer) originate this stream.
    NotHere,
}

/// The stream ended at the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// The stream key.
    pub key: String,
    /// Why.
    pub reason: StreamEndReason,
}

/// Sent by an origin to each edge of a stream that had no frame for a
/// while, so a silent origin can be told from a dead one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeartbeat {
    /// The stream key.
    pub key: String,
    /// Last sequence number published.
    pub last_seq: Option<u64>,
}

/// Sent by a node that applied a registry delta or snapshot of the
/// receiver (`origin`) to say how far its view of the receiver's entries
/// goes. The sender is the authenticated link peer. The receiver uses it
/// for interest barriers: a change made at version `v` is applied on a
/// peer once that peer acknowledged `v` or later. A node that does not
/// know this kind skips it (the barrier then names it as not confirming).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAck {
    /// The origin's incarnation the acknowledged view belongs to; an
    /// acknowledgement of an older incarnation of the receiver is ignored.
    pub incarnation: u64,
    /// The origin's registry version the sender's view is at.
    pub version: u64,
}

/// An edge asks the origin for a stream (the successor of
/// `StreamSubscribe`): the origin answers with [`StreamAttached`] carrying
/// the same `attach` id, then the replay buffer, then live frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAttach {
    /// The stream key.
    pub key: String,
    /// Chosen by the edge, fresh for every attach, so that an
    /// acknowledgement of an earlier (abandoned) attach is never taken for
    /// the current one.
    pub attach: u64,
}

/// The origin attached an edge. Sent before the replay buffer in the data
/// class, so it stays in order with `StreamData` on the link: every frame
/// after it is the replay, then every live frame published after
/// `last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAttached {
    /// The stream key.
    pub key: String,
    /// The edge's `attach` id from [`StreamAttach`].
    pub attach: u64,
    /// The origin's last published sequence number when it attached the
    /// edge (`None`: nothing published yet).
    pub last_seq: Option<u64>,
}

/// A request to a node service (consensus, shard routing); the payload is
/// the method's request body. Travels in the control class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Caller-chosen id, echoed in the reply.
    pub id: u64,
    /// Which method (see `docs/wire.md`).
    pub method: u8,
}

/// The reply to an [`RpcRequest`]; the payload is the response body, or a
/// UTF-8 error message when `ok` is false.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcReply {
    /// The request's id.
    pub id: u64,
    /// Whether the method succeeded.
    pub ok: bool,
}

/// Whom an undelivered tell was addressed to, on the node reporting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Addressee {
    /// A mailbox by pid.
    Pid(Pid),
    /// A mailbox by registered name.
    Name(String),
}

/// One tell the reporting node dropped, reported back to the sender's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    /// The tell's target.
    pub to: Addressee,
    /// Why it was dropped: `no_such_mailbox` or `mailbox_full` today; a
    /// string so that newer nodes can add reasons (older ones count them
    /// as `other`).
    pub reason: String,
    /// The sending mailbox, if the tell was sent from one.
    pub from: Option<Pid>,
    /// The message's manifest (its type tag).
    pub manifest: String,
    /// The message body's length in bytes.
    pub size: u64,
}

/// Dropped messages reported as a count only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// The frame kind that carried them, by name: `tell` (beyond the
    /// batch's letter limit), `group_publish`, `publish`.
    pub kind: String,
    /// Why they were dropped (the receiver's `frames_dropped` reason).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// A batch of drops at the sending node of this frame of messages from
/// the receiving node (kind 26, control class). The payload is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Tells reported one by one, in the order they were dropped.
    pub letters: Vec<Undelivered>,
    /// Every other drop, summed per kind and reason.
    pub counts: Vec<DropCount>,
}

/// The header of a frame; the variant fixes the kind byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Auth`].
    Auth(Auth),
    /// The acceptor confirms the link; the dialer may now send.
    Welcome,
    /// See [`Reject`].
    Reject(Reject),
    /// See [`Ping`].
    Ping(Ping),
    /// The echo of a [`Ping`].
    Pong(Ping),
    /// See [`Goodbye`].
    Goodbye(Goodbye),
    /// See [`Data`].
    Data(Data),
    /// A registry message; the payload holds it.
    Registry,
    /// See [`RegistryAck`].
    RegistryAck(RegistryAck),
    /// See [`Tell`].
    Tell(Tell),
    /// See [`TellNamed`].
    TellNamed(TellNamed),
    /// See [`Reply`].
    Reply(Reply),
    /// See [`GroupPublish`].
    GroupPublish(GroupPublish),
    /// See [`Publish`].
    Publish(Publish),
    /// An edge asks the origin for a stream.
    StreamSubscribe(StreamKey),
    /// See [`StreamData`].
    StreamData(StreamData),
    /// The edge no longer wants a stream.
    StreamUnsubscribe(StreamKey),
    /// See [`StreamEnd`].
    StreamEnd(StreamEnd),
    /// See [`StreamHeartbeat`].
    StreamHeartbeat(StreamHeartbeat),
    /// See [`StreamAttached`].
    StreamAttached(StreamAttached),
    /// See [`StreamAttach`].
    StreamAttach(StreamAttach),
    /// See [`RpcRequest`].
    RpcRequest(RpcRequest),
    /// See [`RpcReply`].
    RpcReply(RpcReply),
    /// See [`DeadLetter`].
    DeadLetter(DeadLetter),
    /// A kind this node does not know. Decoding skips it whole; the link
    /// counts it and carries on (forward compatibility).
    Unknown {
        /// The unknown kind byte.
        kind: u8,
    },
}

impl Header {
    /// The kind byte of this header.
    pub fn kind(&self) -> u8 {
        match self {
            Header::Hello(_) => kind::HELLO,
            Header::Auth(_) => kind::AUTH,
            Header::Welcome => kind::WELCOME,
            Header::Reject(_) => kind::REJECT,
            Header::Ping(_) => kind::PING,
            Header::Pong(_) => kind::PONG,
            Header::Goodbye(_) => kind::GOODBYE,
            Header::Data(_) => kind::DATA,
            Header::Registry => kind::REGISTRY,
            Header::RegistryAck(_) => kind::REGISTRY_ACK,
            Header::Tell(_) => kind::TELL,
            Header::TellNamed(_) => kind::TELL_NAMED,
            Header::Reply(_) => kind::REPLY,
            Header::GroupPublish(_) => kind::GROUP_PUBLISH,
            Header::Publish(_) => kind::PUBLISH,
            Header::StreamSubscribe(_) => kind::STREAM_SUBSCRIBE,
            Header::StreamData(_) => kind::STREAM_DATA,
            Header::StreamUnsubscribe(_) => kind::STREAM_UNSUBSCRIBE,
            Header::StreamEnd(_) => kind::STREAM_END,
            Header::StreamHeartbeat(_) => kind::STREAM_HEARTBEAT,
            Header::StreamAttached(_) => kind::STREAM_ATTACHED,
            Header::StreamAttach(_) => kind::STREAM_ATTACH,
            Header::RpcRequest(_) => kind::RPC_REQUEST,
            Header::RpcReply(_) => kind::RPC_REPLY,
            Header::DeadLetter(_) => kind::DEAD_LETTER,
            Header::Unknown { kind } => *kind,
        }
    }

    /// Whether this frame travels in the control class (ahead of data).
    pub fn is_control(&self) -> bool {
        self.kind() < kind::FIRST_DATA_KIND
    }

    /// A short static name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Header::Hello(_) => "hello",
            Header::Auth(_) => "auth",
            Header::Welcome => "welcome",
            Header::Reject(_) => "reject",
            Header::Ping(_) => "ping",
            Header::Pong(_) => "pong",
            Header::Goodbye(_) => "goodbye",
            Header::Data(_) => "data",
            Header::Registry => "registry",
            Header::RegistryAck(_) => "registry_ack",
            Header::Tell(_) => "tell",
            Header::TellNamed(_) => "tell_named",
            Header::Reply(_) => "reply",
            Header::GroupPublish(_) => "group_publish",
            Header::Publish(_) => "publish",
            Header::StreamSubscribe(_) => "stream_subscribe",
            Header::StreamData(_) => "stream_data",
            Header::StreamUnsubscribe(_) => "stream_unsubscribe",
            Header::StreamEnd(_) => "stream_end",
            Header::StreamHeartbeat(_) => "stream_heartbeat",
            Header::StreamAttached(_) => "stream_attached",
            Header::StreamAttach(_) => "stream_attach",
            Header::RpcRequest(_) => "rpc_request",
            Header::RpcReply(_) => "rpc_reply",
            Header::DeadLetter(_) => "dead_letter",
            Header::Unknown { .. } => "unknown",
        }
    }
}

/// One decoded frame: a header and its payload.
///
/// The payload is a `Bytes` view into the receive buffer: decoding does not
/// copy it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub header: Header,
    /// Opaque payload bytes (often empty for control frames).
    pub payload: Bytes,
}

impl Frame {
    /// A frame with an empty payload.
    pub fn control(header: Header) -> Self {
        Self {
            header,
            payload: Bytes::new(),
        }
    }

    /// An application data frame on `channel`.
    pub fn data(channel: u32, payload: Bytes) -> Self {
        Self {
            header: Header::Data(Data { channel }),
            payload,
        }
    }
}
