//! Mailboxes, names, remote tell, request/reply and process groups.
//!
//! One [`Messaging`] service per node owns the local mailboxes and the
//! calls in flight; the registry replicates names and group memberships.
//!
//! Flow and loss policy:
//! - Local sends go straight into the target mailbox's bounded queue:
//!   `send` waits for room, `try_send` returns `Full`.
//! - Remote sends are queued on the link to the target node (`send` waits
//!   for room there, `try_send` returns `Full`); per sender→receiver order
//!   is kept because one link carries them and one reader delivers them.
//! - A tell by name to another node fails at once with `NoSuchMailbox`
//!   when the replicated directory holds no such name on that node (local
//!   knowledge: a name registered moments ago may not have arrived yet).
//! - At the receiving node a message for a missing mailbox, or for a full
//!   one, is dropped and counted (`frames_dropped{no_such_mailbox}` /
//!   `{mailbox_full}`); if it was a call, the caller gets the matching
//!   error at once; if it was a tell, the drop goes back to the sender's
//!   node as a dead letter ([`dead_letter`]). A slow mailbox never stalls
//!   the link or other mailboxes.
//! - Group publish delivers to each member without waiting: a full member
//!   mailbox drops that copy and counts it, on the receiving node and (as
//!   a dead-letter count) on the publishing node.

pub mod dead_letter;
pub mod mailbox;
pub mod message;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;
use weft_proto::frame::{Addressee, GroupPublish, Header, Reply, ReplyStatus, Tell, TellNamed};
use weft_proto::registry::{EntryKey, table};
use weft_proto::{Frame, NodeId, Pid};

use crate::directory::{Directory, group_key};
use crate::link::Links;
use crate::queue::{ByteQueue, ByteSized, Pushed};
use crate::registry::RegistryService;
use crate::replies::Replies;
use crate::stats::{Hot, Stats};

use crate::sync::lock;
use dead_letter::{DeadLetters, DeadReason, DropKind};
use message::{CallError, Envelope, Message, MessageError, NameError, ReplyTo, Target};

impl ByteSized for Envelope {
    fn byte_len(&self) -> usize {
        let headers: usize = self.message.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.message.payload.len() + self.message.manifest.len() + headers + 64
    }
}

/// A local mailbox's shared state.
pub(crate) struct Slot {
    pub pid: Pid,
    pub queue: ByteQueue<Envelope>,
    groups: Mutex<BTreeSet<String>>,
    names: Mutex<BTreeSet<String>>,
}

/// The messaging service of one node.
pub(crate) struct Messaging {
    local: NodeId,
    links: Links,
    stats: Arc<Stats>,
    registry: Arc<RegistryService>,
    directory: Arc<Directory>,
    dead_letters: Arc<DeadLetters>,
    mailboxes: RwLock<HashMap<u64, Arc<Slot>>>,
    names: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
    calls: Replies<Result<Message, CallError>>,
}

impl Messaging {
    pub(crate) fn new(
        local: NodeId,
        links: Links,
        stats: Arc<Stats>,
        registry: Arc<RegistryService>,
        directory: Arc<Directory>,
        dead_letters: Arc<DeadLetters>,
    ) -> Self {
        Self {
            local,
            links,
            stats,
            registry,
            directory,
            dead_letters,
            mailboxes: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            calls: Replies::default(),
        }
    }

    fn slot(&self, id: u64) -> Option<Arc<Slot>> {
        crate::sync::read(&self.mailboxes).get(&id).cloned()
    }

    fn local_slot(&self, pid: &Pid) -> Option<Arc<Slot>> {
        if pid.node != self.local.name || pid.incarnation != self.local.incarnation {
            return None;
        }
        self.slot(pid.id)
    }

    pub(crate) fn spawn(&self, capacity_bytes: usize) -> Arc<Slot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            pid: Pid {
                node: self.local.name.clone(),
                incarnation: self.local.incarnation,
                id,
            },
            queue: ByteQueue::new(capacity_bytes, 0),
            groups: Mutex::new(BTreeSet::new()),
            names: Mutex::new(BTreeSet::new()),
        });
        crate::sync::write(&self.mailboxes).insert(id, slot.clone());
        slot
    }

    /// Removes a dropped mailbox: it leaves every group and loses its names.
    pub(crate) fn remove(&self, slot: &Slot) {
        slot.queue.close();
        let dropped = slot.queue.clear();
        if dropped > 0 {
            self.stats.frames_dropped.add("mailbox_dropped", dropped as u64);
        }
        crate::sync::write(&self.mailboxes).remove(&slot.pid.id);
        let mut keys = Vec::new();
        for group in std::mem::take(&mut *lock(&slot.groups)) {
            keys.push(group_key(&group, slot.pid.id));
        }
        let names = std::mem::take(&mut *lock(&slot.names));
        {
            let mut table = lock(&self.names);
            for name in names {
                if table.get(&name) == Some(&slot.pid.id) {
                    table.remove(&name);
                    keys.push(EntryKey::new(table::NAMES, name));
                }
            }
        }
        if !keys.is_empty() {
            self.registry.remove_many(&keys);
        }
    }

    fn deliver_now(&self, slot: &Slot, env: Envelope) -> Result<(), MessageError> {
        match slot.queue.try_push(env, false) {
            Ok(()) => {
                self.stats.messages_delivered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(Pushed::Full(_)) => Err(MessageError::Full),
            Err(Pushed::Closed(_)) => Err(MessageError::NoSuchMailbox(slot.pid.to_string())),
        }
    }

    async fn deliver_wait(&self, slot: &Slot, env: Envelope) -> Result<(), MessageError> {
        match slot.queue.push(env, false).await {
            Ok(()) => {
                self.stats.messages_delivered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => Err(MessageError::NoSuchMailbox(slot.pid.to_string())),
        }
    }

    fn check_remote_pid(&self, to: &Pid) -> Result<(), MessageError> {
        if to.node == self.local.name {
            return Err(MessageError::NoSuchMailbox(to.to_string()));
        }
        match self.links.peer_incarnation(&to.node) {
            Some(i) if i != to.incarnation => Err(MessageError::NoSuchMailbox(to.to_string())),
            _ => Ok(()),
        }
    }

    fn frame_for(&self, target: &Target, msg: &Message, from: Option<Pid>, call: Option<u64>) -> Frame {
        let meta = msg.meta(from, call);
        let header = match target {
            Target::Pid(pid) => Header::Tell(Tell {
                to: pid.id,
                incarnation: pid.incarnation,
                meta,
            }),
            Target::Named { name, .. } => Header::TellNamed(TellNamed {
                name: name.clone(),
                meta,
            }),
        };
        Frame {
            header,
            payload: msg.payload.clone(),
        }
    }

    fn resolve_local(&self, target: &Target) -> Result<Arc<Slot>, MessageError> {
        match target {
            Target::Pid(pid) => self
                .local_slot(pid)
                .ok_or_else(|| MessageError::NoSuchMailbox(pid.to_string())),
            Target::Named { name, .. } => {
                let id = lock(&self.names).get(name).copied();
                id.and_then(|id| self.slot(id))
                    .ok_or_else(|| MessageError::NoSuchMailbox(format!("{}/{name}", self.local.name)))
            }
        }
    }

    /// Sends `msg` to `target`; `wait` selects waiting for room over `Full`.
    pub(crate) async fn send(
        &self,
        from: Option<Pid>,
        target: &Target,
        msg: Message,
        wait: bool,
    ) -> Result<(), MessageError> {
        if target.node() == self.local.name {
            let slot = self.resolve_local(target)?;
            let env = Envelope {
                from,
                message: msg,
                reply_to: None,
            };
            if wait {
                self.deliver_wait(&slot, env).await?;
            } else {
                self.deliver_now(&slot, env)?;
            }
            self.stats.tells_sent.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match target {
            Target::Pid(pid) => self.check_remote_pid(pid)?,
            Target::Named { node, name } => {
                if !self.directory.has_name_on(name, node) {
                    return Err(MessageError::NoSuchMailbox(format!("{node}/{name}")));
                }
            }
        }
        let frame = self.frame_for(target, &msg, from, None);
        if wait {
            self.links.send(target.node(), &frame).await?;
        } else {
            self.links.try_send(target.node(), &frame)?;
        }
        self.stats.tells_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends a call and waits up to `timeout` for the reply.
    pub(crate) async fn call(
        &self,
        from: Option<Pid>,
        target: &Target,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        let mut waiting = self.calls.register(Some(target.node()));
        let call = waiting.id();
        self.stats.calls_sent.fetch_add(1, Ordering::Relaxed);
        let sent = async {
            if target.node() == self.local.name {
                let slot = self.resolve_local(target).map_err(|_| CallError::NoSuchMailbox)?;
                let env = Envelope {
                    from: from.clone(),
                    message: msg.clone(),
                    reply_to: Some(ReplyTo {
                        node: self.local.clone(),
                        call,
                    }),
                };
                return self
                    .deliver_wait(&slot, env)
                    .await
                    .map_err(|_| CallError::NoSuchMailbox);
            }
            if let Target::Pid(pid) = target {
                self.check_remote_pid(pid).map_err(|_| CallError::NoSuchMailbox)?;
            }
            let frame = self.frame_for(target, &msg, from.clone(), Some(call));
            self.links.send(target.node(), &frame).await.map_err(|e| match e {
                crate::error::SendError::NodeDown(n) | crate::error::SendError::UnknownPeer(n) => {
                    CallError::NodeDown(n)
                }
                other => CallError::Send(other.into()),
            })
        };
        match tokio::time::timeout(timeout, async {
            sent.await?;
            waiting
                .recv()
                .await
                .unwrap_or(Err(CallError::NodeDown(target.node().to_string())))
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Answers a call received in `env`.
    pub(crate) async fn reply(
        &self,
        replier: &Pid,
        env: &Envelope,
        msg: Message,
    ) -> Result<(), MessageError> {
        let Some(to) = &env.reply_to else {
            return Err(MessageError::NotACall);
        };
        if to.node == self.local {
            self.resolve_call(to.call, Ok(msg));
            return Ok(());
        }
        let frame = Frame {
            header: Header::Reply(Reply {
                call: to.call,
                status: ReplyStatus::Ok,
                meta: msg.meta(Some(replier.clone()), None),
            }),
            payload: msg.payload,
        };
        self.links.send(&to.node.name, &frame).await?;
        Ok(())
    }

    fn resolve_call(&self, call: u64, result: Result<Message, CallError>) {
        if self.calls.complete(call, result).is_err() {
            self.stats.frames_dropped.inc_hot(Hot::LateReply);
        }
    }

    /// Membership declared `node` down: its pending calls fail now.
    pub(crate) fn member_down(&self, node: &NodeId) {
        self.calls
            .fail_node(&node.name, || Err(CallError::NodeDown(node.name.clone())));
    }

    pub(crate) fn register(&self, name: &str, slot: &Slot) -> Result<(), NameError> {
        if name.is_empty() || name.len() > 255 || name.contains('\0') {
            return Err(NameError::Invalid(name.to_string()));
        }
        {
            let mut table = lock(&self.names);
            match table.get(name) {
                Some(id) if *id != slot.pid.id => return Err(NameError::Taken(name.to_string())),
                Some(_) => return Ok(()),
                None => {
                    table.insert(name.to_string(), slot.pid.id);
                }
            }
        }
        lock(&slot.names).insert(name.to_string());
        // A pid (strings and integers) always encodes; never publish an empty value.
        let value = Bytes::from(postcard::to_allocvec(&slot.pid).expect("postcard encodes a pid"));
        self.registry
            .put_many(vec![(EntryKey::new(table::NAMES, name), value)]);
        Ok(())
    }

    pub(crate) fn unregister(&self, name: &str) -> bool {
        let id = lock(&self.names).remove(name);
        let Some(id) = id else { return false };
        if let Some(slot) = self.slot(id) {
            lock(&slot.names).remove(name);
        }
        self.registry.remove_many(&[EntryKey::new(table::NAMES, name)]);
        true
    }

    pub(crate) fn whereis(&self, name: &str) -> Vec<Pid> {
        self.directory.whereis(name)
    }

    pub(crate) fn join(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        let slot = self
            .local_slot(pid)
            .ok_or_else(|| MessageError::NotLocal(pid.clone()))?;
        if lock(&slot.groups).insert(group.to_string()) {
            let value = Bytes::from(postcard::to_allocvec(pid).expect("postcard encodes a pid"));
            self.registry.put_many(vec![(group_key(group, pid.id), value)]);
        }
        Ok(())
    }

    pub(crate) fn leave(&self, group: &str, pid: &Pid) -> Result<(), MessageError> {
        let slot = self
            .local_slot(pid)
            .ok_or_else(|| MessageError::NotLocal(pid.clone()))?;
        if lock(&slot.groups).remove(group) {
            self.registry.remove_many(&[group_key(group, pid.id)]);
        }
        Ok(())
    }

    pub(crate) fn local_members(&self, group: &str) -> Vec<Pid> {
        self.directory
            .members(group)
            .into_iter()
            .filter(|p| p.node == self.local.name && p.incarnation == self.local.incarnation)
            .collect()
    }

    /// Queues `msg` for every local member of `group`; returns how many
    /// took it and how many copies were dropped (full, or the mailbox
    /// went away while the directory still listed it), each counted.
    fn fan_out_local(&self, group: &str, from: &Option<Pid>, msg: &Message) -> (usize, u64, u64) {
        let (mut delivered, mut full, mut gone) = (0, 0, 0);
        for pid in self.local_members(group) {
            let Some(slot) = self.slot(pid.id) else {
                self.stats.frames_dropped.inc("no_such_mailbox");
                gone += 1;
                continue;
            };
            let env = Envelope {
                from: from.clone(),
                message: msg.clone(),
                reply_to: None,
            };
            match self.deliver_now(&slot, env) {
                Ok(()) => delivered += 1,
                Err(MessageError::Full) => {
                    self.stats.frames_dropped.inc("mailbox_full");
                    full += 1;
                }
                Err(_) => {
                    self.stats.frames_dropped.inc("no_such_mailbox");
                    gone += 1;
                }
            }
        }
        (delivered, full, gone)
    }

    /// Delivers `msg` to every member of `group`: local members directly,
    /// one frame per other node that has members.
    pub(crate) async fn publish_group(
        &self,
        from: Option<Pid>,
        group: &str,
        msg: Message,
    ) -> Result<GroupPublishReport, MessageError> {
        self.stats.group_publishes.fetch_add(1, Ordering::Relaxed);
        let members = self.directory.members(group);
        let mut nodes: BTreeSet<&str> = BTreeSet::new();
        for p in &members {
            if p.node != self.local.name {
                nodes.insert(&p.node);
            }
        }
        let (local, _, _) = self.fan_out_local(group, &from, &msg);
        let frame = Frame {
            header: Header::GroupPublish(GroupPublish {
                group: group.to_string(),
                meta: msg.meta(from, None),
            }),
            payload: msg.payload.clone(),
        };
        let mut remote_nodes = 0;
        let mut failed = Vec::new();
        for node in nodes {
            match self.links.send(node, &frame).await {
                Ok(()) => remote_nodes += 1,
                Err(e) => {
                    // The node went down meanwhile: its members are being
                    // purged. Counted, and reported to the caller.
                    self.stats.frames_dropped.inc(e.label());
                    failed.push(node.to_string());
                }
            }
        }
        Ok(GroupPublishReport {
            local_delivered: local,
            remote_nodes,
            failed_nodes: failed,
        })
    }

    fn error_reply(&self, to: &NodeId, call: u64, status: ReplyStatus) {
        let frame = Frame {
            header: Header::Reply(Reply {
                call,
                status,
                meta: Default::default(),
            }),
            payload: Bytes::new(),
        };
        if self.links.try_send(&to.name, &frame).is_err() {
            self.stats.frames_dropped.inc("reply_not_queued");
        }
    }

    /// Delivers a message from `from_node` addressed to `to`; a drop is
    /// counted and answered: an error reply for a call, a dead letter for
    /// a tell.
    fn deliver_inbound(
        &self,
        from_node: &NodeId,
        to: impl FnOnce() -> Addressee,
        slot: Option<Arc<Slot>>,
        msg: Message,
        sender: Option<Pid>,
        call: Option<u64>,
    ) {
        let env = Envelope {
            from: sender,
            message: msg,
            reply_to: call.map(|call| ReplyTo {
                node: from_node.clone(),
                call,
            }),
        };
        let (reason, env) = match slot {
            None => {
                debug!(peer = %from_node, "message for a mailbox that does not exist");
                (DeadReason::NoSuchMailbox, env)
            }
            Some(slot) => match slot.queue.try_push(env, false) {
                Ok(()) => {
                    self.stats.messages_delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(Pushed::Full(env)) => (DeadReason::MailboxFull, env),
                Err(Pushed::Closed(env)) => (DeadReason::NoSuchMailbox, env),
            },
        };
        self.stats.frames_dropped.inc(reason.label());
        match call {
            Some(call) => {
                let status = match reason {
                    DeadReason::MailboxFull => ReplyStatus::MailboxFull,
                    _ => ReplyStatus::NoSuchMailbox,
                };
                self.error_reply(from_node, call, status);
            }
            None => self.dead_letters.tell_dropped(
                from_node,
                to(),
                reason,
                env.from,
                &env.message.manifest,
                env.message.payload.len(),
            ),
        }
    }

    /// Handles a messaging frame from the authenticated peer `from`.
    pub(crate) fn on_frame(&self, from: &NodeId, frame: Frame) {
        match frame.header {
            Header::Tell(t) => {
                let slot = if t.incarnation == self.local.incarnation {
                    self.slot(t.to)
                } else {
                    None
                };
                let (id, incarnation) = (t.to, t.incarnation);
                let to = || {
                    Addressee::Pid(Pid {
                        node: self.local.name.clone(),
                        incarnation,
                        id,
                    })
                };
                let (msg, sender, call) = Message::from_wire(t.meta, frame.payload);
                self.deliver_inbound(from, to, slot, msg, sender, call);
            }
            Header::TellNamed(t) => {
                let id = lock(&self.names).get(&t.name).copied();
                let slot = id.and_then(|id| self.slot(id));
                let (msg, sender, call) = Message::from_wire(t.meta, frame.payload);
                let name = t.name;
                self.deliver_inbound(from, || Addressee::Name(name), slot, msg, sender, call);
            }
            Header::Reply(r) => {
                let result = match r.status {
                    ReplyStatus::Ok => Ok(Message::from_wire(r.meta, frame.payload).0),
                    ReplyStatus::NoSuchMailbox => Err(CallError::NoSuchMailbox),
                    ReplyStatus::MailboxFull => Err(CallError::MailboxFull),
                };
                self.resolve_call(r.call, result);
            }
            Header::GroupPublish(g) => {
                let (msg, sender, _) = Message::from_wire(g.meta, frame.payload);
                let (delivered, full, gone) = self.fan_out_local(&g.group, &sender, &msg);
                let d = &self.dead_letters;
                d.count_dropped(from, DropKind::GroupPublish, DeadReason::MailboxFull, full);
                d.count_dropped(from, DropKind::GroupPublish, DeadReason::NoSuchMailbox, gone);
                if delivered == 0 && full == 0 && gone == 0 {
                    self.stats.frames_dropped.inc("no_group_members");
                    d.count_dropped(from, DropKind::GroupPublish, DeadReason::NoGroupMembers, 1);
                }
            }
            _ => self.stats.frames_dropped.inc("unhandled_kind"),
        }
    }

    /// Number of local mailboxes.
    pub(crate) fn mailbox_count(&self) -> usize {
        crate::sync::read(&self.mailboxes).len()
    }
}

/// What a group publish reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupPublishReport {
    /// Local members the message was queued for.
    pub local_delivered: usize,
    /// Other nodes one frame was queued for (they fan out locally).
    pub remote_nodes: usize,
    /// Nodes with members that could not be reached (went down).
    pub failed_nodes: Vec<String>,
}
