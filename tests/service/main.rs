//! The running service end to end: a real nats-server per test, the service binary as a real
//! process, real Unleash 7.5.1 where flags are switched, wiremock only for faults.

#[path = "../common/mod.rs"]
mod common;

mod closing;
mod durability;
mod feedback;
mod flag_policy;
mod http;
mod ingress;
mod integration;
mod keptn1x;
mod limits;
mod outcomes;
mod replicas;
mod restart;
mod robustness;
mod secrets;
mod sizes;
mod unleash_flows;
mod webhooks;
