//! Crash points for the durability tests (docs/design.md §8): with
//! `UNLEASH_REMEDIATION_FAILPOINT=<name>` in the environment, the process aborts, without any
//! cleanup, as `kill -9` would stop it, the first time it reaches the point of that name. Unset
//! (always, outside those tests), a point costs one comparison with `None`.
//!
//! The points of a remediation, in order: `after-claim`, `after-triggered` (the
//! remediation.triggered is stored; the events sent with it may be stored too),
//! `after-action-triggered`, `after-toggle` (the action role switched its flags and has not sent
//! `action.finished`), `before-finish` (`remediation.finished` not sent; the outcome is stored,
//! except for a first action run here while JetStream keeps the OPEN), `after-finish` (that
//! action's `remediation.finished` sent, its record not yet marked finished).

use std::sync::OnceLock;

/// Aborts the process if `name` is the configured crash point.
pub fn point(name: &str) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var("UNLEASH_REMEDIATION_FAILPOINT").ok());
    if configured.as_deref() == Some(name) {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
}
