//! Serial source tests: through the simulated hal backend, and through the REAL tokio-serial
//! path on pseudo-terminals the test creates with openpty(3) (master = the device side).
//! Unplug = closing the master; replug = a new pty behind the same by-id style symlink.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};
use vectorcare_hal::clock::SimulatedClock;
use vectorcare_hal::serial::simulated::SimulatedOpener;
use vectorcare_hal::serial::tokio_serial::TokioSerialOpener;

use super::*;
use crate::config::Problems;
use crate::decode::serial::masimo::encode_line;
use crate::reading::{Decimal, DeviceTime, Kind, MeasuredValue};
use crate::sources::IngestError;
use crate::sources::test_sink::{self, Answer};

fn config(path: &Path, format: &str, extra: &str) -> SerialConfig {
    let text = format!(
        "reconnect_initial_ms = 20\nreconnect_max_ms = 200\n[[ports]]\npath = {:?}\nformat = {format}\n{extra}",
        path.display().to_string()
    );
    let raw: RawSerialConfig = toml::from_str(&text).expect("toml");
    let mut problems = Problems::new();
    raw.validate("sources.serial", &mut problems)
        .expect("valid config")
}

async fn wait_status(
    rx: &mut watch::Receiver<SerialStatus>,
    what: &str,
    f: impl Fn(&PortStatus) -> bool,
) -> PortStatus {
    let waited = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| s.first().is_some_and(&f)),
    )
    .await
    .map(|r| r.map(|found| found[0].clone()));
    match waited {
        Ok(Ok(found)) => found,
        Ok(Err(_)) => panic!("source dropped while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", rx.borrow()),
    }
}

fn line(seconds: u8, spo2: u8, bpm: u16) -> String {
    let t = DeviceTime {
        year: 2026,
        month: 11,
        day: 28,
        hours: 10,
        minutes: 0,
        seconds,
    };
    format!("{}\r\n", encode_line(t, "0000056661", spo2, bpm, 0x800))
}

fn number(r: &crate::reading::Reading) -> Decimal {
    match r.value.as_ref().map(|q| q.value) {
        Some(MeasuredValue::Number(d)) => d,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn simulated_stream_garbage_unplug_and_replug() {
    let opener = SimulatedOpener::new();
    let cfg = config(
        Path::new("/dev/serial/by-id/oximeter"),
        "{ type = \"masimo\" }",
        "max_line_bytes = 200",
    );
    let source = SerialSource::new(
        cfg,
        Arc::new(opener.clone()),
        Arc::new(SimulatedClock::new(0, true)),
    );
    let mut status = source.status();
    let (sink, _script, mut stored) = test_sink::sink();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(source.run(sink, async move {
        let _ = stop_rx.await;
    }));

    // Unplugged at start: the source keeps retrying.
    wait_status(&mut status, "disconnected", |p| {
        matches!(p.state, PortState::Disconnected(_))
    })
    .await;
    let mut device = opener.plug();
    wait_status(&mut status, "connected", |p| {
        p.state == PortState::Connected
    })
    .await;

    device
        .write_all(line(1, 97, 64).as_bytes())
        .await
        .expect("write");
    // Garbage: binary noise, an over-long line, a malformed line; then a good line.
    device
        .write_all(b"\xff\xfe\x00\x01\n")
        .await
        .expect("write");
    device.write_all(&[b'x'; 500]).await.expect("write");
    device.write_all(b"\nSPO2=\n").await.expect("write");
    device
        .write_all(line(2, 96, 65).as_bytes())
        .await
        .expect("write");
    let got: Vec<_> = [
        next(&mut stored).await,
        next(&mut stored).await,
        next(&mut stored).await,
        next(&mut stored).await,
    ]
    .iter()
    .map(|r| (r.kind, number(r)))
    .collect();
    assert_eq!(
        got,
        vec![
            (Kind::OxygenSaturation, Decimal::new(97, 0)),
            (Kind::PulseRate, Decimal::new(64, 0)),
            (Kind::OxygenSaturation, Decimal::new(96, 0)),
            (Kind::PulseRate, Decimal::new(65, 0)),
        ]
    );
    let s = wait_status(&mut status, "counters", |p| p.readings_stored == 4).await;
    assert_eq!((s.garbage_frames, s.bad_lines, s.lines), (2, 1, 3));

    drop(device); // unplug
    wait_status(&mut status, "unplugged", |p| {
        matches!(p.state, PortState::Disconnected(_))
    })
    .await;
    let mut device = opener.plug();
    wait_status(&mut status, "replugged", |p| {
        p.connects == 2 && p.state == PortState::Connected
    })
    .await;
    device
        .write_all(line(3, 95, 70).as_bytes())
        .await
        .expect("write");
    assert_eq!(number(&next(&mut stored).await), Decimal::new(95, 0));

    stop_tx.send(()).expect("stop");
    task.await.expect("source ends");
    assert_eq!(status.borrow()[0].state, PortState::Stopped);
}

#[tokio::test]
async fn queue_full_is_retried_and_throttle_limits_rate() {
    let opener = SimulatedOpener::new();
    let cfg = config(
        Path::new("/dev/ttyS9"),
        "{ type = \"masimo\" }",
        "min_interval_seconds = 3600",
    );
    let source = SerialSource::new(
        cfg,
        Arc::new(opener.clone()),
        Arc::new(SimulatedClock::new(0, true)),
    );
    let mut status = source.status();
    let (sink, script, mut stored) = test_sink::sink();
    let mut device = opener.plug();
    let task = tokio::spawn(source.run(sink, std::future::pending()));
    wait_status(&mut status, "connected", |p| {
        p.state == PortState::Connected
    })
    .await;

    script.set(Answer::Refuse(IngestError::QueueFull("test".into())));
    device
        .write_all(line(1, 97, 64).as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        stored.try_recv().is_err(),
        "nothing stored while the queue is full"
    );
    script.set(Answer::Store);
    assert_eq!(number(&next(&mut stored).await), Decimal::new(97, 0));
    assert_eq!(number(&next(&mut stored).await), Decimal::new(64, 0));
    // Within the hour: throttled.
    device
        .write_all(line(2, 90, 90).as_bytes())
        .await
        .expect("write");
    let s = wait_status(&mut status, "throttled", |p| p.readings_throttled == 2).await;
    assert_eq!(s.readings_stored, 2);
    task.abort();
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::reading::Reading>,
) -> crate::reading::Reading {
    test_sink::next(rx, 10).await
}

/// A pseudo-terminal: `master` is the device side; the slave is what the gateway opens.
struct Pty {
    master: std::fs::File,
    slave_path: PathBuf,
    _slave: OwnedFd,
}

fn open_pty() -> Pty {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: out-pointers are valid; name is large enough for a /dev/pts path.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            name.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // Raw mode before the gateway opens it, so nothing is echoed or translated meanwhile.
    // SAFETY: `slave` is an open tty fd; termios is plain data filled by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(slave, &mut t);
        libc::cfmakeraw(&mut t);
        libc::tcsetattr(slave, libc::TCSANOW, &t);
    }
    // SAFETY: name is NUL-terminated by openpty.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Pty {
        // SAFETY: both fds are freshly opened and owned by nobody else.
        master: unsafe { std::fs::File::from_raw_fd(master) },
        slave_path: PathBuf::from(slave_path),
        _slave: unsafe { OwnedFd::from_raw_fd(slave) },
    }
}

fn point_link(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename symlink");
}

#[tokio::test]
async fn real_tokio_serial_on_pty_stream_garbage_unplug_and_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("usb-Masimo_Rad-8-if00-port0");
    let mut pty = open_pty();
    point_link(&link, &pty.slave_path);

    let cfg = config(&link, "{ type = \"masimo\" }", "baud_rate = 9600");
    let source = SerialSource::new(
        cfg,
        Arc::new(TokioSerialOpener::default()),
        Arc::new(SimulatedClock::new(0, true)),
    );
    let mut status = source.status();
    let (sink, _script, mut stored) = test_sink::sink();
    let task = tokio::spawn(source.run(sink, std::future::pending()));
    wait_status(&mut status, "connected to the pty", |p| {
        p.state == PortState::Connected
    })
    .await;

    pty.master
        .write_all(line(1, 98, 97).as_bytes())
        .expect("write");
    pty.master
        .write_all(b"\x00\x13\xff garbage at the wrong baud rate \xc3\x28\r\n")
        .expect("write");
    pty.master
        .write_all(line(2, 97, 96).as_bytes())
        .expect("write");
    let got: Vec<_> = [
        next(&mut stored).await,
        next(&mut stored).await,
        next(&mut stored).await,
        next(&mut stored).await,
    ]
    .iter()
    .map(|r| (r.kind, number(r), r.device.address.clone()))
    .collect();
    let addr = link.display().to_string();
    assert_eq!(
        got,
        vec![
            (Kind::OxygenSaturation, Decimal::new(98, 0), addr.clone()),
            (Kind::PulseRate, Decimal::new(97, 0), addr.clone()),
            (Kind::OxygenSaturation, Decimal::new(97, 0), addr.clone()),
            (Kind::PulseRate, Decimal::new(96, 0), addr.clone()),
        ]
    );
    let s = wait_status(&mut status, "garbage counted", |p| p.garbage_frames == 1).await;
    assert_eq!(s.readings_stored, 4);

    // Unplug: close the device side. The pts node disappears and the link dangles.
    drop(pty);
    wait_status(&mut status, "unplug seen", |p| {
        matches!(p.state, PortState::Disconnected(_))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status.borrow()[0].connects,
        1,
        "no reconnect while the device is gone"
    );

    // Return: a new pty behind the same stable name.
    let mut pty = open_pty();
    point_link(&link, &pty.slave_path);
    wait_status(&mut status, "reconnected", |p| {
        p.connects == 2 && p.state == PortState::Connected
    })
    .await;
    pty.master
        .write_all(line(3, 95, 88).as_bytes())
        .expect("write");
    let r = next(&mut stored).await;
    assert_eq!(
        (r.kind, number(&r)),
        (Kind::OxygenSaturation, Decimal::new(95, 0))
    );
    assert_eq!(next(&mut stored).await.kind, Kind::PulseRate);
    task.abort();
}
