//! The origins of every stream, as announced in registry table `ORIGINS`:
//! a [`RegistryObserver`] the relay reads when it picks an upstream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use weft_proto::registry::{Event, table};
use weft_proto::relay::{OriginAnnounce, validate_key};

use crate::registry::{RegistryObserver, Rejection};
use crate::sync::lock;

/// Stream key → (origin node → priority).
pub(crate) type Origins = BTreeMap<String, BTreeMap<String, u32>>;

/// The announced origins of every stream.
#[derive(Default)]
pub(crate) struct OriginTable {
    nodes: Mutex<Origins>,
    /// `(key, node)` of origins whose announcement lacks `attach_ack`
    /// (older nodes): edges pull from them with `StreamSubscribe`.
    legacy: Mutex<BTreeSet<(String, String)>>,
    /// Woken (every waiter) after each change.
    changed: Notify,
}

impl OriginTable {
    /// The origins, locked. Only the links' peer table is read under it.
    pub(crate) fn nodes(&self) -> MutexGuard<'_, Origins> {
        lock(&self.nodes)
    }

    /// Whether `origin` announced `key` without `attach_ack`.
    pub(crate) fn is_legacy(&self, key: &str, origin: &str) -> bool {
        lock(&self.legacy).contains(&(key.to_string(), origin.to_string()))
    }

    /// Notified after every change of the table.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }
}

impl RegistryObserver for OriginTable {
    fn tables(&self) -> &'static [u16] {
        &[table::ORIGINS]
    }

    fn on_change(&self, change: &Event) -> Result<(), Rejection> {
        let (origin, key, value, added) = match change {
            Event::Put { origin, key, value } => (origin, key, value, true),
            Event::Removed { origin, key, value } => (origin, key, value, false),
        };
        validate_key(&key.key).map_err(|_| Rejection::InvalidStreamKey)?;
        let announce = OriginAnnounce::decode(value).map_err(|_| Rejection::InvalidOrigin)?;
        {
            let mut legacy = lock(&self.legacy);
            let entry = (key.key.clone(), origin.name.clone());
            if added && !announce.attach_ack {
                legacy.insert(entry);
            } else {
                legacy.remove(&entry);
            }
        }
        {
            let mut origins = lock(&self.nodes);
            if added {
                origins
                    .entry(key.key.clone())
                    .or_default()
                    .insert(origin.name.clone(), announce.priority);
            } else if let Some(nodes) = origins.get_mut(&key.key) {
                nodes.remove(&origin.name);
                if nodes.is_empty() {
                    origins.remove(&key.key);
                }
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
