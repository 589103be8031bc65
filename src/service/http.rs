//! HTTP (SPEC section 7): health, readiness, metrics, and event ingest on `POST /` and
//! `POST /events` in structured or binary mode, handled by the same pipeline as NATS.

use crate::config::Secret;
use crate::keptn::{self, DecodeError};
use crate::service::pipeline::Pipeline;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the HTTP handlers need.
pub struct HttpState {
    /// Filled once NATS is connected and the roles are built; ingest answers 503 before.
    pub pipeline: Arc<std::sync::OnceLock<Arc<Pipeline>>>,
    pub nats: Option<async_nats::Client>,
    /// Set once the subscriptions or consumers are in place.
    pub subscribed: Arc<AtomicBool>,
    pub token: Option<Secret>,
    pub metrics: PrometheusHandle,
}

/// Binds the listener (so the caller learns the port at once) and returns the server to run.
pub fn server(
    state: HttpState,
    addr: &str,
    body_limit: usize,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let state = web::Data::new(state);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
            .route("/", web::post().to(ingest))
            .route("/events", web::post().to(ingest))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, local))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(state: web::Data<HttpState>) -> HttpResponse {
    let reason = match &state.nats {
        None => Some("not connected to NATS".to_owned()),
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => None,
            other => Some(format!("NATS connection is {other}")),
        },
    }
    .or_else(|| {
        (!state.subscribed.load(Ordering::SeqCst)).then(|| "not subscribed yet".to_owned())
    });
    match reason {
        None => HttpResponse::Ok().json(json!({"status": "ready"})),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not ready", "reason": reason})),
    }
}

async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
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

async fn ingest(state: web::Data<HttpState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(expected) = &state.token {
        let given = req.headers().get("x-token").map(|v| v.as_bytes());
        if !token_ok(expected, given) {
            metrics::counter!("http_unauthorized_total").increment(1);
            return HttpResponse::Unauthorized()
                .json(json!({"error": "missing or wrong x-token header"}));
        }
    }
    let Some(pipeline) = state.pipeline.get().cloned() else {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"error": "starting: not connected to NATS yet"}));
    };
    let binary = req.headers().contains_key("ce-specversion");
    let decoded = if binary {
        cloudevents::binding::http_0_2::to_event(req.headers(), body.to_vec())
            .map_err(|e| DecodeError {
                reason: "not_cloudevent",
                message: format!("binary-mode CloudEvent could not be read: {e}"),
                id: header(&req, "ce-id"),
                ty: header(&req, "ce-type"),
                keptn_context: header(&req, "ce-shkeptncontext"),
            })
            .and_then(keptn::decode_event)
    } else {
        keptn::decode_bytes(&body)
    };
    match decoded {
        Ok(incoming) => {
            let id = incoming.meta.id.clone();
            // Accepted now, handled in the background under the same permits as NATS events.
            match pipeline.admit(incoming) {
                Ok(()) => HttpResponse::Accepted().json(json!({"accepted": id})),
                Err(refused) => busy(refused),
            }
        }
        Err(e) => {
            pipeline.reject(&e).await;
            HttpResponse::BadRequest().json(json!({"error": e.message, "reason": e.reason}))
        }
    }
}

/// 503 with `Retry-After`: the sender keeps the event and tries again (Alertmanager, Grafana
/// and Dynatrace retry on 5xx).
fn busy(refused: crate::service::pipeline::Refused) -> HttpResponse {
    use crate::service::pipeline::Refused;
    let (after, error) = match refused {
        Refused::Busy => ("1", "busy: every permit is in use (CONCURRENCY); try again"),
        Refused::Stopping => ("5", "stopping: not taking new events"),
    };
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", after))
        .json(json!({"error": error}))
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
