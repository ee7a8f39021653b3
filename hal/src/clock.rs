//! Wall clock and time-synchronisation state.
//!
//! A Raspberry Pi has no real-time clock: it boots with a stale time until NTP (or
//! systemd-timesyncd) corrects it. Anything that signs tokens or dates readings must ask
//! [`TimeSync::state`] first. The real backend reads the kernel's view through `adjtimex(2)`:
//! the clock is synchronised when the call does not return `TIME_ERROR` and the `STA_UNSYNC`
//! status bit is clear — the same test `timedatectl` uses for "System clock synchronized".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether the system clock can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    Synchronized,
    Unsynchronized,
    /// The state could not be read (e.g. adjtimex refused); treated as unsynchronised.
    Unknown(String),
}

impl SyncState {
    pub fn is_synchronized(&self) -> bool {
        matches!(self, SyncState::Synchronized)
    }
}

/// Source of wall-clock time and of its synchronisation state.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Current wall-clock time.
    fn now(&self) -> SystemTime;
    /// Whether `now()` is synchronised to a time source.
    fn sync_state(&self) -> SyncState;
}

/// The host's clock, with the kernel's synchronisation flag.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sync_state(&self) -> SyncState {
        kernel_sync_state()
    }
}

/// Reads the kernel's NTP state without changing it (`modes = 0` makes adjtimex read-only).
pub fn kernel_sync_state() -> SyncState {
    // SAFETY: `timex` is plain old data; zeroed is a valid value, and modes = 0 asks the kernel
    // only to fill it in.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc == -1 {
        return SyncState::Unknown(std::io::Error::last_os_error().to_string());
    }
    if rc == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        SyncState::Unsynchronized
    } else {
        SyncState::Synchronized
    }
}

/// A clock for tests and simulations: settable time offset and settable sync state.
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    inner: Arc<SimulatedInner>,
}

#[derive(Debug)]
struct SimulatedInner {
    offset_ms: AtomicI64,
    synchronized: AtomicBool,
}

impl SimulatedClock {
    /// A clock that follows the host clock, shifted by `offset` (may be negative), reporting
    /// `synchronized`.
    pub fn new(offset_ms: i64, synchronized: bool) -> Self {
        Self {
            inner: Arc::new(SimulatedInner {
                offset_ms: AtomicI64::new(offset_ms),
                synchronized: AtomicBool::new(synchronized),
            }),
        }
    }

    /// Jumps the clock (relative to the host clock).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.inner.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    pub fn set_synchronized(&self, synchronized: bool) {
        self.inner
            .synchronized
            .store(synchronized, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> SystemTime {
        let offset = self.inner.offset_ms.load(Ordering::SeqCst);
        let host = SystemTime::now();
        if offset >= 0 {
            host + Duration::from_millis(offset as u64)
        } else {
            host.checked_sub(Duration::from_millis(offset.unsigned_abs()))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    fn sync_state(&self) -> SyncState {
        if self.inner.synchronized.load(Ordering::SeqCst) {
            SyncState::Synchronized
        } else {
            SyncState::Unsynchronized
        }
    }
}

/// Process-wide overrides for test rigs (never set on a patient's hub): a clock that always
/// reports synchronised. Used when config says `clock.assume_synchronized = true`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AssumedSynchronizedClock;

impl Clock for AssumedSynchronizedClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sync_state(&self) -> SyncState {
        SyncState::Synchronized
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SystemClock>();
    assert_send_sync::<SimulatedClock>();
    assert_send_sync::<AssumedSynchronizedClock>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_state_is_readable() {
        // The container or host may or may not be synchronised; reading must not fail.
        let state = kernel_sync_state();
        assert!(
            !matches!(state, SyncState::Unknown(_)),
            "adjtimex failed: {state:?}"
        );
    }

    #[test]
    fn simulated_clock_jumps_and_toggles() {
        let clock = SimulatedClock::new(0, false);
        assert_eq!(clock.sync_state(), SyncState::Unsynchronized);
        clock.set_synchronized(true);
        assert!(clock.sync_state().is_synchronized());
        let before = clock.now();
        clock.set_offset_ms(-3_600_000);
        let after = clock.now();
        assert!(after < before, "clock must jump backwards");
    }
}
