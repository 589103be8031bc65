//! Monitoring webhooks as pure translation: every stored Alertmanager, Grafana and Dynatrace
//! payload becomes the problems its producer meant (scope, title, state, id), and bad bodies
//! get a clear reason.

use serde_json::{Value, json};
use std::path::Path;
use unleash_remediation_service::keptn::{self, Incoming, Kind, ProblemEvent, ProblemState, Scope};
use unleash_remediation_service::monitoring::{
    self, AlertOutcome, Verdict, alertmanager, dynatrace, grafana,
};

fn raw(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn scope(project: &str, stage: &str, service: &str) -> Scope {
    Scope {
        project: project.into(),
        stage: stage.into(),
        service: service.into(),
    }
}

fn no_scope() -> Scope {
    Scope::default()
}

fn problems(outcomes: &[AlertOutcome]) -> Vec<(&Incoming, &ProblemEvent)> {
    outcomes
        .iter()
        .map(|o| match &o.verdict {
            Verdict::Problem(i) => match &i.kind {
                Kind::Problem(p) => (&**i, p),
                other => panic!("not a problem: {other:?}"),
            },
            other => panic!("alert {} is not a problem: {other:?}", o.index),
        })
        .collect()
}

fn rejection(o: &AlertOutcome) -> &keptn::DecodeError {
    match &o.verdict {
        Verdict::Rejected(e) => e,
        other => panic!("alert {} not rejected: {other:?}", o.index),
    }
}

fn details(p: &ProblemEvent) -> &Value {
    p.problem.0.get("ProblemDetails").expect("ProblemDetails")
}

#[test]
fn alertmanager_single_alert_firing_then_resolved_is_one_problem_opened_and_closed() {
    let q = scope("website", "production", "front-end");
    let firing = alertmanager::translate(
        &raw("alertmanager/single-alert-firing-pre0.19-no-fingerprint.json"),
        &q,
        1000,
    )
    .unwrap();
    let resolved = alertmanager::translate(
        &raw("alertmanager/single-alert-resolved-pre0.19-no-fingerprint.json"),
        &q,
        1000,
    )
    .unwrap();
    let (open_in, open) = problems(&firing)[0];
    let (close_in, close) = problems(&resolved)[0];
    // The firing alert has a future endsAt; status decides, never endsAt.
    assert_eq!(open.state, ProblemState::Open);
    assert_eq!(close.state, ProblemState::Closed);
    assert_eq!(open.scope, q);
    assert_eq!(
        open.problem.title(),
        Some("Fire"),
        "no summary: the alert name"
    );
    assert_eq!(open.problem.root_cause(), Some("Fire"));
    assert_eq!(open.problem.state(), Some("OPEN"));
    assert_eq!(close.problem.state(), Some("CLOSED"));
    // No fingerprint (before 0.19): the label set and startsAt identify it, in both messages.
    let id = open.problem.problem_id().unwrap();
    assert!(id.starts_with("alertmanager-"), "{id}");
    assert_eq!(close.problem.problem_id(), Some(id));
    assert_eq!(open.identity(), id, "the remediator keys on the derived id");
    assert_eq!(open_in.meta.keptn_context, close_in.meta.keptn_context);
    assert_ne!(open_in.meta.id, close_in.meta.id);
    assert_eq!(open_in.meta.source, "alertmanager");
    assert_eq!(
        open.problem.url(),
        Some("http://localhost:9090/graph?g0.expr=vector%28666%29&g0.tab=1")
    );
    let d = details(open);
    assert_eq!(d["source"], "alertmanager");
    assert_eq!(d["labels"]["severity"], "critical");
    assert_eq!(d["annotations"]["message"], "Something is on fire");
    assert_eq!(d["externalURL"], "http://localhost:9093");
    assert_eq!(d["startsAt"], "2018-11-04T22:43:58.283995108+01:00");
    // The same notification again is the same event (a duplicate for the remediator).
    let again = alertmanager::translate(
        &raw("alertmanager/single-alert-firing-pre0.19-no-fingerprint.json"),
        &q,
        1000,
    )
    .unwrap();
    assert_eq!(problems(&again)[0].0.meta, open_in.meta);
}

#[test]
fn alertmanager_group_of_ten_is_ten_problems_and_without_scope_ten_rejections() {
    let body = raw("alertmanager/grouped-10-alerts-firing-groupkey-empty.json");
    let q = scope("infra", "production", "");
    let out = alertmanager::translate(&body, &q, 1000).unwrap();
    let ps = problems(&out);
    assert_eq!(ps.len(), 10);
    let mut ids: Vec<&str> = ps
        .iter()
        .map(|(_, p)| p.problem.problem_id().unwrap())
        .collect();
    assert!(
        ps.iter()
            .all(|(_, p)| p.state == ProblemState::Open && p.scope == q)
    );
    let titles: Vec<&str> = ps.iter().map(|(_, p)| p.problem.title().unwrap()).collect();
    assert_eq!(titles.iter().filter(|t| **t == "InstanceDown").count(), 9);
    // The one with a summary is titled by it; its root cause is still the alert name.
    let exporter = ps
        .iter()
        .find(|(_, p)| p.problem.root_cause() == Some("Exporter Down"))
        .unwrap();
    assert_eq!(exporter.1.problem.title(), Some("Exporter minio is down!"));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "distinct fingerprints are distinct problems");
    assert_eq!(details(ps[0].1)["fingerprint"], "3a14bc2cceb179a4");

    let out = alertmanager::translate(&body, &no_scope(), 1000).unwrap();
    assert_eq!(out.len(), 10);
    for o in &out {
        let e = rejection(o);
        assert_eq!(e.reason, "missing_scope");
        assert!(e.message.contains("project and stage"), "{}", e.message);
        assert!(o.problem_id.is_some(), "the alert is still identified");
    }
}

#[test]
fn prometheus_service_payloads_take_scope_from_labels_and_title_from_summary() {
    for (file, project, stage, service) in [
        (
            "prometheus-service/prometheus_alert.json",
            "sockshop",
            "production",
            "carts",
        ),
        (
            "prometheus-service/prometheus-firing.json",
            "e2e-project",
            "staging",
            "podtatoserver",
        ),
    ] {
        // Labels win over the query parameters.
        let out = alertmanager::translate(&raw(file), &scope("q", "q", "q"), 1000).unwrap();
        let (_, p) = problems(&out)[0];
        assert_eq!(p.scope, scope(project, stage, service), "{file}");
        assert_eq!(p.problem.title(), Some("response_time_p90"), "{file}");
        assert_eq!(p.state, ProblemState::Open, "{file}");
    }
}

#[test]
fn keptn_labels_win_over_plain_labels_field_by_field() {
    let body = json!({"version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "A", "keptn_project": "kp", "project": "p", "stage": "s"},
        "annotations": {"summary": "Failure rate increase"},
        "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "0000000000000001"
    }]});
    let out =
        alertmanager::translate(body.to_string().as_bytes(), &scope("q", "q", "qs"), 1000).unwrap();
    let (_, p) = problems(&out)[0];
    assert_eq!(p.scope, scope("kp", "s", "qs"));
    assert_eq!(p.problem.title(), Some("Failure rate increase"));
    assert_eq!(p.problem.root_cause(), Some("A"));
}

#[test]
fn a_new_firing_episode_of_the_same_series_is_a_new_problem() {
    let at = |starts: &str| {
        json!({"version": "4", "alerts": [{
            "status": "firing", "labels": {"alertname": "A"},
            "startsAt": starts, "fingerprint": "00000000000000ff"
        }]})
        .to_string()
    };
    let q = scope("p", "s", "");
    let one = alertmanager::translate(at("2026-01-01T00:00:00Z").as_bytes(), &q, 10).unwrap();
    let two = alertmanager::translate(at("2026-01-02T00:00:00Z").as_bytes(), &q, 10).unwrap();
    assert_ne!(one[0].problem_id, two[0].problem_id);
    assert_ne!(
        problems(&one)[0].0.meta.keptn_context,
        problems(&two)[0].0.meta.keptn_context
    );
}

#[test]
fn grafana_docs_example_keeps_values_and_links() {
    let out = grafana::translate(
        &raw("grafana/webhook-docs-example-2-alerts-firing.json"),
        &scope("website", "production", ""),
        1000,
    )
    .unwrap();
    let ps = problems(&out);
    assert_eq!(ps.len(), 2);
    let (incoming, p) = ps[0];
    assert_eq!(incoming.meta.source, "grafana");
    assert_eq!(
        p.problem.title(),
        Some("This alert was triggered for zone us-1")
    );
    assert_eq!(p.problem.root_cause(), Some("High memory usage"));
    assert_eq!(p.state, ProblemState::Open);
    assert!(p.problem.problem_id().unwrap().starts_with("grafana-"));
    assert_eq!(
        p.problem.url(),
        Some("https://play.grafana.org/alerting/1afz29v7z/edit")
    );
    let d = details(p);
    assert_eq!(d["source"], "grafana");
    assert_eq!(d["orgId"], 1);
    assert_eq!(d["values"]["C"], 1);
    assert_eq!(d["labels"]["zone"], "us-1");
    assert!(
        d["silenceURL"]
            .as_str()
            .unwrap()
            .contains("alerting/silence")
    );
    assert_eq!(d["externalURL"], "https://play.grafana.org/");
    assert!(
        d.get("dashboardUID").is_none(),
        "no dashboard in this alert"
    );
    assert_eq!(ps[1].1.problem.root_cause(), Some("High CPU usage"));
}

#[test]
fn grafana_default_payload_test_alert() {
    let out = grafana::translate(
        &raw("grafana/default-payload-1-alert-firing-alerting-test.json"),
        &scope("website", "production", ""),
        1000,
    )
    .unwrap();
    let (_, p) = problems(&out)[0];
    assert_eq!(p.problem.title(), Some("alert1"));
    assert_eq!(p.state, ProblemState::Open);
    let d = details(p);
    assert_eq!(d["orgId"], 1);
    assert_eq!(d["values"], Value::Null);
    assert_eq!(d["fingerprint"], "fac0861a85de433a");
}

#[test]
fn grafana_dashboard_and_panel_from_annotations_or_urls() {
    let body = json!({"version": "1", "orgId": 3, "alerts": [
        {"status": "firing", "labels": {"alertname": "A", "project": "p", "stage": "s"},
         "annotations": {"__dashboardUid__": "dash-1", "__panelId__": "12"},
         "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "1"},
        {"status": "resolved", "labels": {"alertname": "B", "project": "p", "stage": "s"},
         "dashboardURL": "https://g/d/xyz/name?orgId=3",
         "panelURL": "https://g/d/xyz/name?orgId=3&viewPanel=5",
         "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "2"}
    ]});
    let out = grafana::translate(body.to_string().as_bytes(), &no_scope(), 10).unwrap();
    let ps = problems(&out);
    assert_eq!(details(ps[0].1)["dashboardUID"], "dash-1");
    assert_eq!(details(ps[0].1)["panelId"], 12);
    assert_eq!(details(ps[0].1)["orgId"], 3);
    assert_eq!(details(ps[1].1)["dashboardUID"], "xyz");
    assert_eq!(details(ps[1].1)["panelId"], 5);
    assert_eq!(ps[1].1.state, ProblemState::Closed);
}

#[test]
fn grafana_signature_with_and_without_timestamp() {
    let body = br#"{"alerts":[]}"#;
    let hex = |mac: [u8; 32]| mac.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let plain = hex(grafana::hmac_sha256(b"s3cr3t", &[body]));
    assert_eq!(
        grafana::verify_signature(b"s3cr3t", body, Some(&plain), None),
        Ok(())
    );
    let stamped = hex(grafana::hmac_sha256(b"s3cr3t", &[b"1700000000:", body]));
    assert_eq!(
        grafana::verify_signature(b"s3cr3t", body, Some(&stamped), Some("1700000000")),
        Ok(())
    );
    assert!(grafana::verify_signature(b"s3cr3t", body, Some(&plain), Some("1700000000")).is_err());
    assert!(grafana::verify_signature(b"other", body, Some(&plain), None).is_err());
    assert!(grafana::verify_signature(b"s3cr3t", b"{}", Some(&plain), None).is_err());
    assert!(grafana::verify_signature(b"s3cr3t", body, None, None).is_err());
}

#[test]
fn dynatrace_test_notification_is_ignored() {
    let out = dynatrace::translate(
        &raw("dynatrace-notification/webhook-doc-example-test-run.json"),
        &scope("website", "production", ""),
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    match &out[0].verdict {
        Verdict::Ignored(why) => assert!(why.contains("test notification"), "{why}"),
        other => panic!("not ignored: {other:?}"),
    }
}

/// Fills a Dynatrace payload template as Dynatrace would for one problem.
fn render(template: &str, state: &str) -> String {
    let details = json!({"id": "-6478017825120311599_1641223491837V2", "displayId": "P-220123",
                         "status": if state == "OPEN" {"OPEN"} else {"CLOSED"}});
    template
        .replace("{State}", state)
        .replace("{ProblemID}", "P-220123")
        .replace("{PID}", "-6478017825120311599")
        .replace("{ProblemTitle}", "Failure rate increase")
        .replace(
            "{ProblemURL}",
            "https://abc.live.dynatrace.com/#problems/problemdetails;pid=-6478017825120311599_1641223491837V2",
        )
        .replace("{ProblemDetailsJSON}", &details.to_string())
        .replace(
            "{Tags}",
            "keptn_project:website, keptn_stage:production, keptn_service:front-end",
        )
        .replace("{ImpactedEntities}", r#"[{"type":"SERVICE","name":"front-end","entity":"SERVICE-1"}]"#)
        .replace("{ImpactedEntity}", "Failure rate increase on front-end")
        .replace("$KEPTN_PROJECT", "website")
}

#[test]
fn dynatrace_default_payload_uses_the_query_scope_and_the_display_id() {
    let template = String::from_utf8(raw(
        "dynatrace-notification/webhook-default-payload.template.json",
    ))
    .unwrap();
    let q = scope("website", "production", "front-end");
    let open = dynatrace::translate(render(&template, "OPEN").as_bytes(), &q).unwrap();
    let resolved = dynatrace::translate(render(&template, "RESOLVED").as_bytes(), &q).unwrap();
    let (oi, o) = problems(&open)[0];
    let (ci, c) = problems(&resolved)[0];
    assert_eq!(o.scope, q);
    assert_eq!(o.state, ProblemState::Open);
    assert_eq!(c.state, ProblemState::Closed);
    assert_eq!(o.problem.title(), Some("Failure rate increase"));
    // Only the display id is sent: it is the key.
    assert_eq!(o.problem.problem_id(), Some("P-220123"));
    assert_eq!(c.problem.problem_id(), Some("P-220123"));
    assert_eq!(oi.meta.keptn_context, ci.meta.keptn_context);
    assert_eq!(oi.meta.source, "dynatrace");
    assert_eq!(details(o)["source"], "dynatrace");
    // Without any scope: a clear rejection.
    let out = dynatrace::translate(render(&template, "OPEN").as_bytes(), &no_scope()).unwrap();
    assert_eq!(rejection(&out[0]).reason, "missing_scope");
}

#[test]
fn dynatrace_keptn_templates_key_on_the_full_problem_id_with_scope_from_tags() {
    for file in [
        "dynatrace-notification/keptn-problem-notification-config-0.6.template.json",
        "dynatrace-notification/keptn-problem-notification-config-0.27.template.json",
    ] {
        let config: Value = serde_json::from_slice(&raw(file)).unwrap();
        let template = config["payload"].as_str().unwrap();
        for (state, expected) in [
            ("OPEN", ProblemState::Open),
            ("RESOLVED", ProblemState::Closed),
        ] {
            let body = render(template, state);
            let out = dynatrace::translate(body.as_bytes(), &no_scope()).unwrap();
            let (incoming, p) = problems(&out)[0];
            assert_eq!(p.state, expected, "{file}");
            assert_eq!(
                p.scope,
                scope("website", "production", "front-end"),
                "{file}"
            );
            // 0.6 has no ProblemURL: ProblemDetailsJSON.id is the full id; 0.27 has both.
            assert_eq!(
                p.problem.problem_id(),
                Some("-6478017825120311599_1641223491837V2"),
                "{file}"
            );
            assert_eq!(p.problem.pid(), Some("-6478017825120311599"));
            assert_eq!(p.problem.0["ProblemDisplayID"], "P-220123");
            assert_eq!(details(p)["id"], "-6478017825120311599_1641223491837V2");
            assert_eq!(details(p)["source"], "dynatrace");
            assert_eq!(
                p.problem.0["ImpactedEntity"],
                "Failure rate increase on front-end"
            );
            assert_eq!(incoming.meta.source, "dynatrace");

            // The same body is a Keptn CloudEvent for /v1/event and NATS.
            let ev = keptn::decode_bytes(body.as_bytes()).unwrap();
            let Kind::Problem(kp) = ev.kind else {
                panic!("not a problem")
            };
            assert_eq!(kp.scope.project, "website", "{file}");
            assert_eq!(kp.scope.stage, "production", "{file}");
        }
    }
}

#[test]
fn dynatrace_problem_id_precedence() {
    let q = scope("p", "s", "");
    let id = |body: Value| {
        let out = dynatrace::translate(body.to_string().as_bytes(), &q).unwrap();
        problems(&out)[0].1.problem.problem_id().unwrap().to_owned()
    };
    let base = json!({"State": "OPEN", "ProblemTitle": "T", "ProblemID": "P-1"});
    assert_eq!(id(base.clone()), "P-1");
    let mut b = base.clone();
    b["PID"] = json!("123");
    assert_eq!(id(b.clone()), "123");
    b["ProblemDetailsJSON"] = json!({"id": "123_456V2"});
    assert_eq!(id(b.clone()), "123_456V2");
    b["ProblemURL"] = json!("https://t/#problems/problemdetails;pid=789_000V2");
    assert_eq!(id(b), "789_000V2");
    // Numbers are accepted as ids.
    assert_eq!(
        id(json!({"State": "OPEN", "ProblemTitle": "T", "PID": 42})),
        "42"
    );
}

#[test]
fn dynatrace_bad_notifications_are_rejected_with_reasons() {
    let q = scope("p", "s", "");
    let reason = |body: Value| {
        let out = dynatrace::translate(body.to_string().as_bytes(), &q).unwrap();
        let e = rejection(&out[0]).clone();
        (e.reason, e.message)
    };
    let (r, m) = reason(json!({"State": "MERGED", "ProblemTitle": "T", "PID": "1"}));
    assert_eq!(r, "invalid_data");
    assert!(m.contains("MERGED"), "{m}");
    let (_, m) = reason(json!({"ProblemTitle": "T", "PID": "1"}));
    assert!(m.contains("no State"), "{m}");
    let (_, m) = reason(json!({"State": "OPEN", "ProblemTitle": "T"}));
    assert!(m.contains("no problem id"), "{m}");
    let (_, m) = reason(json!({"State": "OPEN", "ProblemTitle": ["T"], "PID": "1"}));
    assert!(m.contains("ProblemTitle"), "{m}");
    assert_eq!(
        dynatrace::translate(b"[1,2]", &q).unwrap_err().reason,
        "invalid_body"
    );
}

#[test]
fn bad_bodies_are_refused_as_a_whole_with_a_reason() {
    let q = scope("p", "s", "");
    let err = |body: &[u8]| alertmanager::translate(body, &q, 1000).unwrap_err();
    assert_eq!(err(b"{not json").reason, "not_json");
    assert_eq!(err(b"\"text\"").reason, "invalid_body");
    assert_eq!(err(br#"{"version":"4"}"#).reason, "invalid_body");
    let e = err(br#"{"alerts":"many"}"#);
    assert!(
        e.message.contains("`alerts` must be an array"),
        "{}",
        e.message
    );
    // A CloudEvent sent to the wrong path says what is missing.
    assert!(
        err(&raw("tutorial/problemopen.json"))
            .message
            .contains("`alerts` is missing")
    );

    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"status": "firing", "labels": {"alertname": format!("a{i}")}}))
        .collect();
    let body = json!({"version": "4", "alerts": many}).to_string();
    let e = alertmanager::translate(body.as_bytes(), &q, 1000).unwrap_err();
    assert_eq!(e.reason, "too_many_alerts");
    assert!(e.message.contains("10000 alerts"), "{}", e.message);
    assert_eq!(
        grafana::translate(body.as_bytes(), &q, 1000)
            .unwrap_err()
            .reason,
        "too_many_alerts"
    );
}

#[test]
fn bad_alerts_are_rejected_one_by_one() {
    let big = "x".repeat(monitoring::MAX_ALERT_BYTES + 1);
    let body = json!({"version": "4", "alerts": [
        "not an alert",
        {"status": "firing", "labels": {"alertname": 5}},
        {"status": "firing", "labels": "alertname=A"},
        {"status": "pending", "labels": {"alertname": "A"}},
        {"status": "firing", "labels": {"alertname": "A", "huge": big}},
        {"status": "firing", "labels": {"severity": "page"}},
        {"status": "firing", "labels": {"alertname": "Fine"}, "startsAt": "2026-01-01T00:00:00Z"}
    ]});
    let out =
        alertmanager::translate(body.to_string().as_bytes(), &scope("p", "s", ""), 1000).unwrap();
    let reasons: Vec<&str> = out[..6].iter().map(|o| rejection(o).reason).collect();
    assert_eq!(
        reasons,
        [
            "invalid_data",
            "invalid_data",
            "invalid_data",
            "invalid_data",
            "too_large",
            "invalid_data"
        ]
    );
    assert!(
        rejection(&out[1])
            .message
            .contains("labels.alertname` must be a string")
    );
    assert!(rejection(&out[3]).message.contains("pending"));
    assert!(
        rejection(&out[5])
            .message
            .contains("neither annotations.summary nor labels.alertname")
    );
    assert!(
        rejection(&out[0])
            .message
            .starts_with("alert 0 of the alertmanager notification")
    );
    assert_eq!(problems(&out[6..])[0].1.problem.title(), Some("Fine"));
}

#[test]
fn keptn_api_contexts_follow_keptn() {
    // The stored Keptn API answer for Dynatrace's test PID.
    assert_eq!(
        monitoring::keptn_context_from("99999"),
        "39393939-3920-4020-a020-202020202020"
    );
    let u = "0b8d2e8c-1d3a-4e55-9a1e-2f3c4d5e6f70";
    assert_eq!(monitoring::keptn_context_from(u), u);
    let long = monitoring::keptn_context_from("-6478017825120311599_1641223491837V2");
    assert!(uuid::Uuid::parse_str(&long).is_ok());
    assert_eq!(
        long,
        monitoring::keptn_context_from("-6478017825120311599_1641223491837V2")
    );
}

#[test]
fn query_scope_reads_project_stage_service() {
    assert_eq!(
        monitoring::query_scope("project=web%20site&stage=prod&service=carts&x=1"),
        scope("web site", "prod", "carts")
    );
    assert_eq!(monitoring::query_scope(""), no_scope());
}

#[test]
fn legacy_grafana_alerting_is_named() {
    let legacy = json!({"evalMatches": [{"value": 100, "metric": "High value"}], "ruleId": 0,
        "ruleName": "Test notification", "state": "alerting", "title": "[Alerting] Test notification"});
    let e = grafana::translate(legacy.to_string().as_bytes(), &no_scope(), 10).unwrap_err();
    assert!(
        e.message.contains("legacy Grafana alerting"),
        "{}",
        e.message
    );
}

#[test]
fn loopback_addresses_need_no_token() {
    use unleash_remediation_service::service::is_loopback;
    for addr in [
        "127.0.0.1:8080",
        "[::1]:8080",
        "localhost:8080",
        "127.0.0.2:1",
    ] {
        assert!(is_loopback(addr), "{addr}");
    }
    for addr in [
        "0.0.0.0:8080",
        "[::]:8080",
        "10.0.0.5:8080",
        "myhost:8080",
        ":8080",
    ] {
        assert!(!is_loopback(addr), "{addr}");
    }
}

#[test]
fn grafana_test_notification_is_ignored() {
    // What a contact point's "Test" button sends (grafana's receiver test fixture).
    let body = json!({"version": "1", "orgId": 1, "status": "firing", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "TestAlert", "grafana_folder": "Test Folder", "instance": "Grafana"},
        "annotations": {"summary": "Notification test",
                        "__value_string__": "[ metric='foo' labels={instance=bar} value=10 ]"},
        "startsAt": "2026-03-30T09:15:43.485120482Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "?orgId=1", "fingerprint": "326ea703b01f6100"
    }]});
    let out = grafana::translate(
        body.to_string().as_bytes(),
        &scope("website", "production", ""),
        10,
    )
    .unwrap();
    match &out[0].verdict {
        Verdict::Ignored(why) => assert!(why.contains("test notification"), "{why}"),
        other => panic!("not ignored: {other:?}"),
    }
}

#[test]
fn every_stored_webhook_payload_is_read_by_a_test_here() {
    let this = include_str!("webhooks.rs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut unused = Vec::new();
    for dir in ["alertmanager", "grafana", "dynatrace-notification"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("vector directory") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !this.contains(&format!("{dir}/{name}")) {
                unused.push(format!("{dir}/{name}"));
            }
        }
    }
    assert!(unused.is_empty(), "payloads no test reads: {unused:?}");
}
