//! A whole gateway as a child process, for reliability tests: writes a configuration (state
//! dir in a temp dir, a key from `keygen`'s code, upload to a FHIR base, optional MQTT source,
//! optional simulated BLE devices, `[status]` on 127.0.0.1:0), spawns
//! `vectorcare-gateway run --config … [--simulate-devices …]`, signals it by PID (SIGKILL,
//! SIGTERM), restarts it on the same state dir, reads `/status` and runs `queue stats`.
//!
//! Include it with `#[path = "support/gateway_process.rs"] mod gateway_process;`. It uses only
//! the standard library, `tempfile`, `libc`, `serde_json` and the gateway library (keygen), so
//! any integration test can copy or include it. The process is SIGKILLed when the rig drops.
//!
//! ```ignore
//! let mut gw = GatewayProcess::new(GatewaySpec::new(&peers.fhir_base, "client", key));
//! gw.start();
//! let status = gw.status();            // /status JSON of the running incarnation
//! gw.kill(libc::SIGKILL);              // no chance to flush, close or ack
//! gw.start();                          // same state dir, same config
//! gw.stop();                           // SIGTERM + wait (graceful)
//! assert_eq!(gw.queue_stats()["depth"], 0);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vectorcare_gateway::upload::keys::GeneratedKey;

/// The gateway binary Cargo built for this test crate.
pub fn gateway_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vectorcare-gateway"))
}

/// The MQTT source of the configuration (`[sources.mqtt]`, one topic mapping).
#[derive(Debug, Clone)]
pub struct MqttSourceSpec {
    pub port: u16,
    /// Fixed across restarts: the broker keeps the persistent session under it.
    pub client_id: String,
    pub filter: String,
    /// vitals | open_mhealth | fhir_observation
    pub format: String,
    pub device_id: String,
}

/// A BLE device of the configuration (`[[sources.ble.devices]]`).
#[derive(Debug, Clone)]
pub struct BleDeviceSpec {
    pub address: String,
    pub delete_after_upload: bool,
}

/// What the gateway is configured with. Fields are public: set what a test needs.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub gateway_id: String,
    pub patient: String,
    pub fhir_base: String,
    pub client_id: String,
    pub private_key: PathBuf,
    pub kid: String,
    /// "ES384" or "RS384" (the key's algorithm).
    pub alg: String,
    pub mqtt: Option<MqttSourceSpec>,
    pub ble_devices: Vec<BleDeviceSpec>,
    /// `--simulate-devices SCENARIO --simulate-speed X` (needed for `ble_devices`: there is no
    /// BlueZ in a test).
    pub simulate: Option<(PathBuf, f64)>,
    /// `[log] level` (the rig parses the info-level "status endpoint listening" line).
    pub log_level: String,
    /// Echo the gateway's log lines to the test's stderr (visible with --nocapture).
    pub echo_log: bool,
    /// Extra TOML appended to the file (whole sections, e.g. "[queue]\nmax_records = 10\n").
    pub extra_toml: String,
    /// Extra lines inside `[upload]` (e.g. "max_bundle_entries = 8\n").
    pub extra_upload: String,
}

impl GatewaySpec {
    /// A gateway uploading to `fhir_base` with `key`, no sources yet, clock trusted (test rig),
    /// fast upload backoff.
    pub fn new(fhir_base: &str, client_id: &str, key: &GeneratedKey, alg: &str) -> Self {
        Self {
            gateway_id: "hub-rig".into(),
            patient: "Patient/rig".into(),
            fhir_base: fhir_base.into(),
            client_id: client_id.into(),
            private_key: key.private_key_path.clone(),
            kid: key.kid.clone(),
            alg: alg.into(),
            mqtt: None,
            ble_devices: Vec::new(),
            simulate: None,
            log_level: "info".into(),
            echo_log: false,
            extra_toml: String::new(),
            extra_upload: String::new(),
        }
    }

    /// The configuration file's text for `state_dir`.
    pub fn toml(&self, state_dir: &Path) -> String {
        let mut t = format!(
            "[gateway]\nid = {:?}\npatient = {:?}\nstate_dir = {:?}\n\n\
             [log]\nlevel = {:?}\nformat = \"plain\"\n\n\
             [clock]\nassume_synchronized = true\n\n\
             [status]\nlisten = \"127.0.0.1:0\"\n\n\
             [upload]\nfhir_base_url = {:?}\nclient_id = {:?}\nprivate_key = {:?}\n\
             active_kid = {:?}\nalg = {:?}\nbundle_size = 20\nbackoff_base_ms = 100\n\
             backoff_cap_seconds = 2\nrequest_timeout_seconds = 10\n{}\n",
            self.gateway_id,
            self.patient,
            state_dir.display().to_string(),
            self.log_level,
            self.fhir_base,
            self.client_id,
            self.private_key.display().to_string(),
            self.kid,
            self.alg,
            self.extra_upload,
        );
        if !self.ble_devices.is_empty() {
            t.push_str("[sources.ble]\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\n\n");
            for d in &self.ble_devices {
                t.push_str(&format!(
                    "[[sources.ble.devices]]\naddress = {:?}\ndelete_after_upload = {}\n\n",
                    d.address, d.delete_after_upload
                ));
            }
        }
        if let Some(m) = &self.mqtt {
            t.push_str(&format!(
                "[sources.mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = {:?}\n\
                 reconnect_initial_ms = 100\nreconnect_max_ms = 1000\n\
                 reject_log = {:?}\n\n\
                 [[sources.mqtt.topics]]\nfilter = {:?}\nformat = {:?}\ndevice_id = {:?}\n\n",
                m.port,
                m.client_id,
                state_dir.join("mqtt-rejects.jsonl").display().to_string(),
                m.filter,
                m.format,
                m.device_id,
            ));
        }
        t.push_str(&self.extra_toml);
        t
    }
}

/// One gateway: its files, and the running incarnation (if any).
pub struct GatewayProcess {
    pub spec: GatewaySpec,
    /// `None` once [`GatewayProcess::keep_files`] kept it.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// Every incarnation's log lines, prefixed with the incarnation and the time since the
    /// rig was made (`<dir>/gateway.log`, for post-mortems).
    log_file: Arc<Mutex<std::fs::File>>,
    epoch: Instant,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    child: Option<Child>,
    /// The current incarnation's log lines (stderr; stdout is not used by `run`).
    log: Arc<Mutex<Vec<String>>>,
    /// How many times `start` spawned the process.
    pub starts: u32,
}

impl GatewayProcess {
    /// Writes the configuration into a new temp dir (state in `<dir>/state`). Not started.
    pub fn new(spec: GatewaySpec) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("gateway.toml");
        let log_file = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let mut gw = Self {
            spec,
            path: dir.path().to_owned(),
            dir: Some(dir),
            log_file: Arc::new(Mutex::new(log_file)),
            epoch: Instant::now(),
            config_path,
            state_dir,
            child: None,
            log: Arc::default(),
            starts: 0,
        };
        gw.write_config();
        gw
    }

    /// Rewrites the configuration from `spec` (after a test changed it; takes effect at the
    /// next `start`).
    pub fn write_config(&mut self) {
        std::fs::write(&self.config_path, self.spec.toml(&self.state_dir)).expect("write config");
    }

    /// The rig's temp dir (config, state; a good place for scenario files).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// When the rig was made: the zero of `gateway.log`'s times.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Keeps the rig's directory (config, state, `gateway.log`) after the test, for a
    /// post-mortem; returns its path.
    pub fn keep_files(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }

    /// A line in `gateway.log` from the rig itself (starts, kills).
    pub fn note(&self, what: &str) {
        let ms = self.epoch.elapsed().as_millis();
        let _ = writeln!(
            self.log_file.lock().expect("log lock"),
            "[rig +{ms}ms] {what}"
        );
    }

    /// Spawns `run` on the same config and state dir. Returns at once: use
    /// [`GatewayProcess::wait_status_addr`] to wait until it serves.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the gateway is already running");
        let mut command = Command::new(gateway_binary());
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("VECTORCARE_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((scenario, speed)) = &self.spec.simulate {
            command
                .arg("--simulate-devices")
                .arg(scenario)
                .arg("--simulate-speed")
                .arg(speed.to_string());
        }
        let mut child = command.spawn().expect("spawn the gateway");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        self.log = log.clone();
        let echo = self.spec.echo_log;
        let incarnation = self.starts;
        let (file, epoch) = (self.log_file.clone(), self.epoch);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[gw#{incarnation}] {line}");
                }
                let ms = epoch.elapsed().as_millis();
                let _ = writeln!(
                    file.lock().expect("log lock"),
                    "[#{incarnation} +{ms}ms] {line}"
                );
                log.lock().expect("log lock").push(line);
            }
        });
        self.note(&format!("started #{incarnation}, pid {}", child.id()));
        self.child = Some(child);
        self.starts += 1;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Sends `signal` to the process by PID and waits for it to end.
    pub fn kill(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway is not running");
        self.note(&format!(
            "signal {signal} to #{}, pid {}",
            self.starts - 1,
            child.id()
        ));
        // SAFETY: signalling our own child, which has not been reaped yet (its PID is ours).
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().expect("wait for the gateway");
        self.note(&format!("#{} ended: {status}", self.starts - 1));
        status
    }

    /// SIGTERM and wait: the graceful stop systemd does.
    pub fn stop(&mut self) -> ExitStatus {
        self.kill(libc::SIGTERM)
    }

    /// The current incarnation's log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits (up to `timeout`) for the "status endpoint listening" line; panics with the log
    /// when the process exits or never serves.
    pub fn wait_status_addr(&mut self, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = self.log().iter().find_map(|l| status_addr_in(l)) {
                return addr;
            }
            if !self.is_running() {
                panic!(
                    "the gateway exited before serving /status:\n{}",
                    self.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no status endpoint after {timeout:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET /status of the running incarnation (JSON).
    pub fn status(&mut self) -> Value {
        let addr = self.wait_status_addr(Duration::from_secs(30));
        let body = http_get(addr, "/status").expect("GET /status");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
    }

    /// `vectorcare-gateway queue --data-dir <state> stats --json` (the gateway must be stopped:
    /// the queue is locked while it runs).
    pub fn queue_stats(&self) -> Value {
        assert!(
            self.child.is_none(),
            "stop the gateway before `queue stats`"
        );
        let out = Command::new(gateway_binary())
            .args(["queue", "--data-dir"])
            .arg(&self.state_dir)
            .args(["stats", "--json"])
            .env_remove("VECTORCARE_DATA_DIR")
            .output()
            .expect("run queue stats");
        assert!(
            out.status.success(),
            "queue stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("queue stats JSON")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `addr=127.0.0.1:PORT` of the runtime's "status endpoint listening" line.
fn status_addr_in(line: &str) -> Option<SocketAddr> {
    if !line.contains("status endpoint listening") {
        return None;
    }
    let start = line.find("addr=")? + "addr=".len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

/// A minimal HTTP/1.0 GET on loopback (no client library needed from a blocking test).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_owned())
}

/// A seeded splitmix64: reproducible random kill moments without a `rand` dependency.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_micros().max(1) as u64;
        low + Duration::from_micros(self.next_u64() % span)
    }
}

/// The seed from `env_var` when set (to replay a failure), else from the clock; printed.
pub fn seed_from_env(env_var: &str) -> u64 {
    let seed = std::env::var(env_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("seed {seed} (replay with {env_var}={seed})");
    seed
}
