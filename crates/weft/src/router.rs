//! Routes inbound frames and link events to the node's services.

use std::sync::{Arc, OnceLock};

use weft_proto::frame::Header;
use weft_proto::{EncodedFrame, Frame, NodeId};

use crate::channel::Dispatcher;
use crate::link::FrameHandler;
use crate::messaging::Messaging;
use crate::messaging::dead_letter::DeadLetters;
use crate::pubsub::PubSub;
use crate::registry::RegistryService;
use crate::relay::Relay;
use crate::rpc::Rpc;
use crate::shards::service::Shards;
use crate::stats::Stats;

/// The services a router feeds; set once at node start, before any
/// connection exists.
pub(crate) struct Services {
    pub registry: Arc<RegistryService>,
    pub messaging: Arc<Messaging>,
    pub dead_letters: Arc<DeadLetters>,
    pub pubsub: Arc<PubSub>,
    pub relay: Arc<Relay>,
    pub rpc: Arc<Rpc>,
    pub shards: OnceLock<Arc<Shards>>,
}

/// The node's [`FrameHandler`].
pub(crate) struct Router {
    pub channels: Arc<Dispatcher>,
    pub services: OnceLock<Services>,
    pub stats: Arc<Stats>,
}

impl FrameHandler for Router {
    fn on_frame(&self, from: &NodeId, frame: Frame) {
        let Some(s) = self.services.get() else {
            self.stats.frames_dropped.inc("not_ready");
            return;
        };
        match &frame.header {
            Header::Data(_) => self.channels.on_frame(from, frame),
            Header::Registry => s.registry.on_frame(from, &frame.payload),
            Header::RegistryAck(ack) => s.registry.on_ack(from, *ack),
            Header::Tell(_) | Header::TellNamed(_) | Header::Reply(_) | Header::GroupPublish(_) => {
                s.messaging.on_frame(from, frame)
            }
            Header::Publish(_) => {
                if let Header::Publish(p) = frame.header {
                    s.pubsub.on_publish(from, p, frame.payload);
                }
            }
            Header::StreamSubscribe(_)
            | Header::StreamData(_)
            | Header::StreamUnsubscribe(_)
            | Header::StreamEnd(_)
            | Header::StreamHeartbeat(_)
            | Header::StreamAttached(_)
            | Header::StreamAttach(_) => s.relay.on_frame(from, frame),
            Header::RpcRequest(_) | Header::RpcReply(_) => s.rpc.on_frame(from, frame),
            Header::DeadLetter(_) => {
                if let Header::DeadLetter(d) = frame.header {
                    s.dead_letters.on_frame(from, d);
                }
            }
            _ => self.stats.frames_dropped.inc("unhandled_kind"),
        }
    }

    fn on_unsent(&self, peer: &str, frames: &[EncodedFrame]) {
        if let Some(s) = self.services.get() {
            s.dead_letters.unsent(peer, frames);
        }
    }

    fn on_link_up(&self, peer: &NodeId) {
        if let Some(s) = self.services.get() {
            s.registry.link_up(peer);
        }
    }

    fn on_link_down(&self, peer: &NodeId) {
        if let Some(s) = self.services.get() {
            s.registry.link_down(peer);
        }
    }

    fn on_member_down(&self, peer: &NodeId) {
        if let Some(s) = self.services.get() {
            s.registry.member_down(peer);
            s.messaging.member_down(peer);
            s.dead_letters.member_down(peer);
            s.relay.member_down(peer);
            s.rpc.member_down(peer);
            if let Some(shards) = s.shards.get() {
                shards.member_down(peer);
            }
        }
    }
}
