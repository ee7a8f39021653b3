//! Serial devices on pseudo-terminals (one per device; the gateway opens the printed slave
//! path) or on a real serial port (`serial:/dev/ttyUSB0`, a null-modem cable to the gateway).
//!
//! The simulator keeps the slave side open itself, so the line never hangs up while the
//! gateway reconnects, and writes never block: when nobody reads and the kernel buffer is
//! full, a line is dropped (counted in [`SerialTarget::dropped`]) as a real device's would be.
//! A `disconnect` fault makes the device silent for its duration.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::SimError;
use super::encode::serial_lines;
use super::engine::{Action, Target};
use super::scenario::{DeviceSpec, Scenario, Transport};

struct Line {
    /// Where the device writes (pty master, or the real port).
    device: File,
    /// The path the gateway opens.
    path: PathBuf,
    /// The pty slave kept open by us (none for a real port).
    _slave: Option<OwnedFd>,
    silent: bool,
}

enum Mode {
    Pty,
    Port { path: PathBuf, baud: u32 },
}

pub struct SerialTarget {
    mode: Mode,
    lines: HashMap<usize, Line>,
    dropped: u64,
    written: u64,
}

/// Puts `fd` (a tty) in raw mode, optionally at `baud`.
fn make_raw(fd: i32, baud: Option<u32>) -> std::io::Result<()> {
    // SAFETY: `fd` is an open tty; termios is plain data filled by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if let Some(baud) = baud {
            let speed = match baud {
                1200 => libc::B1200,
                2400 => libc::B2400,
                4800 => libc::B4800,
                9600 => libc::B9600,
                19200 => libc::B19200,
                38400 => libc::B38400,
                57600 => libc::B57600,
                115_200 => libc::B115200,
                _ => {
                    return Err(std::io::Error::other(format!(
                        "unsupported baud rate {baud}"
                    )));
                }
            };
            libc::cfsetspeed(&mut t, speed);
        }
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a pseudo-terminal pair: (master, slave path, slave fd).
pub fn open_pty() -> std::io::Result<(File, PathBuf, OwnedFd)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: out-pointers to locals; `name` is larger than any pty path.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            name.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are freshly opened and owned by nobody else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: openpty NUL-terminates `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // Raw before the gateway opens it, so nothing is echoed or translated meanwhile.
    make_raw(slave.as_raw_fd(), None)?;
    set_nonblocking(master.as_raw_fd())?;
    Ok((master, PathBuf::from(path), slave))
}

impl SerialTarget {
    /// One pseudo-terminal per serial device.
    pub fn pty() -> Self {
        Self {
            mode: Mode::Pty,
            lines: HashMap::new(),
            dropped: 0,
            written: 0,
        }
    }

    /// The (single) serial device of the scenario on the real port `path`.
    pub fn port(path: &Path, baud: u32) -> Self {
        Self {
            mode: Mode::Port {
                path: path.to_owned(),
                baud,
            },
            lines: HashMap::new(),
            dropped: 0,
            written: 0,
        }
    }

    /// (device index, path the gateway opens), after `start`.
    pub fn paths(&self) -> Vec<(usize, PathBuf)> {
        let mut v: Vec<_> = self
            .lines
            .iter()
            .map(|(i, l)| (*i, l.path.clone()))
            .collect();
        v.sort();
        v
    }

    /// Lines dropped because nobody read them.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Transmissions written completely.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn open(&self) -> Result<(File, PathBuf, Option<OwnedFd>), SimError> {
        match &self.mode {
            Mode::Pty => {
                let (master, path, slave) =
                    open_pty().map_err(|e| SimError::Serial(format!("openpty: {e}")))?;
                Ok((master, path, Some(slave)))
            }
            Mode::Port { path, baud } => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags_noctty()
                    .open(path)
                    .map_err(|e| SimError::Serial(format!("{}: {e}", path.display())))?;
                make_raw(file.as_raw_fd(), Some(*baud))
                    .and_then(|()| set_nonblocking(file.as_raw_fd()))
                    .map_err(|e| SimError::Serial(format!("{}: {e}", path.display())))?;
                Ok((file, path.clone(), None))
            }
        }
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

/// Writes all of `bytes` or reports that the buffer is full (nobody reading).
async fn write_bytes(file: &mut File, bytes: &[u8], slow: bool) -> std::io::Result<bool> {
    let chunk = if slow { 1 } else { bytes.len().max(1) };
    for part in bytes.chunks(chunk) {
        let mut rest = part;
        let mut waited = 0;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Give a slow reader a moment before calling the line lost.
                    waited += 1;
                    if waited > 20 {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(e),
            }
        }
        if slow {
            // About 2400 baud: a "slow" device dribbles its bytes.
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
    }
    Ok(true)
}

impl Target for SerialTarget {
    async fn start(&mut self, scenario: &Scenario) -> Result<(), SimError> {
        let serial: Vec<usize> = scenario
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| self.plays(&d.transport))
            .map(|(i, _)| i)
            .collect();
        if matches!(self.mode, Mode::Port { .. }) && serial.len() > 1 {
            return Err(SimError::Serial(format!(
                "{} serial devices but one port: pick one with --device",
                serial.len()
            )));
        }
        for i in serial {
            let (device, path, slave) = self.open()?;
            self.lines.insert(
                i,
                Line {
                    device,
                    path,
                    _slave: slave,
                    silent: false,
                },
            );
        }
        Ok(())
    }

    fn plays(&self, transport: &Transport) -> bool {
        matches!(transport, Transport::Serial { .. })
    }

    async fn apply(
        &mut self,
        device: &DeviceSpec,
        index: usize,
        action: &Action,
    ) -> Result<(), SimError> {
        let Transport::Serial { protocol } = device.transport else {
            return Ok(());
        };
        let Some(line) = self.lines.get_mut(&index) else {
            return Ok(());
        };
        let (bytes, slow) = match action {
            Action::Measure(sample) => (
                serial_lines(protocol, index, sample).into_bytes(),
                sample.slow,
            ),
            Action::Garbage(bytes) => {
                let mut b = bytes.clone();
                b.extend_from_slice(b"\r\n");
                (b, false)
            }
            Action::Disconnect => {
                line.silent = true;
                return Ok(());
            }
            Action::Reconnect => {
                line.silent = false;
                return Ok(());
            }
            Action::Store(_) => return Ok(()),
        };
        if line.silent {
            return Ok(());
        }
        match write_bytes(&mut line.device, &bytes, slow).await {
            Ok(true) => self.written += 1,
            Ok(false) => {
                tracing::debug!(device = %device.name, "serial buffer full: nobody reads, line dropped");
                self.dropped += 1;
            }
            Err(e) => {
                return Err(SimError::Serial(format!("{}: {e}", line.path.display())));
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SimError> {
        Ok(())
    }
}
