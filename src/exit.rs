//! Process exit codes (sysexits.h values), so systemd and scripts can tell failures apart.
//! `RestartPreventExitStatus=78 65` in the unit stops systemd restarting on bad configuration
//! and on damaged queue files (`run` exits 65 then). A panic exits 101 ([`PANIC`]), which
//! systemd restarts.

/// Success.
pub const OK: u8 = 0;
/// `status`: the daemon answered and is unhealthy (a pipeline task is down or it is stopping).
pub const UNHEALTHY: u8 = 1;
/// The command line was wrong.
pub const USAGE: u8 = 64;
/// Input data was malformed (e.g. bytes given to `decode`, damaged queue files at `run`).
pub const DATA_ERR: u8 = 65;
/// A service the command needs is unavailable (daemon not running, server unreachable).
pub const UNAVAILABLE: u8 = 69;
/// Internal software error (a bug).
pub const SOFTWARE: u8 = 70;
/// The configuration is invalid: restarting will not help.
pub const CONFIG: u8 = 78;

/// A panic (a bug, in the gateway or a library): the panic hook exits with this code. It is
/// Rust's usual exit code for a panic and not in the unit's `RestartPreventExitStatus`, so
/// systemd restarts the gateway (docs/DEPLOY.md, "Panics").
pub const PANIC: u8 = 101;

/// Makes every panic, on any thread or task, end the process with one log line and [`PANIC`].
///
/// Device builds use `panic = "abort"` (Cargo.toml, profile `dist`), where a panic would end the
/// process with SIGABRT and a core dump; other builds unwind, where tokio would contain a panic
/// to its task and leave the gateway running without it. With this hook every build behaves
/// the same: log, exit 101, systemd restarts. Nothing is lost: sources acknowledge a reading only
/// after it is durably queued, and the queue is crash-safe (docs/DEPLOY.md).
///
/// The line names the code location only: a panic message can quote data (a value, an address),
/// which must not reach the logs at error level.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write as _;
        let opening = OPENING_STORAGE.with(|o| o.borrow().clone());
        let (line, code) = match opening {
            Some(path) => (damaged_storage_line(info.location(), &path), DATA_ERR),
            None => (
                panic_line(info.location(), std::thread::current().name()),
                PANIC,
            ),
        };
        // Straight to stderr (journald): the tracing subscriber may be what panicked.
        let _ = std::io::stderr().write_all(line.as_bytes());
        // `_exit`: no destructors or atexit handlers, which could block on state the panic left
        // behind; durable data is already on disk.
        // SAFETY: `_exit` only ends the process; it has no preconditions.
        unsafe { libc::_exit(i32::from(code)) }
    }));
}

thread_local! {
    /// The storage files this thread is opening, if any (see [`opening_storage`]).
    static OPENING_STORAGE: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `open` with `path` noted as the storage files this thread is opening.
///
/// sled 0.34 panics, instead of returning an error, on some damage it meets while recovering
/// (a log cut short under its snapshot: an index out of bounds in its segment accounting). A
/// panic there means damaged files, not a bug, and restarting would only meet it again; so
/// with the hook installed it ends the process with [`DATA_ERR`] (65, in the unit's
/// `RestartPreventExitStatus`) and a line naming the files, like any damaged queue (`cli::run`),
/// in every build (device builds abort on panic: only the hook can choose the code).
pub fn opening_storage<T>(path: &std::path::Path, open: impl FnOnce() -> T) -> T {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            OPENING_STORAGE.with(|o| o.borrow_mut().take());
        }
    }
    OPENING_STORAGE.with(|o| *o.borrow_mut() = Some(path.display().to_string()));
    let _clear = Clear;
    open()
}

/// The line the panic hook logs for a panic while opening storage files at `path`.
fn damaged_storage_line(location: Option<&std::panic::Location<'_>>, path: &str) -> String {
    let at = location.map_or_else(
        || "unknown".to_owned(),
        |l| format!("{}:{}", l.file(), l.line()),
    );
    format!(
        "level=error target=vectorcare_gateway::exit location={at} msg=\"the queue's files are damaged: the storage engine failed while opening {path}; restarting will not help. Stop the service, move `segments` (and `queue`, if present) in the gateway's state directory aside (keep them for analysis) and start again with an empty queue; exiting with {DATA_ERR}\"\n"
    )
}

/// The single line the panic hook logs (plain `key=value` format, see telemetry::logging).
fn panic_line(location: Option<&std::panic::Location<'_>>, thread: Option<&str>) -> String {
    let at = location.map_or_else(
        || "unknown".to_owned(),
        |l| format!("{}:{}", l.file(), l.line()),
    );
    format!(
        "level=error target=vectorcare_gateway::exit location={at} thread={} msg=\"internal error (panic); exiting with {PANIC} so the service manager restarts the gateway\"\n",
        thread.unwrap_or("unnamed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "VECTORCARE_PANIC_HOOK_CHILD";

    /// Runs the test `name` alone in a child process with [`CHILD`] set (the hook it installs
    /// ends that process, not the test run).
    fn run_as_child(name: &str) -> std::process::Output {
        let exe = std::env::current_exe().expect("test executable");
        std::process::Command::new(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run the child")
    }

    /// A panic inside a spawned tokio task — what bluez-async can do — ends the process with
    /// [`PANIC`] and one line that leaves the panic message (possibly data) out. Runs itself as
    /// a child process, since the hook ends the process.
    #[test]
    fn a_panicking_task_exits_with_the_panic_code_and_one_line() {
        if std::env::var_os(CHILD).is_some() {
            install_panic_hook();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("runtime");
            let _ = runtime.block_on(async {
                tokio::spawn(async { panic!("heart rate 31337 from DE:AD:BE:EF") }).await
            });
            // Reached only if the hook did not end the process.
            std::process::exit(0);
        }
        let output =
            run_as_child("exit::tests::a_panicking_task_exits_with_the_panic_code_and_one_line");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(PANIC)), "{stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("internal error (panic)"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("location=src/exit.rs:"), "{stderr}");
        assert!(
            !stderr.contains("31337") && !stderr.contains("DE:AD"),
            "{stderr}"
        );
    }

    /// A panic while storage files are being opened is damaged files, not a bug: exit 65
    /// with the files named, not 101 (which systemd would restart into the same panic).
    #[test]
    fn a_panic_while_opening_storage_exits_with_the_data_error_code() {
        if std::env::var_os(CHILD).is_some() {
            install_panic_hook();
            opening_storage(std::path::Path::new("/var/lib/gw/segments/0001"), || {
                panic!("index out of bounds")
            });
            std::process::exit(0);
        }
        let output = run_as_child(
            "exit::tests::a_panic_while_opening_storage_exits_with_the_data_error_code",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(DATA_ERR)), "{stderr}");
        assert!(
            stderr.contains("damaged") && stderr.contains("/var/lib/gw/segments/0001"),
            "{stderr}"
        );
        assert!(!stderr.contains("internal error (panic)"), "{stderr}");
    }

    /// Once the open returned, a panic is a bug again (the note is cleared).
    #[test]
    fn the_storage_note_ends_with_the_open() {
        assert_eq!(opening_storage(std::path::Path::new("/x"), || 7), 7);
        assert_eq!(OPENING_STORAGE.with(|o| o.borrow().clone()), None);
        let unwound = std::panic::catch_unwind(|| {
            opening_storage(std::path::Path::new("/x"), || {
                panic!("no hook in this test")
            })
        });
        assert!(unwound.is_err());
        assert_eq!(OPENING_STORAGE.with(|o| o.borrow().clone()), None);
    }

    #[test]
    fn the_line_without_a_location_or_thread_name() {
        assert_eq!(
            panic_line(None, None),
            format!(
                "level=error target=vectorcare_gateway::exit location=unknown thread=unnamed msg=\"internal error (panic); exiting with {PANIC} so the service manager restarts the gateway\"\n"
            )
        );
    }
}
