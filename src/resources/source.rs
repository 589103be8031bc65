//! Where `remediation.yaml` and `shipyard.yaml` come from (docs/design.md §3): a directory, or the
//! Keptn API.
//!
//! A source only fetches text; parsing is [`super::RemediationFile`]'s and [`super::Shipyard`]'s.
//! `Ok(None)` means "there is no such file", which callers answer differently from "the file
//! could not be read" (`Err`).

use super::yaml::MAX_FILE_BYTES;
use crate::http_client::{Backoff, Retry, Verdict, error_chain, segment};
use crate::keptn::Scope;
use crate::secret::Secret;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file names Keptn stores the resources under.
pub const REMEDIATION_FILE: &str = "remediation.yaml";
pub const SHIPYARD_FILE: &str = "shipyard.yaml";

/// The text of a resource and where it came from (a path or URL, for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub text: String,
    pub origin: String,
}

/// A resource could not be read (which is not the same as: it does not exist).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A project, stage or service name that cannot be part of a path or URL.
    #[error("{what} {value:?} cannot name a resource: {why}")]
    InvalidName {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { origin: String },
    /// A FIFO, a device or a socket: reading it could block or never end.
    #[error("{origin} is not a regular file but {kind}")]
    NotAFile { origin: String, kind: &'static str },
    #[error("{origin} is not UTF-8 text")]
    NotText { origin: String },
    /// The Keptn API answered with an error status.
    #[error("the Keptn API answered {status} for {url}{}", detail(.body))]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// No answer from the Keptn API (connection refused, timeout, ...).
    #[error("the Keptn API could not be reached at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The Keptn API answered, but not with a resource.
    #[error("the Keptn API answer for {url} is not a resource: {reason}")]
    BadResponse { url: String, reason: String },
}

fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Where resources are read from; the service picks one at start (docs/design.md §3).
#[derive(Debug, Clone)]
pub enum ResourceSource {
    Dir(DirSource),
    KeptnApi(KeptnApiSource),
}

impl ResourceSource {
    /// The `remediation.yaml` for a scope. `git_commit` (the trigger's `gitcommitid`) pins the
    /// version where the source keeps history (Keptn's resource-service).
    pub async fn remediation(
        &self,
        scope: &Scope,
        git_commit: Option<&str>,
    ) -> Result<Option<Loaded>, SourceError> {
        match self {
            ResourceSource::Dir(d) => d.remediation(scope).await,
            ResourceSource::KeptnApi(k) => k.remediation(scope, git_commit).await,
        }
    }

    /// The project's `shipyard.yaml` and, when the source holds both in one place, the
    /// scope's `remediation.yaml` read with it: a directory reads both in one hand-off to the
    /// blocking pool. `None` for the second: ask [`Self::remediation`] when it is needed.
    pub async fn shipyard_and_remediation(
        &self,
        scope: &Scope,
        git_commit: Option<&str>,
    ) -> (
        Result<Option<Loaded>, SourceError>,
        Option<Result<Option<Loaded>, SourceError>>,
    ) {
        match self {
            ResourceSource::Dir(d) => {
                let (shipyard, remediation) = d.both(scope).await;
                (shipyard, Some(remediation))
            }
            ResourceSource::KeptnApi(k) => (k.shipyard(&scope.project, git_commit).await, None),
        }
    }

    /// The project's `shipyard.yaml`.
    pub async fn shipyard(
        &self,
        project: &str,
        git_commit: Option<&str>,
    ) -> Result<Option<Loaded>, SourceError> {
        match self {
            ResourceSource::Dir(d) => d.shipyard(project).await,
            ResourceSource::KeptnApi(k) => k.shipyard(project, git_commit).await,
        }
    }
}

/// A name that becomes a path segment or URL segment must stay one segment.
fn checked<'a>(what: &'static str, value: &'a str) -> Result<&'a str, SourceError> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value == "." || value == ".." {
        Some("it would point outside the resource tree")
    } else if value.contains(['/', '\\']) {
        Some("it contains a slash")
    } else if value.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(SourceError::InvalidName {
            what,
            value: value.to_owned(),
            why,
        }),
        None => Ok(value),
    }
}

/// Resources in a directory tree (`RESOURCE_DIR`), most specific file first:
/// `{dir}/{project}/{stage}/{service}/remediation.yaml`, `{dir}/{project}/{stage}/remediation.yaml`,
/// `{dir}/remediation.yaml`; `{dir}/{project}/shipyard.yaml`, `{dir}/shipyard.yaml`.
///
/// The last fallbacks make the plain-VM case simple: one `remediation.yaml` and one
/// `shipyard.yaml` next to the service serve every project.
#[derive(Debug, Clone)]
pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSource { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The places `remediation.yaml` is looked for, in order. An empty service skips the
    /// service level.
    pub fn remediation_candidates(&self, scope: &Scope) -> Result<Vec<PathBuf>, SourceError> {
        let project = checked("project", &scope.project)?;
        let stage = checked("stage", &scope.stage)?;
        let mut paths = Vec::with_capacity(3);
        if !scope.service.is_empty() {
            let service = checked("service", &scope.service)?;
            paths.push(
                self.dir
                    .join(project)
                    .join(stage)
                    .join(service)
                    .join(REMEDIATION_FILE),
            );
        }
        paths.push(self.dir.join(project).join(stage).join(REMEDIATION_FILE));
        paths.push(self.dir.join(REMEDIATION_FILE));
        Ok(paths)
    }

    /// The places `shipyard.yaml` is looked for, in order.
    pub fn shipyard_candidates(&self, project: &str) -> Result<Vec<PathBuf>, SourceError> {
        let project = checked("project", project)?;
        Ok(vec![
            self.dir.join(project).join(SHIPYARD_FILE),
            self.dir.join(SHIPYARD_FILE),
        ])
    }

    async fn remediation(&self, scope: &Scope) -> Result<Option<Loaded>, SourceError> {
        first_existing(self.remediation_candidates(scope)?).await
    }

    async fn shipyard(&self, project: &str) -> Result<Option<Loaded>, SourceError> {
        first_existing(self.shipyard_candidates(project)?).await
    }

    /// [`Self::shipyard`] and [`Self::remediation`] in one blocking task.
    async fn both(
        &self,
        scope: &Scope,
    ) -> (
        Result<Option<Loaded>, SourceError>,
        Result<Option<Loaded>, SourceError>,
    ) {
        // A name that cannot be a path fails its own file only, as when read one by one.
        let shipyard = self.shipyard_candidates(&scope.project);
        let remediation = self.remediation_candidates(scope);
        let read = tokio::task::spawn_blocking(move || {
            (
                shipyard.and_then(read_first),
                remediation.and_then(read_first),
            )
        })
        .await;
        read.unwrap_or_else(|e| {
            let failed = || {
                Err(SourceError::Io {
                    path: "resource directory".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            };
            (failed(), failed())
        })
    }
}

/// The first of `paths` that exists, read. The whole search runs as one blocking task: the files
/// are small and local, and one hand-off to the blocking pool costs less than one per stat and
/// read.
async fn first_existing(paths: Vec<PathBuf>) -> Result<Option<Loaded>, SourceError> {
    tokio::task::spawn_blocking(move || read_first(paths))
        .await
        .unwrap_or_else(|e| {
            Err(SourceError::Io {
                path: "resource directory".into(),
                source: std::io::Error::other(e),
            })
        })
}

/// The first of `paths` that exists, read (blocking).
fn read_first(paths: Vec<PathBuf>) -> Result<Option<Loaded>, SourceError> {
    for path in paths {
        if let Some(loaded) = read_file(&path)? {
            return Ok(Some(loaded));
        }
    }
    Ok(None)
}

/// Reads a resource file, at most [`MAX_FILE_BYTES`]. Only regular files (after following
/// symlinks) are read: a FIFO would block the reader, `/dev/zero` would never end. The file is
/// opened without blocking and its type checked on the open handle, so a file swapped for a
/// FIFO between look and open cannot block either; the read itself is bounded whatever the
/// size claimed.
fn read_file(path: &Path) -> Result<Option<Loaded>, SourceError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let origin = path.display().to_string();
    let io = |source| SourceError::Io {
        path: origin.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Ok(None);
    }
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let kind = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(SourceError::NotAFile { origin, kind });
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(SourceError::TooLarge { origin });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge { origin });
    }
    let text = String::from_utf8(bytes).map_err(|_| SourceError::NotText {
        origin: origin.clone(),
    })?;
    Ok(Some(Loaded { text, origin }))
}

/// Which Keptn service stores resources (`KEPTN_RESOURCE_API`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResourceApi {
    /// Keptn ≥ 0.12 (`/resource-service/v1/...`); reads the version named by `gitCommitID`.
    ResourceService,
    /// Keptn < 0.12 (`/configuration-service/v1/...`); no commit parameter.
    ConfigurationService,
}

impl ResourceApi {
    fn path_prefix(self) -> &'static str {
        match self {
            ResourceApi::ResourceService => "resource-service",
            ResourceApi::ConfigurationService => "configuration-service",
        }
    }
}

/// Resources from the Keptn API (`KEPTN_API_ENDPOINT`, token sent as `x-token`).
///
/// Like Keptn's own remediation-service, the service-level file is read when the event names a
/// service and the stage-level file otherwise, without falling back from one to the other.
#[derive(Debug, Clone)]
pub struct KeptnApiSource {
    endpoint: String,
    /// `endpoint` without user and password, for messages.
    shown_endpoint: String,
    /// The token and the endpoint's password, taken out of every message.
    scrubber: crate::redact::Scrubber,
    token: Secret,
    api: ResourceApi,
    client: reqwest::Client,
    retry: Retry,
}

/// Keptn's resource answer; other members (metadata) are ignored.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceBody {
    resource_content: Option<String>,
}

impl KeptnApiSource {
    /// `endpoint` is the API base, e.g. `http://keptn.example/api`; every request gives up after
    /// `timeout`. Fails only when `endpoint` is not an http(s) URL.
    pub fn new(
        endpoint: &str,
        token: Secret,
        api: ResourceApi,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let shown = crate::redact::without_userinfo(endpoint);
        let parsed = url::Url::parse(endpoint).map_err(|e| SourceError::Unreachable {
            url: shown.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let password = parsed.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let scrubber = crate::redact::Scrubber::new(
            [Some(token.expose().to_owned()), password]
                .into_iter()
                .flatten(),
        );
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SourceError::Unreachable {
                url: shown.clone(),
                reason: "the Keptn API endpoint must be an http or https URL".into(),
            });
        }
        let client = crate::http_client::client_builder(timeout)
            .build()
            .map_err(|e| SourceError::Unreachable {
                url: shown.clone(),
                reason: scrubber.scrub(&e.to_string()).into_owned(),
            })?;
        Ok(KeptnApiSource {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            shown_endpoint: shown.trim_end_matches('/').to_owned(),
            scrubber,
            token,
            api,
            client,
            retry: Retry {
                retries: 2,
                backoff: backoff(Duration::from_millis(250)),
            },
        })
    }

    /// Retries after a connection error or a 5xx answer (default 2, 250 ms apart, doubling).
    pub fn with_retries(mut self, retries: u32, start: Duration) -> Self {
        self.retry = Retry {
            retries,
            backoff: backoff(start),
        };
        self
    }

    /// The URL of a service- or stage-level resource.
    pub fn remediation_url(
        &self,
        scope: &Scope,
        git_commit: Option<&str>,
    ) -> Result<String, SourceError> {
        let mut path = format!(
            "/project/{}/stage/{}",
            segment(checked("project", &scope.project)?),
            segment(checked("stage", &scope.stage)?)
        );
        if !scope.service.is_empty() {
            path.push_str("/service/");
            path.push_str(&segment(checked("service", &scope.service)?));
        }
        Ok(self.resource_url(&path, REMEDIATION_FILE, git_commit))
    }

    /// The URL of a project-level resource.
    pub fn shipyard_url(
        &self,
        project: &str,
        git_commit: Option<&str>,
    ) -> Result<String, SourceError> {
        let path = format!("/project/{}", segment(checked("project", project)?));
        Ok(self.resource_url(&path, SHIPYARD_FILE, git_commit))
    }

    fn resource_url(&self, path: &str, resource: &str, git_commit: Option<&str>) -> String {
        let mut url = format!(
            "{}/{}/v1{}/resource/{}",
            self.endpoint,
            self.api.path_prefix(),
            path,
            segment(resource)
        );
        // Keptn's remediation-service sent `commitID`, which resource-service ignores; the
        // parameter it reads is `gitCommitID`. configuration-service has none.
        if let (ResourceApi::ResourceService, Some(commit)) =
            (self.api, git_commit.filter(|c| !c.is_empty()))
        {
            url.push_str("?gitCommitID=");
            url.push_str(&segment(commit));
        }
        url
    }

    async fn remediation(
        &self,
        scope: &Scope,
        git_commit: Option<&str>,
    ) -> Result<Option<Loaded>, SourceError> {
        let url = self.remediation_url(scope, git_commit)?;
        self.get(url).await
    }

    async fn shipyard(
        &self,
        project: &str,
        git_commit: Option<&str>,
    ) -> Result<Option<Loaded>, SourceError> {
        let url = self.shipyard_url(project, git_commit)?;
        self.get(url).await
    }

    async fn get(&self, url: String) -> Result<Option<Loaded>, SourceError> {
        let (outcome, _) = self
            .retry
            .run(
                || self.get_once(&url),
                |outcome| match outcome {
                    Err(e) if retryable(e) => Verdict::Retry { at_least: None },
                    _ => Verdict::Done,
                },
                |outcome, attempt, _| {
                    if let Err(e) = outcome {
                        tracing::warn!(url = %self.shown(&url), attempt, error = %e, "retrying the Keptn API");
                    }
                },
            )
            .await;
        outcome
    }

    /// `url` as it may be shown: without the endpoint's credentials.
    fn shown(&self, url: &str) -> String {
        match url.strip_prefix(&self.endpoint) {
            Some(rest) => format!("{}{rest}", self.shown_endpoint),
            None => crate::redact::without_userinfo(url),
        }
    }

    async fn get_once(&self, request_url: &str) -> Result<Option<Loaded>, SourceError> {
        let shown = self.shown(request_url);
        let url = shown.as_str();
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            url: url.to_owned(),
            reason: self.scrubber.scrub(&error_chain(&e)).into_owned(),
        };
        let response = self
            .client
            .get(request_url)
            .header("x-token", self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response
            .content_length()
            .is_some_and(|len| len > (MAX_FILE_BYTES as u64) * 2)
        {
            return Err(SourceError::TooLarge {
                origin: url.to_owned(),
            });
        }
        // Read chunk by chunk: an answer without a length must not grow without bound either.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_FILE_BYTES * 2 {
                return Err(SourceError::TooLarge {
                    origin: url.to_owned(),
                });
            }
        }
        if !status.is_success() {
            return Err(SourceError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: self.scrubber.scrub(&excerpt(&body)).into_owned(),
            });
        }
        if body.len() > MAX_FILE_BYTES * 2 {
            return Err(SourceError::TooLarge {
                origin: url.to_owned(),
            });
        }
        let bad = |reason: String| SourceError::BadResponse {
            url: url.to_owned(),
            reason,
        };
        let resource: ResourceBody = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("not the expected JSON: {e}")))?;
        let content = resource
            .resource_content
            .ok_or_else(|| bad("`resourceContent` is missing".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|e| bad(format!("`resourceContent` is not base64: {e}")))?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(SourceError::TooLarge {
                origin: url.to_owned(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| SourceError::NotText {
            origin: url.to_owned(),
        })?;
        Ok(Some(Loaded {
            text,
            origin: url.to_owned(),
        }))
    }
}

fn retryable(e: &SourceError) -> bool {
    match e {
        SourceError::Unreachable { .. } => true,
        SourceError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// The first line of an error body, shortened: enough to say what Keptn complained about.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Doubling from `start`, without a ceiling of its own: the retries are few.
fn backoff(start: Duration) -> Backoff {
    Backoff {
        start,
        max: Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `read_file` on another thread, failing the test if it does not return within 5 s.
    fn read_within(path: PathBuf) -> Result<Option<Loaded>, SourceError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_file(&path));
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("reading the resource did not return within 5 s")
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(REMEDIATION_FILE);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(status.success());
        let e = read_within(fifo).unwrap_err();
        assert!(
            matches!(e, SourceError::NotAFile { kind: "a FIFO", .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("is not a regular file but a FIFO"),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join(REMEDIATION_FILE);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_within(link).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
    }

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "kind: Remediation\n").unwrap();
        let target = dir.path().join("target.yaml");
        std::fs::write(&target, "x: 1\n").unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            read_within(ok).unwrap().unwrap().text,
            "kind: Remediation\n"
        );
        assert_eq!(read_within(link).unwrap().unwrap().text, "x: 1\n");
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES + 1]).unwrap();
        assert!(matches!(
            read_within(big),
            Err(SourceError::TooLarge { .. })
        ));
        assert!(
            read_within(dir.path().join("missing.yaml"))
                .unwrap()
                .is_none()
        );
        assert!(read_within(dir.path().to_path_buf()).unwrap().is_none());
    }

    #[test]
    fn keptn_api_errors_carry_no_credentials() {
        let source = KeptnApiSource::new(
            "http://keptn:s3cret-pass@127.0.0.1:9/api",
            Secret::new("s3cret-token"),
            ResourceApi::ResourceService,
            Duration::from_secs(1),
        )
        .unwrap();
        let url = source
            .remediation_url(
                &Scope {
                    project: "p".into(),
                    stage: "s".into(),
                    service: String::new(),
                },
                None,
            )
            .unwrap();
        assert_eq!(
            source.shown(&url),
            "http://127.0.0.1:9/api/resource-service/v1/project/p/stage/s/resource/remediation.yaml"
        );
        assert_eq!(
            source
                .scrubber
                .scrub("bad token s3cret-token for s3cret-pass"),
            "bad token *** for ***"
        );
    }
}
