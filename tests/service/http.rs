//! HTTP ingest (docs/design.md §7): the same pipeline as NATS.

use crate::common::{FOREIGN, spawn_responder};
use crate::common::{Fixture, problem_open};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_accepts_structured_and_binary_and_rejects_bad_input() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let svc = fx
        .in_process(&["--http-token=let-me-in", "--http-body-limit=4096"])
        .await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let http = reqwest::Client::new();

    // Structured mode, on POST / (where Keptn's distributor posts).
    let structured = problem_open("Pass me", "http-structured");
    let r = http
        .post(format!("{}/", svc.http))
        .header("content-type", "application/cloudevents+json")
        .header("x-token", "let-me-in")
        .body(serde_json::to_vec(&structured).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // Binary mode, on POST /events.
    let binary = problem_open("Pass me", "http-binary");
    let r = http
        .post(format!("{}/events", svc.http))
        .header("x-token", "let-me-in")
        .header("ce-specversion", "1.0")
        .header("ce-id", binary["id"].as_str().unwrap())
        .header("ce-source", "test")
        .header("ce-type", "sh.keptn.event.problem.open")
        .header(
            "ce-shkeptncontext",
            binary["shkeptncontext"].as_str().unwrap(),
        )
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binary["data"]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());

    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            2,
            Duration::from_secs(10),
        )
        .await;
    let contexts: Vec<_> = finished
        .iter()
        .map(|e| e["shkeptncontext"].clone())
        .collect();
    assert!(contexts.contains(&structured["shkeptncontext"]));
    assert!(contexts.contains(&binary["shkeptncontext"]));

    // Bad JSON: 400 with a JSON reason.
    let r = http
        .post(format!("{}/events", svc.http))
        .header("x-token", "let-me-in")
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );

    // Missing or wrong token: 401.
    for token in [None, Some("wrong")] {
        let mut req = http
            .post(format!("{}/", svc.http))
            .body(serde_json::to_vec(&structured).unwrap());
        if let Some(t) = token {
            req = req.header("x-token", t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }

    // Over the body limit: 413.
    let mut big = problem_open("Pass me", "too-big");
    big["data"]["ProblemDetails"] = serde_json::json!("x".repeat(10_000));
    let r = http
        .post(format!("{}/", svc.http))
        .header("x-token", "let-me-in")
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(&big).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // Health and metrics.
    assert_eq!(svc.get("/health").await.0, 200);
    let (status, metrics) = svc.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("events_received_total"), "{metrics}");
    assert!(metrics.contains("http_unauthorized_total"), "{metrics}");
    svc.stop().await.expect("a clean stop");
}

/// Sends `request` on a new connection and reads until the server closes it or `within` ends;
/// what was read, or `None` when nothing came back in time.
async fn exchange(addr: &str, request: &[u8], within: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_unknown_paths_and_methods_and_bounds_slow_and_idle_clients() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let svc = fx.in_process(&[]).await;
    let addr = svc.http.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();

    // A known path with the wrong method: 405 naming the method it takes; an unknown path: 404.
    for (method, path, allow) in [
        (reqwest::Method::GET, "/events", "POST"),
        (reqwest::Method::PUT, "/webhooks/grafana", "POST"),
        (reqwest::Method::POST, "/health", "GET"),
        (reqwest::Method::DELETE, "/metrics", "GET"),
    ] {
        let r = http
            .request(method.clone(), format!("{}{path}", svc.http))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "method_not_allowed", "{body}");
    }
    let r = http
        .get(format!("{}/no/such/path", svc.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["reason"],
        "not_found"
    );

    // Headers that never end: the connection is closed after the header timeout (5 s), with
    // nothing handled.
    let started = std::time::Instant::now();
    let answer = exchange(
        &addr,
        b"POST / HTTP/1.1\r\nhost: x\r\n",
        Duration::from_secs(15),
    )
    .await;
    assert!(
        answer.is_some(),
        "a client that never ends its headers is not cut off"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // 1,024 connections that send nothing fill the listener; the next client is answered only
    // once the header timeout has closed them, and the service answers again after that.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(8192);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4096,
        "this test holds 2 × 1,025 sockets: raise the open-files limit (`ulimit -Hn`, now {})",
        limit.rlim_max
    );
    let mut idle = Vec::new();
    for _ in 0..1024 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let health = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let addr = addr.clone();
        async move { exchange(&addr, health, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "a 1,025th connection was served at once"
    );
    let answer = waiting
        .await
        .unwrap()
        .expect("answered once the idle connections are closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    assert_eq!(svc.get("/health").await.0, 200);
    svc.stop().await.expect("a clean stop");
}

/// A body that stops arriving is answered with 408 after the body timeout (30 s), and the
/// service answers other clients meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let svc = fx.in_process(&[]).await;
    let addr = svc.http.trim_start_matches("http://").to_owned();
    let started = std::time::Instant::now();
    let slow = tokio::spawn(async move {
        exchange(
            &addr,
            b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\n\
              content-length: 100\r\n\r\n{\"specversion\":",
            Duration::from_secs(45),
        )
        .await
    });
    // Meanwhile the service answers as usual.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = reqwest::get(format!("{}/health", svc.http)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(
        !slow.is_finished(),
        "the slow request was answered before its body timed out"
    );

    let answer = slow
        .await
        .unwrap()
        .expect("a body that stops arriving is never answered");
    let elapsed = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "not a 408 after {elapsed:?}: {answer}"
    );
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(40)).contains(&elapsed),
        "answered after {elapsed:?}, not after the 30 s body timeout"
    );
}
