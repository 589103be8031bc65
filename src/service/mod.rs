//! The running service: wiring of configuration, NATS, HTTP and the roles, and the shutdown
//! sequence.

pub mod http;
pub mod nats;
pub mod pipeline;
pub(crate) mod systemd;

use crate::config::{Role, ServeArgs};
use crate::keptn::{EventFactory, types};
use crate::state::Store;
use anyhow::Context;
use pipeline::Pipeline;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::{info, warn};

/// The subjects the enabled roles listen on.
pub fn subjects_for(roles: &[Role], accept_sequences: bool) -> Vec<String> {
    let mut subjects = Vec::new();
    for role in roles {
        let list: &[&str] = match role {
            Role::Remediator if accept_sequences => &[
                types::PROBLEM_OPEN,
                types::PROBLEM,
                types::ACTION_FINISHED,
                types::REMEDIATION_SEQUENCE_TRIGGERED,
            ],
            Role::Remediator => &[types::PROBLEM_OPEN, types::PROBLEM, types::ACTION_FINISHED],
            Role::GetAction => &[types::GET_ACTION_TRIGGERED],
            Role::Action => &[types::ACTION_TRIGGERED],
        };
        for s in list {
            if !subjects.iter().any(|x| x == s) {
                subjects.push((*s).to_owned());
            }
        }
    }
    subjects
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The service, built and not yet running: its listeners are bound (so [`Service::http_addr`]
/// is known, also for port 0), its roles are configured and its NATS client is connecting. A bad
/// setting stops [`Service::build`] before anything runs.
pub struct Service {
    args: ServeArgs,
    started: std::time::Instant,
    events: EventFactory,
    action: Option<crate::roles::action::ActionRole>,
    notifier: Option<crate::feedback::Notifier>,
    client: async_nats::Client,
    subscribed: Arc<AtomicBool>,
    slot: Arc<OnceLock<Arc<Pipeline>>>,
    http: http::Listener,
    http_addr: std::net::SocketAddr,
    ops: Option<(http::Listener, std::net::SocketAddr)>,
}

impl Service {
    /// Checks the settings, builds the roles, starts connecting to NATS and binds the HTTP
    /// listeners (port 0 picks a free port). Nothing is served until
    /// [`Service::run_until_stopped`].
    pub async fn build(args: ServeArgs) -> anyhow::Result<Service> {
        let started = std::time::Instant::now();
        let metrics = crate::telemetry::metrics_handle();
        let scrubber = Arc::new(args.scrubber());
        crate::redact::scrub_logs_with(scrubber.clone());
        let events = EventFactory::new(args.event_source.clone())
            .with_scrubber(scrubber)
            .dry_run(args.dry_run);
        if args.dry_run {
            warn!("DRY_RUN: every step is evaluated and reported, nothing is written to Unleash");
        }

        check_http_exposure(&args)?;
        let action = build_action_role(&args, &events)?;
        let notifier = crate::feedback::FeedbackConfig::from_args(
            &args.feedback,
            args.roles.contains(&Role::Remediator),
        )
        .context("configuring feedback")?
        .map(crate::feedback::Notifier::start)
        .transpose()?;
        let client = nats::connect(
            &args.nats,
            &args.event_source,
            args.nats_subscription_capacity,
        )
        .await?;
        let subscribed = Arc::new(AtomicBool::new(false));
        let slot: Arc<OnceLock<Arc<Pipeline>>> = Arc::new(OnceLock::new());
        let (http, http_addr) = http::server(
            http::HttpState {
                pipeline: slot.clone(),
                ops: http::OpsState {
                    nats: Some(client.clone()),
                    subscribed: subscribed.clone(),
                    metrics,
                },
                token: args.http_token.clone(),
                body_limit: args.http_body_limit,
                grafana_secret: args.grafana_webhook_secret.clone(),
                max_alerts: args.webhook_max_alerts,
                webhook_in_flight: Default::default(),
            },
            &args.http_addr,
        )?;
        let ops = match &args.metrics_addr {
            Some(addr) => {
                let (server, local) = http::ops_server(
                    http::OpsState {
                        nats: Some(client.clone()),
                        subscribed: subscribed.clone(),
                        metrics: crate::telemetry::metrics_handle(),
                    },
                    addr,
                )?;
                info!(addr = %local, "metrics, health and readiness listening");
                Some((server, local))
            }
            None => None,
        };
        info!(addr = %http_addr, roles = ?args.roles, "HTTP listening");
        Ok(Service {
            args,
            started,
            events,
            action,
            notifier,
            client,
            subscribed,
            slot,
            http,
            http_addr,
            ops,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.http_addr
    }

    /// The address of the separate metrics listener (`METRICS_ADDR`), if there is one.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.ops.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves and consumes until `stop` resolves; then stops taking events, lets those in
    /// flight finish (up to `SHUTDOWN_GRACE`; JetStream redelivers any that do not) and returns.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Service {
            args,
            started,
            events,
            action,
            notifier,
            client,
            subscribed,
            slot,
            http,
            http_addr: _,
            ops,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        tokio::spawn(systemd_lifecycle(subscribed.clone(), stop_rx.clone()));
        let http = http.start()?;
        let ops = ops.map(|(listener, _)| listener.start()).transpose()?;
        let stop_listeners = move || async move {
            http.stop().await;
            if let Some(ops) = ops {
                ops.stop().await;
            }
        };

        // The mode and the state store depend on the server; all of that is decided there.
        let mut waiting = stop_rx.clone();
        let Some((connection, store)) =
            nats::Connection::establish(&client, &args, started, &mut waiting).await?
        else {
            stop_listeners().await;
            return Ok(());
        };
        let mut out: Arc<dyn crate::bus::Publish> =
            Arc::new(connection.publisher(&args.pubsub_group));
        if let Some(n) = &notifier {
            out = Arc::new(crate::feedback::Notifying::new(out, n.clone()));
        }

        crate::telemetry::return_freed_memory(Duration::from_secs(2));
        let mut pipeline = build_pipeline(&args, events, out, store, action)?;
        pipeline.notifier = notifier;
        pipeline.jetstream = connection.is_jetstream();
        let pipeline = Arc::new(pipeline);
        let _ = slot.set(pipeline.clone());
        if let Some(r) = &pipeline.remediator
            && pipeline.action.is_some()
        {
            // The first action of a problem runs in this process's action role, without the
            // trip over the bus (nats/mod.rs says what keeps it durable).
            r.run_actions_here(Box::new(Arc::downgrade(&pipeline)));
        }
        if let Some(r) = pipeline.remediator.clone() {
            // In the background: listing the remembered state grows with it, and readiness must not.
            tokio::spawn(async move {
                match r.resume().await {
                    Ok(0) => {}
                    Ok(n) => info!(
                        count = n,
                        "re-armed timeouts of remediations waiting for an action"
                    ),
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "could not list waiting remediations")
                    }
                }
            });
        }

        let subjects = if args.pubsub_topic.is_empty() {
            subjects_for(&args.roles, args.accept_remediation_sequences)
        } else {
            args.pubsub_topic.clone()
        };
        let consumed = connection
            .consume(
                subjects,
                &args,
                pipeline.clone(),
                subscribed.clone(),
                stop_rx.clone(),
            )
            .await;
        subscribed.store(false, Ordering::SeqCst);
        if let Err(e) = systemd::notify("STOPPING=1") {
            warn!(error = %e, "could not notify systemd of the stop");
        }
        consumed?;

        info!("stopping: no new events; waiting for those in flight");
        // Every source (NATS and HTTP) takes its permits from the pipeline, so this drain waits
        // for all of them; from here on HTTP ingest answers 503.
        if pipeline.permits.drain(args.shutdown_grace).await {
            info!("all events in flight finished");
        } else {
            warn!("shutdown grace elapsed; unfinished events are handed back for redelivery");
        }
        if let Some(n) = &pipeline.notifier
            && !n.drain(Duration::from_secs(5)).await
        {
            warn!("feedback still queued at shutdown is not sent");
        }
        let _ = client.flush().await;
        stop_listeners().await;
        info!("stopped");
        Ok(())
    }
}

/// Whether `addr` (`host:port`) can only be reached from this machine.
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

/// Anyone who reaches an unauthenticated listener can switch flags: outside loopback a token is
/// required unless the operator opts out explicitly.
fn check_http_exposure(args: &ServeArgs) -> anyhow::Result<()> {
    if args.http_token.is_some() || is_loopback(&args.http_addr) {
        return Ok(());
    }
    if args.http_allow_anonymous {
        warn!(
            addr = %args.http_addr,
            "HTTP_TOKEN is not set and HTTP_ALLOW_ANONYMOUS=true: anyone who can reach this address can send events and switch flags"
        );
        return Ok(());
    }
    anyhow::bail!(
        "HTTP_ADDR {} is not a loopback address and HTTP_TOKEN is not set: anyone who can reach it could switch flags. \
         Set HTTP_TOKEN (clients send it as `x-token` or `Authorization: Bearer`), listen on 127.0.0.1, \
         or set HTTP_ALLOW_ANONYMOUS=true to accept unauthenticated events",
        args.http_addr
    )
}

/// Under systemd (`Type=notify`): `READY=1` once the subscriptions are in place, and watchdog
/// keep-alives from the start (also while NATS is still being waited for) until the stop.
async fn systemd_lifecycle(
    subscribed: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = systemd::watchdog_interval();
    let mut ready = false;
    let mut last_keepalive = std::time::Instant::now();
    loop {
        if !ready && subscribed.load(Ordering::SeqCst) {
            ready = true;
            if let Err(e) = systemd::notify("READY=1\nSTATUS=subscribed, taking events") {
                warn!(error = %e, "could not notify systemd that the service is ready");
            }
        }
        if let Some(every) = watchdog
            && last_keepalive.elapsed() >= every
        {
            last_keepalive = std::time::Instant::now();
            if let Err(e) = systemd::notify("WATCHDOG=1") {
                warn!(error = %e, "could not send the systemd watchdog keep-alive");
            }
        }
        if ready && watchdog.is_none() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// The action role, built before anything connects so that a bad Unleash configuration stops
/// the start at once with a clear error.
fn build_action_role(
    args: &ServeArgs,
    events: &EventFactory,
) -> anyhow::Result<Option<crate::roles::action::ActionRole>> {
    use crate::unleash::UnleashClient;
    Ok(if args.roles.contains(&Role::Action) {
        let client = UnleashClient::new(args.unleash.client_config())
            .context("configuring the Unleash client")?;
        let policy = args
            .flag_policy
            .policy(args.dry_run)
            .map_err(anyhow::Error::msg)?;
        Some(
            crate::roles::action::ActionRole::new(
                client,
                events.clone(),
                args.unleash.environment.clone(),
            )
            .with_policy(policy),
        )
    } else {
        None
    })
}

fn build_pipeline(
    args: &ServeArgs,
    events: EventFactory,
    out: Arc<dyn crate::bus::Publish>,
    store: Store,
    action: Option<crate::roles::action::ActionRole>,
) -> anyhow::Result<Pipeline> {
    let source =
        || -> anyhow::Result<crate::resources::ResourceSource> { Ok(args.resources.source()?) };
    let remediator = if args.roles.contains(&Role::Remediator) {
        Some(crate::roles::remediator::Remediator::new(
            source()?,
            events.clone(),
            store,
            args.action_timeout,
            out.clone(),
        ))
    } else {
        None
    };
    let get_action = if args.roles.contains(&Role::GetAction) {
        Some(crate::roles::get_action::GetActionRole::new(
            source()?,
            events.clone(),
        ))
    } else {
        None
    };
    Ok(Pipeline {
        events,
        out,
        remediator,
        get_action,
        action,
        accept_sequences: args.accept_remediation_sequences,
        notifier: None,
        permits: pipeline::Permits::new(args.concurrency),
        jetstream: false,
        settled: pipeline::Settled::new(),
    })
}
