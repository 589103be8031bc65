//! Every setting, as a command-line flag and an environment variable (docs/design.md §6–9).
//!
//! `serve`'s settings come in groups, each under its own heading in `--help` (NATS, JetStream,
//! Remediator, Resources, Unleash, Action role, HTTP, Feedback). A group that configures one
//! part builds that part's typed configuration: [`UnleashArgs::client_config`],
//! [`FlagPolicyArgs::policy`], [`ResourceArgs::source`]. The enums the settings take are the
//! domain's own ([`crate::unleash::ApiMode`], [`crate::resources::ResourceApi`]).
//!
//! Secrets (Unleash token, NATS token/password/nkey, Keptn API token, HTTP token) are read from
//! the environment or flags but their values are never shown: `--help` hides them and
//! [`Secret`] prints `***`.

use crate::redact::Scrubber;
use crate::resources::{DirSource, KeptnApiSource, ResourceApi, ResourceSource, SourceError};
use crate::roles::action::FlagPolicy;
pub use crate::secret::Secret;
use crate::unleash::{ApiMode, UnleashConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Parses a plain number of seconds or a sum of number-unit parts: `500ms`, `30s`, `10m`,
/// `1h30m`, `2d`, `1w`, `1.5h` (units `ms`, `s`, `m`, `h`, `d`, `w`). Too large a value is an
/// error, not a panic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a duration (examples: 500ms, 30s, 10m, 1h30m, 2d)");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(n).map_err(|_| too_long(text));
    }
    let mut secs = 0.0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        let factor = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "" => return Err(bad()),
            other => {
                return Err(format!(
                    "unknown duration unit {other:?} in {text:?} (use ms, s, m, h, d or w, e.g. 1h30m)"
                ));
            }
        };
        secs += n * factor;
        rest = after.trim_start();
    }
    Duration::try_from_secs_f64(secs).map_err(|_| too_long(text))
}

fn too_long(text: &str) -> String {
    format!("{text:?} is not a usable duration (negative, or longer than about 584 billion years)")
}

#[derive(Debug, Parser)]
#[command(
    name = "unleash-remediation-service",
    version,
    about = "Keptn-compatible self-healing: problem events in, Unleash feature flags switched, Keptn CloudEvents out over NATS.",
    long_about = "Keptn-compatible self-healing for web services.\n\n\
        When monitoring reports a problem, the service looks up the project's remediation.yaml, \
        switches the named feature flags in Unleash and reports every step as Keptn CloudEvents \
        on NATS, ending with remediation.finished. Without a subcommand it runs the service (serve).\n\n\
        Every flag can also be set by the environment variable shown with it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: subscribe on NATS, serve HTTP, remediate (the default).
    Serve(Box<ServeArgs>),
    /// Check remediation.yaml and shipyard.yaml files; exit 1 naming line and column of errors.
    Validate {
        /// Files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print, as JSON, the action a problem would get (a dry run; nothing is sent).
    Resolve {
        /// The remediation.yaml to read.
        #[arg(long, value_name = "FILE")]
        remediation: PathBuf,
        /// The problem title (ProblemTitle).
        #[arg(long, value_name = "TITLE")]
        problem_title: String,
        /// The root cause, matched before the title (Keptn 1.x).
        #[arg(long, value_name = "TEXT")]
        root_cause: Option<String>,
        /// Which action of the matched remediation (0 = the first).
        #[arg(long, default_value_t = 0)]
        index: usize,
    },
    /// Ask a running service's /ready (or --path) and exit 0 when it answers 200, else 1 (for
    /// container health checks; no curl needed).
    Healthcheck {
        /// The service's HTTP address; 0.0.0.0 and [::] are asked on loopback.
        #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
        http_addr: String,
        /// The path to ask: /ready (connected and subscribed) or /health (the process runs).
        #[arg(long, default_value = "/ready")]
        path: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Publish one CloudEvent from a file (or - for standard input) to NATS, like `keptn send event`.
    Send {
        /// The event file, structured-mode CloudEvent JSON; - reads standard input.
        #[arg(value_name = "FILE")]
        file: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

/// Which roles this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// problem.open / sh.keptn.events.problem → remediation.* and action.triggered.
    Remediator,
    /// get-action.triggered → get-action.started/finished (Keptn 0.8.3 – 1.x).
    GetAction,
    /// action.triggered with toggle-feature → action.started/finished (the Unleash provider).
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NatsMode {
    /// Core NATS with a queue group: at-most-once, replicas share the work.
    Core,
    /// A durable JetStream pull consumer with explicit acks: at-least-once.
    Jetstream,
    /// JetStream when the server has it, else core.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where NATS is when nothing says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How to reach NATS (shared by `serve` and `send`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "NATS")]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222]. Without this flag
    /// and NATS_URL, Keptn's PUBSUB_URL or EVENTBROKER is used.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Credentials file (.creds) for NATS decentralized auth.
    #[arg(long, env = "NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<Secret>,
    /// NATS user (with --nats-password).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<Secret>,
    /// NATS nkey seed.
    #[arg(long, env = "NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<Secret>,
    /// PEM file of a CA to trust for NATS TLS (implies TLS).
    #[arg(long, env = "NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS mutual TLS.
    #[arg(
        long,
        env = "NATS_TLS_CERT",
        value_name = "FILE",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for NATS mutual TLS.
    #[arg(
        long,
        env = "NATS_TLS_KEY",
        value_name = "FILE",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsArgs {
    /// `--nats-url`, else `NATS_URL`, else Keptn's `PUBSUB_URL` or `EVENTBROKER`, else the
    /// local default.
    pub fn url(&self) -> String {
        if let Some(url) = self.nats_url.as_deref().filter(|u| !u.trim().is_empty()) {
            return url.to_owned();
        }
        ["PUBSUB_URL", "EVENTBROKER"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|u| !u.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
    }
}

/// The `serve` settings, grouped as `--help` shows them. The groups that configure one part
/// build that part's typed configuration themselves: [`UnleashArgs::client_config`],
/// [`FlagPolicyArgs::policy`], [`ResourceArgs::source`], [`FeedbackArgs`] (see `feedback`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Roles this process plays, comma-separated.
    #[arg(
        long,
        env = "ROLES",
        value_delimiter = ',',
        default_value = "remediator,get-action,action"
    )]
    pub roles: Vec<Role>,
    /// `source` of every event sent.
    #[arg(
        long,
        env = "EVENT_SOURCE",
        default_value = "unleash-remediation-service"
    )]
    pub event_source: String,
    /// Evaluate and report every step (events carry `dryRun: true`) but write nothing to
    /// Unleash; flags are only read.
    #[arg(long, env = "DRY_RUN", default_value_t = false)]
    pub dry_run: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How long shutdown waits for events in flight.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Events handled at once by this process.
    #[arg(long, env = "CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,

    #[command(flatten)]
    pub nats: NatsArgs,
    /// How events are consumed from NATS.
    #[arg(
        long,
        env = "NATS_MODE",
        value_enum,
        default_value = "auto",
        help_heading = "NATS"
    )]
    pub nats_mode: NatsMode,
    /// Queue group (core) and durable consumer prefix (JetStream); replicas with the same group share the work.
    #[arg(
        long,
        env = "PUBSUB_GROUP",
        default_value = "unleash-remediation-service",
        help_heading = "NATS"
    )]
    pub pubsub_group: String,
    /// Subjects to subscribe, comma-separated; by default the subjects of the enabled roles.
    #[arg(
        long,
        env = "PUBSUB_TOPIC",
        value_delimiter = ',',
        help_heading = "NATS"
    )]
    pub pubsub_topic: Vec<String>,
    /// Messages a core-NATS subscription buffers while the handlers are busy; beyond this the
    /// client drops messages (an alert storm arrives much faster than it can be handled).
    #[arg(
        long,
        env = "NATS_SUBSCRIPTION_CAPACITY",
        default_value_t = 262_144,
        help_heading = "NATS"
    )]
    pub nats_subscription_capacity: usize,

    /// JetStream stream to create when no existing stream covers the subjects (it takes `sh.keptn.>`).
    #[arg(
        long,
        env = "NATS_STREAM",
        default_value = "keptn",
        help_heading = "JetStream"
    )]
    pub nats_stream: String,
    /// JetStream: how long a delivered event may stay unacknowledged before it is redelivered.
    #[arg(
        long,
        env = "ACK_WAIT",
        default_value = "30s",
        value_parser = parse_duration,
        help_heading = "JetStream"
    )]
    pub ack_wait: Duration,
    /// JetStream: deliveries of one event before it is given up with a sh.keptn.log.error.
    #[arg(
        long,
        env = "MAX_DELIVER",
        default_value_t = 5,
        help_heading = "JetStream"
    )]
    pub max_deliver: i64,
    /// JetStream key-value bucket holding remediation state (duplicate protection).
    #[arg(
        long,
        env = "STATE_BUCKET",
        default_value = "unleash-remediation-state",
        help_heading = "JetStream"
    )]
    pub state_bucket: String,
    /// How long a remediated problem is remembered when no CLOSED event arrives.
    #[arg(
        long,
        env = "STATE_TTL",
        default_value = "24h",
        value_parser = parse_duration,
        help_heading = "JetStream"
    )]
    pub state_ttl: Duration,

    /// Remediator: also treat `sh.keptn.event.<stage>.remediation.triggered` (sent by
    /// dynatrace-service ≥ 0.14 and prometheus-service ≥ 0.7) as an open problem. For use
    /// without Keptn's shipyard-controller only: with one, it owns those sequences.
    #[arg(
        long,
        env = "ACCEPT_REMEDIATION_SEQUENCES",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Remediator"
    )]
    pub accept_remediation_sequences: bool,
    /// How long the remediator waits for an action.finished before it counts the action as failed.
    #[arg(
        long,
        env = "ACTION_TIMEOUT",
        default_value = "10m",
        value_parser = parse_duration,
        help_heading = "Remediator"
    )]
    pub action_timeout: Duration,

    #[command(flatten)]
    pub resources: ResourceArgs,

    #[command(flatten)]
    pub unleash: UnleashArgs,

    #[command(flatten)]
    pub flag_policy: FlagPolicyArgs,

    /// HTTP listen address (health, readiness, metrics, event ingest).
    #[arg(
        long,
        env = "HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        help_heading = "HTTP"
    )]
    pub http_addr: String,
    /// When set, /metrics, /health and /ready are also served on this address (without event
    /// ingest), so they can be exposed where the ingest port is not.
    #[arg(long, env = "METRICS_ADDR", help_heading = "HTTP")]
    pub metrics_addr: Option<String>,
    /// When set, every ingest path needs it as `x-token` or `Authorization: Bearer`.
    #[arg(
        long,
        env = "HTTP_TOKEN",
        hide_env_values = true,
        help_heading = "HTTP"
    )]
    pub http_token: Option<Secret>,
    /// Accept unauthenticated events on a non-loopback HTTP_ADDR (without it, such a start is refused).
    #[arg(
        long,
        env = "HTTP_ALLOW_ANONYMOUS",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "HTTP"
    )]
    pub http_allow_anonymous: bool,
    /// When set, POST /webhooks/grafana needs a matching X-Grafana-Alerting-Signature (HMAC-SHA256).
    #[arg(
        long,
        env = "GRAFANA_WEBHOOK_SECRET",
        hide_env_values = true,
        help_heading = "HTTP"
    )]
    pub grafana_webhook_secret: Option<Secret>,
    /// Most alerts accepted in one webhook notification (more: 400).
    #[arg(
        long,
        env = "WEBHOOK_MAX_ALERTS",
        default_value_t = 1000,
        help_heading = "HTTP"
    )]
    pub webhook_max_alerts: usize,
    /// Largest accepted event body, in bytes.
    #[arg(
        long,
        env = "HTTP_BODY_LIMIT",
        default_value_t = 1024 * 1024,
        help_heading = "HTTP"
    )]
    pub http_body_limit: usize,

    #[command(flatten)]
    pub feedback: FeedbackArgs,
}

impl ServeArgs {
    /// Every secret `serve` is configured with: the Unleash token (and its v3 Basic form), the
    /// Keptn API token, the NATS token, password and nkey seed, the HTTP token, and the
    /// passwords (for NATS also the tokens) written into the NATS, Keptn API and Unleash URLs.
    pub fn scrubber(&self) -> Scrubber {
        use base64::Engine as _;
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |s: Option<&str>| {
            if let Some(s) = s.filter(|s| !s.is_empty()) {
                secrets.push(s.to_owned());
            }
        };
        let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
        if let Some(token) = expose(&self.unleash.token) {
            add(Some(&token));
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{token}", self.unleash.user));
            add(Some(&basic));
        }
        for s in [
            &self.resources.keptn_api_token,
            &self.nats.nats_token,
            &self.nats.nats_password,
            &self.nats.nats_nkey,
            &self.http_token,
            &self.feedback.dynatrace_api_token,
            &self.feedback.grafana_api_token,
            &self.feedback.slack_webhook_url,
            &self.feedback.notify_webhook_url,
        ] {
            add(expose(s).as_deref());
        }
        for url in self.nats.url().split(',') {
            for s in crate::redact::url_secrets(url.trim(), true) {
                add(Some(&s));
            }
        }
        for url in [
            self.resources.keptn_api_endpoint.as_deref(),
            Some(&self.unleash.server_url),
        ]
        .into_iter()
        .flatten()
        {
            for s in crate::redact::url_secrets(url, false) {
                add(Some(&s));
            }
        }
        Scrubber::new(secrets)
    }
}

/// Where `remediation.yaml` and `shipyard.yaml` come from (docs/design.md §3).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Resources")]
pub struct ResourceArgs {
    /// Directory with remediation.yaml / shipyard.yaml ({dir}/{project}/{stage}/{service}/remediation.yaml, ...).
    #[arg(
        id = "resource_dir",
        value_name = "RESOURCE_DIR",
        long = "resource-dir",
        env = "RESOURCE_DIR",
        default_value = "."
    )]
    pub dir: PathBuf,
    /// Keptn API base URL (e.g. http://keptn/api); when set, resources are read from Keptn.
    #[arg(long, env = "KEPTN_API_ENDPOINT")]
    pub keptn_api_endpoint: Option<String>,
    /// Keptn API token, sent as x-token.
    #[arg(long, env = "KEPTN_API_TOKEN", hide_env_values = true)]
    pub keptn_api_token: Option<Secret>,
    /// Which Keptn resource API to use.
    #[arg(
        long,
        env = "KEPTN_RESOURCE_API",
        value_enum,
        default_value = "resource-service"
    )]
    pub keptn_resource_api: ResourceApi,
}

/// How long one Keptn API request may take.
const KEPTN_API_TIMEOUT: Duration = Duration::from_secs(10);

impl ResourceArgs {
    /// The Keptn API when `KEPTN_API_ENDPOINT` is set, else the directory.
    pub fn source(&self) -> Result<ResourceSource, SourceError> {
        Ok(match &self.keptn_api_endpoint {
            Some(endpoint) => ResourceSource::KeptnApi(KeptnApiSource::new(
                endpoint,
                self.keptn_api_token.clone().unwrap_or_default(),
                self.keptn_resource_api,
                KEPTN_API_TIMEOUT,
            )?),
            None => ResourceSource::Dir(DirSource::new(&self.dir)),
        })
    }
}

/// Where Unleash is and how to talk to it (docs/design.md §6).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Unleash")]
pub struct UnleashArgs {
    /// Unleash API base URL (Keptn convention: ends in /api).
    #[arg(
        id = "unleash_server_url",
        value_name = "UNLEASH_SERVER_URL",
        long = "unleash-server-url",
        env = "UNLEASH_SERVER_URL",
        default_value = "http://127.0.0.1:4242/api"
    )]
    pub server_url: String,
    /// Unleash admin token or personal access token (v4+), or the Basic-auth password (v3).
    #[arg(
        id = "unleash_token",
        value_name = "UNLEASH_TOKEN",
        long = "unleash-token",
        env = "UNLEASH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,
    /// Basic-auth user for Unleash v3.
    #[arg(
        id = "unleash_user",
        value_name = "UNLEASH_USER",
        long = "unleash-user",
        env = "UNLEASH_USER",
        default_value = "keptn"
    )]
    pub user: String,
    /// Unleash API generation.
    #[arg(
        id = "unleash_api",
        value_name = "UNLEASH_API",
        long = "unleash-api",
        env = "UNLEASH_API",
        value_enum,
        default_value = "auto"
    )]
    pub api: ApiMode,
    /// Unleash project of the flags (v4+).
    #[arg(
        id = "unleash_project",
        value_name = "UNLEASH_PROJECT",
        long = "unleash-project",
        env = "UNLEASH_PROJECT",
        default_value = "default"
    )]
    pub project: String,
    /// Unleash environment to switch (v4+); by default the event's stage.
    #[arg(
        id = "unleash_environment",
        value_name = "UNLEASH_ENVIRONMENT",
        long = "unleash-environment",
        env = "UNLEASH_ENVIRONMENT"
    )]
    pub environment: Option<String>,
    /// Timeout of one Unleash request.
    #[arg(
        id = "unleash_timeout",
        value_name = "UNLEASH_TIMEOUT",
        long = "unleash-timeout",
        env = "UNLEASH_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub timeout: Duration,
    /// Retries of one Unleash request after a connection error, 429 or 5xx.
    #[arg(
        id = "unleash_retries",
        value_name = "UNLEASH_RETRIES",
        long = "unleash-retries",
        env = "UNLEASH_RETRIES",
        default_value_t = 3
    )]
    pub retries: u32,
}

impl UnleashArgs {
    /// The client configuration these settings describe. A missing token becomes an empty
    /// one, which [`crate::unleash::UnleashClient::new`] refuses with a clear error.
    pub fn client_config(&self) -> UnleashConfig {
        UnleashConfig {
            base_url: self.server_url.clone(),
            token: self.token.clone().unwrap_or_default(),
            user: self.user.clone(),
            api: self.api,
            project: self.project.clone(),
            timeout: self.timeout,
            max_retries: self.retries,
            backoff: crate::unleash::config::DEFAULT_BACKOFF,
        }
    }
}

/// Which flags the action role may switch, and how many at once.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Action role")]
pub struct FlagPolicyArgs {
    /// Flags the action role may switch: comma-separated patterns, `*` any run of characters,
    /// `?` one character (e.g. `EnableStaticContent,Promo-*`); unset allows every flag. A flag
    /// outside is refused and named in action.finished; the action's other flags still run.
    #[arg(long, env = "ALLOWED_FLAGS", value_delimiter = ',', num_args = 0..)]
    pub allowed_flags: Option<Vec<String>>,
    /// Flags one action may name; an action with more is refused whole, before any request.
    #[arg(long, env = "MAX_FLAGS_PER_ACTION", default_value_t = crate::roles::action::DEFAULT_MAX_FLAGS)]
    pub max_flags_per_action: usize,
    /// Read each flag just before switching it, for the report (`from` in action.finished,
    /// `off → on` in the feedback). `false` reports the state before as unknown and switches
    /// one Unleash request sooner.
    #[arg(
        long,
        env = "READ_BEFORE_SWITCH",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub read_before_switch: bool,
}

impl FlagPolicyArgs {
    /// The policy, as a dry run when `dry_run` (`DRY_RUN`). Patterns are trimmed and empty
    /// ones dropped before they are checked.
    pub fn policy(&self, dry_run: bool) -> Result<FlagPolicy, String> {
        let allowed = self.allowed_flags.as_ref().map(|list| {
            list.iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        });
        FlagPolicy::new(allowed, self.max_flags_per_action, dry_run)
            .map(|p| p.with_read_before(self.read_before_switch))
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DynatraceApi {
    /// Problems API v2 (`/api/v2/problems/{id}/comments`, token scope `problems.write`).
    V2,
    /// Problems API v1 (`/api/v1/problem/details/{id}/comments`), for Managed and older tenants.
    V1,
}

/// Where remediation steps are reported besides the Keptn events (README "Feedback").
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Feedback")]
pub struct FeedbackArgs {
    /// Dynatrace tenant base URL (e.g. https://abc12345.live.dynatrace.com); with the token,
    /// every step becomes a comment on the Dynatrace problem.
    #[arg(long, env = "DYNATRACE_URL")]
    pub dynatrace_url: Option<String>,
    /// Dynatrace API token (scope problems.write for v2, DataExport for v1).
    #[arg(long, env = "DYNATRACE_API_TOKEN", hide_env_values = true)]
    pub dynatrace_api_token: Option<Secret>,
    /// Dynatrace problems API generation for comments.
    #[arg(long, env = "DYNATRACE_API", value_enum, default_value = "v2")]
    pub dynatrace_api: DynatraceApi,
    /// Slack-compatible incoming webhook URL (Slack, Mattermost, Teams connectors).
    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<Secret>,
    /// URL that gets a JSON POST for every remediation step.
    #[arg(long, env = "NOTIFY_WEBHOOK_URL", hide_env_values = true)]
    pub notify_webhook_url: Option<Secret>,
    /// Grafana base URL; with the token, problems from Grafana get an annotation on their panel.
    #[arg(long, env = "GRAFANA_URL")]
    pub grafana_url: Option<String>,
    /// Grafana service account token (annotations:write).
    #[arg(long, env = "GRAFANA_API_TOKEN", hide_env_values = true)]
    pub grafana_api_token: Option<Secret>,
    /// Timeout of one feedback request.
    #[arg(long, env = "FEEDBACK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub feedback_timeout: Duration,
    /// Retries of one feedback request after a connection error, timeout, 429 or 5xx.
    #[arg(long, env = "FEEDBACK_RETRIES", default_value_t = 2)]
    pub feedback_retries: u32,
}

impl Cli {
    /// Parses the command line; without a subcommand, `serve` is meant.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
        let explicit = matches!(
            first,
            "serve"
                | "validate"
                | "resolve"
                | "send"
                | "healthcheck"
                | "help"
                | "-h"
                | "--help"
                | "-V"
                | "--version"
        );
        if !explicit {
            args.insert(1.min(args.len()), "serve".into());
        }
        let mut command = secret_help(<Cli as clap::CommandFactory>::command());
        let sub = args
            .get(1)
            .and_then(|a| a.to_str())
            .unwrap_or("")
            .to_owned();
        if let Some(found) = command.find_subcommand(&sub) {
            for extra in secrets_from_files(found, &args, &|name| std::env::var_os(name))
                .map_err(|e| command.error(clap::error::ErrorKind::ValueValidation, e))?
            {
                args.push(extra);
            }
        }
        let matches = command.try_get_matches_from_mut(args)?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .map_err(|e| e.format(&mut command))
    }
}

/// Every secret setting (an argument whose environment value is hidden) says in `--help` that
/// a flag is visible to other users and where else the value can come from.
fn secret_help(command: clap::Command) -> clap::Command {
    let mark = |arg: clap::Arg| -> clap::Arg {
        if !arg.is_hide_env_values_set() {
            return arg;
        }
        let Some(env) = arg.get_env().and_then(|e| e.to_str()).map(str::to_owned) else {
            return arg;
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if !help.is_empty() && !help.ends_with('.') {
            help.push('.');
        }
        arg.help(format!(
            "{help} As a flag the value is visible in `ps`: prefer {env}, {env}_FILE (a file \
             holding it) or a systemd credential named {env}."
        ))
    };
    command.mut_subcommands(|sub| {
        let ids: Vec<clap::Id> = sub.get_arguments().map(|a| a.get_id().clone()).collect();
        ids.into_iter().fold(sub, |sub, id| sub.mut_arg(id, mark))
    })
}

/// Values of secret settings read from files, as `--flag=value` arguments to append: for each
/// secret not given as a flag or environment variable, the file named by `<ENV>_FILE`, else
/// `$CREDENTIALS_DIRECTORY/<ENV>` (systemd `LoadCredential=<ENV>:…`). One trailing newline is
/// dropped. An unreadable `<ENV>_FILE` is an error naming the file (never its content).
fn secrets_from_files(
    sub: &clap::Command,
    args: &[std::ffi::OsString],
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, String> {
    let mut extra = Vec::new();
    for arg in sub.get_arguments().filter(|a| a.is_hide_env_values_set()) {
        let (Some(name), Some(long)) = (arg.get_env().and_then(|e| e.to_str()), arg.get_long())
        else {
            continue;
        };
        let flag = format!("--{long}");
        let given = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        });
        if given || env(name).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let file_var = format!("{name}_FILE");
        let path = match env(&file_var).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => match env("CREDENTIALS_DIRECTORY").filter(|v| !v.is_empty()) {
                Some(dir) if PathBuf::from(&dir).join(name).is_file() => {
                    PathBuf::from(dir).join(name)
                }
                _ => continue,
            },
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{file_var}: cannot read {}: {e}", path.display()))?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(format!("{file_var}: {} is empty", path.display()));
        }
        let mut pair = std::ffi::OsString::from(format!("{flag}="));
        pair.push(value);
        extra.push(pair);
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(
            parse_duration("1w 1s").unwrap(),
            Duration::from_secs(604_801)
        );
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        for bad in [
            "99999999999999999999h",
            "-1",
            "1h30",
            "",
            "h",
            "1e400",
            "NaN",
            "inf",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_files_fill_only_what_is_not_given() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "from-file\n").unwrap();
        let command = <Cli as clap::CommandFactory>::command();
        let serve = command.find_subcommand("serve").unwrap();
        let args: Vec<std::ffi::OsString> = vec!["x".into(), "serve".into()];
        let token_path = token.clone().into_os_string();
        let env = |name: &str| (name == "UNLEASH_TOKEN_FILE").then(|| token_path.clone());
        let extra = secrets_from_files(serve, &args, &env).unwrap();
        assert_eq!(
            extra,
            vec![std::ffi::OsString::from("--unleash-token=from-file")]
        );
        // A flag or the variable itself wins over the file.
        let given: Vec<std::ffi::OsString> =
            vec!["x".into(), "serve".into(), "--unleash-token=flag".into()];
        assert!(secrets_from_files(serve, &given, &env).unwrap().is_empty());
        let set = |name: &str| match name {
            "UNLEASH_TOKEN" => Some("env".into()),
            other => env(other),
        };
        assert!(secrets_from_files(serve, &args, &set).unwrap().is_empty());
    }

    #[test]
    fn the_read_before_a_switch_is_on_unless_turned_off() {
        let policy = |args: &[&str]| {
            let cli = Cli::parse_args(args.iter().copied()).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("expected serve")
            };
            args.flag_policy.read_before_switch
        };
        assert!(policy(&["x"]));
        assert!(policy(&["x", "--read-before-switch"]));
        assert!(!policy(&["x", "--read-before-switch", "false"]));
        assert!(!policy(&["x", "--read-before-switch=no"]));
    }

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::parse_args(["x", "--roles", "action"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.roles, vec![Role::Action]);
    }

    #[test]
    fn takes_the_secrets_from_the_settings_and_the_urls() {
        let cli = Cli::parse_args([
            "x",
            "--nats-url",
            "nats://svc:nats-pass@127.0.0.1:4222,nats://nats-token@127.0.0.2:4222",
            "--keptn-api-endpoint",
            "http://keptn:keptn-pass@keptn/api",
            "--keptn-api-token",
            "keptn-token",
            "--unleash-token",
            "unleash-token",
            "--http-token",
            "http-token",
            "--nats-nkey",
            "SUAnkeyseed",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let s = args.scrubber();
        for secret in [
            "nats-pass",
            "nats-token",
            "keptn-pass",
            "keptn-token",
            "unleash-token",
            "http-token",
            "SUAnkeyseed",
        ] {
            assert_eq!(s.scrub(&format!("<{secret}>")), "<***>", "{secret}");
        }
        assert_eq!(s.scrub("keptn svc 127.0.0.1"), "keptn svc 127.0.0.1");
    }
}
