//! The embedding API: one capability handle per family of verbs.
//!
//! [`crate::Node`] starts and stops a node; what the node can do is reached
//! through cheap `Clone` handles, each carrying one capability:
//! [`Membership`] (`node.membership()`), [`Channels`] (`node.channels()`),
//! [`Mailboxes`] (`node.mailboxes()`), [`Groups`] (`node.groups()`),
//! [`PubSub`] (`node.pubsub()`), [`Streams`] (`node.streams()`) and
//! [`Shards`] (`node.shards()`). A handle holds the node: the node keeps
//! running while a handle is alive (or until [`crate::Node::shutdown`]).
//!
//! Optional arguments (headers, reply subjects, timeouts) are set on small
//! builders that are awaited directly ([`Publish`], [`Request`], [`Call`],
//! [`Route`]), in the style of async-nats. Every receiver is a
//! `futures::Stream` and keeps its inherent `next`/`recv`; events are
//! `Stream`s too ([`Events`], [`ShardMaps`]).

mod channels;
mod events;
mod groups;
mod mailboxes;
mod membership;
pub(crate) mod poll;
mod pubsub;
mod shards;
mod streams;

use std::time::Duration;

pub use channels::Channels;
pub use events::{Events, Lagged, ShardMaps};
pub use groups::Groups;
pub use mailboxes::{Call, Mailboxes};
pub use membership::Membership;
pub use pubsub::{PubSub, Publish, Request};
pub use shards::{Route, Shards};
pub use streams::Streams;

/// The default of `pubsub.request_timeout` and `messaging.call_timeout`:
/// how long [`Request`] waits for a reply and [`Call`] for an answer when
/// no `.timeout(..)` is given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
