//! NATS: connecting, consuming in core or JetStream mode, and publishing (SPEC section 8).
//!
//! Delivery guarantees:
//! - core: a queue subscription per subject; each event goes to one member of the queue group
//!   (replicas share the work); an event published while no member is connected is lost.
//! - JetStream: one durable pull consumer per subject, shared by the replicas. An event is
//!   acknowledged only after its replies have been stored by the stream; a failed attempt is
//!   redelivered, at most `MAX_DELIVER` times, after which it is terminated and reported as a
//!   `sh.keptn.log.error`. While an event is being handled, progress acks keep it from being
//!   redelivered to another replica.

use crate::bus::Publish;
use crate::config::{NatsArgs, ServeArgs};
use crate::keptn::outgoing::Link;
use crate::keptn::types;
use crate::service::pipeline::Pipeline;
use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use cloudevents::AttributesReader;
use cloudevents::Event;
use futures::StreamExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Connect options with the configured auth and TLS.
pub async fn connect_options(args: &NatsArgs) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut opts = match &args.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading NATS credentials file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &args.nats_token {
        opts = opts.token(token.expose().to_owned());
    }
    if let (Some(user), Some(pass)) = (&args.nats_user, &args.nats_password) {
        opts = opts.user_and_password(user.clone(), pass.expose().to_owned());
    }
    if let Some(seed) = &args.nats_nkey {
        opts = opts.nkey(seed.expose().to_owned());
    }
    if let Some(ca) = &args.nats_tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&args.nats_tls_cert, &args.nats_tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(opts.connection_timeout(Duration::from_secs(5)))
}

/// Connects for the service. The first connect is retried in the background and reconnects
/// never stop, so this returns at once; readiness tells when the link is up.
pub async fn connect(
    args: &NatsArgs,
    name: &str,
    subscription_capacity: usize,
) -> anyhow::Result<async_nats::Client> {
    let url = args.url();
    let shown = redact_url(&url);
    let opts = connect_options(args)
        .await?
        .name(name)
        .subscription_capacity(subscription_capacity.max(1024))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let shown = shown.clone();
            async move {
                match event {
                    async_nats::Event::Connected => info!(server = %shown, "NATS connected"),
                    async_nats::Event::Disconnected => {
                        warn!(server = %shown, "NATS disconnected; reconnecting")
                    }
                    other => info!(server = %shown, "NATS: {other}"),
                }
            }
        });
    opts.connect(url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", redact_url(&url)))
}

/// A URL without user info, for logs and errors.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match u.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => u.to_owned(),
            },
            None => match u.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => u.to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Publishes outgoing events: subject = type, structured JSON; through JetStream (waiting for
/// the stream's ack) when consuming from JetStream.
pub struct NatsPublisher {
    client: async_nats::Client,
    js: Option<jetstream::Context>,
}

impl NatsPublisher {
    pub fn new(client: async_nats::Client, js: Option<jetstream::Context>) -> Self {
        NatsPublisher { client, js }
    }
}

impl Publish for NatsPublisher {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let subject = event.ty().to_owned();
            let payload = bytes::Bytes::from(serde_json::to_vec(&event)?);
            match &self.js {
                Some(js) => {
                    js.publish(subject.clone(), payload)
                        .await
                        .with_context(|| format!("publishing {subject}"))?
                        .await
                        .with_context(|| format!("JetStream did not store {subject}"))?;
                }
                None => self
                    .client
                    .publish(subject.clone(), payload)
                    .await
                    .with_context(|| format!("publishing {subject}"))?,
            }
            metrics::counter!("events_sent_total", "type" => types::short(&subject).to_owned())
                .increment(1);
            Ok(())
        })
    }
}

/// Without JetStream the remediation state lives in each process's memory, and an
/// `action.finished` may reach a replica that does not know its remediation: a second
/// remediator in the same group is refused. Each one answers on a subject of the group; a new
/// one that gets an answer stops with an error. (Two started within the same half second are not
/// caught.)
pub async fn claim_sole_remediator(client: &async_nats::Client, group: &str) -> anyhow::Result<()> {
    let clean: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let subject = format!("_unleash_remediation.replica.{clean}");
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
pub async fn has_jetstream(client: &async_nats::Client) -> bool {
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

/// The stream holding `subjects`: an existing one (Keptn 1.x has `keptn` on `sh.keptn.>`), else
/// a new one named `name` on `sh.keptn.>`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &[String],
) -> anyhow::Result<stream::Stream> {
    let mut found: Option<String> = None;
    for subject in subjects {
        match js.stream_by_subject(subject.clone()).await {
            Ok(stream) => match &found {
                Some(f) if *f != stream => anyhow::bail!(
                    "subjects are spread over streams {f} and {stream}; one stream must cover all of {subjects:?}"
                ),
                _ => found = Some(stream),
            },
            Err(_) if found.is_some() => anyhow::bail!(
                "stream {} does not cover {subject}; extend it or use NATS_MODE=core",
                found.unwrap_or_default()
            ),
            Err(_) => {}
        }
    }
    if let Some(name) = found {
        info!(stream = %name, "binding to existing JetStream stream");
        return js.get_stream(&name).await.context("opening stream");
    }
    info!(stream = %name, "creating JetStream stream on sh.keptn.>");
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec!["sh.keptn.>".into()],
        max_age: Duration::from_secs(24 * 3600),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating JetStream stream")
}

/// Runs core-NATS queue subscriptions until `shutdown` fires. Each subject has its own loop,
/// so a subject whose permits are all taken (toggles on a hung Unleash) holds up only itself.
pub async fn run_core(
    client: async_nats::Client,
    subjects: Vec<String>,
    group: String,
    pipeline: Arc<Pipeline>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut subs = Vec::new();
    for subject in &subjects {
        let sub = client
            .queue_subscribe(subject.clone(), group.clone())
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        subs.push((subject.clone(), sub));
    }
    client.flush().await.ok();
    info!(?subjects, %group, "subscribed (core NATS, queue group)");
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let loops: Vec<_> = subs
        .into_iter()
        .map(|(subject, mut messages)| {
            let pipeline = pipeline.clone();
            let mut shutdown = shutdown.clone();
            let limit = pipeline.permits.pool(&subject);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        next = messages.next() => {
                            let Some(msg) = next else { break };
                            let permit = tokio::select! {
                                _ = shutdown.changed() => break,
                                p = limit.clone().acquire_owned() => match p {
                                    Ok(p) => p,
                                    Err(_) => break,
                                },
                            };
                            let pipeline = pipeline.clone();
                            tokio::spawn(async move {
                                let _ = pipeline.handle_payload(&msg.payload).await;
                                drop(permit);
                            });
                        }
                    }
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// Runs durable JetStream pull consumers (one per subject) until `shutdown` fires.
#[allow(clippy::too_many_arguments)]
pub async fn run_jetstream(
    stream: stream::Stream,
    subjects: Vec<String>,
    args: &ServeArgs,
    pipeline: Arc<Pipeline>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for subject in &subjects {
        let durable = format!(
            "{}-{}",
            args.pubsub_group,
            subject.replace(['.', '*', '>'], "_")
        );
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: args.ack_wait,
                    max_deliver: args.max_deliver,
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    max_ack_pending: (args.concurrency as i64).max(1) * 4,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("creating durable consumer {durable}"))?;
        info!(%durable, %subject, "JetStream consumer ready");
        tasks.push(tokio::spawn(consume(
            consumer,
            pipeline.clone(),
            pipeline.permits.pool(subject),
            args.ack_wait,
            args.max_deliver,
            shutdown.clone(),
        )));
    }
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

async fn consume(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    pipeline: Arc<Pipeline>,
    limit: Arc<Semaphore>,
    ack_wait: Duration,
    max_deliver: i64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    'outer: loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "JetStream consumer stream failed; retrying");
                tokio::select! {
                    _ = shutdown.changed() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'outer,
                }
            }
        };
        loop {
            // The permit is taken once a message is there, not while waiting for one: the pool
            // is shared with HTTP ingest, and an idle consumer must not hold a permit.
            let next = tokio::select! {
                _ = shutdown.changed() => break 'outer,
                n = messages.next() => n,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    warn!(error = %e, "JetStream pull failed; continuing");
                    continue;
                }
                None => continue 'outer,
            };
            let permit = tokio::select! {
                _ = shutdown.changed() => None,
                p = limit.clone().acquire_owned() => p.ok(),
            };
            let Some(permit) = permit else {
                // Stopping: hand the message back at once rather than after ACK_WAIT.
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                break 'outer;
            };
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                handle_js(msg, &pipeline, ack_wait, max_deliver).await;
                drop(permit);
            });
        }
    }
}

async fn handle_js(
    msg: jetstream::Message,
    pipeline: &Pipeline,
    ack_wait: Duration,
    max_deliver: i64,
) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let work = pipeline.handle_payload(&msg.payload);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(200)));
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = ticker.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    };
    match result {
        Ok(()) => {
            if let Err(e) = msg.double_ack().await {
                warn!(error = %e, "acknowledging a JetStream message failed");
            }
        }
        Err(e) if delivered >= max_deliver => {
            let message = format!(
                "gave up on event after {delivered} deliveries on {}: {e:#}",
                msg.subject
            );
            warn!("{message}");
            metrics::counter!("events_given_up_total").increment(1);
            let link = Link {
                keptn_context: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            };
            let event = pipeline.events.log_error(&link, None, "delivery", &message);
            let _ = pipeline.out.publish(event).await;
            let _ = msg.ack_with(AckKind::Term).await;
        }
        Err(_) => {
            let delay = Duration::from_millis(500 * (1u64 << delivered.clamp(0, 6) as u32));
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
        }
    }
}
