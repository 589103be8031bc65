//! unleash-remediation-service: Keptn-compatible self-healing with Unleash feature flags.
//!
//! A problem event comes in (NATS or HTTP), the project's `remediation.yaml` says which flags to
//! switch, Unleash is told, and every step is reported as a Keptn CloudEvent.
//!
//! # Layout
//! - [`keptn`]: the protocol — event types, tolerant decoding into typed events, reply builders.
//! - [`monitoring`]: Alertmanager, Grafana and Dynatrace webhooks translated into problem events.
//! - [`resources`]: `remediation.yaml` and `shipyard.yaml` — parsing, matching, where they come from.
//! - [`unleash`]: the Unleash admin client (v3 and v4+): configuration, errors, flag names
//!   ([`unleash::FlagName`], checked once), the retrying transport, the API semantics.
//! - [`roles`]: the three roles — remediator, get-action, action — transport-agnostic; the
//!   toggle action's semantics in [`roles::action::toggle`].
//! - [`bus`]: how the roles publish events, whatever the transport.
//! - [`feedback`]: remediation steps as Dynatrace comments, chat messages, webhooks, Grafana annotations.
//! - [`state`]: remediation state and duplicate protection (JetStream key-value or memory).
//! - [`config`]: every setting, as flags and environment variables, in groups that build their
//!   part's typed configuration (Unleash client, flag policy, resource source).
//! - [`secret`]: [`secret::Secret`], the one type for every token and password; prints `***`.
//! - [`http_client`]: what the Unleash and Keptn API clients share: timeouts, bounded retries
//!   with backoff, URL path segments, error text.
//! - [`commands`]: what the `validate` and `resolve` subcommands do.
//! - [`service`]: the running service — [`service::Service::build`] checks the settings and binds
//!   the listeners, [`service::Service::run_until_stopped`] serves, consumes and drains; NATS
//!   (connection, mode and state store, consumers, publisher), HTTP endpoints, event routing.
//! - [`telemetry`]: logs and the Prometheus recorder.
//! - [`failpoint`]: crash points the durability tests set through the environment.
//! - [`redact`]: configured secrets scrubbed from events and logs; control characters escaped in the text log.
//!
//! Not in this crate: the test kit (`crates/testkit`: real nats-server, PostgreSQL, Unleash,
//! Prometheus, Alertmanager, the sample application and the service as a process, for the tests,
//! the demo and the load generator) and the load generator (`crates/loadgen`).
//!
//! # An event's path
//! [`service::nats`] or [`service::http`] (a monitoring webhook first goes through [`monitoring`])
//! → [`keptn::decode`] (once, into a typed [`keptn::Incoming`]) → [`service::pipeline`] (subject =
//! type, a permit, routing by kind) → a role in [`roles`] → [`keptn::outgoing`] (the replies) →
//! [`bus::Publish`] (with [`feedback`] beside it) → NATS.
//!
//! # Where behaviours live
//! - duplicates, replays, escalation, timeouts, close actions: [`roles::remediator`] and [`state`];
//! - acknowledgement and redelivery: [`service::nats`];
//! - start-up (settings checked, listeners bound, then the NATS mode and the state store chosen
//!   once the server answers): [`service::Service`] and [`service::nats::Connection`];
//! - which flags, in which order, allowed flags, dry run, the read before each switch:
//!   [`roles::action::toggle`] (the replies: [`roles::action`]);
//! - talking to Unleash (API generations, retries, what an answer means): [`unleash`];
//! - settings into typed configuration: [`config`];
//! - HTTP authentication, content types and answers: [`service::http`].
//!
//! How it all works, in prose: `docs/design.md`.

pub mod bus;
pub mod commands;
pub mod config;
pub mod failpoint;
pub mod feedback;
pub mod http_client;
pub mod keptn;
pub mod monitoring;
pub mod redact;
pub mod resources;
pub mod roles;
pub mod secret;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod unleash;
