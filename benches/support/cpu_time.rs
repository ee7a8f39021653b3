//! CPU time of this process and of the calling thread (`getrusage`), for the benchmarks.

use std::time::Duration;

/// User + system CPU time of this process (all its threads).
pub fn cpu_process() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User + system CPU time of the calling thread.
pub fn cpu_thread() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
