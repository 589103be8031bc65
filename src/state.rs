//! Remediation state: which problems are being or have been remediated, and what each one is
//! waiting for.
//!
//! With JetStream the state lives in a key-value bucket, so replicas share it and it survives
//! restarts; every change is a compare-and-set on the entry's revision, so two replicas never
//! both act on one problem. Without JetStream it lives in this process's memory.
//!
//! Keys: `p.<hash of project/stage/service/problem>` → [`Record`]; `a.<action.triggered id>` →
//! the problem key, so that whichever replica receives an `action.finished` finds its remediation.

use crate::keptn::Scope;
use anyhow::Context;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Claimed by an OPEN; events not yet sent.
    Starting,
    /// An action.triggered is out; waiting for its action.finished or the deadline.
    Waiting,
    /// remediation.finished was sent; later OPENs are duplicates until the problem closes.
    Finished,
}

/// One remediation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub phase: Phase,
    /// Id of the OPEN event that started it; a redelivery of that event resumes, any other OPEN
    /// is a duplicate.
    pub opened_by: String,
    pub scope: Scope,
    pub labels: BTreeMap<String, String>,
    pub problem: Value,
    pub keptn_context: String,
    pub git_commit_id: Option<String>,
    /// Id of our remediation.triggered, fixed before it is sent so a resend carries the same id.
    pub remediation_triggered_id: String,
    pub action_index: usize,
    pub action_triggered_id: Option<String>,
    pub action_label: String,
    /// Unix milliseconds after which the action counts as timed out.
    pub deadline_ms: i64,
    pub last_error: String,
    /// Unix milliseconds when the remediation started, for the duration metric.
    pub started_ms: i64,
}

/// Key of a problem: project, stage, service and its identity (ProblemID, PID or title).
pub fn problem_key(scope: &Scope, identity: &str) -> String {
    let mut h = Sha256::new();
    for part in [&scope.project, &scope.stage, &scope.service, identity] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("p.{hex}")
}

fn index_key(action_triggered_id: &str) -> String {
    let clean: String = action_triggered_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("a.{clean}")
}

/// Outcome of [`Store::create`].
#[derive(Debug)]
pub enum Claim {
    Created(u64),
    Exists(Box<Record>, u64),
    /// Claimed by another event, known without asking the bucket (see [`Claimed`]).
    Taken,
}

/// Problems this process knows to be claimed, and by which event, so that the repeated OPENs
/// of an alert storm are answered without a round trip to the bucket. A key leaves when the
/// bucket reports it deleted or purged (a CLOSED, handled by any replica) or after the TTL,
/// after which the bucket has expired it too.
pub struct Claimed {
    ttl: Duration,
    owners: Mutex<HashMap<String, (String, Instant)>>,
    /// action.triggered ids this process sent → problem key (the mapping never changes, so
    /// the bucket only needs asking for actions another replica sent).
    links: Mutex<HashMap<String, String>>,
}

impl Claimed {
    fn new(ttl: Duration) -> Self {
        Claimed {
            ttl,
            owners: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }
    fn link(&self, index_key: &str, key: &str) {
        let mut links = self.links.lock().expect("claimed lock");
        if links.len() > 100_000 {
            links.clear();
        }
        links.insert(index_key.to_owned(), key.to_owned());
    }
    fn linked(&self, index_key: &str) -> Option<String> {
        self.links
            .lock()
            .expect("claimed lock")
            .get(index_key)
            .cloned()
    }
    fn owner(&self, key: &str) -> Option<String> {
        let owners = self.owners.lock().expect("claimed lock");
        owners
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(owner, _)| owner.clone())
    }
    fn insert(&self, key: &str, owner: &str) {
        let mut owners = self.owners.lock().expect("claimed lock");
        if owners.len() > 100_000 {
            let ttl = self.ttl;
            owners.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        owners.insert(key.to_owned(), (owner.to_owned(), Instant::now()));
    }
    fn remove(&self, key: &str) {
        self.owners.lock().expect("claimed lock").remove(key);
    }
    fn clear(&self) {
        self.owners.lock().expect("claimed lock").clear();
    }

    /// Follows deletions in the bucket for as long as the process runs. While the watch is
    /// down nothing is cached, so no stale claim can hide a reopened problem.
    fn follow(self: Arc<Self>, store: kv::Store) {
        tokio::spawn(async move {
            loop {
                match store.watch("p.>").await {
                    Ok(mut watch) => {
                        while let Some(Ok(entry)) = watch.next().await {
                            if entry.operation != kv::Operation::Put {
                                self.remove(&entry.key);
                            }
                        }
                        warn!("remediation state watch ended; restarting it");
                    }
                    Err(e) => warn!(error = %e, "cannot watch remediation state; retrying"),
                }
                self.clear();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

// One per process: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Memory(MemoryStore),
    Kv(kv::Store, Arc<Claimed>),
}

impl Store {
    /// The shared bucket, created when missing.
    pub async fn jetstream(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> anyhow::Result<Store> {
        let store = match js.get_key_value(bucket).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream is made directly, with the settings a key-value bucket has:
                // the library's own bucket creation first asks for account information in a
                // shape nats-server 2.9 does not answer.
                js.get_or_create_stream(jetstream::stream::Config {
                    name: format!("KV_{bucket}"),
                    description: Some("unleash-remediation-service: remediation state".into()),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    max_age: ttl,
                    storage: jetstream::stream::StorageType::File,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    num_replicas: 1,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating key-value bucket {bucket}"))?;
                js.get_key_value(bucket)
                    .await
                    .with_context(|| format!("opening key-value bucket {bucket}"))?
            }
        };
        let claimed = Arc::new(Claimed::new(ttl));
        claimed.clone().follow(store.clone());
        Ok(Store::Kv(store, claimed))
    }

    pub fn memory(ttl: Duration) -> Store {
        Store::Memory(MemoryStore::new(ttl))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Kv(..) => "jetstream-kv",
        }
    }

    /// Claims `key` for a new remediation, atomically across replicas.
    pub async fn create(&self, key: &str, record: &Record) -> anyhow::Result<Claim> {
        match self {
            Store::Memory(m) => Ok(m.create(key, record)),
            Store::Kv(s, claimed) => {
                if claimed
                    .owner(key)
                    .is_some_and(|owner| owner != record.opened_by)
                {
                    return Ok(Claim::Taken);
                }
                // Expecting revision 0 creates the key only if it never existed or was purged
                // back to nothing; when it exists, the one read that follows is all a duplicate
                // costs (the library's `create` would read it once more itself).
                let claim = match s.update(key, encode(record), 0).await {
                    Ok(rev) => Claim::Created(rev),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        match self.get(key).await? {
                            Some((r, rev)) => Claim::Exists(Box::new(r), rev),
                            // A delete marker (the problem was closed): `create` writes over it.
                            None => Claim::Created(
                                s.create(key, encode(record))
                                    .await
                                    .context("claiming remediation state")?,
                            ),
                        }
                    }
                    Err(e) => return Err(e).context("claiming remediation state"),
                };
                match &claim {
                    Claim::Created(_) => claimed.insert(key, &record.opened_by),
                    Claim::Exists(r, _) => claimed.insert(key, &r.opened_by),
                    Claim::Taken => {}
                }
                Ok(claim)
            }
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<(Record, u64)>> {
        match self {
            Store::Memory(m) => Ok(m.get(key)),
            Store::Kv(s, _) => {
                let Some(entry) = s.entry(key).await.context("reading remediation state")? else {
                    return Ok(None);
                };
                if entry.operation != kv::Operation::Put || entry.value.is_empty() {
                    return Ok(None);
                }
                let record = serde_json::from_slice(&entry.value)
                    .context("remediation state entry is not a record")?;
                Ok(Some((record, entry.revision)))
            }
        }
    }

    /// Compare-and-set; `None` when someone else changed the entry since `revision`.
    pub async fn update(
        &self,
        key: &str,
        record: &Record,
        revision: u64,
    ) -> anyhow::Result<Option<u64>> {
        match self {
            Store::Memory(m) => Ok(m.update(key, record, revision)),
            Store::Kv(s, _) => match s.update(key, encode(record), revision).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(e).context("updating remediation state"),
            },
        }
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Store::Kv(s, claimed) => {
                claimed.remove(key);
                s.purge(key).await.context("deleting remediation state")
            }
        }
    }

    /// Remembers which problem an action.triggered belongs to.
    pub async fn link_action(&self, action_triggered_id: &str, key: &str) -> anyhow::Result<()> {
        let ik = index_key(action_triggered_id);
        match self {
            Store::Memory(m) => {
                let mut links = m.links.lock().expect("state lock");
                // Entries are only needed until the action finishes; a full table starts over
                // rather than growing without bound.
                if links.len() > 100_000 {
                    links.clear();
                }
                links.insert(ik, key.to_owned());
                Ok(())
            }
            Store::Kv(s, claimed) => {
                claimed.link(&ik, key);
                s.put(ik, Bytes::copy_from_slice(key.as_bytes()))
                    .await
                    .map(|_| ())
                    .context("writing action index")
            }
        }
    }

    /// The problem key an action.triggered id belongs to, if it is one of ours.
    pub async fn action_owner(&self, action_triggered_id: &str) -> anyhow::Result<Option<String>> {
        let ik = index_key(action_triggered_id);
        match self {
            Store::Memory(m) => Ok(m.links.lock().expect("state lock").get(&ik).cloned()),
            Store::Kv(s, claimed) => match claimed.linked(&ik) {
                Some(key) => Ok(Some(key)),
                None => Ok(s
                    .get(ik)
                    .await
                    .context("reading action index")?
                    .filter(|v| !v.is_empty())
                    .map(|v| String::from_utf8_lossy(&v).into_owned())),
            },
        }
    }

    /// Every remediation waiting for an action, to re-arm their timeouts after a start.
    pub async fn waiting(&self) -> anyhow::Result<Vec<(String, Record)>> {
        let keys: Vec<String> = match self {
            Store::Memory(m) => m.keys(),
            Store::Kv(s, _) => s
                .keys()
                .await
                .context("listing remediation state")?
                .try_collect()
                .await
                .context("listing remediation state")?,
        };
        let mut out = Vec::new();
        for key in keys.into_iter().filter(|k| k.starts_with("p.")) {
            if let Some((record, _)) = self.get(&key).await?
                && record.phase == Phase::Waiting
            {
                out.push((key, record));
            }
        }
        Ok(out)
    }
}

fn encode(record: &Record) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("records serialize"))
}

/// In-process state for core NATS without JetStream. Entries expire after the TTL.
pub struct MemoryStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Record, u64, Instant)>>,
    links: Mutex<HashMap<String, String>>,
    revision: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    fn new(ttl: Duration) -> Self {
        MemoryStore {
            ttl,
            entries: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            revision: std::sync::atomic::AtomicU64::new(1),
        }
    }
    fn next(&self) -> u64 {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    fn create(&self, key: &str, record: &Record) -> Claim {
        let mut entries = self.entries.lock().expect("state lock");
        let now = Instant::now();
        if let Some((r, rev, at)) = entries.get(key)
            && now.duration_since(*at) < self.ttl
        {
            return Claim::Exists(Box::new(r.clone()), *rev);
        }
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, _, at)| now.duration_since(*at) < ttl);
        }
        let rev = self.next();
        entries.insert(key.to_owned(), (record.clone(), rev, now));
        Claim::Created(rev)
    }
    fn get(&self, key: &str) -> Option<(Record, u64)> {
        let entries = self.entries.lock().expect("state lock");
        entries
            .get(key)
            .filter(|(_, _, at)| at.elapsed() < self.ttl)
            .map(|(r, rev, _)| (r.clone(), *rev))
    }
    fn update(&self, key: &str, record: &Record, revision: u64) -> Option<u64> {
        let mut entries = self.entries.lock().expect("state lock");
        match entries.get_mut(key) {
            Some(entry) if entry.1 == revision => {
                let rev = self.next();
                *entry = (record.clone(), rev, Instant::now());
                Some(rev)
            }
            _ => None,
        }
    }
    fn delete(&self, key: &str) {
        self.entries.lock().expect("state lock").remove(key);
    }
    fn keys(&self) -> Vec<String> {
        self.entries
            .lock()
            .expect("state lock")
            .keys()
            .cloned()
            .collect()
    }
}
