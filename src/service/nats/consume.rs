//! Consuming: the stream that covers the subjects, core queue subscriptions or durable
//! JetStream pull consumers, and the acknowledgement policy (progress, Nak with growing delay,
//! Term and a `log.error` after `MAX_DELIVER`).

use super::handled_by;
use crate::config::ServeArgs;
use crate::keptn::outgoing::Link;
use crate::keptn::types;
use crate::service::pipeline::{self, Pipeline};
use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

/// The stream holding `subjects`: an existing one (Keptn 1.x has `keptn` on `sh.keptn.>`), else
/// a new one named `name` on `sh.keptn.>`.
pub(super) async fn ensure_stream(
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
pub(super) async fn run_core(
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
            let group = group.clone();
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
                            if handled_by(msg.headers.as_ref(), &group) {
                                handled_elsewhere(&msg.subject);
                                continue;
                            }
                            // A duplicate OPEN ends here, read from the few members that name
                            // it: most of an alert storm, without a task or a permit.
                            if pipeline.settled_quickly(&msg.subject, &msg.payload) {
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
pub(super) async fn run_jetstream(
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
            Skip {
                toggles: skip_toggles,
                group: args.pubsub_group.clone(),
            },
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

/// What a consumer acknowledges without handling it.
struct Skip {
    /// `action.triggered`: a consumer of its own handles it.
    toggles: bool,
    /// The queue group: events marked as handled by the process that sent them.
    group: String,
}

/// Counts an event passed over because the process that sent it handles it.
fn handled_elsewhere(subject: &str) {
    metrics::counter!("events_skipped_total", "reason" => "handled_by_sender").increment(1);
    tracing::debug!(event_type = %subject, "event handled by the process that sent it; passed over");
}

async fn consume(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    pipeline: Arc<Pipeline>,
    limit: Arc<Semaphore>,
    skip: Skip,
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
            if skip.toggles && msg.subject.as_str() == types::ACTION_TRIGGERED {
                // The consumer of its own handles it.
                let _ = msg.ack().await;
                continue;
            }
            if handled_by(msg.headers.as_ref(), &skip.group) {
                handled_elsewhere(&msg.subject);
                let _ = msg.ack().await;
                continue;
            }
            // A duplicate OPEN is answered here, without a task and a permit of its own: known
            // from the few members that name it, else once the event is decoded.
            if pipeline.settled_quickly(&msg.subject, &msg.payload) {
                let _ = msg.ack().await;
                continue;
            }
            let decoded = crate::keptn::decode_bytes(&msg.payload);
            if let Ok(incoming) = &decoded
                && pipeline.settled_at_once(&msg.subject, incoming)
            {
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
                handle_js(msg, decoded, &pipeline, permit, ack_wait, max_deliver).await;
            });
        }
    }
}

/// Handles one message under `permit`, then waits for what its handling left running in this
/// process (an action run here, under a permit of its own) before acknowledging it: a crash
/// before that end redelivers the message. Progress acks keep it from being redelivered
/// meanwhile.
async fn handle_js(
    msg: jetstream::Message,
    decoded: Result<crate::keptn::Incoming, crate::keptn::DecodeError>,
    pipeline: &Pipeline,
    permit: OwnedSemaphorePermit,
    ack_wait: Duration,
    max_deliver: i64,
) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let mut progress = Progress::new(ack_wait);
    let work = pipeline::keeping(
        delivered > 1,
        pipeline.handle_decoded(&msg.subject, &msg.payload, decoded),
    );
    let (mut result, left) = progress.around(&msg, work).await;
    // The event's own permit goes back; what it left running holds a permit of its own, kept
    // until this message is acknowledged, so that a shutdown waits for both.
    drop(permit);
    let mut held = Vec::with_capacity(left.len());
    for run in left {
        let (outcome, run_permit) = progress.around(&msg, run).await;
        held.push(run_permit);
        if let Err(e) = outcome
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    match result {
        Ok(()) => {
            if let Err(e) = msg.ack().await {
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
    drop(held);
}

/// The progress acks of one message: one every third of `ACK_WAIT` (at least 200 ms) while its
/// handling goes on, the first one period after the handling began.
struct Progress {
    period: Duration,
    /// Made when a handling is first found still going: most events (an alert storm's
    /// duplicates) end at their first poll, and a timer made, polled and dropped for each
    /// would cost an allocation and two locks of the runtime's timer wheel.
    ticker: Option<tokio::time::Interval>,
    started: tokio::time::Instant,
}

impl Progress {
    fn new(ack_wait: Duration) -> Self {
        Progress {
            period: (ack_wait / 3).max(Duration::from_millis(200)),
            ticker: None,
            started: tokio::time::Instant::now(),
        }
    }

    /// Awaits `work`, sending a progress ack at every tick meanwhile.
    async fn around<F: std::future::Future>(
        &mut self,
        msg: &jetstream::Message,
        work: F,
    ) -> F::Output {
        tokio::pin!(work);
        if let std::task::Poll::Ready(out) = futures::poll!(&mut work) {
            return out;
        }
        // The first tick is one period after the start. (An interval's own first tick is due
        // at once, but the timer fires on a millisecond wheel: awaiting it cost each message
        // about a millisecond before its handling began.)
        let (started, period) = (self.started, self.period);
        let ticker = self
            .ticker
            .get_or_insert_with(|| tokio::time::interval_at(started + period, period));
        loop {
            tokio::select! {
                biased;
                r = &mut work => return r,
                _ = ticker.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
