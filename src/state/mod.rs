//! Remediation state: which problems are being or have been remediated, and what each one is
//! waiting for.
//!
//! With JetStream the state lives in a key-value bucket, so replicas share it and it survives
//! restarts; every change is a compare-and-set on the entry's revision, so two replicas never
//! both act on one problem. Without JetStream it lives in this process's memory.
//!
//! Keys: `p.<hash of project/stage/service/problem>` → [`Record`]; `a.<action.triggered id>` →
//! the problem key, so that whichever replica receives an `action.finished` finds its remediation;
//! `e.<hash of an event id>` for the event ids already handled.
//!
//! One file per backend: `kv.rs` (the bucket) and `memory.rs`; both keep the same contract, which
//! one test runs against each (`tests/state.rs`).

mod kv;
mod memory;

pub use kv::KvStore;
pub use memory::{MEMORY_BYTES, MEMORY_RECORDS, MemoryStore};

use crate::keptn::outgoing::Outcome;
use crate::keptn::{ActionInfo, Scope};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    unpack_key(packed_problem_key(scope, identity))
}

/// [`problem_key`] packed (as [`pack_key`] packs it), without the text in between.
pub(crate) fn packed_problem_key(scope: &Scope, identity: &str) -> u128 {
    let mut h = Sha256::new();
    for part in [&scope.project, &scope.stage, &scope.service, identity] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
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
/// entity, tags) and the other small members, up to `PROBLEM_BYTES`. `labels` are not kept
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
pub(crate) fn id_hash(event_id: &str) -> u128 {
    let digest = Sha256::digest(event_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// Event ids handled recently, in two generations of at most [`SEEN_PER_GENERATION`] each:
/// the newest ids are always remembered, at least that many and at most twice as many.
pub const SEEN_PER_GENERATION: usize = 100_000;

#[derive(Default)]
pub(crate) struct Seen {
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

pub(crate) fn index_key(action_triggered_id: &str) -> String {
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

/// Outcome of [`Store::claim`].
#[derive(Debug)]
pub enum Claim {
    /// The problem is now this remediation's, at this revision.
    Created(u64),
    /// Claimed before (the backend may answer so only for the same event again): the record
    /// and its revision.
    Exists(Box<Record>, u64),
    /// Claimed by another event, known without reading the record.
    Taken,
}

/// Outcome of a compare-and-set ([`Store::update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Cas {
    /// Written; the entry's new revision.
    Written(u64),
    /// Someone else changed the entry since the revision given: nothing was written.
    Conflict,
}

/// A problem key (`p.` and 32 hex digits, from [`problem_key`]) as 16 bytes; any other text is
/// hashed, so a key that is not a problem key still gets a slot of its own.
pub(crate) fn pack_key(key: &str) -> u128 {
    key.strip_prefix("p.")
        .filter(|hex| hex.len() == 32)
        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| id_hash(key))
}

/// The problem key [`pack_key`] packed.
pub(crate) fn unpack_key(key: u128) -> String {
    format!("p.{key:032x}")
}

/// Where the state lives: the shared bucket, or this process's memory. The bucket's calls are
/// boxed: their futures are large, and every caller's would carry them even when the memory
/// backend answers at once.
// One per process: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Memory(MemoryStore),
    Kv(KvStore),
}

impl Store {
    /// The shared bucket, created when missing.
    pub async fn jetstream(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> anyhow::Result<Store> {
        Ok(Store::Kv(KvStore::open(js, bucket, ttl).await?))
    }

    pub fn memory(ttl: Duration) -> Store {
        Store::Memory(MemoryStore::new(ttl))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Kv(_) => "jetstream-kv",
        }
    }

    /// Claims the problem `key` for a new remediation, atomically across replicas.
    pub async fn claim(&self, key: &str, record: &Record) -> anyhow::Result<Claim> {
        match self {
            Store::Memory(m) => m.claim(key, record),
            Store::Kv(s) => Box::pin(s.claim(key, record)).await,
        }
    }

    /// [`Store::claim`] for the OPEN that `record` was opened by, `None` when that event was
    /// handled before (nothing is claimed). When the record's first action is fixed, its
    /// action.triggered id is linked to `key` ([`Store::link_action`]).
    ///
    /// With the bucket, a claim over a key that holds nothing at all proves the event new, so
    /// the handled-id is read only when the key exists or was closed; and the link is written
    /// beside the claim rather than after it: a claim that is refused leaves a link to an id
    /// that is never sent, which expires with the bucket's `STATE_TTL`.
    pub async fn claim_open(&self, key: &str, record: &Record) -> anyhow::Result<Option<Claim>> {
        match self {
            Store::Memory(m) => {
                if m.handled(&record.opened_by) {
                    return Ok(None);
                }
                let claim = m.claim(key, record)?;
                if let (Claim::Created(_), Some(id)) = (&claim, &record.action_triggered_id) {
                    m.link_action(id, key);
                }
                Ok(Some(claim))
            }
            Store::Kv(s) => Box::pin(s.claim_open(key, record)).await,
        }
    }

    /// Whether `key` is known, without a round trip, to be claimed by an event other than
    /// `opened_by`: what [`Store::claim`] would answer with [`Claim::Taken`]. `false` means
    /// only "not known here"; the claim decides.
    pub fn claimed_by_other(&self, key: &str, opened_by: &str) -> bool {
        self.claimed_by_other_packed(pack_key(key), id_hash(opened_by))
    }

    /// [`Self::claimed_by_other`] for a key and an event id already packed
    /// ([`packed_problem_key`], [`id_hash`]): what a duplicate in an alert storm costs.
    pub(crate) fn claimed_by_other_packed(&self, key: u128, opened_by: u128) -> bool {
        match self {
            Store::Memory(m) => m.claimed_by_other(key, opened_by),
            Store::Kv(s) => s.claimed_by_other(key, opened_by),
        }
    }

    /// The record of `key` and its revision, if there is one.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<(Record, u64)>> {
        match self {
            Store::Memory(m) => Ok(m.get(key)),
            Store::Kv(s) => Box::pin(s.get(key)).await,
        }
    }

    /// Writes `record` if the entry is still at `revision`.
    pub async fn update(&self, key: &str, record: &Record, revision: u64) -> anyhow::Result<Cas> {
        match self {
            Store::Memory(m) => Ok(m.update(key, record, revision)),
            Store::Kv(s) => Box::pin(s.update(key, record, revision)).await,
        }
    }

    /// Forgets the problem: a later OPEN for it starts a new remediation.
    pub async fn forget(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.forget(key);
                Ok(())
            }
            Store::Kv(s) => Box::pin(s.forget(key)).await,
        }
    }

    /// Remembers which problem an action.triggered belongs to.
    pub async fn link_action(&self, action_triggered_id: &str, key: &str) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.link_action(action_triggered_id, key);
                Ok(())
            }
            Store::Kv(s) => Box::pin(s.link_action(action_triggered_id, key)).await,
        }
    }

    /// The problem key an action.triggered id belongs to, if it is one of ours.
    pub async fn action_owner(&self, action_triggered_id: &str) -> anyhow::Result<Option<String>> {
        match self {
            Store::Memory(m) => Ok(m.action_owner(action_triggered_id)),
            Store::Kv(s) => Box::pin(s.action_owner(action_triggered_id)).await,
        }
    }

    /// Whether an event with this id was handled already (by this process, or with the shared
    /// bucket by any replica within `STATE_TTL`).
    pub async fn handled(&self, event_id: &str) -> anyhow::Result<bool> {
        match self {
            Store::Memory(m) => Ok(m.handled(event_id)),
            Store::Kv(s) => Box::pin(s.handled(event_id)).await,
        }
    }

    /// Remembers that an event was handled.
    pub async fn remember(&self, event_id: &str) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                m.remember(event_id);
                Ok(())
            }
            Store::Kv(s) => Box::pin(s.remember(event_id)).await,
        }
    }

    /// Every remediation waiting for an action or with an outcome not yet sent, to take up
    /// after a start.
    pub async fn pending(&self) -> anyhow::Result<Vec<(String, Record)>> {
        match self {
            Store::Memory(m) => Ok(m.pending()),
            Store::Kv(s) => Box::pin(s.pending()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys outlive releases in the bucket: the text of a key must never change.
    #[test]
    fn a_problem_key_is_the_first_half_of_its_sha256_in_hex() {
        let scope = Scope {
            project: "website".into(),
            stage: "production".into(),
            service: "front-end".into(),
        };
        // python3: hashlib.sha256(b"website\0production\0front-end\0P-1\0").hexdigest()[:32]
        let key = problem_key(&scope, "P-1");
        assert_eq!(key, "p.5124828e1f0c11984282c56b0bb0fcf8");
        assert_eq!(unpack_key(pack_key(&key)), key);
    }
}
