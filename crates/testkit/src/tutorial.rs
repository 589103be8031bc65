//! The whole tutorial with real parts, as `./scripts/demo` runs it and its test checks it.
//!
//! NATS (JetStream), PostgreSQL + Unleash 8.2.0, the sample application (Unleash's Node SDK
//! with a backend token), Prometheus scraping it with the repository's "Failure rate increase"
//! rule, Alertmanager posting to the service's `/webhooks/alertmanager` (bearer token,
//! `send_resolved: true`), and the service binary with the repository's `remediation.yaml` and
//! `shipyard.yaml`. Then: errors start, the alert fires, the service switches
//! `EnableStaticContent` on, the application serves the static page, the errors stop, the alert
//! resolves, and `actionsOnClose` switches the flag off again.
//!
//! [`run`] prints a timeline as it happens and returns a [`Report`] with the time of every
//! step; it fails when a step does not happen in time. Everything it starts is stopped when it
//! returns, also on an error or when the future is dropped (Ctrl-C).

use super::nats::NatsServer;
use super::prometheus::{Alertmanager, Prometheus, ScrapeJob};
use super::sample_app::{Page, SampleApp};
use super::service::ServiceProcess;
use super::unleash::{UnleashServer, UnleashVersion};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use unleash_remediation_service::config::Secret;
use unleash_remediation_service::keptn::types;
use unleash_remediation_service::unleash::{UnleashClient, UnleashConfig};

pub const FLAG: &str = "EnableStaticContent";
/// The alert's stage, and so the Unleash environment the service switches.
pub const ENVIRONMENT: &str = "production";
/// The repository's alerting rule; the demo shortens its `for:` and rate window.
pub const RULES: &str = "deploy/prometheus/failure-rate.rules.yml";
/// `for:` of the rule in the demo (the repository's file says 2m).
pub const ALERT_FOR: &str = "5s";
/// Rate window of the rule in the demo (the repository's file says 1m): how long the error rate
/// takes to fall back to zero.
pub const RATE_WINDOW: &str = "10s";
/// How often the sample application's SDK fetches the flags.
pub const SDK_REFRESH: Duration = Duration::from_secs(1);
/// Requests the traffic generator sends to the application per second.
const REQUESTS_PER_SECOND: u64 = 10;
/// How far two sampled observations may be out of order.
pub const SAMPLING_SLACK: Duration = Duration::from_secs(1);
/// Longest the whole story may take after the errors start.
const STORY_TIMEOUT: Duration = Duration::from_secs(150);

/// The steps, in the order they must happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    OwnPageServed,
    FirstError,
    ErrorRateRising,
    AlertFiring,
    ProblemOnNats,
    FlagOn,
    /// Unleash's client API (`/api/client/features`, what SDKs fetch) serves the flag on; it
    /// caches for about a second behind the admin API.
    ClientApiOn,
    SdkSeesFlagOn,
    StaticPageServed,
    AlertResolved,
    ProblemClosedOnNats,
    FlagOff,
    OwnPageServedAgain,
    /// The rule's threshold resolves the alert before the rate over the window has reached
    /// zero, so this comes after the static page, usually after the resolution too.
    ErrorRateZero,
}

impl Step {
    pub const ALL: [Step; 14] = [
        Step::OwnPageServed,
        Step::FirstError,
        Step::ErrorRateRising,
        Step::AlertFiring,
        Step::ProblemOnNats,
        Step::FlagOn,
        Step::ClientApiOn,
        Step::SdkSeesFlagOn,
        Step::StaticPageServed,
        Step::AlertResolved,
        Step::ProblemClosedOnNats,
        Step::FlagOff,
        Step::OwnPageServedAgain,
        Step::ErrorRateZero,
    ];

    fn text(self) -> &'static str {
        match self {
            Step::OwnPageServed => "app serves its own page (flag off)",
            Step::FirstError => "first 500 from the app",
            Step::ErrorRateRising => "error rate rising (Prometheus)",
            Step::AlertFiring => "alert firing in Prometheus",
            Step::ProblemOnNats => {
                "Alertmanager's notification: the service's problem OPEN on NATS"
            }
            Step::FlagOn => "flag on in Unleash",
            Step::ClientApiOn => "Unleash's client API (what SDKs fetch) serves the flag on",
            Step::SdkSeesFlagOn => "the app's SDK sees the flag on",
            Step::StaticPageServed => "app serves the static page",
            Step::ErrorRateZero => "error rate back to zero",
            Step::AlertResolved => "alert resolved in Prometheus",
            Step::ProblemClosedOnNats => {
                "Alertmanager's resolved notification: the service's problem CLOSED on NATS"
            }
            Step::FlagOff => "flag off in Unleash (actionsOnClose)",
            Step::OwnPageServedAgain => "app serves its own page again",
        }
    }
}

/// What happened, and when (measured from the start of the story).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: BTreeMap<Step, Duration>,
    /// Keptn event types seen on NATS, in arrival order.
    pub events: Vec<String>,
    /// The pages `/` answered, without repeats: e.g. own, error, static, own.
    pub pages: Vec<Page>,
    /// `remediation.finished` results (`status/result`), in order.
    pub remediations: Vec<String>,
    /// The sample application's SDK refresh interval in this run.
    pub sdk_refresh: Duration,
}

impl Report {
    pub fn at(&self, step: Step) -> Option<Duration> {
        self.steps.get(&step).copied()
    }

    /// `to - from`, when both happened.
    pub fn between(&self, from: Step, to: Step) -> Option<Duration> {
        Some(self.at(to)?.saturating_sub(self.at(from)?))
    }

    /// Steps that did not happen.
    pub fn missing(&self) -> Vec<Step> {
        Step::ALL
            .into_iter()
            .filter(|s| !self.steps.contains_key(s))
            .collect()
    }
}

/// Where the service binary and the repository are.
#[derive(Debug, Clone)]
pub struct Options {
    pub service_binary: PathBuf,
    pub root: PathBuf,
    /// Print the timeline (the demo) or stay quiet (the test).
    pub verbose: bool,
}

struct Printer {
    verbose: bool,
}

impl Printer {
    fn section(&self, text: &str) {
        if self.verbose {
            println!("\n== {text}");
        }
    }
    fn line(&self, text: &str) {
        if self.verbose {
            println!("  {text}");
        }
    }
    fn at(&self, at: Duration, text: &str) {
        if self.verbose {
            println!("  {:>6.1}s  {text}", at.as_secs_f64());
        }
    }
}

/// Runs the whole tutorial. Fails when a component does not start or a step does not happen;
/// the report so far is in the error's text.
pub async fn run(options: &Options) -> Result<Report> {
    let p = Printer {
        verbose: options.verbose,
    };
    p.section("starting everything on free loopback ports");
    let nats = NatsServer::start()?;
    p.line(&format!("nats-server (JetStream)  {}", nats.url()));
    let unleash = tokio::task::spawn_blocking(|| UnleashServer::start(UnleashVersion::V8))
        .await
        .context("starting Unleash")??;
    p.line(&format!(
        "Unleash {} (PostgreSQL) {}",
        unleash.version().npm_version(),
        unleash.base_url()
    ));
    // Unleash 8's advice: a personal access token for the admin API, a backend token for SDKs.
    let pat = unleash
        .create_personal_access_token()
        .await
        .context("creating a personal access token")?;
    let backend = unleash
        .create_backend_token(ENVIRONMENT)
        .await
        .context("creating a backend token")?;
    let client_api = (
        format!("{}/client/features", unleash.base_url()),
        backend.clone(),
    );
    let mut admin_config = UnleashConfig::new(unleash.base_url(), Secret::new(pat.clone()));
    admin_config.timeout = Duration::from_secs(10);
    let admin = UnleashClient::new(admin_config).context("Unleash admin client")?;
    admin
        .create_flag(FLAG)
        .await
        .with_context(|| format!("creating {FLAG}"))?;
    p.line(&format!(
        "flag {FLAG} created (off); tokens: a PAT for the service, a backend token for the app"
    ));

    let api = unleash.base_url();
    let app = tokio::task::spawn_blocking(move || SampleApp::start(&api, &backend, SDK_REFRESH))
        .await
        .context("starting the sample application")??;
    p.line(&format!(
        "sample app (unleash-client SDK, refresh {SDK_REFRESH:?})  {}",
        app.url()
    ));

    let http_addr = format!("127.0.0.1:{}", super::free_port());
    let webhook_token = Secret::new(uuid::Uuid::new_v4().simple().to_string());
    let mut service = start_service(options, &nats, &unleash, &pat, &http_addr, &webhook_token)?;
    service
        .wait_ready(Duration::from_secs(60), Duration::from_millis(100))
        .await?;
    p.line(&format!(
        "unleash-remediation-service  http://{http_addr} (remediation.yaml, shipyard.yaml from the repository)"
    ));

    let webhook = format!("http://{http_addr}/webhooks/alertmanager");
    let token = webhook_token.clone();
    let alertmanager =
        tokio::task::spawn_blocking(move || Alertmanager::start(&webhook, Some(&token)))
            .await
            .context("starting Alertmanager")??;
    p.line(&format!(
        "Alertmanager  {} → {http_addr}/webhooks/alertmanager (bearer token, send_resolved, group_wait/group_interval 1s)",
        alertmanager.url()
    ));
    let rules = demo_rules(&options.root)?;
    let jobs = vec![ScrapeJob::new("front-end", &[app.address()])];
    let am_url = alertmanager.url();
    let rule_file = rules.path.clone();
    let prometheus =
        tokio::task::spawn_blocking(move || Prometheus::start(&jobs, &[rule_file], Some(&am_url)))
            .await
            .context("starting Prometheus")??;
    p.line(&format!(
        "Prometheus  {} (scrapes the app every 1s; rule \"Failure rate increase\" from {RULES} with for: {ALERT_FOR}, rate[{RATE_WINDOW}])",
        prometheus.url()
    ));
    p.line(&format!(
        "short for: ({ALERT_FOR}), rate window ({RATE_WINDOW}) and Alertmanager group timings (1s) keep the run under about a minute; production values are minutes"
    ));

    let watcher = async_nats::connect(nats.url())
        .await
        .context("connecting to NATS to watch the events")?;
    let events = watcher
        .subscribe("sh.keptn.>")
        .await
        .context("subscribing to sh.keptn.>")?;
    watcher.flush().await.context("flushing the subscription")?;

    let story = Story {
        p: &p,
        app: &app,
        prometheus: &prometheus,
        admin: &admin,
        client_api,
        report: Report {
            sdk_refresh: SDK_REFRESH,
            ..Report::default()
        },
        start: Instant::now(),
        firing_seen: false,
    };
    let outcome = story.play(events, &mut service).await;

    p.section("stopping everything");
    let exit = tokio::task::block_in_place(|| service.terminate(Duration::from_secs(20)));
    drop(prometheus);
    drop(alertmanager);
    drop(app);
    drop(unleash);
    drop(nats);
    p.line(&match exit {
        Ok(status) => format!("service exited: {status}; Prometheus, Alertmanager, app, Unleash, PostgreSQL, nats-server stopped"),
        Err(e) => format!("service: {e:#}"),
    });
    outcome
}

/// The repository's rule with the demo's short `for:` and rate window, in a temporary file.
struct Rules {
    path: PathBuf,
}

impl Drop for Rules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn demo_rules(root: &Path) -> Result<Rules> {
    let file = root.join(RULES);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut out = String::new();
    let mut replaced_for = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("for:") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {ALERT_FOR}\n"));
            replaced_for = !rest.trim().is_empty();
            continue;
        }
        out.push_str(&line.replace("[1m]", &format!("[{RATE_WINDOW}]")));
        out.push('\n');
    }
    if !replaced_for || !out.contains(&format!("[{RATE_WINDOW}]")) {
        bail!(
            "{} no longer has a `for:` and a [1m] rate window; the demo shortens both",
            file.display()
        );
    }
    let path = std::env::temp_dir().join(format!(
        "urs-demo-rules-{}.yml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(Rules { path })
}

/// What the traffic generator saw.
#[derive(Default)]
struct Traffic {
    pages: Vec<(Page, Instant)>,
    errors: u64,
    requests: u64,
    failures: Vec<String>,
}

struct Story<'a> {
    p: &'a Printer,
    app: &'a SampleApp,
    prometheus: &'a Prometheus,
    admin: &'a UnleashClient,
    /// The client API's URL and a backend token for it.
    client_api: (String, String),
    report: Report,
    start: Instant,
    firing_seen: bool,
}

impl Story<'_> {
    fn record(&mut self, step: Step, detail: &str) {
        self.record_at(step, Instant::now(), detail);
    }

    fn record_at(&mut self, step: Step, when: Instant, detail: &str) {
        if self.report.steps.contains_key(&step) {
            return;
        }
        let at = when.saturating_duration_since(self.start);
        self.report.steps.insert(step, at);
        let text = if detail.is_empty() {
            step.text().to_owned()
        } else {
            format!("{}: {detail}", step.text())
        };
        self.p.at(at, &format!("▶ {text}"));
    }

    async fn play(
        mut self,
        events: async_nats::Subscriber,
        service: &mut ServiceProcess,
    ) -> Result<Report> {
        self.p.section("the story (seconds since the start)");
        let page = self.app.page().await?;
        if page != Page::Own {
            bail!("before any error the app should serve its own page, it served {page:?}");
        }
        self.report.pages.push(Page::Own);
        self.record(Step::OwnPageServed, "GET / → 200, X-Page: own");

        // Observers in their own tasks, each noting when it saw something: the traffic
        // generator (GET / ten times a second), the flag as Unleash and the app's SDK see it
        // (ten times a second), and the Keptn events on NATS.
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let flags = Arc::new(Mutex::new(Vec::<(FlagSeen, Instant)>::new()));
        let (event_tx, mut event_rx) = tokio::sync::mpsc::unbounded_channel();
        let _tasks = Tasks(vec![
            tokio::spawn(generate(self.app.url(), traffic.clone())),
            tokio::spawn(watch_flag(
                self.admin.clone(),
                self.client_api.clone(),
                self.app.url(),
                flags.clone(),
            )),
            tokio::spawn(forward_events(events, event_tx)),
        ]);

        self.p.at(
            self.start.elapsed(),
            "  the app's own page now fails (POST /admin/errors?on=1); traffic: 10 requests/s",
        );
        self.app.set_errors(true).await?;

        let deadline = tokio::time::Instant::now() + STORY_TIMEOUT;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut seen_pages, mut seen_flags) = (0, 0);
        let mut errors_switched_off = false;
        loop {
            tokio::select! {
                event = event_rx.recv() => {
                    let (event, when) = event.context("the NATS subscription ended")?;
                    self.on_event(&event, when);
                }
                _ = tick.tick() => {
                    let new: Vec<(Page, Instant)> = {
                        let t = traffic.lock().expect("traffic lock");
                        if let Some(f) = t.failures.last() {
                            bail!("the traffic generator failed: {f}");
                        }
                        t.pages[seen_pages..].to_vec()
                    };
                    seen_pages += new.len();
                    for (page, when) in new {
                        self.on_page(page, when);
                    }
                    let new: Vec<(FlagSeen, Instant)> =
                        flags.lock().expect("flags lock")[seen_flags..].to_vec();
                    seen_flags += new.len();
                    for (seen, when) in new {
                        self.on_flag(seen, when);
                    }
                    self.poll().await;
                    if self.report.at(Step::StaticPageServed).is_some() && !errors_switched_off {
                        // The flag keeps visitors away from the failing page; meanwhile the
                        // fault is fixed, so the dynamic site can come back.
                        self.app.set_errors(false).await?;
                        errors_switched_off = true;
                        self.p.at(self.start.elapsed(), "  the fault behind the errors is fixed (POST /admin/errors?on=0)");
                    }
                    if self.report.missing().is_empty() {
                        break;
                    }
                    if let Some(status) = service.exited()? {
                        bail!("the service exited ({status}); its log ends with:\n{}", service.log_tail(30));
                    }
                    if tokio::time::Instant::now() > deadline {
                        bail!(
                            "the story did not finish within {STORY_TIMEOUT:?}; missing steps: {:?}\nservice log:\n{}\nPrometheus log:\n{}",
                            self.report.missing(),
                            service.log_tail(20),
                            self.prometheus.log_tail(10)
                        );
                    }
                }
            }
        }
        let (requests, errors) = {
            let t = traffic.lock().expect("traffic lock");
            (t.requests, t.errors)
        };
        self.p.line(&format!(
            "traffic: {requests} requests, {errors} answered 500"
        ));
        let order: Vec<Step> = {
            let mut by_time: Vec<(Duration, Step)> =
                self.report.steps.iter().map(|(s, d)| (*d, *s)).collect();
            by_time.sort();
            by_time.into_iter().map(|(_, s)| s).collect()
        };
        for pair in [
            (Step::FirstError, Step::AlertFiring),
            (Step::AlertFiring, Step::FlagOn),
            (Step::FlagOn, Step::StaticPageServed),
            (Step::StaticPageServed, Step::AlertResolved),
            (Step::StaticPageServed, Step::ErrorRateZero),
            (Step::AlertResolved, Step::FlagOff),
            (Step::FlagOff, Step::OwnPageServedAgain),
        ] {
            // Prometheus is sampled every 250 ms (slower when the machine is busy), Unleash
            // every 100 ms: an observation may lag behind the next step's by that much.
            let (a, b) = (self.report.at(pair.0), self.report.at(pair.1));
            if let (Some(a), Some(b)) = (a, b)
                && a > b + SAMPLING_SLACK
            {
                bail!("{:?} happened after {:?}: {order:?}", pair.0, pair.1);
            }
        }
        Ok(self.report)
    }

    fn on_flag(&mut self, seen: FlagSeen, when: Instant) {
        let detail = format!("{FLAG} in {ENVIRONMENT}");
        match seen {
            FlagSeen::UnleashOn => self.record_at(Step::FlagOn, when, &detail),
            FlagSeen::UnleashOff if self.report.at(Step::FlagOn).is_some() => {
                self.record_at(Step::FlagOff, when, &detail)
            }
            FlagSeen::ClientApiOn if self.report.at(Step::FlagOn).is_some() => {
                self.record_at(Step::ClientApiOn, when, "GET /api/client/features")
            }
            FlagSeen::SdkOn if self.report.at(Step::FlagOn).is_some() => {
                self.record_at(Step::SdkSeesFlagOn, when, "GET /flag → enabled: true")
            }
            _ => {}
        }
    }

    fn on_page(&mut self, page: Page, when: Instant) {
        if self.report.pages.last() != Some(&page) {
            self.report.pages.push(page);
        }
        match page {
            Page::Error => self.record_at(Step::FirstError, when, "GET / → 500"),
            Page::Static => {
                self.record_at(Step::StaticPageServed, when, "GET / → 200, X-Page: static")
            }
            Page::Own if self.report.at(Step::FlagOff).is_some() => {
                self.record_at(Step::OwnPageServedAgain, when, "GET / → 200, X-Page: own")
            }
            Page::Own => {}
        }
    }

    /// Prometheus's error rate and alerts, four times a second.
    async fn poll(&mut self) {
        let ratio = self
            .prometheus
            .query(&format!(
                "sum(rate(http_requests_total{{job=\"front-end\",code=~\"5..\"}}[{RATE_WINDOW}])) / sum(rate(http_requests_total{{job=\"front-end\"}}[{RATE_WINDOW}]))"
            ))
            .await
            .ok()
            .and_then(|r| r.first().cloned())
            .and_then(|v| v["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()));
        if let Some(ratio) = ratio.filter(|r| r.is_finite()) {
            if ratio > 0.0 && self.report.at(Step::FirstError).is_some() {
                self.record(
                    Step::ErrorRateRising,
                    &format!("{:.0}% of requests failing", ratio * 100.0),
                );
            }
            if ratio == 0.0 && self.report.at(Step::StaticPageServed).is_some() {
                self.record(Step::ErrorRateZero, "0% of requests failing");
            }
        }
        if let Ok(alerts) = self.prometheus.alerts().await {
            let ours: Vec<&Value> = alerts
                .iter()
                .filter(|a| a["labels"]["alertname"] == "FailureRateIncrease")
                .collect();
            let firing = ours.iter().any(|a| a["state"] == "firing");
            if firing {
                self.firing_seen = true;
                let summary = ours[0]["annotations"]["summary"].as_str().unwrap_or("");
                self.record(
                    Step::AlertFiring,
                    &format!("FailureRateIncrease ({summary:?})"),
                );
            } else if self.firing_seen && ours.is_empty() {
                self.record(Step::AlertResolved, "no FailureRateIncrease alert any more");
            }
        }
    }

    fn on_event(&mut self, event: &Value, when: Instant) {
        let ty = event["type"].as_str().unwrap_or("?").to_owned();
        self.report.events.push(ty.clone());
        let data = &event["data"];
        let problem = if data["problem"].is_object() {
            &data["problem"]
        } else {
            data
        };
        let mut parts = vec![format!("from {}", event["source"].as_str().unwrap_or("?"))];
        if let Some(title) = problem["ProblemTitle"].as_str() {
            parts.push(format!(
                "{title:?} {}",
                problem["State"].as_str().unwrap_or("")
            ));
        }
        if ty == types::ACTION_TRIGGERED {
            parts.push(format!(
                "{} {}",
                data["action"]["action"].as_str().unwrap_or("?"),
                data["action"]["value"]
            ));
        }
        if let (Some(status), Some(result)) = (data["status"].as_str(), data["result"].as_str()) {
            parts.push(format!("{status}/{result}"));
            if ty == types::REMEDIATION_FINISHED {
                self.report.remediations.push(format!("{status}/{result}"));
            }
        }
        if let Some(message) = data["message"].as_str().filter(|m| !m.is_empty()) {
            parts.push(format!("— {message}"));
        }
        self.p.at(
            when.saturating_duration_since(self.start),
            &format!("  keptn {:<26} {}", types::short(&ty), parts.join("  ")),
        );
        // The webhook's problem reaches NATS inside the service's events (`data.problem`):
        // remediation.triggered for OPEN, the actionsOnClose action.triggered for CLOSED.
        match problem["State"].as_str() {
            Some("OPEN") => self.record_at(
                Step::ProblemOnNats,
                when,
                &format!("in {}", types::short(&ty)),
            ),
            Some("CLOSED" | "RESOLVED") => self.record_at(
                Step::ProblemClosedOnNats,
                when,
                &format!("in {}", types::short(&ty)),
            ),
            _ => {}
        }
    }
}

/// Aborts the observer tasks when the story ends, however it ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A change of the flag, as Unleash's admin API or the app's SDK reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagSeen {
    UnleashOn,
    UnleashOff,
    ClientApiOn,
    ClientApiOff,
    SdkOn,
    SdkOff,
}

/// Reads the flag from Unleash (admin API, then client API) and from the app's SDK (`/flag`)
/// ten times a second; notes every change with the time it was seen.
async fn watch_flag(
    admin: UnleashClient,
    (client_api, backend_token): (String, String),
    app: String,
    seen: Arc<Mutex<Vec<(FlagSeen, Instant)>>>,
) {
    let http = reqwest::Client::new();
    let (mut unleash, mut client, mut sdk) = (None, None, None);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Ok(on) = admin.flag_enabled(FLAG, ENVIRONMENT).await
            && unleash != Some(on)
        {
            unleash = Some(on);
            let change = if on {
                FlagSeen::UnleashOn
            } else {
                FlagSeen::UnleashOff
            };
            seen.lock()
                .expect("flags lock")
                .push((change, Instant::now()));
        }
        let listed = async {
            let v: Value = http
                .get(&client_api)
                .header("Authorization", &backend_token)
                .send()
                .await?
                .json()
                .await?;
            Ok::<_, reqwest::Error>(
                v["features"]
                    .as_array()
                    .and_then(|f| f.iter().find(|f| f["name"] == FLAG))
                    .and_then(|f| f["enabled"].as_bool()),
            )
        };
        if let Ok(Some(on)) = listed.await
            && client != Some(on)
        {
            client = Some(on);
            let change = if on {
                FlagSeen::ClientApiOn
            } else {
                FlagSeen::ClientApiOff
            };
            seen.lock()
                .expect("flags lock")
                .push((change, Instant::now()));
        }
        let answer = async {
            let v: Value = http.get(format!("{app}/flag")).send().await?.json().await?;
            Ok::<_, reqwest::Error>(v["enabled"].as_bool())
        };
        if let Ok(Some(on)) = answer.await
            && sdk != Some(on)
        {
            sdk = Some(on);
            let change = if on {
                FlagSeen::SdkOn
            } else {
                FlagSeen::SdkOff
            };
            seen.lock()
                .expect("flags lock")
                .push((change, Instant::now()));
        }
    }
}

/// Passes every Keptn event on with the time it arrived.
async fn forward_events(
    mut events: async_nats::Subscriber,
    to: tokio::sync::mpsc::UnboundedSender<(Value, Instant)>,
) {
    while let Some(message) = events.next().await {
        if let Ok(event) = serde_json::from_slice::<Value>(&message.payload)
            && to.send((event, Instant::now())).is_err()
        {
            return;
        }
    }
}

/// GET / ten times a second until aborted; every answer goes into `traffic`.
async fn generate(url: String, traffic: Arc<Mutex<Traffic>>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            traffic
                .lock()
                .expect("traffic lock")
                .failures
                .push(e.to_string());
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / REQUESTS_PER_SECOND));
    loop {
        tick.tick().await;
        let result = async {
            let answer = http.get(format!("{url}/")).send().await?;
            let status = answer.status().as_u16();
            let page = answer
                .headers()
                .get("x-page")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Ok::<_, reqwest::Error>((status, page))
        }
        .await;
        let mut t = traffic.lock().expect("traffic lock");
        t.requests += 1;
        match result {
            Ok((500, _)) => {
                t.errors += 1;
                t.pages.push((Page::Error, Instant::now()));
            }
            Ok((200, page)) if page == "static" => t.pages.push((Page::Static, Instant::now())),
            Ok((200, page)) if page == "own" => t.pages.push((Page::Own, Instant::now())),
            Ok((status, page)) => t
                .failures
                .push(format!("GET / answered {status} X-Page {page:?}")),
            Err(e) => t.failures.push(format!("GET /: {e}")),
        }
    }
}

/// The service process, with only what the story sets: settings of the caller's shell cannot
/// change it. SIGTERM (then SIGKILL) when dropped.
fn start_service(
    options: &Options,
    nats: &NatsServer,
    unleash: &UnleashServer,
    token: &str,
    http_addr: &str,
    webhook_token: &Secret,
) -> Result<ServiceProcess> {
    let env: [(&str, std::ffi::OsString); 8] = [
        ("NATS_URL", nats.url().into()),
        ("HTTP_ADDR", http_addr.into()),
        ("HTTP_TOKEN", webhook_token.expose().into()),
        ("RESOURCE_DIR", options.root.clone().into()),
        ("UNLEASH_SERVER_URL", unleash.base_url().into()),
        ("UNLEASH_TOKEN", token.into()),
        ("LOG_FORMAT", "text".into()),
        ("RUST_LOG", "info".into()),
    ];
    let mut service = ServiceProcess::spawn(&options.service_binary, env)?;
    service.terminate_on_drop();
    Ok(service)
}

/// The closing summary: the measured durations.
pub fn summary(report: &Report) -> Vec<String> {
    let d = |from, to| {
        report
            .between(from, to)
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .unwrap_or_else(|| "—".to_owned())
    };
    vec![
        format!(
            "first error → alert firing:            {}  (rate window {RATE_WINDOW}, for: {ALERT_FOR})",
            d(Step::FirstError, Step::AlertFiring)
        ),
        format!(
            "alert firing → flag on:                {}  (Alertmanager group_wait 1s, the service, Unleash)",
            d(Step::AlertFiring, Step::FlagOn)
        ),
        format!(
            "flag on → app serving the static page: {}  (Unleash's client API cache {}, then the SDK's {SDK_REFRESH:?} refresh {})",
            d(Step::FlagOn, Step::StaticPageServed),
            d(Step::FlagOn, Step::ClientApiOn),
            d(Step::ClientApiOn, Step::SdkSeesFlagOn)
        ),
        format!(
            "first error → flag back off:           {}",
            d(Step::FirstError, Step::FlagOff)
        ),
    ]
}
