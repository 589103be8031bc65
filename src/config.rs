//! Every setting, as a command-line flag and an environment variable (SPEC sections 6 – 9).
//!
//! Secrets (Unleash token, NATS token/password/nkey, Keptn API token, HTTP token) are read from
//! the environment or flags but their values are never shown: `--help` hides them and
//! [`Secret`] prints `***`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// A value that must never be printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Parses `500ms`, `30s`, `10m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 30s, 10m, 1h)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnleashApi {
    Auto,
    V4,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeptnResourceApi {
    /// Keptn ≥ 0.12 (`/resource-service/v1/...`).
    ResourceService,
    /// Keptn < 0.12 (`/configuration-service/v1/...`).
    ConfigurationService,
}

/// How to reach NATS (shared by `serve` and `send`).
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
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
    /// `NATS_URL`, or Keptn's `PUBSUB_URL` when only that is set.
    pub fn url(&self) -> String {
        if std::env::var_os("NATS_URL").is_none()
            && let Ok(url) = std::env::var("PUBSUB_URL")
            && !url.is_empty()
        {
            return url;
        }
        self.nats_url.clone()
    }
}

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

    #[command(flatten)]
    pub nats: NatsArgs,
    /// How events are consumed from NATS.
    #[arg(long, env = "NATS_MODE", value_enum, default_value = "auto")]
    pub nats_mode: NatsMode,
    /// Queue group (core) and durable consumer prefix (JetStream); replicas with the same group share the work.
    #[arg(
        long,
        env = "PUBSUB_GROUP",
        default_value = "unleash-remediation-service"
    )]
    pub pubsub_group: String,
    /// Subjects to subscribe, comma-separated; by default the subjects of the enabled roles.
    #[arg(long, env = "PUBSUB_TOPIC", value_delimiter = ',')]
    pub pubsub_topic: Vec<String>,
    /// JetStream stream to create when no existing stream covers the subjects (it takes `sh.keptn.>`).
    #[arg(long, env = "NATS_STREAM", default_value = "keptn")]
    pub nats_stream: String,
    /// JetStream: how long a delivered event may stay unacknowledged before it is redelivered.
    #[arg(long, env = "ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub ack_wait: Duration,
    /// JetStream: deliveries of one event before it is given up with a sh.keptn.log.error.
    #[arg(long, env = "MAX_DELIVER", default_value_t = 5)]
    pub max_deliver: i64,
    /// JetStream key-value bucket holding remediation state (duplicate protection).
    #[arg(
        long,
        env = "STATE_BUCKET",
        default_value = "unleash-remediation-state"
    )]
    pub state_bucket: String,
    /// How long a remediated problem is remembered when no CLOSED event arrives.
    #[arg(long, env = "STATE_TTL", default_value = "24h", value_parser = parse_duration)]
    pub state_ttl: Duration,
    /// Messages a core-NATS subscription buffers while the handlers are busy; beyond this the
    /// client drops messages (an alert storm arrives much faster than it can be handled).
    #[arg(long, env = "NATS_SUBSCRIPTION_CAPACITY", default_value_t = 262_144)]
    pub nats_subscription_capacity: usize,
    /// Events handled at once by this process.
    #[arg(long, env = "CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,

    /// `source` of every event sent.
    #[arg(
        long,
        env = "EVENT_SOURCE",
        default_value = "unleash-remediation-service"
    )]
    pub event_source: String,
    /// Remediator: also treat `sh.keptn.event.<stage>.remediation.triggered` (sent by
    /// dynatrace-service ≥ 0.14 and prometheus-service ≥ 0.7) as an open problem. For use
    /// without Keptn's shipyard-controller only: with one, it owns those sequences.
    #[arg(long, env = "ACCEPT_REMEDIATION_SEQUENCES", default_value_t = false)]
    pub accept_remediation_sequences: bool,
    /// How long the remediator waits for an action.finished before it counts the action as failed.
    #[arg(long, env = "ACTION_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub action_timeout: Duration,

    /// Directory with remediation.yaml / shipyard.yaml ({dir}/{project}/{stage}/{service}/remediation.yaml, ...).
    #[arg(long, env = "RESOURCE_DIR", default_value = ".")]
    pub resource_dir: PathBuf,
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
    pub keptn_resource_api: KeptnResourceApi,

    /// Unleash API base URL (Keptn convention: ends in /api).
    #[arg(
        long,
        env = "UNLEASH_SERVER_URL",
        default_value = "http://127.0.0.1:4242/api"
    )]
    pub unleash_server_url: String,
    /// Unleash admin token or personal access token (v4+), or the Basic-auth password (v3).
    #[arg(long, env = "UNLEASH_TOKEN", hide_env_values = true)]
    pub unleash_token: Option<Secret>,
    /// Basic-auth user for Unleash v3.
    #[arg(long, env = "UNLEASH_USER", default_value = "keptn")]
    pub unleash_user: String,
    /// Unleash API generation.
    #[arg(long, env = "UNLEASH_API", value_enum, default_value = "auto")]
    pub unleash_api: UnleashApi,
    /// Unleash project of the flags (v4+).
    #[arg(long, env = "UNLEASH_PROJECT", default_value = "default")]
    pub unleash_project: String,
    /// Unleash environment to switch (v4+); by default the event's stage.
    #[arg(long, env = "UNLEASH_ENVIRONMENT")]
    pub unleash_environment: Option<String>,
    /// Timeout of one Unleash request.
    #[arg(long, env = "UNLEASH_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub unleash_timeout: Duration,
    /// Retries of one Unleash request after a connection error, 429 or 5xx.
    #[arg(long, env = "UNLEASH_RETRIES", default_value_t = 3)]
    pub unleash_retries: u32,

    /// HTTP listen address (health, readiness, metrics, event ingest).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// When set, every ingest path needs it as `x-token` or `Authorization: Bearer`.
    #[arg(long, env = "HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<Secret>,
    /// Accept unauthenticated events on a non-loopback HTTP_ADDR (without it, such a start is refused).
    #[arg(long, env = "HTTP_ALLOW_ANONYMOUS", default_value_t = false)]
    pub http_allow_anonymous: bool,
    /// When set, POST /webhooks/grafana needs a matching X-Grafana-Alerting-Signature (HMAC-SHA256).
    #[arg(long, env = "GRAFANA_WEBHOOK_SECRET", hide_env_values = true)]
    pub grafana_webhook_secret: Option<Secret>,
    /// Most alerts accepted in one webhook notification (more: 400).
    #[arg(long, env = "WEBHOOK_MAX_ALERTS", default_value_t = 1000)]
    pub webhook_max_alerts: usize,
    /// Largest accepted event body, in bytes.
    #[arg(long, env = "HTTP_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub http_body_limit: usize,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How long shutdown waits for events in flight.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
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
                | "help"
                | "-h"
                | "--help"
                | "-V"
                | "--version"
        );
        if !explicit {
            args.insert(1.min(args.len()), "serve".into());
        }
        Cli::try_parse_from(args)
    }
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
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?} {}", Secret::new("s3cr3t"), Secret::new("s3cr3t")),
            "*** ***"
        );
    }
}
