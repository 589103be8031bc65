//! Feedback out: every remediation step as a comment on the Dynatrace problem, a chat message,
//! a generic JSON webhook and a Grafana annotation (README "Feedback").
//!
//! The notifier is fed by the remediation's own progress: [`Notifying`] wraps the publisher
//! and hands a copy of each remediation event to it after the transport took the event; an
//! action-role process also feeds it the `action.triggered` events it receives, since it never
//! publishes those itself. Nothing here is in front of the remediation: events go through a
//! bounded channel (full → dropped and counted), and each target has its own worker with a
//! bounded queue, so one slow target neither delays the flags nor the other targets. One worker
//! per target keeps each remediation's messages in order.

mod steps;
mod targets;
mod text;

use crate::bus::Publish;
use crate::config::{DynatraceApi, FeedbackArgs, Secret};
use crate::keptn::{ActionTriggered, Meta, types};
use cloudevents::{AttributesReader, Event};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

use steps::{Seen, Tracker};
use targets::{Target, TargetKind};

/// Events waiting for the notifier; beyond this they are dropped (and counted), never waited for.
const INTAKE: usize = 4096;
/// Messages waiting per target.
const QUEUE: usize = 1024;

/// Where feedback goes and how hard it tries.
#[derive(Debug, Clone, Default)]
pub struct FeedbackConfig {
    pub dynatrace: Option<DynatraceTarget>,
    pub slack_webhook_url: Option<Secret>,
    pub notify_webhook_url: Option<Secret>,
    pub grafana: Option<GrafanaTarget>,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    /// Whether this process runs the remediator: without it no remediation.finished is seen
    /// here, so chat gets each action's result instead.
    pub remediator: bool,
}

#[derive(Debug, Clone)]
pub struct DynatraceTarget {
    /// Tenant base URL, without a trailing `/`.
    pub url: String,
    pub token: Secret,
    pub api: DynatraceApi,
}

#[derive(Debug, Clone)]
pub struct GrafanaTarget {
    pub url: String,
    pub token: Secret,
}

impl FeedbackConfig {
    /// The configuration the settings ask for; `None` when no target is set. A target with
    /// half of its settings is refused with a message naming the missing one.
    pub fn from_args(args: &FeedbackArgs, remediator: bool) -> anyhow::Result<Option<Self>> {
        fn set(s: &Option<String>) -> Option<String> {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_end_matches('/').to_owned())
        }
        fn secret(s: &Option<Secret>) -> Option<Secret> {
            s.clone().filter(|s| !s.expose().trim().is_empty())
        }
        let dynatrace = match (set(&args.dynatrace_url), secret(&args.dynatrace_api_token)) {
            (Some(url), Some(token)) => Some(DynatraceTarget {
                url: checked_url("DYNATRACE_URL", &url)?,
                token,
                api: args.dynatrace_api,
            }),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("DYNATRACE_URL is set but DYNATRACE_API_TOKEN is not"),
            (None, Some(_)) => anyhow::bail!("DYNATRACE_API_TOKEN is set but DYNATRACE_URL is not"),
        };
        let grafana = match (set(&args.grafana_url), secret(&args.grafana_api_token)) {
            (Some(url), Some(token)) => Some(GrafanaTarget {
                url: checked_url("GRAFANA_URL", &url)?,
                token,
            }),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("GRAFANA_URL is set but GRAFANA_API_TOKEN is not"),
            (None, Some(_)) => anyhow::bail!("GRAFANA_API_TOKEN is set but GRAFANA_URL is not"),
        };
        let slack = secret(&args.slack_webhook_url);
        let hook = secret(&args.notify_webhook_url);
        for (name, url) in [("SLACK_WEBHOOK_URL", &slack), ("NOTIFY_WEBHOOK_URL", &hook)] {
            if let Some(url) = url {
                // The URL is a secret: the error names the setting, not the value.
                url::Url::parse(url.expose())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| anyhow::anyhow!("{name} is not an http(s) URL"))?;
            }
        }
        if dynatrace.is_none() && grafana.is_none() && slack.is_none() && hook.is_none() {
            return Ok(None);
        }
        Ok(Some(FeedbackConfig {
            dynatrace,
            slack_webhook_url: slack,
            notify_webhook_url: hook,
            grafana,
            timeout: args.feedback_timeout,
            retries: args.feedback_retries,
            backoff: Duration::from_millis(200),
            remediator,
        }))
    }
}

fn checked_url(name: &str, url: &str) -> anyhow::Result<String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(url.to_owned()),
        _ => anyhow::bail!("{name} {url:?} is not an http(s) URL"),
    }
}

/// The handle the service keeps: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    intake: mpsc::Sender<Seen>,
    targets: Arc<Vec<&'static str>>,
    /// Events and messages queued or in delivery, for [`Notifier::drain`].
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.targets)
            .finish()
    }
}

impl Notifier {
    /// Starts the notifier and one worker per configured target (needs a tokio runtime).
    pub fn start(config: FeedbackConfig) -> anyhow::Result<Notifier> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!(
                "unleash-remediation-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        let mut kinds = Vec::new();
        if let Some(d) = &config.dynatrace {
            kinds.push(TargetKind::Dynatrace(d.clone()));
        }
        if let Some(url) = &config.slack_webhook_url {
            kinds.push(TargetKind::Slack(url.clone()));
        }
        if let Some(url) = &config.notify_webhook_url {
            kinds.push(TargetKind::Webhook(url.clone()));
        }
        if let Some(g) = &config.grafana {
            kinds.push(TargetKind::Grafana(g.clone()));
        }
        let names: Vec<&'static str> = kinds.iter().map(TargetKind::name).collect();
        let pending = Arc::new(AtomicUsize::new(0));
        let targets: Vec<Target> = kinds
            .into_iter()
            .map(|kind| Target::start(kind, http.clone(), &config, QUEUE, pending.clone()))
            .collect();
        let (intake, mut rx) = mpsc::channel::<Seen>(INTAKE);
        let remediator = config.remediator;
        let done = pending.clone();
        tokio::spawn(async move {
            let mut tracker = Tracker::new(steps::TRACKED);
            while let Some(seen) = rx.recv().await {
                for step in tracker.observe(seen) {
                    for target in &targets {
                        target.offer(&step, remediator);
                    }
                }
                done.fetch_sub(1, Ordering::SeqCst);
            }
        });
        tracing::info!(targets = ?names, "feedback enabled");
        Ok(Notifier {
            intake,
            targets: Arc::new(names),
            pending,
        })
    }

    /// Hands one published event to the notifier, if it is a remediation step.
    pub fn observe(&self, event: &Event) {
        if !is_step(event.ty()) {
            return;
        }
        self.offer(Seen::from_event(event));
    }

    /// Hands an incoming `action.triggered` (which the action role answers) to the notifier.
    pub fn observe_action_triggered(&self, meta: &Meta, ev: &ActionTriggered) {
        self.offer(Seen {
            ty: types::ACTION_TRIGGERED.to_owned(),
            id: meta.id.clone(),
            keptn_context: meta.keptn_context.clone().unwrap_or_default(),
            triggered_id: meta.triggered_id.clone(),
            time: chrono::Utc::now(),
            data: Value::Object(ev.data.clone()),
        });
    }

    /// Waits until everything queued was delivered or given up, at most `within`; for a
    /// shutdown, so that the last remediation's messages still go out.
    pub async fn drain(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn offer(&self, seen: Seen) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.intake.try_send(seen).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            for target in self.targets.iter() {
                metrics::counter!("notifications_total", "target" => *target, "result" => "dropped")
                    .increment(1);
            }
            tracing::warn!("feedback queue full; a remediation step is not reported");
        }
    }
}

fn is_step(ty: &str) -> bool {
    matches!(
        ty,
        types::REMEDIATION_TRIGGERED
            | types::REMEDIATION_STATUS_CHANGED
            | types::ACTION_TRIGGERED
            | types::ACTION_STARTED
            | types::ACTION_FINISHED
            | types::REMEDIATION_FINISHED
    )
}

/// A publisher that forwards every event unchanged and, once the transport took it, shows it
/// to the notifier.
pub struct Notifying {
    inner: Arc<dyn Publish>,
    notifier: Notifier,
}

impl Notifying {
    pub fn new(inner: Arc<dyn Publish>, notifier: Notifier) -> Self {
        Notifying { inner, notifier }
    }
}

impl Publish for Notifying {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let copy = is_step(event.ty()).then(|| event.clone());
            self.inner.publish(event).await?;
            if let Some(copy) = copy {
                self.notifier.observe(&copy);
            }
            Ok(())
        })
    }

    fn publish_all(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        let copies = steps(&events);
        self.observed(copies, self.inner.publish_all(events))
    }

    fn publish_all_handled_here(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        let copies = steps(&events);
        self.observed(copies, self.inner.publish_all_handled_here(events))
    }

    /// The notifier sees the events once their confirmation is given.
    fn send_all_handled_here(
        &self,
        events: Vec<Event>,
    ) -> BoxFuture<'_, anyhow::Result<crate::bus::Confirmation>> {
        let copies = steps(&events);
        Box::pin(async move {
            let stored = self.inner.send_all_handled_here(events).await?;
            let notifier = self.notifier.clone();
            let observed: crate::bus::Confirmation = Box::pin(async move {
                stored.await?;
                for copy in &copies {
                    notifier.observe(copy);
                }
                Ok(())
            });
            Ok(observed)
        })
    }
}

/// Copies of the remediation steps among `events`.
fn steps(events: &[Event]) -> Vec<Event> {
    events.iter().filter(|e| is_step(e.ty())).cloned().collect()
}

impl Notifying {
    /// Awaits `sent` and, once the transport took the events, shows `copies` to the notifier.
    fn observed<'a>(
        &'a self,
        copies: Vec<Event>,
        sent: BoxFuture<'a, anyhow::Result<()>>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            sent.await?;
            for copy in &copies {
                self.notifier.observe(copy);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> FeedbackArgs {
        FeedbackArgs {
            dynatrace_url: None,
            dynatrace_api_token: None,
            dynatrace_api: DynatraceApi::V2,
            slack_webhook_url: None,
            notify_webhook_url: None,
            grafana_url: None,
            grafana_api_token: None,
            feedback_timeout: Duration::from_secs(5),
            feedback_retries: 2,
        }
    }

    #[test]
    fn nothing_set_means_no_notifier() {
        assert!(FeedbackConfig::from_args(&args(), true).unwrap().is_none());
    }

    #[test]
    fn half_a_target_is_refused_naming_the_missing_setting_and_never_the_secret() {
        let mut a = args();
        a.dynatrace_url = Some("https://abc.live.dynatrace.com/".into());
        let e = FeedbackConfig::from_args(&a, true).unwrap_err().to_string();
        assert!(e.contains("DYNATRACE_API_TOKEN is not"), "{e}");

        let mut a = args();
        a.grafana_api_token = Some(Secret::new("glsa"));
        let e = FeedbackConfig::from_args(&a, true).unwrap_err().to_string();
        assert!(e.contains("GRAFANA_URL is not"), "{e}");

        let mut a = args();
        a.slack_webhook_url = Some(Secret::new("not a url s3cret"));
        let e = FeedbackConfig::from_args(&a, true).unwrap_err().to_string();
        assert!(
            e.contains("SLACK_WEBHOOK_URL") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn a_trailing_slash_is_dropped() {
        let mut a = args();
        a.dynatrace_url = Some("https://abc.live.dynatrace.com/".into());
        a.dynatrace_api_token = Some(Secret::new("t"));
        let c = FeedbackConfig::from_args(&a, false).unwrap().unwrap();
        assert_eq!(c.dynatrace.unwrap().url, "https://abc.live.dynatrace.com");
        assert!(!c.remediator);
    }
}
