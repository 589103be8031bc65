//! NATS (docs/design.md §8), in one place: connecting ([`connect`](connect())), deciding what
//! the server allows once it answers ([`Connection::establish`]: JetStream or not, the mode, the
//! state store, the sole remediator without JetStream), consuming ([`Connection::consume`]) and
//! publishing ([`NatsPublisher`]).
//!
//! Delivery guarantees:
//! - core: a queue subscription per subject; each event goes to one member of the queue group
//!   (replicas share the work); an event published while no member is connected is lost.
//! - JetStream: one durable pull consumer per subject, shared by the replicas. An event is
//!   acknowledged only after its replies have been stored by the stream; a failed attempt is
//!   redelivered, at most `MAX_DELIVER` times, after which it is terminated and reported as a
//!   `sh.keptn.log.error`. While an event is being handled, progress acks keep it from being
//!   redelivered to another replica. "Handled" includes what it handed to a role of the same
//!   process (the first action of a problem, run here): the problem event is acknowledged once
//!   that action's end is recorded, so a crash before that redelivers the problem, which starts
//!   the action again under the same ids.
//! - Events a process handles itself carry the [`HANDLED_BY`] header with the queue group; the
//!   group's subscribers (in every replica) acknowledge them without handling them.

mod connect;
mod consume;
mod publish;

pub use connect::{connect, connect_options, redact_url, servers};
pub use publish::{HANDLED_BY, NatsPublisher, encode_within, handled_by};

use crate::config::{NatsMode, Role, ServeArgs};
use crate::service::pipeline::Pipeline;
use crate::state::Store;
use anyhow::Context;
use async_nats::jetstream;
use consume::{ensure_stream, run_core, run_jetstream};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The NATS side of a running service once the server has been reached: whether events come
/// through JetStream, and the context to publish and consume with. Every decision that depends
/// on the server is made in [`Connection::establish`].
pub struct Connection {
    client: async_nats::Client,
    /// `Some` when consuming (and publishing) through JetStream.
    jetstream: Option<jetstream::Context>,
}

impl Connection {
    /// Waits for the first connection (`None` when `stop` fires first), then decides: whether
    /// the server has JetStream, the mode (`NATS_MODE`), the state store (the KV bucket with
    /// JetStream, else memory, claiming to be the sole remediator of the group) and logs the
    /// choice.
    pub async fn establish(
        client: &async_nats::Client,
        args: &ServeArgs,
        started: std::time::Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<(Connection, Store)>> {
        let mut warned = false;
        while client.connection_state() != async_nats::connection::State::Connected {
            if !warned && started.elapsed() > Duration::from_secs(2) {
                warn!(server = %redact_url(&args.nats.url()), "waiting for NATS");
                warned = true;
            }
            tokio::select! {
                _ = stop.changed() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }

        let js = jetstream::new(client.clone());
        let has_js = has_jetstream(client).await;
        let use_js = match args.nats_mode {
            NatsMode::Core => false,
            NatsMode::Auto => has_js,
            NatsMode::Jetstream if has_js => true,
            NatsMode::Jetstream => anyhow::bail!(
                "NATS_MODE=jetstream but the server has no JetStream (start nats-server with -js, or use NATS_MODE=core)"
            ),
        };
        let store = if has_js {
            Store::jetstream(&js, &args.state_bucket, args.state_ttl).await?
        } else {
            if args.roles.contains(&Role::Remediator) {
                claim_sole_remediator(client, &args.pubsub_group).await?;
            }
            Store::memory(args.state_ttl)
        };
        info!(
            mode = if use_js { "jetstream" } else { "core" },
            state = store.kind(),
            "NATS mode chosen"
        );
        let connection = Connection {
            client: client.clone(),
            jetstream: use_js.then_some(js),
        };
        Ok(Some((connection, store)))
    }

    /// The publisher for outgoing events: through JetStream when consuming from it; `group`
    /// (`PUBSUB_GROUP`) marks the events this process handles itself.
    pub fn publisher(&self, group: &str) -> NatsPublisher {
        NatsPublisher::new(self.client.clone(), self.jetstream.clone(), group)
    }

    /// Whether events come through JetStream, which keeps each one until its handling ends.
    pub fn is_jetstream(&self) -> bool {
        self.jetstream.is_some()
    }

    /// Consumes `subjects` into `pipeline` until `shutdown` fires: durable pull consumers on
    /// the stream covering them (JetStream), or queue subscriptions (core). `ready` is set once
    /// subscribed.
    pub async fn consume(
        &self,
        subjects: Vec<String>,
        args: &ServeArgs,
        pipeline: Arc<Pipeline>,
        ready: Arc<std::sync::atomic::AtomicBool>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        match &self.jetstream {
            Some(js) => {
                let stream = ensure_stream(js, &args.nats_stream, &subjects).await?;
                run_jetstream(stream, subjects, args, pipeline, ready, shutdown).await
            }
            None => {
                run_core(
                    self.client.clone(),
                    subjects,
                    args.pubsub_group.clone(),
                    pipeline,
                    ready,
                    shutdown,
                )
                .await
            }
        }
    }
}

/// Without JetStream the remediation state lives in each process's memory, and an
/// `action.finished` may reach a replica that does not know its remediation: a second
/// remediator in the same group is refused. Each one answers on a subject of the group; a new
/// one that gets an answer stops with an error. (Two started within the same half second are not
/// caught.)
async fn claim_sole_remediator(client: &async_nats::Client, group: &str) -> anyhow::Result<()> {
    let subject = format!(
        "_unleash_remediation.replica.{}",
        crate::state::subject_token(group)
    );
    let answer = tokio::time::timeout(
        Duration::from_millis(500),
        client.request(subject.clone(), bytes::Bytes::new()),
    )
    .await;
    if let Ok(Ok(_)) = answer {
        anyhow::bail!(
            "another remediator of PUBSUB_GROUP {group:?} is running on this NATS server, which has no JetStream: \
             without JetStream the remediation state is kept per process, so only one remediator may run \
             (start nats-server with -js to run several replicas, or give this one ROLES without remediator)"
        );
    }
    let mut sub = client
        .subscribe(subject)
        .await
        .context("subscribing to the replica check")?;
    let client = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = client
                    .publish(reply, bytes::Bytes::from_static(b"here"))
                    .await;
            }
        }
    });
    Ok(())
}

/// Whether the server has JetStream enabled for this account. Asks `$JS.API.INFO` and reads
/// the answer loosely: the typed account-info call of the client library does not parse the
/// answers of nats-server 2.9, and the INFO flag may not be there yet right after connecting.
async fn has_jetstream(client: &async_nats::Client) -> bool {
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await;
    match answer {
        Ok(Ok(msg)) => serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .map(|v| v.get("error").is_none() && v.get("type").is_some())
            .unwrap_or(false),
        Ok(Err(e)) => {
            info!(reason = %e, "JetStream not available");
            false
        }
        Err(_) => {
            warn!("JetStream did not answer within 5 s; using core NATS");
            false
        }
    }
}
