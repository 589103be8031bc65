//! The Unleash admin client and the toggle action.
//!
//! - [`client`]: [`UnleashClient`] switches one flag in one environment (v4+ or v3 API,
//!   detected or configured), retries what is worth retrying, confirms the new state by reading
//!   it back, and explains failures in plain words.
//! - [`toggle`]: the `toggle-feature` action's `value` parsed into [`FlagChange`]s, applied in
//!   order into a [`ToggleReport`].

pub mod client;
pub mod toggle;

pub use client::{
    Api, ApiMode, FlagCreated, MAX_FLAG_NAME_LEN, UnleashClient, UnleashConfig, UnleashError,
    validate_flag_name,
};
pub use toggle::{
    DEFAULT_MAX_FLAGS, FlagChange, FlagOutcome, FlagPolicy, FlagResult, ToggleReport, ValueError,
    apply, apply_with, glob_match, parse_value,
};
