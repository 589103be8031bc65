//! The Unleash admin client: switches one flag in one environment (v4+ or v3 API, detected or
//! configured), retries what is worth retrying, confirms the new state by reading it back, and
//! explains failures in plain words. Which flags an action switches, and in which order, is the
//! action role's business ([`crate::roles::action`]); this module only talks to Unleash.
//!
//! - [`config`]: [`UnleashConfig`], [`ApiMode`] (as configured) and [`Api`] (as used).
//! - [`error`]: [`UnleashError`], in words for operators.
//! - [`names`]: [`FlagName`], parsed once; environment and project names; [`on_off`].
//! - `transport`: one request, authenticated, retried, measured, scrubbed of the token.
//! - [`client`]: [`UnleashClient`], the API semantics: detect, switch, read back, create, and
//!   what a failed answer means.

pub mod client;
pub mod config;
pub mod error;
pub mod names;
mod transport;

pub use client::{FlagCreated, UnleashClient};
pub use config::{Api, ApiMode, UnleashConfig};
pub use error::UnleashError;
pub use names::{AsFlagName, FlagName, MAX_FLAG_NAME_LEN, on_off};
