//! Other nodes' subject interest, as announced in registry table
//! `INTEREST`: a [`RegistryObserver`] that publishes route by.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use weft_proto::registry::{EntryKey, Event, table};
use weft_proto::subject::{validate_pattern, validate_queue};
use weft_proto::trie::SubjectTrie;

use crate::registry::{RegistryObserver, Rejection};
use crate::sync::lock;

/// A remote node's interest: (node name, queue group).
pub(super) type RemoteKey = (String, Option<String>);

#[derive(Default)]
pub(super) struct RemoteInterest {
    pub(super) trie: SubjectTrie<RemoteKey>,
    /// Per (node, queue): pattern → advertised member count.
    pub(super) counts: HashMap<RemoteKey, HashMap<String, u32>>,
}

/// The registry key of an interest.
pub(super) fn interest_key(pattern: &str, queue: Option<&str>) -> EntryKey {
    EntryKey::new(table::INTEREST, format!("{pattern}\0{}", queue.unwrap_or("")))
}

fn parse_interest_key(key: &str) -> Option<(String, Option<String>)> {
    let (pattern, queue) = key.split_once('\0')?;
    validate_pattern(pattern).ok()?;
    let queue = if queue.is_empty() {
        None
    } else {
        validate_queue(queue).ok()?;
        Some(queue.to_string())
    };
    Some((pattern.to_string(), queue))
}

/// The interest of every other node (this node's own entries are left
/// out: local subscriptions are matched directly).
pub(crate) struct InterestTable {
    local: String,
    remote: Mutex<RemoteInterest>,
}

impl InterestTable {
    /// The table of node `local` (whose own entries it ignores).
    pub(crate) fn new(local: &str) -> Self {
        Self {
            local: local.to_string(),
            remote: Mutex::new(RemoteInterest::default()),
        }
    }

    /// The remote interest, locked. Lock order: after pub/sub's local
    /// subscription lock when both are held; nothing is taken under it.
    pub(super) fn lock(&self) -> MutexGuard<'_, RemoteInterest> {
        lock(&self.remote)
    }
}

impl RegistryObserver for InterestTable {
    fn tables(&self) -> &'static [u16] {
        &[table::INTEREST]
    }

    fn on_change(&self, change: &Event) -> Result<(), Rejection> {
        let (origin, key, value, added) = match change {
            Event::Put { origin, key, value } => (origin, key, value, true),
            Event::Removed { origin, key, value } => (origin, key, value, false),
        };
        if origin.name == self.local {
            return Ok(());
        }
        let (pattern, queue) = parse_interest_key(&key.key).ok_or(Rejection::InvalidInterest)?;
        let count: u32 = postcard::from_bytes(value).map_err(|_| Rejection::InvalidInterest)?;
        let mut remote = self.lock();
        let rkey: RemoteKey = (origin.name.clone(), queue);
        if added {
            remote
                .counts
                .entry(rkey.clone())
                .or_default()
                .insert(pattern.clone(), count.max(1));
            remote.trie.insert(&pattern, rkey);
        } else {
            if let Some(patterns) = remote.counts.get_mut(&rkey) {
                patterns.remove(&pattern);
                if patterns.is_empty() {
                    remote.counts.remove(&rkey);
                }
            }
            remote.trie.remove(&pattern, &rkey);
        }
        Ok(())
    }
}
