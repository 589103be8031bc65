//! One contract for both state backends: the in-process store and the JetStream key-value
//! bucket of a real nats-server. The remediator relies on exactly these answers.

use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::nats::NatsServer;
use unleash_remediation_service::keptn::outgoing::Outcome;
use unleash_remediation_service::keptn::{ActionInfo, Scope};
use unleash_remediation_service::state::{
    Actions, Cas, Claim, Closing, Finish, MEMORY_RECORDS, Phase, Record, Store, problem_key,
};

fn scope() -> Scope {
    Scope {
        project: "website".into(),
        stage: "production".into(),
        service: "front-end".into(),
    }
}

fn actions() -> Actions {
    let toggle = |state: &str| ActionInfo {
        name: "Serve the static page".into(),
        action: "toggle-feature".into(),
        description: "Switch EnableStaticContent".into(),
        value: json!({ "EnableStaticContent": state }),
    };
    Actions {
        on_open: vec![toggle("on")],
        on_close: vec![toggle("off")],
    }
}

fn record(opened_by: &str, phase: Phase) -> Record {
    Record {
        phase,
        opened_by: opened_by.into(),
        scope: scope(),
        labels: BTreeMap::from([("team".to_owned(), "shop".to_owned())]),
        problem: json!({ "ProblemID": opened_by, "ProblemTitle": "Failure rate increase", "State": "OPEN" }),
        keptn_context: "9a1e2b3c-0000-4000-8000-000000000001".into(),
        git_commit_id: None,
        remediation_triggered_id: format!("{opened_by}-triggered"),
        action_index: 0,
        action_triggered_id: None,
        action_label: String::new(),
        deadline_ms: 0,
        last_error: String::new(),
        started_ms: 1_700_000_000_000,
        actions: None,
        finish: None,
        closing: None,
    }
}

fn same(a: &Record, b: &Record) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

fn key(problem: &str) -> String {
    problem_key(&scope(), problem)
}

/// The contract, run against `store`.
async fn contract(store: &Store) {
    // A claim creates once; the same event again sees its own record; another event does not
    // get the problem.
    let k = key("P-1");
    let fresh = record("open-1", Phase::Starting);
    let Claim::Created(rev) = store.claim(&k, &fresh).await.unwrap() else {
        panic!("a fresh problem must be claimed")
    };
    match store.claim(&k, &fresh).await.unwrap() {
        Claim::Exists(r, at) => {
            assert!(same(&r, &fresh), "the stored record is the claimed one");
            assert_eq!(at, rev);
        }
        other => panic!("the same event again must see its record, got {other:?}"),
    }
    match store
        .claim(&k, &record("open-2", Phase::Starting))
        .await
        .unwrap()
    {
        Claim::Exists(r, _) => assert_eq!(r.opened_by, "open-1"),
        Claim::Taken => {}
        Claim::Created(_) => panic!("a claimed problem must not be claimed twice"),
    }
    // What the claim would refuse is known without a round trip; the claimer itself and an
    // unknown problem are not refused.
    assert!(store.claimed_by_other(&k, "open-2"));
    assert!(!store.claimed_by_other(&k, "open-1"));
    assert!(!store.claimed_by_other(&key("P-never"), "open-2"));

    // Compare-and-set: the revision read wins once; a stale one changes nothing.
    let mut waiting = fresh.clone();
    waiting.phase = Phase::Waiting;
    waiting.action_triggered_id = Some("action-1".into());
    waiting.action_label = "\"toggle-feature\"".into();
    waiting.actions = Some(actions());
    waiting.git_commit_id = Some("abc123".into());
    let Cas::Written(rev2) = store.update(&k, &waiting, rev).await.unwrap() else {
        panic!("an update at the current revision must be written")
    };
    assert_ne!(rev2, rev, "a write gives a new revision");
    let mut stale = waiting.clone();
    stale.last_error = "stale".into();
    assert_eq!(store.update(&k, &stale, rev).await.unwrap(), Cas::Conflict);
    let (now, at) = store.get(&k).await.unwrap().expect("the record is there");
    assert_eq!(at, rev2);
    assert!(same(&now, &waiting), "every member comes back as written");

    // Action links, handled ids, pending remediations.
    store.link_action("action-1", &k).await.unwrap();
    assert_eq!(
        store.action_owner("action-1").await.unwrap(),
        Some(k.clone())
    );
    assert_eq!(store.action_owner("never-sent").await.unwrap(), None);
    // An OPEN's claim with its first action fixed links the action's id to the problem;
    // another event's is refused; an event handled before is not claimed again.
    let kl = key("P-linked");
    let mut first = record("open-linked", Phase::Waiting);
    first.action_triggered_id = Some("action-linked".into());
    first.actions = Some(actions());
    let Some(Claim::Created(_)) = store.claim_open(&kl, &first).await.unwrap() else {
        panic!("a fresh problem must be claimed with its action")
    };
    assert_eq!(
        store.action_owner("action-linked").await.unwrap(),
        Some(kl.clone())
    );
    let (stored, _) = store.get(&kl).await.unwrap().expect("claimed");
    assert!(same(&stored, &first), "claimed as written, waiting");
    let other = record("open-linked-2", Phase::Waiting);
    assert!(matches!(
        store.claim_open(&kl, &other).await.unwrap(),
        Some(Claim::Exists(..) | Claim::Taken)
    ));
    store.remember("open-replayed").await.unwrap();
    let replayed = record("open-replayed", Phase::Starting);
    assert!(
        store
            .claim_open(&key("P-replayed"), &replayed)
            .await
            .unwrap()
            .is_none(),
        "a handled OPEN claims nothing"
    );
    assert!(store.get(&key("P-replayed")).await.unwrap().is_none());
    assert!(!store.handled("event-1").await.unwrap());
    store.remember("event-1").await.unwrap();
    assert!(store.handled("event-1").await.unwrap());
    assert!(!store.handled("event-2").await.unwrap());

    let k2 = key("P-2");
    let Claim::Created(r2) = store
        .claim(&k2, &record("open-3", Phase::Starting))
        .await
        .unwrap()
    else {
        panic!("another problem is claimed on its own")
    };
    let mut finishing = record("open-3", Phase::Finishing);
    finishing.finish = Some(Finish {
        outcome: Outcome::Errored,
        message: "no action".into(),
    });
    finishing.closing = Some(Closing {
        event_id: "close-3".into(),
        git_commit_id: None,
    });
    assert!(matches!(
        store.update(&k2, &finishing, r2).await.unwrap(),
        Cas::Written(_)
    ));
    let k3 = key("P-3");
    assert!(matches!(
        store
            .claim(&k3, &record("open-4", Phase::Starting))
            .await
            .unwrap(),
        Claim::Created(_)
    ));
    let mut pending: Vec<String> = store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(key, r)| {
            assert!(matches!(r.phase, Phase::Waiting | Phase::Finishing));
            key
        })
        .collect();
    pending.sort();
    let mut expected = vec![k.clone(), k2.clone(), kl.clone()];
    expected.sort();
    assert_eq!(
        pending, expected,
        "waiting and finishing ones, not starting ones"
    );

    // Forgetting a problem frees it for a new remediation.
    store.forget(&k).await.unwrap();
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(!store.claimed_by_other(&k, "open-5"), "a forgotten claim");
    assert!(matches!(
        store
            .claim(&k, &record("open-5", Phase::Starting))
            .await
            .unwrap(),
        Claim::Created(_)
    ));
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(&Store::memory(Duration::from_secs(3600))).await;
}

#[tokio::test]
async fn the_key_value_store_keeps_the_contract() {
    let nats = NatsServer::start().expect("nats-server (scripts/test installs it)");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = Store::jetstream(&js, "contract", Duration::from_secs(3600))
        .await
        .unwrap();
    contract(&store).await;
}

/// Replicas share the bucket, not their caches: a replica that never saw an OPEN still finds
/// it handled once its problem was claimed (and closed since), while a new OPEN claims the
/// problem again. The handled-id read is only skipped over a key that holds nothing.
#[tokio::test]
async fn a_replica_does_not_claim_again_an_open_another_handled() {
    let nats = NatsServer::start().expect("nats-server (scripts/test installs it)");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ttl = Duration::from_secs(3600);
    let first = Store::jetstream(&js, "replicas", ttl).await.unwrap();
    let second = Store::jetstream(&js, "replicas", ttl).await.unwrap();
    let k = key("P-shared");
    let opened = record("open-shared", Phase::Starting);
    let Some(Claim::Created(_)) = first.claim_open(&k, &opened).await.unwrap() else {
        panic!("a fresh problem must be claimed")
    };
    first.remember("open-shared").await.unwrap();
    // While the record is there, and (to a replica that has not seen it either) after the
    // problem closed.
    for closed in [false, true] {
        if closed {
            first.forget(&k).await.unwrap();
        }
        let replica = Store::jetstream(&js, "replicas", ttl).await.unwrap();
        assert!(
            replica.claim_open(&k, &opened).await.unwrap().is_none(),
            "the replayed OPEN is handled (closed: {closed})"
        );
    }
    let reopened = record("open-again", Phase::Starting);
    assert!(matches!(
        second.claim_open(&k, &reopened).await.unwrap(),
        Some(Claim::Created(_))
    ));
}

/// The memory store stays within its bound: when full, the oldest finished remediations go
/// (and are counted), running ones stay, and past that new problems are refused with a reason.
#[tokio::test]
async fn the_memory_store_forgets_finished_remediations_first_when_full() {
    let store = Store::memory(Duration::from_secs(3600));
    let Store::Memory(memory) = &store else {
        unreachable!()
    };
    let running = key("running");
    let Claim::Created(rev) = store
        .claim(&running, &record("open-running", Phase::Starting))
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut waiting = record("open-running", Phase::Waiting);
    waiting.actions = Some(actions());
    assert!(matches!(
        store.update(&running, &waiting, rev).await.unwrap(),
        Cas::Written(_)
    ));
    for i in 0..MEMORY_RECORDS {
        let k = key(&format!("done-{i}"));
        let opened = format!("open-{i}");
        let Claim::Created(rev) = store
            .claim(&k, &record(&opened, Phase::Starting))
            .await
            .unwrap()
        else {
            panic!("problem {i} not claimed")
        };
        let mut done = record(&opened, Phase::Finished);
        done.actions = Some(actions());
        assert!(matches!(
            store.update(&k, &done, rev).await.unwrap(),
            Cas::Written(_)
        ));
    }
    let (records, bytes) = memory.usage();
    assert!(records <= MEMORY_RECORDS, "{records} records held");
    assert!(records > MEMORY_RECORDS / 2, "only {records} records held");
    assert!(
        bytes / records < 400,
        "{} bytes per record: the actions are held once, not per record",
        bytes / records
    );
    assert!(
        store.get(&running).await.unwrap().is_some(),
        "a running remediation is never forgotten to make room"
    );
    assert!(
        store.get(&key("done-0")).await.unwrap().is_none(),
        "the oldest finished one went first"
    );
    assert!(
        store
            .get(&key(&format!("done-{}", MEMORY_RECORDS - 1)))
            .await
            .unwrap()
            .is_some(),
        "the newest finished one is kept"
    );
}
