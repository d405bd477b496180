//! Messages, envelopes and the errors of the messaging layer.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_proto::frame::MessageMeta;
use weft_proto::{NodeId, Pid};

/// A message: a manifest (type tag), optional headers, and payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Type tag chosen by the application, e.g. `"chat.Post"`.
    pub manifest: String,
    /// Optional headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Bytes,
}

impl Message {
    /// A message with a manifest and a body.
    pub fn new(manifest: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            manifest: manifest.into(),
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// A message whose body is `value` encoded with postcard.
    pub fn typed<T: Serialize>(manifest: impl Into<String>, value: &T) -> Result<Self, postcard::Error> {
        Ok(Self::new(manifest, postcard::to_allocvec(value)?))
    }

    /// Decodes the body with postcard.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, postcard::Error> {
        postcard::from_bytes(&self.payload)
    }

    pub(crate) fn meta(&self, from: Option<Pid>, call: Option<u64>) -> MessageMeta {
        MessageMeta {
            manifest: self.manifest.clone(),
            headers: self.headers.clone(),
            from,
            call,
        }
    }

    pub(crate) fn from_wire(meta: MessageMeta, payload: Bytes) -> (Self, Option<Pid>, Option<u64>) {
        (
            Self {
                manifest: meta.manifest,
                headers: meta.headers,
                payload,
            },
            meta.from,
            meta.call,
        )
    }
}

/// Where a reply to a call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplyTo {
    pub node: NodeId,
    pub call: u64,
}

/// A message as received by a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sending mailbox, when the sender used one.
    pub from: Option<Pid>,
    /// The message.
    pub message: Message,
    pub(crate) reply_to: Option<ReplyTo>,
}

impl Envelope {
    /// Whether the sender waits for a reply ([`crate::Mailbox::reply`]).
    pub fn is_call(&self) -> bool {
        self.reply_to.is_some()
    }
}

/// Why a message was not sent. Nothing is dropped silently: a message that
/// cannot be queued is one of these to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The pid names no live mailbox (dropped, or an older run of its node).
    #[error("no such mailbox: {0}")]
    NoSuchMailbox(String),
    /// No member of that name is known.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// The target node is down.
    #[error("node {0:?} is down")]
    NodeDown(String),
    /// `try_send` only: the local mailbox's or the link's queue is full.
    #[error("queue full")]
    Full,
    /// The message exceeds the maximum frame size.
    #[error("message too large ({len} bytes, max {max})")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The operation needs a mailbox of this node.
    #[error("{0} is not a mailbox of this node")]
    NotLocal(Pid),
    /// The envelope was not a call, or was already answered.
    #[error("the envelope does not expect a reply")]
    NotACall,
    /// This node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl From<crate::error::SendError> for MessageError {
    fn from(e: crate::error::SendError) -> Self {
        use crate::error::SendError as S;
        match e {
            S::UnknownPeer(n) => MessageError::UnknownNode(n),
            S::NodeDown(n) => MessageError::NodeDown(n),
            S::Full(_) => MessageError::Full,
            S::TooLarge { len, max } => MessageError::TooLarge { len, max },
            S::ShuttingDown => MessageError::ShuttingDown,
        }
    }
}

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply within the timeout.
    #[error("call timed out")]
    Timeout,
    /// The target mailbox does not exist.
    #[error("no such mailbox")]
    NoSuchMailbox,
    /// The target mailbox was full; the request was dropped.
    #[error("target mailbox full")]
    MailboxFull,
    /// The target node is (or went) down.
    #[error("node {0:?} is down")]
    NodeDown(String),
    /// The request could not be sent.
    #[error("request not sent: {0}")]
    Send(MessageError),
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Another local mailbox holds the name.
    #[error("name {0:?} is already registered on this node")]
    Taken(String),
    /// Names are 1 to 255 bytes without NUL.
    #[error("invalid name {0:?}")]
    Invalid(String),
}

/// Whom a call or send is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A mailbox by pid.
    Pid(Pid),
    /// A mailbox registered under `name` on `node`.
    Named {
        /// Node name.
        node: String,
        /// Registered name.
        name: String,
    },
}

impl From<Pid> for Target {
    fn from(p: Pid) -> Self {
        Target::Pid(p)
    }
}

impl From<&Pid> for Target {
    fn from(p: &Pid) -> Self {
        Target::Pid(p.clone())
    }
}

impl Target {
    /// The node the target lives on.
    pub fn node(&self) -> &str {
        match self {
            Target::Pid(p) => &p.node,
            Target::Named { node, .. } => node,
        }
    }
}
