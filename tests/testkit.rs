//! What the test kit itself promises the other suites: a server it calls ready is its own.

use std::net::{TcpListener, TcpStream};
use testkit::nats::NatsServer;

/// A nats-server whose port another process took meanwhile is not answered as ready: a
/// connection to the port alone would reach that other process (tests run side by side and
/// pick free ports the same way).
#[test]
fn a_nats_server_is_not_ready_on_a_port_another_process_holds() {
    let mut server = NatsServer::start().expect("nats-server (apt-get install -y nats-server)");
    let port = server.port();
    server.stop();
    let holder = TcpListener::bind(("127.0.0.1", port)).expect("the port, once the server left it");
    let e = server
        .start_again()
        .expect_err("ready on a port another process listens on");
    assert!(e.to_string().contains("taken"), "{e:#}");
    drop(holder);
    server
        .start_again()
        .expect("starts again once the port is free");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
}
