//! Gateway processes behind fault proxies, for the reliability tests (network faults, fleet,
//! full disk): the real peers (Medplum + oidc-provider, tests/support/node_peers.rs), one
//! [`FaultProxy`] in front of the FHIR server and one in front of the token endpoint, a
//! client key registered with the authorization server, and `vectorcare-gateway run`
//! processes spawned with `--simulate-devices` and their own state directory and status port.
//!
//! Everything here is blocking (std threads, raw HTTP/1.0 over `std::net`), so tests are plain
//! `#[test]`s; the proxies run their own Tokio runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fault_proxy::FaultProxy;
use crate::node_peers::{NodePeers, PeerOptions};

pub const CLIENT_ID: &str = "gw-netfaults";

/// One blocking HTTP/1.0 exchange: (status, body).
pub fn http(method: &str, url: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not http: {url}")))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn socket_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("url");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port_or_known_default().expect("port")
    )
    .parse()
    .expect("socket address")
}

/// A free loopback port (bound then released: a small race, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Counts of the FHIR server's identifier index (`__control/observations`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounts {
    pub observations: u64,
    pub identifiers: u64,
    /// Identifiers held by more than one Observation (must stay 0).
    pub duplicated: u64,
    pub by_subject: std::collections::BTreeMap<String, u64>,
}

/// The peers, their proxies and the registered key.
pub struct Servers {
    pub peers: NodePeers,
    /// In front of the FHIR server (bundles, discovery).
    pub fhir: FaultProxy,
    /// In front of the token endpoint (advertised in discovery instead of the real one).
    pub auth: FaultProxy,
    pub private_key: PathBuf,
    pub kid: String,
    _key_dir: tempfile::TempDir,
}

impl Servers {
    /// Starts the peers (access tokens live `token_ttl_seconds`) behind two proxies.
    pub fn start(token_ttl_seconds: u64) -> Self {
        vectorcare_gateway::crypto::install_providers();
        let key_dir = tempfile::tempdir().expect("tempdir");
        let key = vectorcare_gateway::upload::keys::generate_into_dir(
            key_dir.path(),
            vectorcare_gateway::upload::keys::SigningAlg::ES384,
        )
        .expect("keygen");
        let jwks = serde_json::from_slice(&std::fs::read(&key.jwks_path).expect("jwks"))
            .expect("jwks json");
        let mut options = PeerOptions::new(CLIENT_ID, jwks);
        options.access_token_ttl_seconds = token_ttl_seconds;
        let peers = NodePeers::start(&options);
        let epoch = std::time::Instant::now();
        let fhir = FaultProxy::start_at(socket_of(&peers.fhir_base), epoch);
        let auth = FaultProxy::start_at(socket_of(&peers.token_endpoint), epoch);
        let servers = Self {
            peers,
            fhir,
            auth,
            private_key: key.private_key_path.clone(),
            kid: key.kid.clone(),
            _key_dir: key_dir,
        };
        let body = serde_json::json!({ "url": format!("{}/token", servers.auth.origin()) });
        let (status, text) = http(
            "POST",
            &format!("{}/token-endpoint", servers.peers.control),
            Some(&body.to_string()),
        )
        .expect("control: token-endpoint");
        assert_eq!(status, 204, "token-endpoint override: {text}");
        servers
    }

    /// The FHIR base URL through the proxy.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.fhir.origin())
    }

    pub fn counts(&self) -> ServerCounts {
        let (status, body) = http("GET", &format!("{}/observations", self.peers.control), None)
            .expect("control: observations");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("observations json");
        ServerCounts {
            observations: v["observations"].as_u64().expect("observations"),
            identifiers: v["identifiers"].as_u64().expect("identifiers"),
            duplicated: v["duplicated"].as_u64().expect("duplicated"),
            by_subject: v["by_subject"]
                .as_object()
                .expect("by_subject")
                .iter()
                .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
                .collect(),
        }
    }

    /// The peers' own counters (tokens issued, token errors, 401s, bundles...).
    /// Both proxies' events on their shared time base, in time order.
    pub fn events(&self) -> Vec<crate::fault_proxy::Event> {
        let mut events = self.fhir.events();
        events.extend(self.auth.events());
        events.sort_by_key(|e| e.at);
        events
    }

    pub fn set_mode(&self, mode: crate::fault_proxy::Mode) {
        self.fhir.set_mode(mode);
        self.auth.set_mode(mode);
    }

    pub fn peer_stats(&self) -> Value {
        let (_, body) =
            http("GET", &format!("{}/stats", self.peers.control), None).expect("control: stats");
        serde_json::from_str(&body).expect("stats json")
    }
}

/// A scenario of `devices` simulated serial pulse oximeters (Masimo lines: SpO2 + pulse, two
/// readings a line) printing every `interval_seconds` (no jitter), all unplugged for good after
/// `stop_after_seconds` of scenario time — a serial device whose cable is out sends nothing —
/// so a test knows the stream is finite and can wait for it to drain. (A BLE device would keep
/// its values and deliver them when it reconnects.)
pub fn finite_scenario(
    devices: usize,
    interval_seconds: u64,
    stop_after_seconds: u64,
    seed: u64,
) -> String {
    let mut text =
        format!("[scenario]\nname = \"netfaults\"\nseed = {seed}\nduration_seconds = 2592000\n");
    for i in 0..devices {
        text.push_str(&format!(
            "\n[[devices]]\nname = \"oximeter{i}\"\ntransport = \"serial\"\nprotocol = \"masimo\"\n\
             interval_seconds = {interval_seconds}\njitter = 0\nstart_offset_seconds = {}\n\
             [[devices.faults]]\nat_seconds = {stop_after_seconds}\nkind = \"disconnect\"\n\
             duration_seconds = 2500000\n",
            1 + i as u64
        ));
    }
    text
}

/// What a gateway process is started with.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub id: String,
    pub patient: String,
    /// Scenario TOML text (see [`finite_scenario`]) played with `--simulate-devices`; `None`
    /// runs without simulated devices (e.g. only an MQTT source).
    pub scenario: Option<String>,
    /// Simulated serial ports the config lists (one per device of the scenario).
    pub serial_ports: usize,
    pub simulate_speed: f64,
    /// Extra lines for `[upload]` (backoff, timeouts...).
    pub upload_extra: String,
    /// Extra whole sections appended to the config.
    pub extra_sections: String,
    /// Where the state directory goes (a tmpfs for the disk test); a temp dir otherwise.
    pub state_dir: Option<PathBuf>,
}

impl GatewaySpec {
    pub fn new(id: &str, scenario: String, serial_ports: usize) -> Self {
        Self {
            id: id.to_owned(),
            patient: format!("Patient/{id}"),
            scenario: Some(scenario),
            serial_ports,
            simulate_speed: 1.0,
            upload_extra: String::new(),
            extra_sections: String::new(),
            state_dir: None,
        }
    }
}

/// A running `vectorcare-gateway run` process; SIGKILLed on drop if still running.
pub struct Gateway {
    pub id: String,
    pub patient: String,
    child: Child,
    pub status_port: u16,
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_vectorcare-gateway")
}

impl Gateway {
    pub fn spawn(spec: &GatewaySpec, servers: &Servers) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = spec
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state"));
        let status_port = free_port();
        // hal's simulated serial opener hands the scenario's ports out in order, whatever the
        // path; min_interval_seconds = 0 keeps every line.
        let mut devices: String = (0..spec.serial_ports)
            .map(|i| {
                format!(
                    "[[sources.serial.ports]]\npath = \"/dev/ttySIM{i}\"\n\
                     device_id = \"serial:oximeter{i}\"\nformat = {{ type = \"masimo\" }}\n\
                     min_interval_seconds = 0\n"
                )
            })
            .collect();
        if !devices.is_empty() {
            devices.insert_str(
                0,
                "[sources.serial]\nreconnect_initial_ms = 200\nreconnect_max_ms = 1000\n\n",
            );
        }
        let config = format!(
            r#"[gateway]
id = "{id}"
patient = "{patient}"
state_dir = "{state}"

[log]
level = "info"
format = "plain"

[clock]
assume_synchronized = true

[status]
listen = "127.0.0.1:{status_port}"

[upload]
fhir_base_url = "{fhir}"
client_id = "{client}"
private_key = "{key}"
active_kid = "{kid}"
alg = "ES384"
bundle_size = 8
max_bundle_entries = 8
request_timeout_seconds = 3
connect_timeout_seconds = 2
config_error_backoff_seconds = 5
token_refresh_margin_seconds = 2
{upload_extra}

{devices}
{extra}
"#,
            id = spec.id,
            patient = spec.patient,
            state = state_dir.display(),
            fhir = servers.fhir_base(),
            client = CLIENT_ID,
            key = servers.private_key.display(),
            kid = servers.kid,
            upload_extra = spec.upload_extra,
            extra = spec.extra_sections,
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(binary());
        command.arg("run").arg("--config").arg(&config_path);
        if let Some(scenario) = &spec.scenario {
            let scenario_path = dir.path().join("scenario.toml");
            std::fs::write(&scenario_path, scenario).expect("write scenario");
            command
                .arg("--simulate-devices")
                .arg(&scenario_path)
                .arg("--simulate-speed")
                .arg(spec.simulate_speed.to_string());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn vectorcare-gateway run");
        Self {
            id: spec.id.clone(),
            patient: spec.patient.clone(),
            child,
            status_port,
            dir,
            state_dir,
            config_path,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/status` as JSON, `None` while it does not answer.
    pub fn status(&self) -> Option<Value> {
        let (code, body) = http(
            "GET",
            &format!("http://127.0.0.1:{}/status", self.status_port),
            None,
        )
        .ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Waits until `/status` answers; panics with the log otherwise.
    pub fn wait_ready(&mut self, timeout: Duration) {
        if wait_for(timeout, || self.status()).is_none() {
            let exited = self.child.try_wait().ok().flatten();
            panic!(
                "gateway {} not ready after {timeout:?} (exit: {exited:?}); log:\n{}",
                self.id,
                self.log_tail()
            );
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// CPU time (user + system) the process used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }

    /// SIGTERM, then wait (SIGKILL after `timeout`). Returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of `pid` from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name (which may contain spaces).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// Readings durably queued: the `/status` reading counters minus those that could not be
/// mapped to FHIR (counted there too).
pub fn readings_stored(status: &Value) -> u64 {
    let seen: u64 = status["readings"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["count"].as_u64()).sum())
        .unwrap_or(0);
    seen - mapping_failures(status)
}

/// Whether every listed device has been silent for `seconds` at least (its simulated stream
/// ended: scenario time can lag wall time on a loaded machine, so the tests ask the gateway).
pub fn devices_quiet(status: &Value, seconds: u64) -> bool {
    status["devices"].as_array().is_some_and(|devices| {
        !devices.is_empty()
            && devices.iter().all(|d| {
                d["last_reading_age_seconds"]
                    .as_u64()
                    .is_some_and(|age| age >= seconds)
            })
    })
}

pub fn mapping_failures(status: &Value) -> u64 {
    status["mapping_failures"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["count"].as_u64()).sum())
        .unwrap_or(0)
}

pub fn queue_depth(status: &Value) -> Option<u64> {
    status["queue"]["depth"].as_u64()
}

/// `vectorcare-gateway queue stats --json` on a stopped gateway's state directory (opening the
/// queue checks it: every record's checksum is verified and failures are quarantined).
pub fn queue_stats(state_dir: &Path) -> Value {
    let out = Command::new(binary())
        .args(["queue", "stats", "--json", "--data-dir"])
        .arg(state_dir)
        .output()
        .expect("run queue stats");
    assert!(
        out.status.success(),
        "queue stats failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("queue stats json")
}
