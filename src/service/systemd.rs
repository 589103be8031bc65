//! The systemd notification protocol (sd_notify(3)), for `Type=notify` units: `READY=1` once
//! the service takes events, `STOPPING=1` when it stops, and `WATCHDOG=1` keep-alives when the
//! unit sets `WatchdogSec=`. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::time::Duration;

/// Sends one notification; errors are returned for the caller to log, never fatal.
pub(crate) fn notify(state: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    socket.send_to(state.as_bytes(), std::path::Path::new(&path))?;
    Ok(())
}

/// The keep-alive interval the unit asks for (half of `WATCHDOG_USEC`), when it is meant for
/// this process.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
