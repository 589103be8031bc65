//! Connecting: the servers and credentials of `NATS_URL`, the connect options, the client with
//! its connection-event log, and URLs redacted for logs.

use crate::config::NatsArgs;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Credentials written into `NATS_URL`.
#[derive(Clone, PartialEq, Eq)]
enum UrlAuth {
    /// `nats://user:password@host`
    UserPassword(String, String),
    /// `nats://token@host`
    Token(String),
}

/// The servers of `NATS_URL` (or `PUBSUB_URL`) without user info, and the credentials written
/// into them. The client library does not read credentials from the URL and would print them
/// in its debug log, so it only ever gets the bare addresses.
pub fn servers(args: &NatsArgs) -> anyhow::Result<String> {
    Ok(split_credentials(&args.url())?.0)
}

fn split_credentials(urls: &str) -> anyhow::Result<(String, Option<UrlAuth>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| anyhow::anyhow!("the credentials in NATS_URL are not UTF-8"))
    };
    let mut auth: Option<UrlAuth> = None;
    let mut bare = Vec::new();
    for entry in urls.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !entry.contains('@') {
            bare.push(entry.to_owned());
            continue;
        }
        let full = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("nats://{entry}")
        };
        let mut url = url::Url::parse(&full)
            .map_err(|e| anyhow::anyhow!("NATS_URL {} is not a URL: {e}", redact_url(entry)))?;
        let found = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(pass)) => Some(UrlAuth::UserPassword(decode(user)?, decode(pass)?)),
            (token, None) => Some(UrlAuth::Token(decode(token)?)),
        };
        if let Some(found) = found {
            match &auth {
                Some(known) if *known != found => anyhow::bail!(
                    "NATS_URL names different credentials for different servers; write them once, or use NATS_USER/NATS_PASSWORD or NATS_TOKEN"
                ),
                _ => auth = Some(found),
            }
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        bare.push(url.to_string());
    }
    Ok((bare.join(","), auth))
}

/// Connect options with the configured auth and TLS. Credentials in `NATS_URL` are used when
/// no `NATS_TOKEN` or `NATS_USER`/`NATS_PASSWORD` is set.
pub async fn connect_options(args: &NatsArgs) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut opts = match &args.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading NATS credentials file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    let explicit = args.nats_token.is_some() || args.nats_user.is_some();
    match split_credentials(&args.url())?.1 {
        Some(_) if explicit => {
            warn!("NATS_URL carries credentials, but NATS_TOKEN or NATS_USER is set; using those")
        }
        Some(UrlAuth::UserPassword(user, pass)) => opts = opts.user_and_password(user, pass),
        Some(UrlAuth::Token(token)) => opts = opts.token(token),
        None => {}
    }
    if let Some(token) = &args.nats_token {
        opts = opts.token(token.expose().to_owned());
    }
    if let (Some(user), Some(pass)) = (&args.nats_user, &args.nats_password) {
        opts = opts.user_and_password(user.clone(), pass.expose().to_owned());
    }
    if let Some(seed) = &args.nats_nkey {
        opts = opts.nkey(seed.expose().to_owned());
    }
    if let Some(ca) = &args.nats_tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&args.nats_tls_cert, &args.nats_tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(opts.connection_timeout(Duration::from_secs(5)))
}

/// Connects for the service. The first connect is retried in the background and reconnects
/// never stop, so this returns at once; readiness tells when the link is up.
pub async fn connect(
    args: &NatsArgs,
    name: &str,
    subscription_capacity: usize,
) -> anyhow::Result<async_nats::Client> {
    let url = servers(args)?;
    let shown = redact_url(&url);
    let servers: Arc<Vec<String>> = Arc::new(url.split(',').filter_map(host_port).collect());
    let last_failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let opts = connect_options(args)
        .await?
        .name(name)
        .subscription_capacity(subscription_capacity.max(1024))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let shown = shown.clone();
            let servers = servers.clone();
            let last = last_failure.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        *last.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        metrics::gauge!("nats_connected").set(1.0);
                        info!(server = %shown, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        metrics::gauge!("nats_connected").set(0.0);
                        warn!(server = %shown, "NATS disconnected; reconnecting")
                    }
                    async_nats::Event::ClientError(e) => {
                        // The client's error names only the kind ("IO error"); a probe of the
                        // address finds the cause. Repeats of the same failure go to debug.
                        let cause = match probe(&servers).await {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        };
                        let repeat = {
                            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                            let repeat = last.as_deref() == Some(cause.as_str());
                            *last = Some(cause.clone());
                            repeat
                        };
                        if repeat {
                            tracing::debug!(server = %shown, error = %cause, "NATS connect failed again; retrying");
                        } else {
                            warn!(server = %shown, error = %cause, "NATS connect failed; retrying");
                        }
                    }
                    other => info!(server = %shown, "NATS: {other}"),
                }
            }
        });
    opts.connect(url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", redact_url(&url)))
}

/// `host:port` of one NATS URL (`nats://user:pass@host:4222`, `tls://host`, `host:4222`).
fn host_port(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:4222")
    })
}

/// Why the NATS servers cannot be reached at the TCP level (e.g. "connection refused"), or
/// `None` when one of them accepts connections.
async fn probe(servers: &[String]) -> Option<String> {
    let mut causes = Vec::new();
    for server in servers {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(server.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => causes.push(format!("{server}: {e}")),
            Err(_) => causes.push(format!("{server}: no answer within 2 s")),
        }
    }
    (!causes.is_empty()).then(|| causes.join(", "))
}

/// A URL without user info, for logs and errors.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match u.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => u.to_owned(),
            },
            None => match u.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => u.to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (bare, auth) = split_credentials(
            "nats://svc:p%40ss@127.0.0.1:4222, nats://svc:p%40ss@h2:4223,h3:4224",
        )
        .unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222,nats://h2:4223,h3:4224");
        assert!(auth == Some(UrlAuth::UserPassword("svc".into(), "p@ss".into())));
        let (bare, auth) = split_credentials("tok3n@127.0.0.1:4222").unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222");
        assert!(auth == Some(UrlAuth::Token("tok3n".into())));
        assert!(split_credentials("nats://a:b@h1,nats://c:d@h2").is_err());
        let (bare, auth) = split_credentials("nats://127.0.0.1:4222").unwrap();
        assert_eq!(bare, "nats://127.0.0.1:4222");
        assert!(auth.is_none());
    }
}
