//! How the roles send events. The roles only see [`Publish`]; NATS, HTTP tests and the
//! in-memory collector implement it. A role may also hand an event to another role of the same
//! process ([`ActionsHere`]): it is still published for everyone else, marked so that this
//! service's own subscribers pass it over.

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

    /// Sends `events` like [`Publish::publish_all`]; the last one is handled by this process
    /// itself, without a trip over the bus (an `action.triggered` its action role runs, an
    /// `action.finished` its remediator takes). A transport this service also consumes marks
    /// it, so that the service's own subscribers, in this process and in other replicas, pass
    /// it over; everyone else receives it as usual. Every implementation must forward the
    /// mark: sent unmarked, the event would be handled twice.
    fn publish_all_handled_here(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Sends `events` like [`Publish::publish_all_handled_here`], but returns once they are
    /// sent, with the transport's confirmation that it took them still to be awaited: the
    /// caller may start work that does not depend on it (switching a flag) meanwhile, and
    /// awaits it before anything that must follow them on the bus. A transport that does not
    /// confirm (core NATS) or confirms while sending returns a confirmation already given.
    fn send_all_handled_here(
        &self,
        events: Vec<Event>,
    ) -> BoxFuture<'_, anyhow::Result<Confirmation>> {
        Box::pin(async move {
            self.publish_all_handled_here(events).await?;
            Ok(confirmed())
        })
    }
}

/// The confirmation of events sent with [`Publish::send_all_handled_here`], still to come.
pub type Confirmation = BoxFuture<'static, anyhow::Result<()>>;

/// A confirmation already given.
pub fn confirmed() -> Confirmation {
    Box::pin(async { Ok(()) })
}

/// This process's own action role, reached without the bus (wired by the service when it runs
/// the remediator and the action role together).
pub trait ActionsHere: Send + Sync {
    /// Room to run an action named `action` in this process now, or `None`: the role does not
    /// run such actions here, all its permits are taken, or the event being handled would not
    /// be kept until the action ends (then a crash could lose the action; it goes over the
    /// bus instead).
    fn reserve(&self, action: &str) -> Option<Box<dyn RunHere>>;

    /// `action` (about `scope`) is about to be claimed and may then run here: what it will
    /// read can be read meanwhile. Nothing by default.
    fn read_ahead(&self, _action: &crate::keptn::ActionInfo, _scope: &crate::keptn::Scope) {}

    /// Whether the event being handled was delivered before without being acknowledged (the
    /// process handling it stopped, or its handling failed): an action it had handed to this
    /// role may not have ended.
    fn redelivered(&self) -> bool;

    /// Whether the event being handled is kept by its transport (JetStream, unacknowledged)
    /// until the actions it hands to this role have ended and their ends are handled: a crash
    /// before then delivers it again. `false` by default.
    fn kept(&self) -> bool {
        false
    }
}

/// A reserved run of one action in this process.
pub trait RunHere: Send {
    /// Runs `event`, an `action.triggered` sent on the bus (with
    /// [`Publish::send_all_handled_here`]) and confirmed by `stored`, and its `action.finished`
    /// back into the remediator. The action starts at once; its replies go out only once
    /// `stored` is given, so they follow the `action.triggered` on the bus, and a `stored` that
    /// fails fails the run. It runs in the background; when the transport keeps the event that
    /// led to it until its handling ends (JetStream), that wait includes this run, and a
    /// failure hands that event back for a redelivery (the action then runs again, under the
    /// same id: switching a flag to the state it has is harmless).
    fn run(self: Box<Self>, event: Event, stored: Confirmation);
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

    /// Nobody consumes from a collector, so there is nothing to mark.
    fn publish_all_handled_here(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        self.publish_all(events)
    }
}
