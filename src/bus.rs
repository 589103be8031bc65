//! How the roles send events. The roles only see [`Publish`]; NATS, HTTP tests and the
//! in-memory collector implement it.

use cloudevents::Event;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// Sends one outgoing event. Returns once the transport has taken it (for JetStream: once the
/// stream has stored it).
pub trait Publish: Send + Sync {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Sends `events` in this order and returns once the transport has taken all of them.
    /// A transport that confirms each event (JetStream) sends them all first and then waits for
    /// the confirmations together: the order on the bus is kept, and the wait is one round trip
    /// instead of one per event.
    fn publish_all(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            for event in events {
                self.publish(event).await?;
            }
            Ok(())
        })
    }
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
