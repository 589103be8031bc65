//! HTTP (docs/design.md §7): health, readiness, metrics, and ingest, all handled by the same
//! pipeline as NATS:
//! - `POST /` and `POST /events`: one CloudEvent, structured or binary mode;
//! - `POST /v1/event` and `POST /api/v1/event`: the same, answered like Keptn's API;
//! - `POST /webhooks/alertmanager`, `/webhooks/grafana`, `/webhooks/dynatrace`: monitoring
//!   notifications, translated by [`crate::monitoring`].
//!
//! Every ingest path checks the token and the content type before it reads the body. The
//! connections themselves, and their bounds, are `listener.rs`'s.

use crate::config::Secret;
use crate::keptn::{self, DecodeError, Incoming, Kind};
use crate::monitoring::{self, AlertOutcome, Source, Verdict};
use crate::service::pipeline::Pipeline;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod listener;
use listener::bind;
pub use listener::{Listener, Running};

type Request = hyper::Request<hyper::body::Incoming>;
type HttpResponse = hyper::Response<Full<Bytes>>;

/// A client has this long to send a body, once its headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP handlers need.
pub struct HttpState {
    /// Filled once NATS is connected and the roles are built; ingest answers 503 before.
    pub pipeline: Arc<std::sync::OnceLock<Arc<Pipeline>>>,
    /// What health, readiness and the scrape read, as on the operations listener.
    pub ops: OpsState,
    pub token: Option<Secret>,
    /// Largest accepted body, in bytes.
    pub body_limit: usize,
    pub grafana_secret: Option<Secret>,
    /// Most alerts accepted in one webhook notification.
    pub max_alerts: usize,
    /// Webhook events handed to the pipeline and not finished yet: the same notification from
    /// both members of an Alertmanager HA pair arrives at once, before the remediator's claim
    /// exists, and must not start twice.
    pub webhook_in_flight: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// What the operations endpoints need (all of the `METRICS_ADDR` listener).
pub struct OpsState {
    pub nats: Option<async_nats::Client>,
    /// Set once the subscriptions or consumers are in place.
    pub subscribed: Arc<AtomicBool>,
    pub metrics: PrometheusHandle,
}

/// What a listener serves: everything, or the operations endpoints of `METRICS_ADDR`.
enum Routes {
    Main(HttpState),
    Ops(OpsState),
}

/// Binds the listener of `HTTP_ADDR`: health, readiness, metrics and every ingest path.
pub fn server(state: HttpState, addr: &str) -> anyhow::Result<(Listener, std::net::SocketAddr)> {
    bind(addr, "", Routes::Main(state))
}

/// Binds the operations listener of `METRICS_ADDR`: `/metrics`, `/health` and `/ready` only.
pub fn ops_server(state: OpsState, addr: &str) -> anyhow::Result<(Listener, std::net::SocketAddr)> {
    bind(addr, "METRICS_ADDR ", Routes::Ops(state))
}

/// What a request's path names.
#[derive(Clone, Copy)]
enum Endpoint {
    Health,
    Ready,
    Metrics,
    Event,
    KeptnApi,
    Webhook(Source),
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/health" => Endpoint::Health,
            "/ready" => Endpoint::Ready,
            "/metrics" => Endpoint::Metrics,
            "/" | "/events" => Endpoint::Event,
            "/v1/event" | "/api/v1/event" => Endpoint::KeptnApi,
            "/webhooks/alertmanager" => Endpoint::Webhook(Source::Alertmanager),
            "/webhooks/grafana" => Endpoint::Webhook(Source::Grafana),
            "/webhooks/dynatrace" => Endpoint::Webhook(Source::Dynatrace),
            _ => return None,
        })
    }

    /// Ingest (POST, on `HTTP_ADDR` only) rather than operations (GET, on both listeners).
    fn ingests(self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Ready | Endpoint::Metrics)
    }
}

/// The path and method of a request, to its handler; a known path asked with another method
/// is answered 405 with the method it takes.
async fn route(routes: &Routes, req: Request) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let (ops, main) = match routes {
        Routes::Main(s) => (&s.ops, Some(s)),
        Routes::Ops(o) => (o, None),
    };
    let Some(endpoint) = Endpoint::of(parts.uri.path()).filter(|e| main.is_some() || !e.ingests())
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such path");
    };
    let (method, name) = if endpoint.ingests() {
        (Method::POST, "POST")
    } else {
        (Method::GET, "GET")
    };
    if parts.method != method {
        return not_allowed(name);
    }
    match (endpoint, main) {
        (Endpoint::Health, _) => health(),
        (Endpoint::Ready, _) => ready_answer(ops),
        (Endpoint::Metrics, _) => metrics_answer(ops),
        (Endpoint::Event, Some(s)) => ingest(s, parts, body).await,
        (Endpoint::KeptnApi, Some(s)) => keptn_api(s, parts, body).await,
        (Endpoint::Webhook(source), Some(s)) => webhook(source, s, parts, body).await,
        (_, None) => unreachable!("the operations listener's ingest paths are not found, above"),
    }
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut answer = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this path takes {allow}"),
    );
    answer
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    answer
}

/// An answer with `status` and a body of `content_type`.
fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut answer = hyper::Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

/// A JSON answer with `status`.
fn json_answer(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let body = serde_json::to_vec(value).expect("a JSON value serialises");
    answer(status, "application/json", Bytes::from(body))
}

fn health() -> HttpResponse {
    json_answer(StatusCode::OK, &json!({"status": "ok"}))
}

fn ready_answer(ops: &OpsState) -> HttpResponse {
    let reason = match &ops.nats {
        None => Some("not connected to NATS".to_owned()),
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => None,
            other => Some(format!("NATS connection is {other}")),
        },
    }
    .or_else(|| (!ops.subscribed.load(Ordering::SeqCst)).then(|| "not subscribed yet".to_owned()));
    match reason {
        None => json_answer(StatusCode::OK, &json!({"status": "ready"})),
        Some(reason) => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not ready", "reason": reason}),
        ),
    }
}

/// The scrape; the NATS and readiness gauges are taken at this moment.
fn metrics_answer(ops: &OpsState) -> HttpResponse {
    let connected = ops
        .nats
        .as_ref()
        .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
    let ready = connected && ops.subscribed.load(Ordering::SeqCst);
    metrics::gauge!("nats_connected").set(f64::from(u8::from(connected)));
    metrics::gauge!("ready").set(f64::from(u8::from(ready)));
    answer(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Bytes::from(crate::telemetry::render(&ops.metrics)),
    )
}

fn token_ok(expected: &Secret, given: Option<&[u8]>) -> bool {
    let want = expected.expose().as_bytes();
    let Some(given) = given else { return false };
    // Compare in time independent of where the first difference is.
    want.len() == given.len()
        && want
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The token a client sent: `x-token` (Keptn) or `Authorization: Bearer` (Alertmanager's
/// `http_config.authorization`, Grafana, Dynatrace).
fn given_token(req: &Parts) -> Vec<&[u8]> {
    let mut given = Vec::new();
    if let Some(v) = req.headers.get("x-token") {
        given.push(v.as_bytes());
    }
    if let Some(v) = req.headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            given.push(v[7..].trim_ascii());
        }
    }
    given
}

/// JSON or CloudEvents JSON: `application/json`, `application/cloudevents+json` or any other
/// `application/*+json`. A form or `text/plain` POST, which any web page can send, is refused.
fn json_content_type(req: &Parts) -> bool {
    let Some(ct) = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn error(status: StatusCode, reason: &str, message: &str) -> HttpResponse {
    json_answer(status, &json!({"error": message, "reason": reason}))
}

/// What every ingest path does first, in this order so that nothing is read for a client that
/// may not send: token, content type, readiness, then the body up to the limit.
async fn admit(
    state: &HttpState,
    req: &Parts,
    payload: hyper::body::Incoming,
) -> Result<(Arc<Pipeline>, Bytes), HttpResponse> {
    if let Some(expected) = &state.token
        && !given_token(req)
            .into_iter()
            .any(|g| token_ok(expected, Some(g)))
    {
        metrics::counter!("http_unauthorized_total").increment(1);
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token: send it as `x-token: <token>` or `Authorization: Bearer <token>`",
        ));
    }
    if !json_content_type(req) {
        metrics::counter!("http_unsupported_media_type_total").increment(1);
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON: Content-Type application/json or application/cloudevents+json",
        ));
    }
    if header(req, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .starts_with("application/cloudevents-batch+json")
    {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "batch_unsupported",
            "CloudEvents batch mode is not supported: post each event on its own (structured or binary mode)",
        ));
    }
    let Some(pipeline) = state.pipeline.get().cloned() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "starting: not connected to NATS yet",
        ));
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "the body is larger than HTTP_BODY_LIMIT ({} bytes)",
                state.body_limit
            ),
        )
    };
    let announced = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.body_limit as u64) {
        return Err(too_large());
    }
    let body = tokio::time::timeout(BODY_TIMEOUT, read_body(payload, state.body_limit))
        .await
        .map_err(|_| {
            error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?;
    match body {
        Ok(Some(body)) => Ok((pipeline, body)),
        Ok(None) => Err(too_large()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            &format!("the body could not be read: {e}"),
        )),
    }
}

/// The whole body, or `None` as soon as it is larger than `limit` bytes.
async fn read_body(
    mut payload: hyper::body::Incoming,
    limit: usize,
) -> Result<Option<Bytes>, hyper::Error> {
    let mut body = BytesMut::new();
    while let Some(frame) = payload.frame().await {
        let Ok(chunk) = frame?.into_data() else {
            continue; // trailers
        };
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// Binary mode: `ce-specversion` is present and the body is not itself a structured CloudEvent
/// (the HTTP binding decides by `Content-Type`).
fn binary_mode(req: &Parts) -> bool {
    req.headers.contains_key("ce-specversion")
        && !header(req, "content-type")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents+json")
}

/// Decodes one CloudEvent, structured or binary mode.
fn decode_request(req: &Parts, body: &Bytes) -> Result<Incoming, DecodeError> {
    if binary_mode(req) {
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()));
        keptn::decode_binary(headers, body)
    } else {
        keptn::decode_bytes(body)
    }
}

async fn ingest(state: &HttpState, req: Parts, payload: hyper::body::Incoming) -> HttpResponse {
    let (pipeline, body) = match admit(state, &req, payload).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    match decode_request(&req, &body) {
        Ok(incoming) => {
            let id = incoming.meta.id.clone();
            let handled = pipeline.handles(&incoming);
            let ty = incoming.meta.ty.clone();
            // Accepted now, handled in the background under the same permits as NATS events
            // (an ignored one is still counted there).
            match pipeline.admit(incoming) {
                Ok(()) if handled => json_answer(StatusCode::ACCEPTED, &json!({"accepted": id})),
                Ok(()) => json_answer(
                    StatusCode::OK,
                    &json!({
                        "ignored": id,
                        "reason": format!("no enabled role handles {ty} (see ROLES and ACCEPT_REMEDIATION_SEQUENCES)")
                    }),
                ),
                Err(refused) => busy(refused),
            }
        }
        Err(e) => {
            pipeline.reject(&e).await;
            json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": e.message, "reason": e.reason}),
            )
        }
    }
}

/// Whether the raw body is Dynatrace's "Send test notification" through the Keptn template,
/// which may lack a scope and must not count as bad input.
fn dynatrace_test_event(req: &Parts, body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(body) else {
        return false;
    };
    let data = if binary_mode(req) {
        obj
    } else {
        match obj.remove("data") {
            Some(serde_json::Value::Object(d)) => d,
            _ => return false,
        }
    };
    monitoring::dynatrace::is_test_problem(&keptn::ProblemDetails(data))
}

/// `POST /v1/event` and `POST /api/v1/event`, Keptn's API event endpoint (used by Dynatrace's
/// Keptn integration and `keptn send event`): 200 with the event's Keptn context.
async fn keptn_api(state: &HttpState, req: Parts, payload: hyper::body::Incoming) -> HttpResponse {
    let (pipeline, body) = match admit(state, &req, payload).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    let context_of = |given: Option<&str>| {
        given
            .map(monitoring::keptn_context_from)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    };
    if dynatrace_test_event(&req, &body) {
        let ctx = header(&req, "ce-shkeptncontext").or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["shkeptncontext"].as_str().map(str::to_owned))
        });
        return json_answer(
            StatusCode::OK,
            &json!({
                "keptnContext": context_of(ctx.as_deref()),
                "outcome": "ignored",
                "reason": "Dynatrace test notification (ProblemID 999, PID 99999): nothing is remediated",
            }),
        );
    }
    match decode_request(&req, &body) {
        Ok(mut incoming) => {
            // As Keptn's API: a context that is not a UUID (Dynatrace sends its PID) becomes one.
            let ctx = context_of(incoming.meta.keptn_context.as_deref());
            incoming.meta.keptn_context = Some(ctx.clone());
            match pipeline.admit(incoming) {
                Ok(()) => json_answer(StatusCode::OK, &json!({"keptnContext": ctx})),
                Err(refused) => busy(refused),
            }
        }
        Err(e) => {
            pipeline.reject(&e).await;
            json_answer(
                StatusCode::BAD_REQUEST,
                &json!({
                    "code": 400,
                    "message": e.message,
                    "reason": e.reason,
                }),
            )
        }
    }
}

/// A monitoring notification: 200 with each alert's outcome, 400 for a body that is not the
/// expected shape (never 5xx for bad input: Alertmanager retries those forever).
async fn webhook(
    source: Source,
    state: &HttpState,
    req: Parts,
    payload: hyper::body::Incoming,
) -> HttpResponse {
    let (pipeline, body) = match admit(state, &req, payload).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    if source == Source::Grafana
        && let Some(secret) = &state.grafana_secret
    {
        let signature = header(&req, monitoring::grafana::SIGNATURE_HEADER);
        let timestamp = header(&req, monitoring::grafana::TIMESTAMP_HEADER);
        if let Err(why) = monitoring::grafana::verify_signature(
            secret.expose().as_bytes(),
            &body,
            signature.as_deref(),
            timestamp.as_deref(),
        ) {
            metrics::counter!("http_unauthorized_total").increment(1);
            return error(StatusCode::UNAUTHORIZED, "bad_signature", why);
        }
    }
    let query = monitoring::query_scope(req.uri.query().unwrap_or(""));
    let translated = match source {
        Source::Alertmanager => {
            monitoring::alertmanager::translate(&body, &query, state.max_alerts)
        }
        Source::Grafana => monitoring::grafana::translate(&body, &query, state.max_alerts),
        Source::Dynatrace => monitoring::dynatrace::translate(&body, &query),
    };
    let outcomes = match translated {
        Ok(o) => o,
        Err(e) => {
            count_notification(source, "rejected");
            pipeline.reject(&e).await;
            return json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": e.message, "reason": e.reason}),
            );
        }
    };
    let mut answers = Vec::with_capacity(outcomes.len());
    let mut seen = std::collections::HashSet::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for outcome in outcomes {
        let answer = handle_alert(
            source,
            &pipeline,
            &state.webhook_in_flight,
            outcome,
            &mut seen,
        )
        .await;
        let label = answer["outcome"].as_str().unwrap_or("accepted");
        let label: &'static str = match label {
            "duplicate" => "duplicate",
            "ignored" => "ignored",
            "rejected" => "rejected",
            "refused" => "refused",
            _ => "accepted",
        };
        *counts.entry(label).or_default() += 1;
        metrics::counter!("webhook_alerts_total", "source" => source.name(), "outcome" => label)
            .increment(1);
        answers.push(answer);
    }
    // A Dynatrace notification is one problem: when it is unusable the body is, and the 400
    // shows in Dynatrace's "Send test notification" dialog.
    if source == Source::Dynatrace
        && let [only] = answers.as_slice()
        && only["outcome"] == "rejected"
    {
        count_notification(source, "rejected");
        return json_answer(
            StatusCode::BAD_REQUEST,
            &json!({
                "error": only["message"],
                "reason": only["reason"],
                "source": source.name(),
                "alerts": answers,
            }),
        );
    }
    // Stopping part-way: the sender retries the whole notification on a 503, and what was
    // already handed on is then a duplicate.
    if counts.contains_key("refused") {
        return busy(crate::service::pipeline::Refused::Stopping);
    }
    count_notification(source, "accepted");
    json_answer(
        StatusCode::OK,
        &json!({
            "source": source.name(),
            "accepted": counts.get("accepted").copied().unwrap_or(0),
            "duplicate": counts.get("duplicate").copied().unwrap_or(0),
            "ignored": counts.get("ignored").copied().unwrap_or(0),
            "rejected": counts.get("rejected").copied().unwrap_or(0),
            "alerts": answers,
        }),
    )
}

/// Removes a webhook event id from the in-flight set when its handling ends, however it ends.
struct InFlightId(
    Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    String,
);

impl Drop for InFlightId {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

fn count_notification(source: Source, outcome: &'static str) {
    metrics::counter!("webhook_notifications_total", "source" => source.name(), "outcome" => outcome)
        .increment(1);
}

/// Hands one alert's problem to the pipeline (or reports why not) and says what happened.
async fn handle_alert(
    source: Source,
    pipeline: &Arc<Pipeline>,
    in_flight: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    outcome: AlertOutcome,
    seen: &mut std::collections::HashSet<String>,
) -> serde_json::Value {
    let mut answer = json!({"index": outcome.index});
    if let Some(id) = &outcome.problem_id {
        answer["problemId"] = json!(id);
    }
    match outcome.verdict {
        Verdict::Ignored(why) => {
            answer["outcome"] = json!("ignored");
            answer["reason"] = json!(why);
        }
        Verdict::Rejected(e) => {
            pipeline.reject(&e).await;
            answer["outcome"] = json!("rejected");
            answer["reason"] = json!(e.reason);
            answer["message"] = json!(e.message);
        }
        Verdict::Problem(incoming) => {
            let Kind::Problem(problem) = &incoming.kind else {
                unreachable!("webhook adapters only produce problems")
            };
            let open = problem.state == keptn::ProblemState::Open;
            answer["state"] = json!(if open { "OPEN" } else { "CLOSED" });
            answer["scope"] = json!(problem.scope);
            answer["keptnContext"] = json!(incoming.meta.keptn_context);
            answer["eventId"] = json!(incoming.meta.id);
            if !pipeline.handles(&incoming) {
                answer["outcome"] = json!("ignored");
                answer["reason"] = json!("the remediator role is not enabled here (see ROLES)");
                return answer;
            }
            // The same alert twice in one notification or still in flight from another: not
            // handed on. An OPEN for a problem the remediator already holds (a repeat): handed
            // on, and the remediator's claim starts nothing for it. Both are duplicates.
            let id = incoming.meta.id.clone();
            let repeated = !seen.insert(id.clone())
                || !in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
            let known = open
                && match &pipeline.remediator {
                    Some(r) => r.holds(problem).await.unwrap_or(false),
                    None => false,
                };
            answer["outcome"] = json!(if repeated || known {
                "duplicate"
            } else {
                "accepted"
            });
            tracing::debug!(
                source = source.name(),
                event_id = %incoming.meta.id,
                problem = %problem.identity(),
                scope = %problem.scope,
                outcome = %answer["outcome"],
                "webhook alert"
            );
            if !repeated
                && pipeline
                    .admit_waiting(*incoming, InFlightId(in_flight.clone(), id))
                    .await
                    .is_err()
            {
                answer["outcome"] = json!("refused");
                answer["reason"] = json!("stopping");
                answer["message"] = json!("the service is stopping; send the notification again");
            }
        }
    }
    answer
}

/// 503 with `Retry-After`: the sender keeps the event and tries again (Alertmanager, Grafana
/// and Dynatrace retry on 5xx).
fn busy(refused: crate::service::pipeline::Refused) -> HttpResponse {
    use crate::service::pipeline::Refused;
    let (after, error) = match refused {
        Refused::Busy => ("1", "busy: every permit is in use (CONCURRENCY); try again"),
        Refused::Stopping => ("5", "stopping: not taking new events"),
    };
    let mut answer = json_answer(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": error}));
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    answer
}

fn header(req: &Parts, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
