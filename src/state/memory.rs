//! The in-process backend, for core NATS without JetStream (docs/design.md §4.1).
//!
//! Everything here is sized per problem, so it is kept small and bounded:
//! - a record is held encoded, under short member names, without its actions: those are the same
//!   for every problem a remediation.yaml entry matches, so each distinct set is held once and
//!   shared ([`Interned`]);
//! - keys are 16-byte values, not strings;
//! - at most [`MEMORY_RECORDS`] records and [`MEMORY_BYTES`] of encoded records; when either is
//!   reached, expired records go first, then the oldest finished ones (which only serve to
//!   recognise duplicate OPENs and to run close actions), and as a last resort new problems are
//!   refused (the claim fails, so the event is reported, not silently dropped).

use super::{Actions, Cas, Claim, Phase, Record, Seen, id_hash, pack_key};
use serde_json::Value;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most records the in-memory store keeps.
pub const MEMORY_RECORDS: usize = 100_000;
/// The most bytes of encoded records the in-memory store keeps.
pub const MEMORY_BYTES: usize = 48 * 1024 * 1024;

pub struct MemoryStore {
    ttl: Duration,
    started: Instant,
    inner: Mutex<Inner>,
    revision: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u128, Entry>,
    /// Encoded bytes held by `entries`.
    bytes: usize,
    /// action.triggered id (hashed) → problem key.
    links: HashMap<u128, u128>,
    seen: Seen,
    interned: Interned,
}

struct Entry {
    bytes: Box<[u8]>,
    /// Hash of the id of the OPEN that claimed the problem: an OPEN of another id is answered
    /// without decoding the record (the repeats of an alert storm).
    opened_by: u128,
    actions: Option<Arc<Actions>>,
    rev: u64,
    /// Seconds since the store started, when the entry was written.
    at: u32,
    finished: bool,
}

/// Each distinct set of actions once. A set leaves when no record holds it any more (checked
/// when the table is full, so the table stays bounded by the records' own bound).
#[derive(Default)]
struct Interned(HashMap<u128, Arc<Actions>>);

impl Interned {
    fn get(&mut self, actions: &Actions) -> Arc<Actions> {
        let encoded = serde_json::to_vec(actions).expect("actions serialize");
        let id = u128::from_be_bytes(
            sha2::Sha256::digest(&encoded)[..16]
                .try_into()
                .expect("16 bytes"),
        );
        if self.0.len() >= 1024 {
            self.0.retain(|_, a| Arc::strong_count(a) > 1);
        }
        self.0
            .entry(id)
            .or_insert_with(|| Arc::new(actions.clone()))
            .clone()
    }
}

/// Member names of a record as held here (the bucket keeps the full names, which other
/// versions read; nothing outside this process reads these).
const SHORT: [(&str, &str); 17] = [
    ("phase", "a"),
    ("opened_by", "b"),
    ("scope", "c"),
    ("labels", "d"),
    ("problem", "e"),
    ("keptn_context", "f"),
    ("git_commit_id", "g"),
    ("remediation_triggered_id", "h"),
    ("action_index", "i"),
    ("action_triggered_id", "j"),
    ("action_label", "k"),
    ("deadline_ms", "l"),
    ("last_error", "m"),
    ("started_ms", "n"),
    ("actions", "o"),
    ("finish", "p"),
    ("closing", "q"),
];

fn rename(value: Value, long_to_short: bool) -> Value {
    let Value::Object(members) = value else {
        return value;
    };
    let members = members
        .into_iter()
        .map(|(k, v)| {
            let name = SHORT
                .iter()
                .find(|(long, short)| {
                    if long_to_short {
                        *long == k
                    } else {
                        *short == k
                    }
                })
                .map(|(long, short)| if long_to_short { *short } else { *long });
            (name.map(str::to_owned).unwrap_or(k), v)
        })
        .collect();
    Value::Object(members)
}

impl Entry {
    /// `prior`: the actions the entry held before; kept as they are when unchanged (a record's
    /// actions are fixed when its remediation starts), so an update does not intern them again.
    fn new(
        record: &Record,
        rev: u64,
        at: u32,
        interned: &mut Interned,
        prior: Option<&Arc<Actions>>,
    ) -> Entry {
        let actions = record.actions.as_ref().map(|a| match prior {
            Some(p) if **p == *a => p.clone(),
            _ => interned.get(a),
        });
        let mut value = serde_json::to_value(record).expect("records serialize");
        if let Value::Object(members) = &mut value {
            members.remove("actions");
        }
        let bytes = serde_json::to_vec(&rename(value, true))
            .expect("records serialize")
            .into_boxed_slice();
        Entry {
            bytes,
            opened_by: id_hash(&record.opened_by),
            actions,
            rev,
            at,
            finished: record.phase == Phase::Finished,
        }
    }

    fn record(&self) -> Option<Record> {
        let value: Value = serde_json::from_slice(&self.bytes).ok()?;
        let mut record: Record = serde_json::from_value(rename(value, false)).ok()?;
        record.actions = self.actions.as_deref().cloned();
        Some(record)
    }
}

impl MemoryStore {
    pub(super) fn new(ttl: Duration) -> Self {
        MemoryStore {
            ttl,
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
            revision: AtomicU64::new(1),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn live(&self, e: &Entry, now: u32) -> bool {
        u64::from(now.saturating_sub(e.at)) < self.ttl.as_secs().max(1)
    }

    fn next(&self) -> u64 {
        self.revision.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("state lock")
    }

    /// `key` and `opened_by` packed ([`pack_key`], [`id_hash`]).
    pub(super) fn claimed_by_other(&self, key: u128, opened_by: u128) -> bool {
        let now = self.now();
        self.lock()
            .entries
            .get(&key)
            .is_some_and(|e| self.live(e, now) && e.opened_by != opened_by)
    }

    pub(super) fn claim(&self, key: &str, record: &Record) -> anyhow::Result<Claim> {
        let k = pack_key(key);
        let now = self.now();
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get(&k)
            && self.live(e, now)
        {
            if e.opened_by != id_hash(&record.opened_by) {
                return Ok(Claim::Taken);
            }
            if let Some(r) = e.record() {
                return Ok(Claim::Exists(Box::new(r), e.rev));
            }
        }
        let Inner {
            entries,
            interned,
            bytes,
            ..
        } = &mut *inner;
        let entry = Entry::new(record, self.next(), now, interned, None);
        let full = |entries: &HashMap<u128, Entry>, bytes: usize| {
            entries.len() >= MEMORY_RECORDS || bytes + entry.bytes.len() > MEMORY_BYTES
        };
        if full(entries, *bytes) {
            entries.retain(|_, e| self.live(e, now));
            *bytes = entries.values().map(|e| e.bytes.len()).sum();
        }
        if full(entries, *bytes) {
            // Revisions only grow, so the lowest is the longest unchanged.
            let mut finished: Vec<(u64, u128)> = entries
                .iter()
                .filter(|(_, e)| e.finished)
                .map(|(k, e)| (e.rev, *k))
                .collect();
            finished.sort_unstable();
            for (_, k) in finished.iter().take(MEMORY_RECORDS / 10) {
                if let Some(e) = entries.remove(k) {
                    *bytes -= e.bytes.len();
                }
            }
            metrics::counter!("state_evictions_total")
                .increment(finished.len().min(MEMORY_RECORDS / 10) as u64);
        }
        if full(entries, *bytes) {
            anyhow::bail!(
                "the in-memory remediation state is full ({} records, {} bytes) of remediations still running; run with JetStream for more",
                entries.len(),
                *bytes
            );
        }
        let rev = entry.rev;
        *bytes += entry.bytes.len();
        if let Some(old) = entries.insert(k, entry) {
            *bytes -= old.bytes.len();
        }
        Ok(Claim::Created(rev))
    }

    pub(super) fn get(&self, key: &str) -> Option<(Record, u64)> {
        let now = self.now();
        let inner = self.lock();
        let e = inner
            .entries
            .get(&pack_key(key))
            .filter(|e| self.live(e, now))?;
        Some((e.record()?, e.rev))
    }

    pub(super) fn update(&self, key: &str, record: &Record, revision: u64) -> Cas {
        let k = pack_key(key);
        let now = self.now();
        let mut inner = self.lock();
        let Inner {
            entries,
            interned,
            bytes,
            links,
            ..
        } = &mut *inner;
        match entries.get_mut(&k) {
            Some(entry) if entry.rev == revision => {
                let rev = self.next();
                let fresh = Entry::new(record, rev, now, interned, entry.actions.as_ref());
                *bytes = *bytes + fresh.bytes.len() - entry.bytes.len();
                *entry = fresh;
                // A finished remediation's action needs no way back to its problem (until then
                // a redelivered action.finished still finds it).
                if record.phase == Phase::Finished
                    && let Some(id) = &record.action_triggered_id
                {
                    links.remove(&id_hash(id));
                }
                Cas::Written(rev)
            }
            _ => Cas::Conflict,
        }
    }

    pub(super) fn forget(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.remove(&pack_key(key)) {
            inner.bytes -= e.bytes.len();
            if let Some(id) = e.record().and_then(|r| r.action_triggered_id) {
                inner.links.remove(&id_hash(&id));
            }
        }
    }

    pub(super) fn link_action(&self, action_triggered_id: &str, key: &str) {
        let mut inner = self.lock();
        // Entries are only needed until the action finishes; a full table starts over rather
        // than growing without bound.
        if inner.links.len() >= MEMORY_RECORDS {
            inner.links.clear();
        }
        inner
            .links
            .insert(id_hash(action_triggered_id), pack_key(key));
    }

    pub(super) fn action_owner(&self, action_triggered_id: &str) -> Option<String> {
        self.lock()
            .links
            .get(&id_hash(action_triggered_id))
            .map(|k| super::unpack_key(*k))
    }

    pub(super) fn handled(&self, event_id: &str) -> bool {
        self.lock().seen.contains(id_hash(event_id))
    }

    pub(super) fn remember(&self, event_id: &str) {
        self.lock().seen.insert(id_hash(event_id));
    }

    pub(super) fn pending(&self) -> Vec<(String, Record)> {
        let now = self.now();
        self.lock()
            .entries
            .iter()
            .filter(|(_, e)| !e.finished && self.live(e, now))
            .filter_map(|(k, e)| Some((super::unpack_key(*k), e.record()?)))
            .filter(|(_, r)| matches!(r.phase, Phase::Waiting | Phase::Finishing))
            .collect()
    }

    /// Records and encoded bytes held, for tests and benchmarks.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}
