//! What the service's HTTP clients share (the Unleash admin API, the Keptn resource API): one
//! way to build a client with timeouts, one retry loop with exponential backoff, one rule for
//! putting a name into a URL path, and one way to turn a transport error into words.
//!
//! What is worth retrying and what a final answer means stays with each client: Unleash retries
//! 429 and honours `Retry-After`, the Keptn API retries 5xx only. The loop here only counts,
//! waits and asks.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderValue;
use std::future::Future;
use std::time::Duration;

/// Characters left as they are in a path segment: RFC 3986 "unreserved". Everything else is
/// percent-encoded, so a name can never add a path segment or a query.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one URL path segment (or query value).
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A client whose every request, connection included, gives up after `timeout`.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
}

/// How long to wait before a retry: `start`, doubled for every further retry, never below what
/// the server asked for (`Retry-After`), never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub start: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 for the first).
    pub fn delay(&self, attempt: u32, at_least: Option<Duration>) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.start
            .saturating_mul(factor)
            .max(at_least.unwrap_or_default())
            .min(self.max)
    }
}

/// Whether an attempt's outcome deserves another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Final: success, or a failure that would repeat.
    Done,
    /// Worth another attempt, after at least this long when the server said so.
    Retry { at_least: Option<Duration> },
}

/// Bounded retries: `retries` after the first attempt (`0`: one attempt only), spaced by
/// `backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub retries: u32,
    pub backoff: Backoff,
}

impl Retry {
    /// Runs `attempt` until `verdict` calls its outcome final or the retries are used up, and
    /// returns the last outcome with the number of attempts made. `before_retry` is told of
    /// each retry (the failed outcome, its attempt number, the wait), to log it.
    pub async fn run<T, Fut>(
        &self,
        mut attempt: impl FnMut() -> Fut,
        verdict: impl Fn(&T) -> Verdict,
        mut before_retry: impl FnMut(&T, u32, Duration),
    ) -> (T, u32)
    where
        Fut: Future<Output = T>,
    {
        let mut n: u32 = 0;
        loop {
            n += 1;
            let outcome = attempt().await;
            if n <= self.retries
                && let Verdict::Retry { at_least } = verdict(&outcome)
            {
                let wait = self.backoff.delay(n, at_least);
                before_retry(&outcome, n, wait);
                tokio::time::sleep(wait).await;
                continue;
            }
            return (outcome, n);
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and ignored).
pub fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    value?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A header value marked sensitive, so that no layer (hyper, reqwest's Debug) prints it.
/// `None` when the value cannot be sent in a header.
pub fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), the part
/// an operator acts on; reqwest's outer layers only say "error sending request".
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() { e.to_string() } else { text }
}

/// An error with all its causes ("error sending request: connection refused"); reqwest's own
/// message stops at the first.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("dev env/1?x"), "dev%20env%2F1%3Fx");
        assert_eq!(segment("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            start: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.delay(1, None), Duration::from_millis(100));
        assert_eq!(b.delay(2, None), Duration::from_millis(200));
        assert_eq!(b.delay(3, None), Duration::from_millis(400));
        assert_eq!(
            b.delay(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(b.delay(40, None), Duration::from_secs(30));
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn retries_are_bounded_and_stop_at_a_final_outcome() {
        let retry = Retry {
            retries: 2,
            backoff: Backoff {
                start: Duration::from_millis(1),
                max: Duration::from_secs(1),
            },
        };
        let calls = AtomicU32::new(0);
        let mut waits = Vec::new();
        let (last, attempts) = retry
            .run(
                || async { calls.fetch_add(1, Ordering::SeqCst) + 1 },
                |_| Verdict::Retry { at_least: None },
                |_, _, wait| waits.push(wait),
            )
            .await;
        assert_eq!((last, attempts), (3, 3));
        assert_eq!(waits, [Duration::from_millis(1), Duration::from_millis(2)]);
        let (last, attempts) = retry
            .run(|| async { 7 }, |_| Verdict::Done, |_, _, _| unreachable!())
            .await;
        assert_eq!((last, attempts), (7, 1));
    }
}
