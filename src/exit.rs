//! Process exit codes (sysexits.h values), so systemd and scripts can tell failures apart.
//! `RestartPreventExitStatus=78 65` in the unit stops systemd restarting on bad configuration
//! and on damaged queue files (`run` exits 65 then).

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
