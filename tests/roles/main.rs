//! The roles in-process on the in-memory bus: the action role against real Unleash servers, the
//! get-action role on Keptn's own events, and the feedback publisher against stub targets.

#[path = "../common/mod.rs"]
mod common;

mod action;
mod feedback;
mod get_action;
