//! Remediation state: which problems are being or have been remediated, and what each one is
//! waiting for.
//!
//! With JetStream the state lives in a key-value bucket, so replicas share it and it survives
//! restarts; every change is a compare-and-set on the entry's revision, so two replicas never
//! both act on one problem. Without JetStream it lives in this process's memory.
//!
//! Keys: `p.<hash of project/stage/service/problem>` → [`Record`]; `a.<action.triggered id>` →
//! the problem key, so that whichever replica receives an `action.finished` finds its remediation.

use crate::keptn::outgoing::Outcome;
use crate::keptn::{ActionInfo, Scope};
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
    /// The outcome is decided ([`Record::finish`]) and remediation.finished is being sent; a
    /// redelivery or a restart that finds this phase sends it (again, with the same id).
    Finishing,
    /// remediation.finished was sent; later OPENs are duplicates until the problem closes.
    Finished,
}

/// The actions of a remediation, taken from remediation.yaml once, when it starts, so that a
/// file edited meanwhile (or a replica with another file) cannot mix actions of two versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actions {
    pub on_open: Vec<ActionInfo>,
    pub on_close: Vec<ActionInfo>,
}

/// How a remediation ended, decided before remediation.finished is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub outcome: Outcome,
    pub message: String,
}

/// The CLOSED that ended the problem; its close actions run once the remediation has finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closing {
    pub event_id: String,
    pub git_commit_id: Option<String>,
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
    /// Unix milliseconds, on the clock of the replica that started the action, when it times
    /// out. For people reading the state only: replicas' clocks differ, so each times actions
    /// on its own monotonic clock and never compares this with its wall clock.
    pub deadline_ms: i64,
    pub last_error: String,
    /// Unix milliseconds when the remediation started, for the duration metric.
    pub started_ms: i64,
    /// Fixed when the first action starts; `None` in records written before actions were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Actions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<Finish>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<Closing>,
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

/// The most a record may take in the bucket (a NATS message carries at most 1 MiB by default;
/// the record stays well below so that it is never the reason a remediation is lost).
pub const MAX_RECORD_BYTES: usize = 256 * 1024;
/// The most of a problem's data object a record keeps.
const PROBLEM_BYTES: usize = 32 * 1024;
/// Members kept (strings cut to [`KEY_MEMBER_BYTES`]) even when a problem is trimmed.
const KEY_MEMBERS: [&str; 8] = [
    "ProblemTitle",
    "ProblemID",
    "PID",
    "ProblemURL",
    "State",
    "rootCause",
    "ImpactedEntity",
    "Tags",
];
const KEY_MEMBER_BYTES: usize = 2 * 1024;
/// Other members of a trimmed problem are kept when they are at most this large.
const SMALL_MEMBER_BYTES: usize = 1024;

impl Record {
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }

    /// The open action at `index`, of the actions fixed when the remediation started.
    pub fn action(&self, index: usize) -> Option<ActionInfo> {
        self.actions.as_ref()?.on_open.get(index).cloned()
    }
}

/// What a record keeps of a problem's data object: all of it when it is small; otherwise the
/// members that identify and describe the problem (ids, title, URL, state, root cause, impacted
/// entity, tags) and the other small members, up to [`PROBLEM_BYTES`]. `labels` are not kept
/// here: the record holds them once, next to the problem.
pub fn stored_problem(problem: &crate::keptn::ProblemDetails) -> Value {
    let size = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    let mut whole = problem.0.clone();
    whole.retain(|k, _| k != "labels");
    let whole = Value::Object(whole);
    if size(&whole) <= PROBLEM_BYTES {
        return whole;
    }
    let Value::Object(members) = whole else {
        return Value::Null;
    };
    let mut kept = serde_json::Map::new();
    let mut used = 2;
    let is_key = |k: &str| KEY_MEMBERS.iter().any(|m| m.eq_ignore_ascii_case(k));
    for (k, v) in members.iter().filter(|(k, _)| is_key(k)) {
        let v = match v {
            Value::String(s) if s.len() > KEY_MEMBER_BYTES => {
                let mut end = KEY_MEMBER_BYTES;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Value::String(s[..end].to_owned())
            }
            other if size(other) > KEY_MEMBER_BYTES => continue,
            other => other.clone(),
        };
        used += k.len() + 4 + size(&v);
        kept.insert(k.clone(), v);
    }
    for (k, v) in members.iter().filter(|(k, _)| !is_key(k)) {
        let n = k.len() + 4 + size(v);
        if n <= SMALL_MEMBER_BYTES && used + n <= PROBLEM_BYTES {
            used += n;
            kept.insert(k.clone(), v.clone());
        }
    }
    Value::Object(kept)
}

/// A short fixed-size key for an event id of any length.
fn id_hash(event_id: &str) -> u128 {
    let digest = Sha256::digest(event_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// Event ids handled recently, in two generations of at most [`SEEN_PER_GENERATION`] each:
/// the newest ids are always remembered, at least that many and at most twice as many.
pub const SEEN_PER_GENERATION: usize = 100_000;

#[derive(Default)]
struct Seen {
    current: std::collections::HashSet<u128>,
    previous: std::collections::HashSet<u128>,
}

impl Seen {
    fn contains(&self, id: u128) -> bool {
        self.current.contains(&id) || self.previous.contains(&id)
    }
    fn insert(&mut self, id: u128) {
        if self.current.len() >= SEEN_PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(id);
    }
}

fn index_key(action_triggered_id: &str) -> String {
    format!("a.{}", subject_token(action_triggered_id))
}

/// `text` as one NATS subject token (and so one key-value key part): anything but letters,
/// digits, `-` and `_` becomes `_`.
pub(crate) fn subject_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
    /// Event ids this process knows were handled (by any replica).
    seen: Mutex<Seen>,
}

impl Claimed {
    fn new(ttl: Duration) -> Self {
        Claimed {
            ttl,
            owners: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
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

    /// Whether an event with this id was handled already (by this process, or with the shared
    /// bucket by any replica within `STATE_TTL`).
    pub async fn handled(&self, event_id: &str) -> anyhow::Result<bool> {
        let id = id_hash(event_id);
        match self {
            Store::Memory(m) => Ok(m.seen.lock().expect("state lock").contains(id)),
            Store::Kv(s, claimed) => {
                if claimed.seen.lock().expect("claimed lock").contains(id) {
                    return Ok(true);
                }
                let found = s
                    .get(format!("e.{id:032x}"))
                    .await
                    .context("reading handled event ids")?
                    .is_some_and(|v| !v.is_empty());
                if found {
                    claimed.seen.lock().expect("claimed lock").insert(id);
                }
                Ok(found)
            }
        }
    }

    /// Remembers that an event was handled.
    pub async fn remember(&self, event_id: &str) -> anyhow::Result<()> {
        let id = id_hash(event_id);
        match self {
            Store::Memory(m) => {
                m.seen.lock().expect("state lock").insert(id);
                Ok(())
            }
            Store::Kv(s, claimed) => {
                claimed.seen.lock().expect("claimed lock").insert(id);
                s.put(format!("e.{id:032x}"), Bytes::from_static(b"1"))
                    .await
                    .map(|_| ())
                    .context("writing handled event id")
            }
        }
    }

    /// Every remediation waiting for an action or with an outcome not yet sent, to take up
    /// after a start.
    pub async fn pending(&self) -> anyhow::Result<Vec<(String, Record)>> {
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
                && matches!(record.phase, Phase::Waiting | Phase::Finishing)
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

/// In-process state for core NATS without JetStream. Entries expire after the TTL. Records are
/// kept encoded (a few hundred bytes each, not a tree of JSON values), at most
/// [`MEMORY_RECORDS`]; when full, expired entries go first, then the oldest finished ones (which
/// only serve to recognise duplicate OPENs).
pub struct MemoryStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    links: Mutex<HashMap<String, String>>,
    seen: Mutex<Seen>,
    revision: std::sync::atomic::AtomicU64,
}

/// The most records the in-memory store keeps.
pub const MEMORY_RECORDS: usize = 100_000;

struct Entry {
    bytes: Box<[u8]>,
    rev: u64,
    at: Instant,
    finished: bool,
}

impl Entry {
    fn new(record: &Record, rev: u64) -> Entry {
        Entry {
            bytes: serde_json::to_vec(record)
                .expect("records serialize")
                .into_boxed_slice(),
            rev,
            at: Instant::now(),
            finished: record.phase == Phase::Finished,
        }
    }
    fn record(&self) -> Option<Record> {
        serde_json::from_slice(&self.bytes).ok()
    }
}

impl MemoryStore {
    fn new(ttl: Duration) -> Self {
        MemoryStore {
            ttl,
            entries: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
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
        if let Some(e) = entries.get(key)
            && now.duration_since(e.at) < self.ttl
            && let Some(r) = e.record()
        {
            return Claim::Exists(Box::new(r), e.rev);
        }
        if entries.len() >= MEMORY_RECORDS {
            let ttl = self.ttl;
            entries.retain(|_, e| now.duration_since(e.at) < ttl);
        }
        if entries.len() >= MEMORY_RECORDS {
            let mut finished: Vec<(Instant, String)> = entries
                .iter()
                .filter(|(_, e)| e.finished)
                .map(|(k, e)| (e.at, k.clone()))
                .collect();
            finished.sort_unstable();
            for (_, k) in finished.iter().take(MEMORY_RECORDS / 10) {
                entries.remove(k);
            }
        }
        let rev = self.next();
        entries.insert(key.to_owned(), Entry::new(record, rev));
        Claim::Created(rev)
    }
    fn get(&self, key: &str) -> Option<(Record, u64)> {
        let entries = self.entries.lock().expect("state lock");
        let e = entries.get(key).filter(|e| e.at.elapsed() < self.ttl)?;
        Some((e.record()?, e.rev))
    }
    fn update(&self, key: &str, record: &Record, revision: u64) -> Option<u64> {
        let mut entries = self.entries.lock().expect("state lock");
        match entries.get_mut(key) {
            Some(entry) if entry.rev == revision => {
                let rev = self.next();
                *entry = Entry::new(record, rev);
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
