//! The shared backend: a JetStream key-value bucket (docs/design.md §4.1).
//!
//! Every change is a compare-and-set on the entry's revision, so two replicas never both act on
//! one problem. What this process learns on the way (who claimed a problem, which problem an
//! action belongs to, which event ids were handled) is cached in [`Known`], bounded, so that an
//! alert storm's repeated OPENs and the action role's replies cost no round trip.

use super::{Cas, Claim, Phase, Record, Seen, id_hash, index_key, pack_key};
use anyhow::Context;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// The most entries each cache of [`Known`] holds before it is pruned or started over.
const KNOWN_ENTRIES: usize = 100_000;

pub struct KvStore {
    bucket: kv::Store,
    known: Arc<Known>,
}

/// What this process knows of the bucket without asking it. Keys and ids are held as 16-byte
/// values. A claim leaves when the bucket reports the key deleted or purged (a CLOSED, handled
/// by any replica) or after the TTL, after which the bucket has expired it too.
struct Known {
    ttl: Duration,
    /// Problem key → (hash of the id of the OPEN that claimed it, when).
    claims: Mutex<HashMap<u128, (u128, Instant)>>,
    /// action.triggered id (hashed) → problem key, for actions this process sent (the mapping
    /// never changes, so the bucket only needs asking for actions another replica sent).
    links: Mutex<HashMap<u128, u128>>,
    /// Event ids this process knows were handled (by any replica).
    seen: Mutex<Seen>,
}

impl Known {
    fn new(ttl: Duration) -> Self {
        Known {
            ttl,
            claims: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
        }
    }

    fn link(&self, action_triggered_id: &str, key: &str) {
        let mut links = self.links.lock().expect("state cache lock");
        if links.len() >= KNOWN_ENTRIES {
            links.clear();
        }
        links.insert(id_hash(action_triggered_id), pack_key(key));
    }

    /// Whether this process knows the event was handled.
    fn seen(&self, event_id: &str) -> bool {
        self.seen
            .lock()
            .expect("state cache lock")
            .contains(id_hash(event_id))
    }

    fn unlink(&self, action_triggered_id: &str) {
        self.links
            .lock()
            .expect("state cache lock")
            .remove(&id_hash(action_triggered_id));
    }

    fn linked(&self, action_triggered_id: &str) -> Option<String> {
        self.links
            .lock()
            .expect("state cache lock")
            .get(&id_hash(action_triggered_id))
            .map(|k| super::unpack_key(*k))
    }

    /// Whether `key` is known to be claimed by an event other than `opened_by` (both packed:
    /// [`pack_key`], [`id_hash`]).
    fn claimed_by_other(&self, key: u128, opened_by: u128) -> bool {
        let claims = self.claims.lock().expect("state cache lock");
        claims
            .get(&key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .is_some_and(|(owner, _)| *owner != opened_by)
    }

    fn claimed(&self, key: &str, opened_by: &str) {
        let mut claims = self.claims.lock().expect("state cache lock");
        if claims.len() >= KNOWN_ENTRIES {
            let ttl = self.ttl;
            claims.retain(|_, (_, at)| at.elapsed() < ttl);
            if claims.len() >= KNOWN_ENTRIES {
                claims.clear();
            }
        }
        claims.insert(pack_key(key), (id_hash(opened_by), Instant::now()));
    }

    fn unclaim(&self, key: &str) {
        self.claims
            .lock()
            .expect("state cache lock")
            .remove(&pack_key(key));
    }

    fn clear(&self) {
        self.claims.lock().expect("state cache lock").clear();
    }

    /// Follows deletions in the bucket for as long as the process runs. While the watch is
    /// down nothing is cached, so no stale claim can hide a reopened problem.
    fn follow(self: Arc<Self>, bucket: kv::Store) {
        tokio::spawn(async move {
            loop {
                match bucket.watch("p.>").await {
                    Ok(mut watch) => {
                        while let Some(Ok(entry)) = watch.next().await {
                            if entry.operation != kv::Operation::Put {
                                self.unclaim(&entry.key);
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

fn encode(record: &Record) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("records serialize"))
}

impl KvStore {
    /// The shared bucket, created when missing.
    pub(super) async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> anyhow::Result<KvStore> {
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
        let known = Arc::new(Known::new(ttl));
        known.clone().follow(store.clone());
        Ok(KvStore {
            bucket: store,
            known,
        })
    }

    pub(super) fn claimed_by_other(&self, key: u128, opened_by: u128) -> bool {
        self.known.claimed_by_other(key, opened_by)
    }

    pub(super) async fn claim(&self, key: &str, record: &Record) -> anyhow::Result<Claim> {
        if self
            .known
            .claimed_by_other(pack_key(key), id_hash(&record.opened_by))
        {
            return Ok(Claim::Taken);
        }
        // Without an event id the answer is never "handled before".
        let claim = self.claim_unless_handled(key, record, None).await?;
        Ok(claim.unwrap_or(Claim::Taken))
    }

    /// The claim; with `event_id`, `None` when that event was handled before and the problem
    /// was not claimed. Expecting revision 0 succeeds only when the problem's key holds no
    /// message at all: no event claimed it within `STATE_TTL` (a closed problem leaves its purge
    /// marker), so this event cannot have been handled, and the handled-id read is left out.
    async fn claim_unless_handled(
        &self,
        key: &str,
        record: &Record,
        event_id: Option<&str>,
    ) -> anyhow::Result<Option<Claim>> {
        // When the key exists, the one read that follows is all a duplicate costs (the
        // library's `create` would read it once more itself).
        let claim = match self.bucket.update(key, encode(record), 0).await {
            Ok(rev) => Claim::Created(rev),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                if let Some(id) = event_id
                    && self.handled(id).await?
                {
                    return Ok(None);
                }
                match self.get(key).await? {
                    Some((r, rev)) => Claim::Exists(Box::new(r), rev),
                    // A delete marker (the problem was closed): `create` writes over it.
                    None => Claim::Created(
                        self.bucket
                            .create(key, encode(record))
                            .await
                            .context("claiming remediation state")?,
                    ),
                }
            }
            Err(e) => return Err(e).context("claiming remediation state"),
        };
        match &claim {
            Claim::Created(_) => self.known.claimed(key, &record.opened_by),
            Claim::Exists(r, _) => self.known.claimed(key, &r.opened_by),
            Claim::Taken => {}
        }
        Ok(Some(claim))
    }

    pub(super) async fn claim_open(
        &self,
        key: &str,
        record: &Record,
    ) -> anyhow::Result<Option<Claim>> {
        let event_id = record.opened_by.as_str();
        if self
            .known
            .claimed_by_other(pack_key(key), id_hash(event_id))
        {
            return Ok(Some(Claim::Taken));
        }
        if self.known.seen(event_id) {
            return Ok(None);
        }
        let action = record.action_triggered_id.as_deref();
        let link = async {
            match action {
                Some(id) => self.link_action(id, key).await,
                None => Ok(()),
            }
        };
        let (claim, linked) =
            tokio::join!(self.claim_unless_handled(key, record, Some(event_id)), link);
        let claim = claim?;
        if !matches!(claim, Some(Claim::Created(_))) {
            if let Some(id) = action {
                self.known.unlink(id);
            }
            return Ok(claim);
        }
        linked?;
        Ok(claim)
    }

    pub(super) async fn get(&self, key: &str) -> anyhow::Result<Option<(Record, u64)>> {
        let Some(entry) = self
            .bucket
            .entry(key)
            .await
            .context("reading remediation state")?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put || entry.value.is_empty() {
            return Ok(None);
        }
        let record = serde_json::from_slice(&entry.value)
            .context("remediation state entry is not a record")?;
        Ok(Some((record, entry.revision)))
    }

    pub(super) async fn update(
        &self,
        key: &str,
        record: &Record,
        revision: u64,
    ) -> anyhow::Result<Cas> {
        match self.bucket.update(key, encode(record), revision).await {
            Ok(rev) => {
                // A finished remediation's action needs no way back to its problem here; the
                // bucket keeps the link for late redeliveries until it expires.
                if record.phase == Phase::Finished
                    && let Some(id) = &record.action_triggered_id
                {
                    self.known.unlink(id);
                }
                Ok(Cas::Written(rev))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Cas::Conflict),
            Err(e) => Err(e).context("updating remediation state"),
        }
    }

    pub(super) async fn forget(&self, key: &str) -> anyhow::Result<()> {
        self.known.unclaim(key);
        self.bucket
            .purge(key)
            .await
            .context("deleting remediation state")
    }

    pub(super) async fn link_action(
        &self,
        action_triggered_id: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        self.known.link(action_triggered_id, key);
        self.bucket
            .put(
                index_key(action_triggered_id),
                Bytes::copy_from_slice(key.as_bytes()),
            )
            .await
            .map(|_| ())
            .context("writing action index")
    }

    pub(super) async fn action_owner(
        &self,
        action_triggered_id: &str,
    ) -> anyhow::Result<Option<String>> {
        if let Some(key) = self.known.linked(action_triggered_id) {
            return Ok(Some(key));
        }
        Ok(self
            .bucket
            .get(index_key(action_triggered_id))
            .await
            .context("reading action index")?
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(super) async fn handled(&self, event_id: &str) -> anyhow::Result<bool> {
        let id = id_hash(event_id);
        if self.known.seen(event_id) {
            return Ok(true);
        }
        let found = self
            .bucket
            .get(format!("e.{id:032x}"))
            .await
            .context("reading handled event ids")?
            .is_some_and(|v| !v.is_empty());
        if found {
            self.known.seen.lock().expect("state cache lock").insert(id);
        }
        Ok(found)
    }

    pub(super) async fn remember(&self, event_id: &str) -> anyhow::Result<()> {
        let id = id_hash(event_id);
        self.known.seen.lock().expect("state cache lock").insert(id);
        self.bucket
            .put(format!("e.{id:032x}"), Bytes::from_static(b"1"))
            .await
            .map(|_| ())
            .context("writing handled event id")
    }

    pub(super) async fn pending(&self) -> anyhow::Result<Vec<(String, Record)>> {
        let keys: Vec<String> = self
            .bucket
            .keys()
            .await
            .context("listing remediation state")?
            .try_collect()
            .await
            .context("listing remediation state")?;
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
