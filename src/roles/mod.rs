//! The three roles. Each takes typed events and publishes through [`crate::bus::Publish`]; none
//! knows which transport an event came from.
//!
//! - [`remediator`]: problem → remediation.triggered … remediation.finished (Keptn 0.6 – 0.8.2,
//!   and standalone use).
//! - [`get_action`]: get-action.triggered → started/finished (Keptn 0.8.3 – 1.x).
//! - [`action`]: action.triggered with `toggle-feature` → started/finished (Unleash provider).

pub mod action;
pub mod get_action;
pub mod remediator;
