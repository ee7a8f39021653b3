//! Test harness: a REAL mosquitto broker process on 127.0.0.1 with its own config file and a
//! free port, stopped by PID. Install it with `scripts/install/mosquitto.sh`.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "mosquitto is not installed: run scripts/install/mosquitto.sh (these tests need a real broker)"
    );
}

pub struct Mosquitto {
    pub dir: tempfile::TempDir,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto with `listeners` (config text that may use `{port}` and `{dir}`) on a
    /// free `port` plus the common settings (persistence in the temp dir, runs as the current
    /// user even when root so it can read the test's files).
    pub fn start(listeners: &str) -> Self {
        Self::start_prepared(listeners, |_| {})
    }

    /// Like [`Mosquitto::start`], after `prepare` wrote files (certificates, password file)
    /// into the broker's directory.
    pub fn start_prepared(listeners: &str, prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let text = format!(
            "persistence true\npersistence_location {d}/\nlog_dest stderr\nlog_type error\nlog_type warning\n{user}{body}\n",
            d = dir.path().display(),
            user = if unsafe { libc::geteuid() } == 0 {
                "user root\n"
            } else {
                ""
            },
            body = listeners
                .replace("{port}", &port.to_string())
                .replace("{dir}", &dir.path().display().to_string()),
        );
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, text).expect("write config");
        prepare(dir.path());
        let mut m = Self {
            dir,
            port,
            config,
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("mosquitto exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its persistent sessions) and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by its PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
