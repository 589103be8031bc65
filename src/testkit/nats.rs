//! A real `nats-server -js` on a free port.
