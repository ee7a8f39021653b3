//! Explicit, named shutdown: one [`ShutdownTrigger`] (held by the runtime, fired on
//! SIGTERM/SIGINT or when a run ends) and any number of [`Shutdown`] listeners (one per task).

use tokio::sync::watch;

/// Fires shutdown for every listener. Dropping it also counts as firing.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A task's view of shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first listener.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn listener(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// True once shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested (immediately if it already was).
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped: treat as shutdown.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Owned variant of [`Shutdown::requested`], for `select!` arms and spawned futures.
    pub async fn wait(mut self) {
        self.requested().await
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn termination_signal() -> std::io::Result<&'static str> {
    Ok(termination_listener()?.await)
}

/// Installs the SIGTERM and SIGINT handlers now (call it inside the runtime) and returns the
/// future that resolves on the first of them. A signal that arrives before that future is
/// first polled is kept, not left to the default action: the daemon installs them before it
/// sends READY=1, so a stop right after READY still shuts down in order (issue #9, seen in
/// benches/footprint.rs).
pub fn termination_listener() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_before_the_listener_is_polled_is_kept() {
        let listener = termination_listener().expect("handlers");
        // SAFETY: raise(3) on this process; the handler installed above catches SIGINT.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), listener).await;
        assert_eq!(got, Ok("SIGINT"));
    }

    #[tokio::test]
    async fn listeners_see_the_trigger() {
        let (trigger, mut first) = shutdown_pair();
        let second = trigger.listener();
        assert!(!first.is_requested());
        let waiter = tokio::spawn(second.wait());
        trigger.trigger();
        first.requested().await;
        assert!(first.is_requested());
        waiter.await.expect("waiter finished");
    }

    #[tokio::test]
    async fn dropping_the_trigger_counts_as_shutdown() {
        let (trigger, mut listener) = shutdown_pair();
        drop(trigger);
        listener.requested().await;
    }
}
