//! Sans-IO protocol core of weft.
//!
//! Everything in this crate is a pure function or a state machine that takes
//! bytes and a `now` in and gives bytes, timers and events out. Nothing here
//! touches a socket, a clock, a thread or a random number generator of its
//! own: the `weft` runtime drives these types, and tests drive them directly.
//!
//! - [`codec`]: the frame format (length prefix, kind byte, postcard header,
//!   payload bytes carried without a copy) and the connection preamble.
//! - [`frame`]: every frame kind and its header.
//! - [`handshake`]: the link handshake (magic, version, cluster name,
//!   mutual HMAC-SHA256 proof of the cluster secret over fresh nonces).
//! - [`seal`]: authenticated encryption of membership datagrams.
//! - [`node_id`]: a node's identity on the wire.
//! - [`registry`]: replicated node-owned entries; [`barrier`]: which peers
//!   applied them up to a version (interest barriers).
//!
//! The byte-level description lives in `docs/wire.md`.

pub mod auth;
pub mod barrier;
pub mod codec;
pub mod frame;
pub mod handshake;
pub mod lease;
pub mod node_id;
pub mod pid;
pub mod registry;
pub mod relay;
pub mod seal;
pub mod shard;
pub mod subject;
pub mod trie;

pub use codec::{DEFAULT_MAX_FRAME, EncodedFrame, FrameDecoder, FrameError, FrameRun, PROTOCOL_VERSION};
pub use frame::{Frame, Header};
pub use node_id::NodeId;
pub use pid::Pid;
