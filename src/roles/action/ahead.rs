//! Reads started ahead of their action: the remediator of this process names the action it is
//! about to claim a problem for, and the flags that action will switch are read while the claim
//! is written, instead of after it. The action's read before each switch (`READ_BEFORE_SWITCH`)
//! then takes the answer, or waits for it, rather than asking Unleash again.
//!
//! A read taken ahead stands for the state before the switch only for a short while
//! ([`FRESH_FOR`]); an older one, or one whose action never came (the claim was lost), is
//! dropped and its request stopped. There are at most [`MAX_READS`] at a time: beyond that
//! an action simply reads for itself, as it would without this.

use crate::unleash::{FlagName, UnleashClient};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long a read taken ahead stands for the state before the switch.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Reads taken ahead and not yet used, at most.
pub const MAX_READS: usize = 64;

/// Flags an action may name for them to be read ahead (the first ones an action switches at once).
pub const MAX_FLAGS_AHEAD: usize = 8;

/// The state of a flag as read (`None`: the read failed, the state is unknown).
type Read = Option<bool>;

/// Reads taken ahead of their action, oldest first.
#[derive(Debug)]
pub struct ReadAhead {
    fresh_for: Duration,
    reads: Mutex<VecDeque<Slot>>,
}

#[derive(Debug)]
struct Slot {
    environment: String,
    flag: FlagName,
    at: Instant,
    read: JoinHandle<Read>,
}

impl Default for ReadAhead {
    fn default() -> Self {
        ReadAhead::new(FRESH_FOR)
    }
}

impl ReadAhead {
    /// Reads that stand for the state before a switch for `fresh_for`.
    pub fn new(fresh_for: Duration) -> Self {
        ReadAhead {
            fresh_for,
            reads: Mutex::new(VecDeque::new()),
        }
    }

    /// Starts reading `flags` in `environment`, each unless a fresh read of it is already under
    /// way; none beyond [`MAX_READS`].
    pub fn start(&self, client: &UnleashClient, environment: &str, flags: Vec<FlagName>) {
        let mut reads = self.reads.lock().expect("read-ahead lock");
        self.drop_stale(&mut reads);
        for flag in flags {
            if reads.len() >= MAX_READS {
                break;
            }
            if reads
                .iter()
                .any(|s| s.environment == environment && s.flag == flag)
            {
                continue;
            }
            let (client, env, name) = (client.clone(), environment.to_owned(), flag.clone());
            let read = tokio::spawn(async move {
                match client.flag_enabled(&name, &env).await {
                    Ok(on) => Some(on),
                    Err(e) => {
                        tracing::debug!(flag = %name, environment = %env, error = %e, "reading a flag's state ahead of its switch failed");
                        None
                    }
                }
            });
            reads.push_back(Slot {
                environment: environment.to_owned(),
                flag,
                at: Instant::now(),
                read,
            });
        }
    }

    /// The read of `flag` in `environment` taken ahead, still fresh, if there is one: taken
    /// away, so that it stands for one switch only.
    pub fn take(&self, environment: &str, flag: &FlagName) -> Option<JoinHandle<Read>> {
        let mut reads = self.reads.lock().expect("read-ahead lock");
        self.drop_stale(&mut reads);
        let i = reads
            .iter()
            .position(|s| s.environment == environment && s.flag == *flag)?;
        reads.remove(i).map(|s| s.read)
    }

    /// Reads taken ahead and not yet used.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.reads.lock().expect("read-ahead lock").len()
    }

    fn drop_stale(&self, reads: &mut VecDeque<Slot>) {
        while reads
            .front()
            .is_some_and(|s| s.at.elapsed() >= self.fresh_for)
        {
            if let Some(stale) = reads.pop_front() {
                stale.read.abort();
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Ok(reads) = self.reads.get_mut() {
            for slot in reads.drain(..) {
                slot.read.abort();
            }
        }
    }
}

/// The state of `flag` before its switch: the read taken ahead when there is a fresh one that
/// succeeded, else a read now (so a failure is the failure of a read made for this switch).
pub(super) async fn read_before(
    ahead: Option<&ReadAhead>,
    client: &UnleashClient,
    environment: &str,
    flag: &FlagName,
) -> Result<bool, crate::unleash::UnleashError> {
    if let Some(read) = ahead.and_then(|a| a.take(environment, flag))
        && let Ok(Some(on)) = read.await
    {
        return Ok(on);
    }
    client.flag_enabled(flag, environment).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::action::toggle::{FlagChange, FlagPolicy, FlagResult, apply_reading_ahead};
    use crate::unleash::{ApiMode, UnleashConfig};
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const ENV: &str = "production";

    fn read_as(on: bool) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": ENV, "enabled": on}))
    }

    async fn unleash() -> (MockServer, UnleashClient) {
        let server = MockServer::start().await;
        let mut config = UnleashConfig::new(
            format!("{}/api", server.uri()),
            crate::secret::Secret::new("test-token"),
        );
        config.api = ApiMode::V4;
        config.max_retries = 0;
        let client = UnleashClient::new(config).unwrap();
        (server, client)
    }

    /// Answers the first read of a flag with `first`, every later one with "on", and every
    /// switch with 200.
    async fn mount_first_read(server: &MockServer, first: ResponseTemplate) {
        Mock::given(method("GET"))
            .respond_with(first)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .respond_with(read_as(true))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex("/on$"))
            .respond_with(ResponseTemplate::new(200))
            .mount(server)
            .await;
    }

    async fn gets(server: &MockServer) -> usize {
        let requests = server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| r.method.as_str() == "GET")
            .count()
    }

    fn flag(name: &str) -> FlagName {
        FlagName::parse(name).unwrap()
    }

    /// The flag is off when read ahead, then someone switches it on before the run: the run
    /// reports the read taken ahead (off → on) without asking again, and only once; the next
    /// run reads for itself.
    #[tokio::test]
    async fn a_read_taken_ahead_is_the_one_the_switch_reports_and_only_once() {
        let (server, client) = unleash().await;
        mount_first_read(&server, read_as(false)).await;
        let ahead = ReadAhead::default();
        ahead.start(&client, ENV, vec![flag("EnableStaticContent")]);
        for _ in 0..200 {
            if gets(&server).await == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gets(&server).await, 1);
        let changes = [FlagChange {
            flag: flag("EnableStaticContent"),
            on: true,
        }];
        let policy = FlagPolicy::default();
        let report = apply_reading_ahead(&client, ENV, &changes, &policy, Some(&ahead)).await;
        let outcome = &report.outcomes[0];
        assert!(matches!(outcome.result, FlagResult::Confirmed), "{outcome}");
        assert_eq!(outcome.was_on, Some(false), "the state read ahead");
        assert_eq!(gets(&server).await, 2, "the read ahead and the read-back");
        assert_eq!(ahead.pending(), 0);

        let report = apply_reading_ahead(&client, ENV, &changes, &policy, Some(&ahead)).await;
        assert_eq!(
            report.outcomes[0].was_on,
            Some(true),
            "read again, for itself"
        );
        assert_eq!(gets(&server).await, 4);
    }

    /// A read ahead that failed is not reported as the state before: the switch reads again.
    #[tokio::test]
    async fn a_failed_read_ahead_is_read_again_before_the_switch() {
        let (server, client) = unleash().await;
        mount_first_read(&server, ResponseTemplate::new(503)).await;
        let ahead = ReadAhead::default();
        ahead.start(&client, ENV, vec![flag("F")]);
        let changes = [FlagChange {
            flag: flag("F"),
            on: true,
        }];
        let report =
            apply_reading_ahead(&client, ENV, &changes, &FlagPolicy::default(), Some(&ahead)).await;
        assert!(matches!(report.outcomes[0].result, FlagResult::Confirmed));
        assert_eq!(report.outcomes[0].was_on, Some(true));
        assert_eq!(gets(&server).await, 3);
    }

    /// Reads older than their freshness are not used; at most `MAX_READS` wait at a time, and
    /// one flag is read once however often it is named.
    #[tokio::test]
    async fn reads_ahead_go_stale_and_are_bounded() {
        let (server, client) = unleash().await;
        Mock::given(method("GET"))
            .respond_with(read_as(true))
            .mount(&server)
            .await;
        let stale = ReadAhead::new(Duration::ZERO);
        stale.start(&client, ENV, vec![flag("F")]);
        assert!(stale.take(ENV, &flag("F")).is_none());
        assert_eq!(stale.pending(), 0);

        let ahead = ReadAhead::default();
        let many: Vec<FlagName> = (0..MAX_READS + 36)
            .map(|i| flag(&format!("F-{i}")))
            .collect();
        ahead.start(&client, ENV, many);
        ahead.start(&client, ENV, vec![flag("F-0"), flag("F-0")]);
        assert_eq!(ahead.pending(), MAX_READS);
        assert!(ahead.take(ENV, &flag("F-0")).is_some());
        assert!(ahead.take(ENV, &flag("F-0")).is_none(), "taken once");
        assert!(
            ahead.take("staging", &flag("F-1")).is_none(),
            "another environment"
        );
        assert!(ahead.take(ENV, &flag(&format!("F-{MAX_READS}"))).is_none());
    }
}
