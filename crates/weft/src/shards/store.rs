//! Raft storage: the log and vote (durable under `data_dir/raft` when a
//! data directory is configured) and the state machine (the shard map).
//!
//! Files: `meta.json` (cluster and node the directory belongs to),
//! `vote.json`, `committed.json`, `purged.json` (written atomically),
//! `log.jsonl` (one entry per line, appended and fsynced before the append
//! is acknowledged; rewritten on truncate and purge), `snapshot.json`.
//! A directory of another cluster or node, or a file that does not parse,
//! refuses to start with an error naming the file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use weft_proto::shard::ShardMap;

use super::types::{ShardCommand, ShardResponse, TypeConfig};

type C = TypeConfig;

/// Why the raft directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory belongs to another cluster or node.
    #[error("{path}: belongs to cluster {cluster:?} node {node:?}, not {want_cluster:?} node {want_node:?}")]
    Foreign {
        /// The meta file.
        path: PathBuf,
        /// Its cluster.
        cluster: String,
        /// Its node.
        node: String,
        /// Our cluster.
        want_cluster: String,
        /// Our node.
        want_node: String,
    },
    /// A file does not parse.
    #[error("{path}: corrupt raft state: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An OS error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Meta {
    cluster: String,
    node: String,
}

#[derive(Default)]
struct LogInner {
    dir: Option<PathBuf>,
    log: BTreeMap<u64, EntryOf<C>>,
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
    file: Option<std::fs::File>,
}

/// The Raft log and vote.
#[derive(Clone, Default)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_data()?;
    std::fs::rename(tmp, path)
}

impl LogStore {
    /// An in-memory log (no data directory).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens (or creates) the durable log under `dir`.
    pub fn open(dir: &Path, cluster: &str, node: &str) -> Result<(Self, Option<SnapshotData>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let meta_path = dir.join("meta.json");
        match read_json::<Meta>(&meta_path)? {
            Some(m) if m.cluster != cluster || m.node != node => {
                return Err(StoreError::Foreign {
                    path: meta_path,
                    cluster: m.cluster,
                    node: m.node,
                    want_cluster: cluster.into(),
                    want_node: node.into(),
                });
            }
            Some(_) => {}
            None => write_json(
                &meta_path,
                &Meta {
                    cluster: cluster.into(),
                    node: node.into(),
                },
            )
            .map_err(|e| io_err(&meta_path, e))?,
        }
        let mut inner = LogInner {
            dir: Some(dir.to_path_buf()),
            vote: read_json(&dir.join("vote.json"))?,
            committed: read_json(&dir.join("committed.json"))?,
            purged: read_json(&dir.join("purged.json"))?,
            ..Default::default()
        };
        let log_path = dir.join("log.jsonl");
        match std::fs::read_to_string(&log_path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let entry: EntryOf<C> = serde_json::from_str(line).map_err(|e| StoreError::Corrupt {
                        path: log_path.clone(),
                        detail: format!("line {}: {e}", i + 1),
                    })?;
                    inner.log.insert(entry.index(), entry);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&log_path, e)),
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        inner.file = Some(file);
        let snapshot = read_json(&dir.join("snapshot.json"))?;
        Ok((
            Self {
                inner: Arc::new(Mutex::new(inner)),
            },
            snapshot,
        ))
    }
}

impl LogInner {
    fn save<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        match &self.dir {
            Some(dir) => write_json(&dir.join(name), value),
            None => Ok(()),
        }
    }

    fn rewrite_log(&mut self) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join("log.jsonl");
        let tmp = dir.join("log.jsonl.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for e in self.log.values() {
            let line = serde_json::to_string(e).map_err(io::Error::other)?;
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
        }
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&path)?);
        Ok(())
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let inner = self.inner.lock().await;
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.inner.lock().await.vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.inner.lock().await;
        let last = inner
            .log
            .values()
            .next_back()
            .map(|e| e.log_id())
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        inner.save("vote.json", vote)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        inner.save("committed.json", &committed)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        let mut buf = Vec::new();
        for e in entries {
            if inner.dir.is_some() {
                buf.extend_from_slice(serde_json::to_string(&e).map_err(io::Error::other)?.as_bytes());
                buf.push(b'\n');
            }
            inner.log.insert(e.index(), e);
        }
        if let Some(f) = inner.file.as_mut() {
            f.write_all(&buf)?;
            f.sync_data()?;
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let keys: Vec<u64> = inner.log.range(from..).map(|(k, _)| *k).collect();
        for k in keys {
            inner.log.remove(&k);
        }
        inner.rewrite_log()
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        let keys: Vec<u64> = inner.log.range(..=log_id.index()).map(|(k, _)| *k).collect();
        for k in keys {
            inner.log.remove(&k);
        }
        inner.save("purged.json", &Some(log_id))?;
        inner.purged = Some(log_id);
        inner.rewrite_log()
    }
}

/// What a snapshot holds: the whole state machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The shard map.
    pub map: ShardMap,
    /// Last applied log id.
    pub last_applied: Option<LogIdOf<C>>,
    /// Last membership.
    pub membership: StoredMembershipOf<C>,
    /// Per shard, the epoch from which its current owner has owned it
    /// without a break (empty in snapshots written before it existed:
    /// then every shard counts as owned since the snapshot's epoch).
    #[serde(default)]
    pub since: Vec<u64>,
}

/// What the state machine publishes after every apply that changed the
/// map: the map and, per shard, the epoch its owner has held it since.
/// `since` lets a node tell "still mine" from "mine again" when it sees
/// maps far apart (a restart's log replay, a batch of entries): a shard
/// that left a node and came back must be handed over again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// The committed map.
    pub map: ShardMap,
    /// Per shard (same length as `map.owners`), the epoch since which
    /// `map.owner(shard)` has owned it continuously.
    pub since: Vec<u64>,
}

impl SnapshotData {
    fn committed(&self) -> Committed {
        let since = if self.since.len() == self.map.owners.len() {
            self.since.clone()
        } else {
            vec![self.map.epoch; self.map.owners.len()]
        };
        Committed {
            map: self.map.clone(),
            since,
        }
    }
}

#[derive(Default)]
struct SmInner {
    data: SnapshotData,
    snapshot: Option<(SnapshotMetaOf<C>, SnapshotData)>,
}

/// The state machine: the committed shard map.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
    dir: Option<PathBuf>,
    map_tx: Arc<watch::Sender<Committed>>,
}

impl StateMachine {
    /// A state machine starting from `snapshot` (if any), publishing every
    /// committed map on `map_tx`.
    pub fn new(
        dir: Option<PathBuf>,
        snapshot: Option<SnapshotData>,
        map_tx: Arc<watch::Sender<Committed>>,
    ) -> Self {
        let mut inner = SmInner::default();
        if let Some(s) = snapshot {
            map_tx.send_replace(s.committed());
            inner.data = s;
        }
        Self {
            inner: Arc::new(Mutex::new(inner)),
            dir,
            map_tx,
        }
    }

    fn apply_command(data: &mut SnapshotData, cmd: &ShardCommand) -> ShardResponse {
        match cmd {
            ShardCommand::SetOwners {
                expected_epoch,
                owners,
            } => {
                if data.map.epoch != *expected_epoch
                    || (data.map.epoch > 0 && owners.len() != data.map.owners.len())
                {
                    return ShardResponse::Conflict {
                        epoch: data.map.epoch,
                    };
                }
                let first = data.map.epoch == 0 || data.since.len() != owners.len();
                let old = std::mem::replace(&mut data.map.owners, owners.clone());
                data.map.epoch += 1;
                let epoch = data.map.epoch;
                if first {
                    data.since = vec![epoch; owners.len()];
                } else {
                    for (i, since) in data.since.iter_mut().enumerate() {
                        if old.get(i) != owners.get(i) {
                            *since = epoch;
                        }
                    }
                }
                ShardResponse::Applied {
                    epoch: data.map.epoch,
                }
            }
        }
    }
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotData>, io::Error> {
        let mut inner = self.inner.lock().await;
        let meta = openraft::SnapshotMeta {
            last_log_id: inner.data.last_applied,
            last_membership: inner.data.membership.clone(),
        };
        let data = inner.data.clone();
        if let Some(dir) = &self.dir {
            write_json(&dir.join("snapshot.json"), &data)?;
        }
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(openraft::Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let inner = self.inner.lock().await;
        Ok((inner.data.last_applied, inner.data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + Send,
    {
        let mut inner = self.inner.lock().await;
        let mut changed = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            inner.data.last_applied = Some(entry.log_id());
            let response = match &entry.payload {
                EntryPayload::Blank => ShardResponse::Nothing,
                EntryPayload::Normal(cmd) => {
                    let r = Self::apply_command(&mut inner.data, cmd);
                    changed |= matches!(r, ShardResponse::Applied { .. });
                    r
                }
                EntryPayload::Membership(m) => {
                    inner.data.membership = openraft::StoredMembership::new(Some(entry.log_id()), m.clone());
                    ShardResponse::Nothing
                }
            };
            if let Some(r) = responder {
                r.send(response);
            }
        }
        if changed {
            // Every node's view changes only here, after the commit.
            self.map_tx.send_replace(inner.data.committed());
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        if let Some(dir) = &self.dir {
            write_json(&dir.join("snapshot.json"), &snapshot)?;
        }
        inner.data = snapshot.clone();
        inner.snapshot = Some((meta.clone(), snapshot));
        self.map_tx.send_replace(inner.data.committed());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotData>>, io::Error> {
        let inner = self.inner.lock().await;
        Ok(inner
            .snapshot
            .clone()
            .map(|(meta, snapshot)| openraft::Snapshot { meta, snapshot }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(data: &mut SnapshotData, owners: &[&str]) -> ShardResponse {
        StateMachine::apply_command(
            data,
            &ShardCommand::SetOwners {
                expected_epoch: data.map.epoch,
                owners: owners.iter().map(|o| Some(o.to_string())).collect(),
            },
        )
    }

    #[test]
    fn since_marks_the_epoch_each_owner_took_its_shard() {
        let mut d = SnapshotData::default();
        set(&mut d, &["a", "b", "c"]);
        assert_eq!(d.committed().since, vec![1, 1, 1]);
        set(&mut d, &["a", "a", "c"]);
        assert_eq!(d.committed().since, vec![1, 2, 1]);
        // Shard 1 goes back to b: a new ownership, not b's old one.
        set(&mut d, &["a", "b", "c"]);
        assert_eq!(d.committed().since, vec![1, 3, 1]);
        // A conflicting command changes nothing.
        let r = StateMachine::apply_command(
            &mut d,
            &ShardCommand::SetOwners {
                expected_epoch: 1,
                owners: vec![None, None, None],
            },
        );
        assert_eq!(r, ShardResponse::Conflict { epoch: 3 });
        assert_eq!(d.committed().since, vec![1, 3, 1]);
    }

    #[test]
    fn a_snapshot_without_since_counts_every_shard_from_its_epoch() {
        let mut d = SnapshotData::default();
        set(&mut d, &["a", "b"]);
        set(&mut d, &["b", "b"]);
        d.since.clear(); // as written before `since` existed
        assert_eq!(d.committed().since, vec![2, 2]);
        set(&mut d, &["b", "a"]);
        assert_eq!(d.committed().since, vec![3, 3]);
    }
}
