//! unleash-remediation-service: Keptn-compatible self-healing with Unleash feature flags.
//!
//! A problem event comes in (NATS or HTTP), the project's `remediation.yaml` says which flags to
//! switch, Unleash is told, and every step is reported as a Keptn CloudEvent.
//!
//! # Layout
//! - [`keptn`]: the protocol — event types, tolerant decoding into typed events, reply builders.
//! - [`monitoring`]: Alertmanager, Grafana and Dynatrace webhooks translated into problem events.
//! - [`resources`]: `remediation.yaml` and `shipyard.yaml` — parsing, matching, where they come from.
//! - [`unleash`]: the Unleash admin client (v3 and v4+) and the toggle action.
//! - [`roles`]: the three roles — remediator, get-action, action — transport-agnostic.
//! - [`bus`]: how the roles publish events, whatever the transport.
//! - [`state`]: remediation state and duplicate protection (JetStream key-value or memory).
//! - [`config`]: every setting, as flags and environment variables.
//! - [`commands`]: what the `validate` and `resolve` subcommands do.
//! - [`service`]: the running service — NATS consumers and publisher, HTTP endpoints, event routing.
//! - [`telemetry`]: logs and the Prometheus recorder.
//! - [`testkit`]: starts real nats-server, PostgreSQL and Unleash processes for tests, the demo and benchmarks.

pub mod bus;
pub mod commands;
pub mod config;
pub mod keptn;
pub mod monitoring;
pub mod resources;
pub mod roles;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod testkit;
pub mod unleash;
