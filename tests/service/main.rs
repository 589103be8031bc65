//! The running service end to end: a real nats-server per test, the service binary as a real
//! process, real Unleash 7.5.1 where flags are switched, wiremock only for faults.

#[path = "../common/mod.rs"]
mod common;

mod durability;
mod http;
mod integration;
mod keptn1x;
mod outcomes;
mod robustness;
mod unleash_flows;
mod webhooks;
