//! The Keptn protocol: event types, decoding of incoming CloudEvents into typed events, and
//! builders for every event this service sends.
//!
//! Incoming events are converted once, at the edge ([`decode::decode_bytes`] or
//! [`decode::decode_event`]); the rest of the crate only sees [`Incoming`].

pub mod binary;
pub mod decode;
pub mod model;
pub mod outgoing;
pub mod quick;
pub mod types;

pub use binary::decode_binary;
pub use decode::{DecodeError, decode_bytes, decode_event};
pub use model::{
    ActionFinished, ActionInfo, ActionTriggered, GetActionTriggered, Incoming, Kind, Meta,
    ProblemDetails, ProblemEvent, ProblemState, Scope,
};
pub use outgoing::EventFactory;
