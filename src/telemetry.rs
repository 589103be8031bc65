//! Logging and metrics set-up.

use crate::config::LogFormat;
use crate::keptn::types;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::EnvFilter;

/// Every series carries this prefix (added by the recorder; call sites write bare names).
pub const METRIC_PREFIX: &str = "unleash_remediation";

/// The git commit the binary was built from (`unknown` outside a git checkout).
pub const REVISION: &str = env!("URS_REVISION");

/// Third-party crates speak at warn unless `RUST_LOG` says otherwise.
const DEFAULT_FILTER: &str =
    "info,async_nats=warn,reqwest=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn";

/// Installs the log subscriber once; `RUST_LOG` filters (default: `info`, other crates `warn`).
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let writer = StderrLines {
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    match format {
        LogFormat::Json => json_subscriber(filter, writer),
        LogFormat::Text => text_subscriber(filter, writer),
    }
}

fn text_subscriber(filter: EnvFilter, writer: StderrLines) {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .fmt_fields(crate::redact::EscapedFields)
        .try_init();
}

fn json_subscriber(filter: EnvFilter, writer: StderrLines) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(JsonLine)
        .try_init();
}

/// One JSON object per line: `timestamp`, `level`, `message`, `target`, `service`, `version`,
/// then the fields of the enclosing spans and of the event, each key once and at the top level
/// (an event field wins over a span field of the same name).
struct JsonLine;

const FIXED_KEYS: [&str; 6] = [
    "timestamp",
    "level",
    "message",
    "target",
    "service",
    "version",
];

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::{Map, Value};
        let meta = event.metadata();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(stored) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) =
                    serde_json::from_str::<Value>(stored.fields.as_str())
                {
                    fields.extend(map);
                }
            }
        }
        let mut visitor = JsonVisitor(Map::new());
        event.record(&mut visitor);
        let mut own = visitor.0;
        let message = own
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        fields.extend(own);

        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("message".into(), message);
        line.insert("target".into(), meta.target().into());
        line.insert("service".into(), env!("CARGO_PKG_NAME").into());
        line.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        for (key, value) in fields {
            // A field that would shadow a fixed key keeps its value under another name.
            let key = if FIXED_KEYS.contains(&key.as_str()) {
                format!("field_{key}")
            } else {
                key
            };
            line.insert(key, value);
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Writes each log line to stderr in one call; under systemd (`JOURNAL_STREAM` set) the line
/// starts with the syslog priority (`<3>` error … `<7>` debug), which journald turns into the
/// entry's priority.
struct StderrLines {
    journald: bool,
}

struct LineBuffer {
    prefix: &'static str,
    buf: Vec<u8>,
}

impl std::io::Write for LineBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        use std::io::Write;
        if self.buf.is_empty() {
            return;
        }
        let text = crate::redact::scrub_log_line(&self.buf);
        let mut line = Vec::with_capacity(self.prefix.len() + text.len());
        line.extend_from_slice(self.prefix.as_bytes());
        line.extend_from_slice(&text);
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLines {
    type Writer = LineBuffer;
    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer {
            prefix: "",
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineBuffer {
        let prefix = if !self.journald {
            ""
        } else {
            match *meta.level() {
                tracing::Level::ERROR => "<3>",
                tracing::Level::WARN => "<4>",
                tracing::Level::INFO => "<6>",
                _ => "<7>",
            }
        };
        LineBuffer {
            prefix,
            buf: Vec::new(),
        }
    }
}

/// The process-wide Prometheus recorder (installed on first use). Every series gets the
/// `unleash_remediation_` prefix, a HELP text, and, for known label sets, a zero value from the
/// start.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let duration = [
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("request_duration_seconds".into()),
                    &latency,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("remediation_duration_seconds".into()),
                        &duration,
                    )
                })
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let prefixed = metrics_util::layers::Layer::layer(
                &metrics_util::layers::PrefixLayer::new(METRIC_PREFIX),
                recorder,
            );
            // Another recorder may exist (tests); then this handle just renders nothing.
            if metrics::set_global_recorder(prefixed).is_ok() {
                describe_metrics();
                register_known_series();
            }
            handle
        })
        .clone()
}

/// HELP text of every metric, in one place. A metric added anywhere gets its line here.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "build_info",
        "Always 1; the labels say which version and git revision runs."
    );
    describe_gauge!(
        "nats_connected",
        "1 while the NATS connection is up, 0 otherwise."
    );
    describe_gauge!(
        "ready",
        "1 while the service is ready (connected and subscribed), 0 otherwise."
    );
    describe_gauge!("events_in_flight", "Events being handled right now.");
    describe_gauge!(
        "remediations_waiting",
        "Remediations waiting for an action.finished whose timeout this process watches."
    );
    describe_counter!(
        "events_received_total",
        "Decoded events handed to the roles, by type (unknown types count as other)."
    );
    describe_counter!(
        "events_rejected_total",
        "Events that could not be used, by type and reason; each is reported as sh.keptn.log.error."
    );
    describe_counter!(
        "events_ignored_total",
        "Events no enabled role handles, by type."
    );
    describe_counter!(
        "events_skipped_total",
        "Events passed over without a reply, by reason: own_event (sent by this service), log_event (sh.keptn.log.*), unhandled_type (a type no role handles, under a wildcard subscription), handled_by_sender (marked as handled by the replica that sent it)."
    );
    describe_counter!(
        "events_shortened_total",
        "Outgoing events whose data was shortened to fit the NATS server's max_payload."
    );
    describe_counter!(
        "events_failed_total",
        "Events whose handling failed (redelivered on JetStream), by type."
    );
    describe_counter!("events_sent_total", "Events published, by type.");
    describe_counter!(
        "events_given_up_total",
        "JetStream events given up after MAX_DELIVER deliveries."
    );
    describe_counter!(
        "http_unauthorized_total",
        "HTTP ingest requests refused for a missing or wrong token (or Grafana signature)."
    );
    describe_counter!(
        "http_unsupported_media_type_total",
        "HTTP ingest requests refused because the body is not declared as JSON."
    );
    describe_counter!(
        "webhook_notifications_total",
        "Monitoring webhook notifications by source and outcome (accepted, rejected as a whole)."
    );
    describe_counter!(
        "webhook_alerts_total",
        "Alerts of monitoring webhook notifications by source and outcome (accepted, duplicate, ignored, rejected)."
    );
    describe_counter!(
        "actions_total",
        "toggle-feature actions answered by the action role, by action name and result."
    );
    describe_counter!(
        "flag_switches_total",
        "Feature flag switches by flag, environment, wanted state and result (flag and environment names beyond the first 100 count as other)."
    );
    describe_counter!(
        "duplicates_total",
        "Problem notifications for a problem already being remediated."
    );
    describe_counter!(
        "events_replayed_total",
        "Problem events whose id was already handled (a replay); nothing is done for them."
    );
    describe_counter!(
        "actions_run_again_total",
        "First actions run again from a redelivered problem event, after the process that ran them stopped before their end."
    );
    describe_counter!(
        "closes_ignored_total",
        "CLOSED notifications for a problem not opened here or already closing; no close actions run."
    );
    describe_counter!(
        "state_evictions_total",
        "Finished remediations the in-memory state forgot early because it was full (their close actions will not run)."
    );
    describe_counter!(
        "problems_refused_total",
        "Problems not remediated because what must be kept of them exceeds the record size limit."
    );
    describe_counter!(
        "events_refused_total",
        "HTTP events refused with 503 because every permit of their pool was in use."
    );
    describe_counter!(
        "close_actions_total",
        "actionsOnClose runs started when a problem closed."
    );
    describe_counter!(
        "action_timeouts_total",
        "Actions that got no action.finished within ACTION_TIMEOUT."
    );
    describe_counter!(
        "remediations_total",
        "Finished remediations by result (pass, no_action, fail)."
    );
    describe_histogram!(
        "remediation_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a problem's first notification to remediation.finished."
    );
    describe_counter!(
        "get_action_replies_total",
        "get-action.finished replies by result (action, no_action, errored)."
    );
    describe_counter!(
        "unleash_requests_total",
        "Requests to the Unleash admin API by method and HTTP status (error: no answer)."
    );
    describe_histogram!(
        "unleash_request_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of one Unleash request attempt."
    );
    describe_counter!(
        "notifications_total",
        "Feedback messages by target (dynatrace, slack, webhook, grafana) and result (ok, failed, dropped)."
    );
}

/// Event types as metric labels: the short name of a type this service knows, else `other`.
pub(crate) fn type_label(ty: &str) -> &'static str {
    if types::remediation_sequence_stage(ty).is_some() {
        return "stage.remediation.triggered";
    }
    KNOWN_TYPES
        .iter()
        .copied()
        .find(|known| types::short(ty) == types::short(known))
        .map(types::short)
        .unwrap_or("other")
}

/// Every type consumed or published (the labels that exist from the start).
const KNOWN_TYPES: [&str; 14] = [
    types::PROBLEM_OPEN,
    types::PROBLEM,
    types::REMEDIATION_TRIGGERED,
    types::REMEDIATION_STATUS_CHANGED,
    types::REMEDIATION_FINISHED,
    types::GET_ACTION_TRIGGERED,
    types::GET_ACTION_STARTED,
    types::GET_ACTION_FINISHED,
    types::ACTION_TRIGGERED,
    types::ACTION_STARTED,
    types::ACTION_FINISHED,
    types::LOG_ERROR,
    "sh.keptn.event.remediation.started",
    "sh.keptn.event.get-action.status.changed",
];

/// Names from configuration or events (flags, environments) as label values: the first
/// `LABEL_CAP` distinct values of each kind as they are, later ones as `other`.
pub(crate) fn capped_label(kind: &'static str, value: &str) -> String {
    const LABEL_CAP: usize = 100;
    static SEEN: OnceLock<Mutex<HashMap<&'static str, HashSet<String>>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let set = seen.entry(kind).or_default();
    if set.contains(value) {
        return value.to_owned();
    }
    if set.len() < LABEL_CAP && value != "other" {
        set.insert(value.to_owned());
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Known label sets at zero, so that `/metrics` shows every series from the start and `rate()`
/// has a baseline.
fn register_known_series() {
    use metrics::{counter, gauge, histogram};
    gauge!("build_info", "version" => env!("CARGO_PKG_VERSION"), "revision" => REVISION).set(1.0);
    gauge!("nats_connected").set(0.0);
    gauge!("ready").set(0.0);
    gauge!("events_in_flight").set(0.0);
    gauge!("remediations_waiting").set(0.0);
    let consumed = [
        types::PROBLEM_OPEN,
        types::PROBLEM,
        types::GET_ACTION_TRIGGERED,
        types::ACTION_TRIGGERED,
        types::ACTION_FINISHED,
    ]
    .map(types::short)
    .into_iter()
    .chain(["stage.remediation.triggered", "other"]);
    for ty in consumed {
        counter!("events_received_total", "type" => ty).absolute(0);
        counter!("events_ignored_total", "type" => ty).absolute(0);
        counter!("events_failed_total", "type" => ty).absolute(0);
    }
    for reason in [
        "not_json",
        "not_cloudevent",
        "invalid_data",
        "missing_scope",
        "unsupported_type",
        "subject_mismatch",
    ] {
        counter!("events_rejected_total", "type" => "other", "reason" => reason).absolute(0);
    }
    for reason in [
        "own_event",
        "log_event",
        "unhandled_type",
        "handled_by_sender",
    ] {
        counter!("events_skipped_total", "reason" => reason).absolute(0);
    }
    for ty in KNOWN_TYPES.map(types::short) {
        counter!("events_sent_total", "type" => ty).absolute(0);
    }
    for name in [
        "events_given_up_total",
        "http_unauthorized_total",
        "http_unsupported_media_type_total",
        "duplicates_total",
        "close_actions_total",
        "action_timeouts_total",
        "events_shortened_total",
        "events_replayed_total",
        "actions_run_again_total",
        "closes_ignored_total",
        "state_evictions_total",
    ] {
        counter!(name).absolute(0);
    }
    counter!("problems_refused_total", "reason" => "too_large").absolute(0);
    counter!("events_refused_total", "reason" => "busy").absolute(0);
    for source in ["alertmanager", "grafana", "dynatrace"] {
        for outcome in ["accepted", "rejected"] {
            counter!("webhook_notifications_total", "source" => source, "outcome" => outcome)
                .absolute(0);
        }
        for outcome in ["accepted", "duplicate", "ignored", "rejected"] {
            counter!("webhook_alerts_total", "source" => source, "outcome" => outcome).absolute(0);
        }
    }
    for result in ["pass", "fail"] {
        counter!("actions_total", "action" => types::TOGGLE_FEATURE, "result" => result)
            .absolute(0);
    }
    for result in ["pass", "no_action", "fail"] {
        counter!("remediations_total", "result" => result).absolute(0);
    }
    for result in ["action", "no_action", "errored"] {
        counter!("get_action_replies_total", "result" => result).absolute(0);
    }
    for method in ["GET", "POST"] {
        for status in ["200", "401", "403", "404", "500", "error"] {
            counter!("unleash_requests_total", "method" => method, "status" => status).absolute(0);
        }
    }
    for target in ["dynatrace", "slack", "webhook", "grafana"] {
        for result in ["ok", "failed", "dropped"] {
            counter!("notifications_total", "target" => target, "result" => result).absolute(0);
        }
    }
    // Histograms show their buckets once registered, with count 0.
    let _ = histogram!("remediation_duration_seconds");
    let _ = histogram!("unleash_request_duration_seconds");
}

/// Counts an event being handled until the guard is dropped.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn start() -> InFlight {
        metrics::gauge!("events_in_flight").increment(1.0);
        Self::count();
        InFlight
    }

    /// Counts an event started and ended at once (a duplicate), without the gauge.
    pub(crate) fn count() {
        HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Events started since the process began (read by [`return_freed_memory`]).
static HANDLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Once a burst of events is over (none started for a whole `quiet` period after some did),
/// hands the memory the allocator freed back to the system. Without this, glibc keeps the
/// pages of a burst (the queued messages, their decoded forms) mapped, and the resident size
/// stays at the burst's peak long after the burst.
pub fn return_freed_memory(quiet: std::time::Duration) {
    tokio::spawn(async move {
        let mut last = HANDLED.load(std::sync::atomic::Ordering::Relaxed);
        let mut busy = false;
        loop {
            tokio::time::sleep(quiet).await;
            let now = HANDLED.load(std::sync::atomic::Ordering::Relaxed);
            if now != last {
                (last, busy) = (now, true);
            } else if busy {
                busy = false;
                trim();
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("events_in_flight").decrement(1.0);
    }
}

/// The Prometheus text of every series, followed by the standard `process_*` metrics (not
/// prefixed: dashboards and alerts everywhere expect those names).
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    out.push_str(&process_metrics());
    out
}

/// `process_*` metrics read from /proc (Linux), as the Prometheus client libraries write them.
fn process_metrics() -> String {
    use std::fmt::Write;
    // USER_HZ: the unit of /proc times, 100 on every Linux ABI.
    const TICKS: f64 = 100.0;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Option<f64> { rest.get(n - 3).and_then(|v| v.parse().ok()) };
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / TICKS,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|v| v * 1024.0)
    };
    if let Some(rss) = kib("VmRSS:") {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss,
        );
    }
    if let Some(vsz) = kib("VmSize:") {
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsz,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(max) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok())
    {
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / TICKS,
        );
    }
    out
}
