//! Several replicas: without JetStream the remediation state is per process, so a second
//! remediator in the same group is refused with a message saying how to run several.

use crate::common::FOREIGN;
use crate::common::{Service, resource_dir};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::free_port;

/// A nats-server without JetStream, killed on drop.
struct CoreNats(Child, u16);

impl Drop for CoreNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn core_nats() -> CoreNats {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is not installed: apt-get install -y nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    CoreNats(child, port)
}

#[tokio::test]
async fn without_jetstream_a_second_remediator_is_refused() {
    let nats = core_nats();
    let dir = resource_dir(Some(FOREIGN), None);
    let env = vec![
        ("NATS_URL", format!("nats://127.0.0.1:{}", nats.1)),
        ("RESOURCE_DIR", dir.path().display().to_string()),
    ];
    let mut first = Service::spawn(&env);
    first.wait_ready().await;
    let second = Service::spawn(&env);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !second.log().contains("another remediator") {
        assert!(
            Instant::now() < deadline,
            "second replica not refused:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(second.log().contains("JetStream"), "{}", second.log());
    assert_ne!(second.get("/ready").await.0, 200);
    // The first one keeps running; a replica without the remediator role is fine.
    assert_eq!(first.get("/ready").await.0, 200);
    let mut action_only = env.clone();
    action_only.push(("ROLES", "action".to_owned()));
    let mut third = Service::spawn(&action_only);
    third.wait_ready().await;
}
