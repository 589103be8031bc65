//! NATS: connecting, deciding what the server allows (mode, state store, the sole remediator
//! without JetStream), consuming in core or JetStream mode, and publishing (docs/design.md §8).
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
use crate::config::{NatsArgs, NatsMode, Role, ServeArgs};
use crate::keptn::outgoing::Link;
use crate::keptn::types;
use crate::service::pipeline::Pipeline;
use crate::state::Store;
use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use cloudevents::AttributesReader;
use cloudevents::Event;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Credentials written into `NATS_URL`.
#[derive(Clone, PartialEq, Eq)]
enum UrlAuth {
    /// `nats://user:password@host`
    UserPassword(String, String),
    /// `nats://token@host`
    Token(String),
}

/// The servers of `NATS_URL` (or `PUBSUB_URL`) without user info, and the credentials written
/// into them. The client library does not read credentials from the URL and would print them
/// in its debug log, so it only ever gets the bare addresses.
pub fn servers(args: &NatsArgs) -> anyhow::Result<String> {
    Ok(split_credentials(&args.url())?.0)
}

fn split_credentials(urls: &str) -> anyhow::Result<(String, Option<UrlAuth>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| anyhow::anyhow!("the credentials in NATS_URL are not UTF-8"))
    };
    let mut auth: Option<UrlAuth> = None;
    let mut bare = Vec::new();
    for entry in urls.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !entry.contains('@') {
            bare.push(entry.to_owned());
            continue;
        }
        let full = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("nats://{entry}")
        };
        let mut url = url::Url::parse(&full)
            .map_err(|e| anyhow::anyhow!("NATS_URL {} is not a URL: {e}", redact_url(entry)))?;
        let found = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(pass)) => Some(UrlAuth::UserPassword(decode(user)?, decode(pass)?)),
            (token, None) => Some(UrlAuth::Token(decode(token)?)),
        };
        if let Some(found) = found {
            match &auth {
                Some(known) if *known != found => anyhow::bail!(
                    "NATS_URL names different credentials for different servers; write them once, or use NATS_USER/NATS_PASSWORD or NATS_TOKEN"
                ),
                _ => auth = Some(found),
            }
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        bare.push(url.to_string());
    }
    Ok((bare.join(","), auth))
}

/// Connect options with the configured auth and TLS. Credentials in `NATS_URL` are used when
/// no `NATS_TOKEN` or `NATS_USER`/`NATS_PASSWORD` is set.
pub async fn connect_options(args: &NatsArgs) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut opts = match &args.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading NATS credentials file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    let explicit = args.nats_token.is_some() || args.nats_user.is_some();
    match split_credentials(&args.url())?.1 {
        Some(_) if explicit => {
            warn!("NATS_URL carries credentials, but NATS_TOKEN or NATS_USER is set; using those")
        }
        Some(UrlAuth::UserPassword(user, pass)) => opts = opts.user_and_password(user, pass),
        Some(UrlAuth::Token(token)) => opts = opts.token(token),
        None => {}
    }
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
    let url = servers(args)?;
    let shown = redact_url(&url);
    let servers: Arc<Vec<String>> = Arc::new(url.split(',').filter_map(host_port).collect());
    let last_failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let opts = connect_options(args)
        .await?
        .name(name)
        .subscription_capacity(subscription_capacity.max(1024))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let shown = shown.clone();
            let servers = servers.clone();
            let last = last_failure.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        *last.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        metrics::gauge!("nats_connected").set(1.0);
                        info!(server = %shown, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        metrics::gauge!("nats_connected").set(0.0);
                        warn!(server = %shown, "NATS disconnected; reconnecting")
                    }
                    async_nats::Event::ClientError(e) => {
                        // The client's error names only the kind ("IO error"); a probe of the
                        // address finds the cause. Repeats of the same failure go to debug.
                        let cause = match probe(&servers).await {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        };
                        let repeat = {
                            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                            let repeat = last.as_deref() == Some(cause.as_str());
                            *last = Some(cause.clone());
                            repeat
                        };
                        if repeat {
                            tracing::debug!(server = %shown, error = %cause, "NATS connect failed again; retrying");
                        } else {
                            warn!(server = %shown, error = %cause, "NATS connect failed; retrying");
                        }
                    }
                    other => info!(server = %shown, "NATS: {other}"),
                }
            }
        });
    opts.connect(url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", redact_url(&url)))
}

/// `host:port` of one NATS URL (`nats://user:pass@host:4222`, `tls://host`, `host:4222`).
fn host_port(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:4222")
    })
}

/// Why the NATS servers cannot be reached at the TCP level (e.g. "connection refused"), or
/// `None` when one of them accepts connections.
async fn probe(servers: &[String]) -> Option<String> {
    let mut causes = Vec::new();
    for server in servers {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(server.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => causes.push(format!("{server}: {e}")),
            Err(_) => causes.push(format!("{server}: no answer within 2 s")),
        }
    }
    (!causes.is_empty()).then(|| causes.join(", "))
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

impl NatsPublisher {
    /// Sends one event; for JetStream, returns the stream's confirmation still to be awaited.
    async fn send(
        &self,
        event: &Event,
    ) -> anyhow::Result<Option<(String, jetstream::context::PublishAckFuture)>> {
        let subject = event.ty().to_owned();
        let max = self.client.server_info().max_payload;
        let payload = bytes::Bytes::from(encode_within(event, max)?);
        let pending = match &self.js {
            Some(js) => Some(
                js.publish(subject.clone(), payload)
                    .await
                    .with_context(|| format!("publishing {subject}"))?,
            ),
            None => {
                self.client
                    .publish(subject.clone(), payload)
                    .await
                    .with_context(|| format!("publishing {subject}"))?;
                None
            }
        };
        Ok(pending.map(|ack| (subject, ack)))
    }
}

fn sent(subject: &str) {
    metrics::counter!("events_sent_total", "type" => crate::telemetry::type_label(subject))
        .increment(1);
}

impl Publish for NatsPublisher {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some((subject, ack)) = self.send(&event).await? {
                ack.await
                    .with_context(|| format!("JetStream did not store {subject}"))?;
            }
            sent(event.ty());
            Ok(())
        })
    }

    fn publish_all(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(events.len());
            for event in &events {
                match self.send(event).await? {
                    Some(pending) => acks.push(pending),
                    None => sent(event.ty()),
                }
            }
            for (subject, ack) in acks {
                ack.await
                    .with_context(|| format!("JetStream did not store {subject}"))?;
                sent(&subject);
            }
            Ok(())
        })
    }
}

/// Bytes kept free below `max_payload`: room for headers a future publish might add.
const PAYLOAD_MARGIN: usize = 256;

/// The event as JSON, no larger than the server's `max_payload` (`0`: unknown, no limit): an
/// event that does not fit is not dropped but has its data shortened, every member getting a
/// fair share of the room (small members such as status and result stay whole), and says so in
/// `data.truncated`.
pub fn encode_within(event: &Event, max_payload: usize) -> anyhow::Result<Vec<u8>> {
    let bytes = serde_json::to_vec(event)?;
    let limit = max_payload.saturating_sub(PAYLOAD_MARGIN);
    if max_payload == 0 || bytes.len() <= limit {
        return Ok(bytes);
    }
    let mut value = serde_json::to_value(event)?;
    let note = format!(
        "data shortened from {} bytes to fit the NATS server's max_payload of {max_payload} bytes",
        bytes.len()
    );
    let data_len = value.get("data").map(json_len).unwrap_or(0);
    let envelope = bytes.len() - data_len + note.len() + 32;
    if let Some(data) = value.get_mut("data") {
        shrink(data, limit.saturating_sub(envelope));
        if let Value::Object(map) = data {
            map.insert("truncated".into(), Value::String(note));
        }
    }
    let out = serde_json::to_vec(&value)?;
    anyhow::ensure!(
        out.len() <= max_payload,
        "{} does not fit in the NATS server's max_payload of {max_payload} bytes even when shortened",
        event.ty()
    );
    warn!(
        event_type = %crate::keptn::types::short(event.ty()),
        size = bytes.len(),
        sent = out.len(),
        max_payload,
        "outgoing event larger than NATS allows; its data was shortened"
    );
    metrics::counter!("events_shortened_total").increment(1);
    Ok(out)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// Members smaller than this after sharing are left out rather than cut.
const MIN_SHARE: usize = 24;

/// Shortens `v` to about `budget` bytes of JSON: long strings keep their beginning, objects and
/// arrays share the budget out among their members max-min fairly and leave out what gets too
/// small a share (saying how many).
fn shrink(v: &mut Value, budget: usize) {
    if json_len(v) <= budget {
        return;
    }
    match v {
        Value::String(s) => {
            let total = s.len();
            let mut keep = budget.min(total);
            loop {
                while !s.is_char_boundary(keep) {
                    keep -= 1;
                }
                let cut = format!("{}… [{} of {total} bytes cut]", &s[..keep], total - keep);
                if keep == 0 || json_len(&Value::String(cut.clone())) <= budget {
                    *s = cut;
                    return;
                }
                keep = keep * 3 / 4;
            }
        }
        Value::Object(map) => {
            let sizes: Vec<usize> = map.iter().map(|(k, v)| k.len() + 4 + json_len(v)).collect();
            let shares = fair_shares(&sizes, budget.saturating_sub(48));
            let old = std::mem::take(map);
            let mut left_out = 0;
            for (((k, mut v), share), size) in old.into_iter().zip(shares).zip(sizes) {
                if share < size && share < MIN_SHARE + k.len() {
                    left_out += 1;
                    continue;
                }
                shrink(&mut v, share.saturating_sub(k.len() + 4));
                map.insert(k, v);
            }
            if left_out > 0 {
                map.insert(
                    "…".into(),
                    Value::String(format!("{left_out} more members left out")),
                );
            }
        }
        Value::Array(items) => {
            let sizes: Vec<usize> = items.iter().map(|v| json_len(v) + 1).collect();
            let shares = fair_shares(&sizes, budget.saturating_sub(40));
            let old = std::mem::take(items);
            let mut left_out = 0;
            for ((mut v, share), size) in old.into_iter().zip(shares).zip(sizes) {
                if share < size && share < MIN_SHARE {
                    left_out += 1;
                    continue;
                }
                shrink(&mut v, share.saturating_sub(1));
                items.push(v);
            }
            if left_out > 0 {
                items.push(Value::String(format!("… {left_out} more left out")));
            }
        }
        _ => {}
    }
}

/// Max-min fair division of `budget` among items of `sizes`: each gets its size if that is no
/// more than an equal part of what the smaller ones left, else that equal part.
fn fair_shares(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut shares = vec![0; sizes.len()];
    let mut remaining = budget;
    for (n, &i) in order.iter().enumerate() {
        let fair = remaining / (sizes.len() - n);
        shares[i] = sizes[i].min(fair);
        remaining -= shares[i];
    }
    shares
}

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

    /// The publisher for outgoing events: through JetStream when consuming from it.
    pub fn publisher(&self) -> NatsPublisher {
        NatsPublisher::new(self.client.clone(), self.jetstream.clone())
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

/// The stream holding `subjects`: an existing one (Keptn 1.x has `keptn` on `sh.keptn.>`), else
/// a new one named `name` on `sh.keptn.>`.
async fn ensure_stream(
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

/// Whether the NATS subject `pattern` (with `*` and `>` wildcards) covers `subject`.
fn covers(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// The subscriptions made for `subjects`, each with whether it skips `action.triggered`. A
/// wildcard that covers `action.triggered` (`sh.keptn.>`) skips it, and `action.triggered`
/// gets a subscription of its own, so toggles waiting on a hung Unleash hold up only their
/// own loop and pool, never the events that share the wildcard.
fn split_toggles(subjects: &[String]) -> Vec<(String, bool)> {
    let toggles = types::ACTION_TRIGGERED;
    let split = subjects
        .iter()
        .any(|s| s.as_str() != toggles && covers(s, toggles));
    let mut out: Vec<(String, bool)> = subjects
        .iter()
        .filter(|s| !(split && s.as_str() == toggles))
        .map(|s| (s.clone(), split && covers(s, toggles)))
        .collect();
    if split {
        out.push((toggles.to_owned(), false));
    }
    out
}

/// Runs core-NATS queue subscriptions until `shutdown` fires. Each subject has its own loop,
/// so a subject whose permits are all taken (toggles on a hung Unleash) holds up only itself.
async fn run_core(
    client: async_nats::Client,
    subjects: Vec<String>,
    group: String,
    pipeline: Arc<Pipeline>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut subs = Vec::new();
    let plan = split_toggles(&subjects);
    let split = plan.iter().any(|(_, skip)| *skip);
    for (subject, skip_toggles) in plan {
        // A split-off subscription is a queue group of its own: NATS hands a message to one
        // member per group name, which could otherwise be the wildcard that skips it.
        let queue = if split && subject == types::ACTION_TRIGGERED {
            format!("{group}-toggles")
        } else {
            group.clone()
        };
        let sub = client
            .queue_subscribe(subject.clone(), queue)
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        subs.push((subject, skip_toggles, sub));
    }
    client.flush().await.ok();
    info!(?subjects, %group, "subscribed (core NATS, queue group)");
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let loops: Vec<_> = subs
        .into_iter()
        .map(|(subject, skip_toggles, mut messages)| {
            let pipeline = pipeline.clone();
            let mut shutdown = shutdown.clone();
            let limit = pipeline.permits.pool(&subject);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        next = messages.next() => {
                            let Some(msg) = next else { break };
                            if skip_toggles && msg.subject.as_str() == types::ACTION_TRIGGERED {
                                continue;
                            }
                            let permit = tokio::select! {
                                _ = shutdown.changed() => break,
                                p = limit.clone().acquire_owned() => match p {
                                    Ok(p) => p,
                                    Err(_) => break,
                                },
                            };
                            let pipeline = pipeline.clone();
                            tokio::spawn(async move {
                                let _ = pipeline.handle_payload(&msg.subject, &msg.payload).await;
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
async fn run_jetstream(
    stream: stream::Stream,
    subjects: Vec<String>,
    args: &ServeArgs,
    pipeline: Arc<Pipeline>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for (subject, skip_toggles) in split_toggles(&subjects) {
        let subject = &subject;
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
            skip_toggles,
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
    skip_toggles: bool,
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
            if skip_toggles && msg.subject.as_str() == types::ACTION_TRIGGERED {
                // The consumer of its own handles it.
                let _ = msg.ack().await;
                continue;
            }
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
    let work = pipeline.handle_payload(&msg.subject, &msg.payload);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keptn::Scope;
    use crate::keptn::outgoing::{EventFactory, Link, Outcome};

    #[test]
    fn a_wildcard_leaves_toggles_to_a_subscription_of_their_own() {
        let toggles = "sh.keptn.event.action.triggered";
        assert!(covers("sh.keptn.>", toggles));
        assert!(covers("sh.keptn.event.*.triggered", toggles));
        assert!(!covers("sh.keptn.event.*", toggles));
        assert!(!covers("sh.keptn.event.action.triggered.x", toggles));
        let plan = |subjects: &[&str]| {
            split_toggles(&subjects.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            plan(&["sh.keptn.>"]),
            vec![("sh.keptn.>".into(), true), (toggles.into(), false)]
        );
        assert_eq!(
            plan(&[
                toggles,
                "sh.keptn.event.*.triggered",
                "sh.keptn.event.problem.open"
            ]),
            vec![
                ("sh.keptn.event.*.triggered".into(), true),
                ("sh.keptn.event.problem.open".into(), false),
                (toggles.into(), false)
            ]
        );
        let plain = [toggles, "sh.keptn.event.problem.open"];
        assert_eq!(
            plan(&plain),
            vec![(toggles.into(), false), (plain[1].into(), false)]
        );
    }

    #[test]
    fn credentials_leave_the_url() {
        let (bare, auth) = split_credentials(
            "nats://svc:p%40ss@127.0.0.1:4222, nats://svc:p%40ss@h2:4223,h3:4224",
        )
        .unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222,nats://h2:4223,h3:4224");
        assert!(auth == Some(UrlAuth::UserPassword("svc".into(), "p@ss".into())));
        let (bare, auth) = split_credentials("tok3n@127.0.0.1:4222").unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222");
        assert!(auth == Some(UrlAuth::Token("tok3n".into())));
        assert!(split_credentials("nats://a:b@h1,nats://c:d@h2").is_err());
        let (bare, auth) = split_credentials("nats://127.0.0.1:4222").unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222");
        assert!(auth.is_none());
    }

    #[test]
    fn large_events_are_shortened_to_fit_and_keep_what_matters() {
        let f = EventFactory::new("unleash-remediation-service");
        let scope = Scope {
            project: "website".into(),
            stage: "production".into(),
            service: "front-end".into(),
        };
        let labels = (0..2000)
            .map(|i| (format!("label-{i}"), "x".repeat(100)))
            .collect();
        let message = (0..20_000)
            .map(|i| format!("Flag-{i}: on (confirmed)"))
            .collect::<Vec<_>>()
            .join("; ");
        let link = Link {
            keptn_context: "ctx".into(),
            ..Default::default()
        };
        let event = f.action_finished(&link, &scope, &labels, Outcome::Errored, &message);
        let full = serde_json::to_vec(&event).unwrap().len();
        assert!(full > 600_000);
        for max in [full + PAYLOAD_MARGIN, 65_536, 8192, 2048] {
            let out = encode_within(&event, max).unwrap();
            assert!(out.len() <= max, "{} > {max}", out.len());
            let v: Value = serde_json::from_slice(&out).unwrap();
            let d = &v["data"];
            assert_eq!(d["status"], "errored");
            assert_eq!(d["result"], "fail");
            assert_eq!(d["project"], "website");
            assert!(
                d["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Flag-0: on")),
                "{max}: {d}"
            );
            if max > full {
                assert_eq!(out.len(), full);
                continue;
            }
            assert!(d["truncated"].as_str().unwrap().contains("max_payload"));
            assert_eq!(v["type"], "sh.keptn.event.action.finished");
        }
        // What fits is sent unchanged.
        let small = f.action_finished(&link, &scope, &Default::default(), Outcome::Pass, "ok");
        assert_eq!(
            encode_within(&small, 1024 * 1024).unwrap(),
            serde_json::to_vec(&small).unwrap()
        );
    }

    #[test]
    fn fair_shares_favour_the_small() {
        assert_eq!(fair_shares(&[10, 1000, 20], 100), vec![10, 70, 20]);
        assert_eq!(fair_shares(&[10, 20], 100), vec![10, 20]);
    }
}
