//! systemd's notification protocol (`sd_notify(3)`), without libsystemd.
//!
//! When `NOTIFY_SOCKET` is set (a `Type=notify` unit), the gateway sends `READY=1` once every
//! component is started, `WATCHDOG=1` pings while every pipeline task is alive, and
//! `STOPPING=1` when it begins to shut down. Without `NOTIFY_SOCKET` every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, or nothing when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::new(
            socket.as_deref().and_then(|s| s.to_str()),
            usec.as_deref(),
            pid.as_deref(),
        )
    }

    /// Builds a notifier from the raw variable values (testable without touching the
    /// process environment).
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let target = socket.and_then(|path| {
            let address = socket_address(path)?;
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, address))
        });
        let for_us = watchdog_pid
            .map(|pid| pid.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = watchdog_usec
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// Whether a service manager is listening.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_ping_interval(&self) -> Option<Duration> {
        self.watchdog
            .filter(|_| self.is_active())
            .map(|timeout| timeout / 2)
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// A one-line status shown by `systemctl status` (no health data in it).
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    fn send(&self, message: &str) {
        if let Some((sock, address)) = &self.target
            && let Err(err) = sock.send_to_addr(message.as_bytes(), address)
        {
            tracing::warn!(error = %err, "service manager notification failed");
        }
    }
}

/// `NOTIFY_SOCKET` is a path, or an abstract socket name starting with '@'.
fn socket_address(raw: &str) -> Option<SocketAddr> {
    if let Some(name) = raw.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).ok()
    } else {
        SocketAddr::from_pathname(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_protocol_messages_to_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.to_str(), Some("4000000"), None);
        assert!(notifier.is_active());
        assert_eq!(
            notifier.watchdog_ping_interval(),
            Some(Duration::from_secs(2))
        );
        notifier.ready();
        notifier.watchdog();
        notifier.stopping();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = listener.recv(&mut buf).expect("recv");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got, ["READY=1", "WATCHDOG=1", "STOPPING=1"]);
    }

    #[test]
    fn abstract_sockets_work() {
        let name = format!("vectorcare-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let listener = UnixDatagram::bind_addr(&address).expect("bind");
        Notifier::new(Some(&format!("@{name}")), None, None).ready();
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn without_socket_everything_is_a_no_op() {
        let notifier = Notifier::new(None, Some("4000000"), None);
        assert!(!notifier.is_active());
        assert_eq!(notifier.watchdog_ping_interval(), None);
        notifier.ready();
    }

    #[test]
    fn watchdog_for_another_pid_is_ignored() {
        let notifier = Notifier::new(Some("/nonexistent/sock"), Some("4000000"), Some("1"));
        assert_eq!(notifier.watchdog_ping_interval(), None);
    }
}
