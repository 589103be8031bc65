//! Delivery to one target: which steps it gets, the request, and a worker that sends them in
//! order with a timeout, bounded retries, a counter and a warning log without secrets.

use super::steps::{Step, StepKind};
use super::text::{Flavor, grafana_annotation, message, webhook_body};
use super::{DynatraceTarget, FeedbackConfig, GrafanaTarget};
use crate::config::{DynatraceApi, Secret};
use crate::http_client::{Backoff, Retry, Verdict};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// `context` of every Dynatrace comment.
const CONTEXT: &str = "unleash-remediation-service";

#[derive(Debug, Clone)]
pub(super) enum TargetKind {
    Dynatrace(DynatraceTarget),
    Slack(Secret),
    Webhook(Secret),
    Grafana(GrafanaTarget),
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Dynatrace(_) => "dynatrace",
            TargetKind::Slack(_) => "slack",
            TargetKind::Webhook(_) => "webhook",
            TargetKind::Grafana(_) => "grafana",
        }
    }

    /// Values that must not appear in a log line: the token, or the whole URL when the URL is
    /// the secret (chat and generic hooks).
    fn secrets(&self) -> Vec<String> {
        let s = match self {
            TargetKind::Dynatrace(d) => d.token.expose(),
            TargetKind::Slack(u) | TargetKind::Webhook(u) => u.expose(),
            TargetKind::Grafana(g) => g.token.expose(),
        };
        vec![s.to_owned()]
    }

    /// The request a step makes, if this target reports it.
    fn request(&self, step: &Step, remediator: bool) -> Option<Request> {
        match self {
            TargetKind::Dynatrace(d) => {
                let pid = step.problem.dynatrace_id.as_deref()?;
                let text = message(step, Flavor::Markdown)?;
                // One path segment; unreserved characters stay (ids look like `-43_1588V2`).
                let pid = crate::http_client::segment(pid);
                let (path, body) = match d.api {
                    DynatraceApi::V2 => (
                        format!("/api/v2/problems/{pid}/comments"),
                        json!({"message": text, "context": CONTEXT}),
                    ),
                    DynatraceApi::V1 => (
                        format!("/api/v1/problem/details/{pid}/comments"),
                        json!({"comment": text, "user": CONTEXT, "context": CONTEXT}),
                    ),
                };
                Some(Request {
                    url: format!("{}{path}", d.url),
                    auth: Some(Secret::new(format!("Api-Token {}", d.token.expose()))),
                    body,
                })
            }
            TargetKind::Slack(url) => {
                let wanted = match step.kind {
                    StepKind::ActionTriggered | StepKind::RemediationFinished { .. } => true,
                    // Without the remediator here no remediation.finished comes; each action's
                    // result is then the news.
                    StepKind::ActionFinished { .. } => !remediator,
                    _ => false,
                };
                if !wanted {
                    return None;
                }
                Some(Request {
                    url: url.expose().to_owned(),
                    auth: None,
                    body: json!({"text": message(step, Flavor::Slack)?}),
                })
            }
            TargetKind::Webhook(url) => Some(Request {
                url: url.expose().to_owned(),
                auth: None,
                body: webhook_body(step),
            }),
            TargetKind::Grafana(g) => {
                if step.problem.source.as_deref() != Some("grafana") {
                    return None;
                }
                Some(Request {
                    url: format!("{}/api/annotations", g.url),
                    auth: Some(Secret::new(format!("Bearer {}", g.token.expose()))),
                    body: grafana_annotation(step)?,
                })
            }
        }
    }

    fn accepts(&self, status: reqwest::StatusCode) -> bool {
        match self {
            // Slack: 200 is success, anything else a failure.
            TargetKind::Slack(_) => status == reqwest::StatusCode::OK,
            _ => status.is_success(),
        }
    }
}

#[derive(Debug)]
struct Request {
    url: String,
    auth: Option<Secret>,
    body: Value,
}

struct Job {
    request: Request,
    step: &'static str,
    keptn_context: String,
}

/// A running target: its queue and what it reports.
pub(super) struct Target {
    kind: TargetKind,
    queue: mpsc::Sender<Job>,
    pending: Arc<AtomicUsize>,
}

impl Target {
    pub fn start(
        kind: TargetKind,
        http: reqwest::Client,
        config: &FeedbackConfig,
        capacity: usize,
        pending: Arc<AtomicUsize>,
    ) -> Target {
        let (queue, mut rx) = mpsc::channel::<Job>(capacity);
        let worker = Worker {
            name: kind.name(),
            kind: kind.clone(),
            http,
            retries: config.retries,
            backoff: config.backoff,
        };
        let done = pending.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                worker.deliver(job).await;
                done.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Target {
            kind,
            queue,
            pending,
        }
    }

    /// Queues the step's request, if this target reports the step; never waits.
    pub fn offer(&self, step: &Step, remediator: bool) {
        let Some(request) = self.kind.request(step, remediator) else {
            return;
        };
        let job = Job {
            request,
            step: step.kind.name(),
            keptn_context: step.keptn_context.clone(),
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.try_send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let target = self.kind.name();
            metrics::counter!("notifications_total", "target" => target, "result" => "dropped")
                .increment(1);
            tracing::warn!(
                target,
                step = step.kind.name(),
                shkeptncontext = %step.keptn_context,
                "feedback target is behind; message dropped"
            );
        }
    }
}

struct Worker {
    name: &'static str,
    kind: TargetKind,
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

enum Failure {
    /// Worth another try: connection error, timeout, 429, 5xx.
    Transient(String),
    Permanent(String),
}

impl Worker {
    async fn deliver(&self, job: Job) {
        let retry = Retry {
            retries: self.retries,
            backoff: Backoff {
                start: self.backoff,
                max: Duration::MAX,
            },
        };
        let (outcome, attempts) = retry
            .run(
                || self.send_once(&job.request),
                |outcome| match outcome {
                    Err(Failure::Transient(_)) => Verdict::Retry { at_least: None },
                    _ => Verdict::Done,
                },
                |outcome, attempt, _| {
                    if let Err(Failure::Transient(e)) = outcome {
                        tracing::debug!(target = self.name, attempt = attempt - 1, error = %self.scrub(e), "feedback request failed; retrying");
                    }
                },
            )
            .await;
        let error = match outcome {
            Ok(()) => {
                metrics::counter!("notifications_total", "target" => self.name, "result" => "ok")
                    .increment(1);
                tracing::debug!(target = self.name, step = job.step, shkeptncontext = %job.keptn_context, "feedback delivered");
                return;
            }
            Err(Failure::Transient(e) | Failure::Permanent(e)) => e,
        };
        metrics::counter!("notifications_total", "target" => self.name, "result" => "failed")
            .increment(1);
        tracing::warn!(
            target = self.name,
            step = job.step,
            shkeptncontext = %job.keptn_context,
            attempts,
            error = %self.scrub(&error),
            "feedback not delivered"
        );
    }

    async fn send_once(&self, request: &Request) -> Result<(), Failure> {
        let mut builder = self.http.post(&request.url).json(&request.body);
        if let Some(auth) = &request.auth {
            builder = builder.header(reqwest::header::AUTHORIZATION, auth.expose());
        }
        match builder.send().await {
            Ok(answer) => {
                let status = answer.status();
                if self.kind.accepts(status) {
                    return Ok(());
                }
                let body = answer.text().await.unwrap_or_default();
                let body: String = body.chars().take(300).collect();
                let text = format!("HTTP {}: {}", status.as_u16(), body.trim());
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Err(Failure::Transient(text))
                } else {
                    Err(Failure::Permanent(text))
                }
            }
            Err(e) => {
                let transient = e.is_timeout() || e.is_connect() || e.is_request();
                let e = e.without_url();
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                if transient {
                    Err(Failure::Transient(text))
                } else {
                    Err(Failure::Permanent(text))
                }
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.kind.secrets() {
            if !secret.is_empty() {
                text = text.replace(&secret, "***");
            }
        }
        text
    }
}
