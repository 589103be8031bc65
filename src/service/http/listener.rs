//! The listeners' transport: HTTP/1.1 connections on the service's tokio runtime, each one
//! bounded whatever the client does, handed to [`super::route`].

use super::{Request, Routes, route};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once by one listener; the next client waits in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
/// A client has this long to send a request's headers (also the idle time of a kept-alive
/// connection before its next request).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) read from a client.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a stop waits for requests in progress before it closes their connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound HTTP/1.1 listener; nothing is served until [`Listener::start`].
pub struct Listener {
    listener: std::net::TcpListener,
    routes: Routes,
}

/// A listener being served; [`Running::stop`] ends it.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` (`what` names the setting in the error) so the caller learns the port at once.
pub(super) fn bind(
    addr: &str,
    what: &str,
    routes: Routes,
) -> anyhow::Result<(Listener, std::net::SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {what}{addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    Ok((Listener { listener, routes }, local))
}

impl Listener {
    /// Serves the listener on the current tokio runtime, each connection in a task of its own.
    pub fn start(self) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let routes = Arc::new(self.routes);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(listener, routes, stopped));
        Ok(Running { stop, task })
    }
}

impl Running {
    /// Stops accepting, lets the requests in progress finish (at most `STOP_TIMEOUT`, 5 s), then
    /// closes what is left.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    routes: Arc<Routes>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = stopped.changed() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: wait a
                // little rather than spin, and keep serving.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let service = hyper::service::service_fn(move |req: Request| {
            let routes = routes.clone();
            async move { Ok::<_, std::convert::Infallible>(route(&routes, req).await) }
        });
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            // A client that goes away mid-request ends only its own connection.
            let _ = connection.await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(STOP_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}
