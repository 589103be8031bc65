//! How the roles send events. The roles only see [`Publish`]; NATS, HTTP tests and the
//! in-memory collector implement it.

use cloudevents::Event;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// Sends one outgoing event. Returns once the transport has taken it (for JetStream: once the
/// stream has stored it).
pub trait Publish: Send + Sync {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// Collects events in memory; for tests and dry runs.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }
    /// Everything published so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("collector lock").clone()
    }
}

impl Publish for Collector {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        self.events.lock().expect("collector lock").push(event);
        Box::pin(async { Ok(()) })
    }
}
