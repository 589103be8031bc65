//! The demo's own flow (`./scripts/demo`), with every part real: NATS, PostgreSQL + Unleash
//! 8.2.0, the sample application with Unleash's Node SDK, Prometheus, Alertmanager and the
//! service binary with the repository's remediation.yaml and shipyard.yaml.

use std::path::PathBuf;
use std::time::Duration;
use testkit::sample_app::Page;
use testkit::tutorial::{self, Options, Step};
use unleash_remediation_service::keptn::types;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_story_happens_step_by_step() {
    let options = Options {
        service_binary: PathBuf::from(env!("CARGO_BIN_EXE_unleash-remediation-service")),
        root: testkit::repo_root(),
        verbose: false,
    };
    let report = tutorial::run(&options)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let at = |s: Step| {
        report
            .at(s)
            .unwrap_or_else(|| panic!("{s:?} did not happen"))
    };

    // Every step, in the story's order.
    let story = [
        Step::OwnPageServed,
        Step::FirstError,
        Step::ErrorRateRising,
        Step::AlertFiring,
        Step::ProblemOnNats,
        Step::FlagOn,
        Step::StaticPageServed,
        Step::AlertResolved,
        Step::FlagOff,
        Step::OwnPageServedAgain,
    ];
    // Prometheus and Unleash are sampled (every 250 ms and 100 ms, slower on a busy machine)
    // while events arrive as they are sent: an observation may lag behind the next one.
    let slack = tutorial::SAMPLING_SLACK;
    for pair in story.windows(2) {
        assert!(
            at(pair[0]) <= at(pair[1]) + slack,
            "{:?} after {:?}: {report:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        at(Step::ProblemOnNats) + slack >= at(Step::AlertFiring),
        "{report:?}"
    );
    assert!(
        at(Step::ProblemClosedOnNats) + slack >= at(Step::AlertResolved),
        "{report:?}"
    );
    assert!(
        at(Step::ProblemClosedOnNats) <= at(Step::FlagOff) + slack,
        "{report:?}"
    );
    assert!(
        at(Step::ErrorRateZero) >= at(Step::StaticPageServed),
        "{report:?}"
    );

    // The application's answer switched from its own page (failing) to the static page, and
    // back to its own page once the flag was off again.
    assert_eq!(
        report.pages,
        [Page::Own, Page::Error, Page::Static, Page::Own],
        "{report:?}"
    );

    // The SDK side: once Unleash's client API serves the flag on (it caches about a second
    // behind the admin API), the application's SDK sees it within its refresh interval (plus
    // up to 500 ms for sampling both every 100 ms and the requests on a busy machine).
    assert!(
        at(Step::FlagOn) <= at(Step::ClientApiOn) + slack,
        "{report:?}"
    );
    let sdk_lag = report
        .between(Step::ClientApiOn, Step::SdkSeesFlagOn)
        .unwrap();
    assert!(
        sdk_lag <= report.sdk_refresh + Duration::from_millis(500),
        "SDK saw the flag {sdk_lag:?} after the client API (refresh {:?}): {report:?}",
        report.sdk_refresh
    );
    assert!(
        at(Step::SdkSeesFlagOn) <= at(Step::StaticPageServed) + Duration::from_millis(500),
        "{report:?}"
    );

    // The Keptn conversation: one remediation for the OPEN problem, succeeded, and the close
    // action after the resolution.
    let count = |ty: &str| report.events.iter().filter(|e| e.as_str() == ty).count();
    assert_eq!(
        count(types::REMEDIATION_TRIGGERED),
        1,
        "{:?}",
        report.events
    );
    assert_eq!(count(types::REMEDIATION_FINISHED), 1, "{:?}", report.events);
    assert_eq!(report.remediations, ["succeeded/pass"]);
    assert_eq!(
        count(types::ACTION_TRIGGERED),
        2,
        "on, then off: {:?}",
        report.events
    );
    assert_eq!(count(types::ACTION_FINISHED), 2, "{:?}", report.events);

    // Short timings: the whole story in about a minute.
    assert!(
        at(Step::ErrorRateZero) < Duration::from_secs(90),
        "{report:?}"
    );
}
