//! Footprint and speed of the gateway PROCESS (issue #9).
//!
//! `cargo bench --bench footprint -- [--backlog 1000000] [--idle-seconds 60] [--dir /var/tmp]
//!  [--latency-seconds 30] [--latency-speed 120]`
//!
//! What runs: the release `vectorcare-gateway run --simulate-devices
//! config/scenarios/footprint.toml` (six simulated BLE devices inside the gateway, one reading a
//! minute each), uploading to a loopback port nobody listens on, so a backlog stays queued.
//! Printed side by side, each with its same-run baseline and the goal:
//! - start → READY: time from `spawn` to the `READY=1` datagram on a `NOTIFY_SOCKET` this bench
//!   owns (what systemd waits for), with an empty queue (baseline) and with the backlog, on the
//!   first start after the backlog was written and on a second start;
//! - idle CPU: utime + stime (/proc/PID/stat) over the same window for the gateway with the
//!   backlog, the gateway with an empty queue, and an idle `sleep` process (baseline);
//! - peak RSS: VmHWM of those processes at the end of the window;
//! - device notification → durable enqueue, p50/p99: in-process (the same runtime, the same
//!   simulated devices played faster to get samples), from `Reading::received_at` (stamped
//!   by the source when the notification arrives) to the ingest observer's `stored` (called
//!   once the append is fdatasync'ed), with an empty queue and with the backlog; baseline:
//!   one 1 KiB write + fdatasync on the same file system.
//!
//! The backlog is written before timing through the queue API: real upload units (the six
//! example readings, mapped as the gateway maps them), in appends of 1000. The bench config
//! raises `[queue] max_bytes`/`max_records` so that 1M readings fit (defaults: 512 MiB, 1M).

#[path = "support/dir_size.rs"]
mod dir_size;
use dir_size::dir_size;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vectorcare_gateway::fhir::examples::example_readings;
use vectorcare_gateway::queue::{DurableQueue, SledQueue};
use vectorcare_gateway::reading::Reading;
use vectorcare_gateway::runtime::{self, BleHardware, Hardware, ingest::IngestObserver};
use vectorcare_gateway::simulator::Target;
use vectorcare_gateway::upload::keys::{SigningAlg, generate_into_dir};

const EXE: &str = env!("CARGO_BIN_EXE_vectorcare-gateway");
const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/scenarios/footprint.toml"
);

struct Opts {
    backlog: usize,
    idle_seconds: u64,
    dir: PathBuf,
    latency_seconds: u64,
    latency_speed: f64,
}

fn opts() -> Opts {
    let mut o = Opts {
        backlog: 1_000_000,
        idle_seconds: 60,
        dir: PathBuf::from("/var/tmp"),
        latency_seconds: 30,
        latency_speed: 120.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let bad = |what: &str| -> ! { panic!("{} needs {what}", args[i]) };
        match args[i].as_str() {
            "--backlog" => o.backlog = value.parse().unwrap_or_else(|_| bad("a number")),
            "--idle-seconds" => o.idle_seconds = value.parse().unwrap_or_else(|_| bad("seconds")),
            "--dir" => o.dir = PathBuf::from(&value),
            "--latency-seconds" => {
                o.latency_seconds = value.parse().unwrap_or_else(|_| bad("seconds"))
            }
            "--latency-speed" => o.latency_speed = value.parse().unwrap_or_else(|_| bad("a speed")),
            // `cargo bench` passes `--bench`; skip flags without a value.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// A loopback port with nobody listening (connections are refused at once).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn write_config(root: &Path, name: &str, key: &Path, kid: &str, port: u16) -> PathBuf {
    let state = root.join(format!("state-{name}"));
    std::fs::create_dir_all(&state).expect("state dir");
    let devices: String = [
        "C0:FF:EE:0D:00:01",
        "C0:FF:EE:10:00:01",
        "C0:FF:EE:09:00:01",
        "C0:FF:EE:22:00:01",
        "C0:FF:EE:1D:00:01",
        "C0:FF:EE:08:00:01",
    ]
    .iter()
    .map(|a| format!("[[sources.ble.devices]]\naddress = \"{a}\"\n"))
    .collect();
    let text = format!(
        r#"[gateway]
id = "footprint-hub"
patient = "Patient/footprint"
state_dir = {state:?}

[log]
level = "warn"

[clock]
assume_synchronized = true

[queue]
max_records = 4000000
max_bytes = 8589934592

[upload]
fhir_base_url = "http://127.0.0.1:{port}/fhir"
client_id = "footprint"
private_key = {key:?}
active_kid = "{kid}"
alg = "ES384"

[sources.ble]
{devices}"#
    );
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn load_config(path: &Path) -> vectorcare_gateway::config::Config {
    vectorcare_gateway::config::load(path, std::iter::empty()).expect("bench config is valid")
}

/// Writes `n` upload units into the configured state directory. Returns (seconds, payload bytes).
fn fill(config_path: &Path, n: usize) -> (f64, u64) {
    let config = load_config(config_path);
    let map = runtime::build::mapper(&config);
    let examples = example_readings();
    // 1024 distinct readings, cycled: the queue stores opaque bytes, the size is what counts.
    let payloads: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            let mut r = examples[i % examples.len()].1.clone();
            r.received_at += time::Duration::seconds(i as i64);
            map(&r).expect("example maps")
        })
        .collect();
    let q = SledQueue::open(&config.gateway.state_dir, &config.queue).expect("open queue");
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut i = 0;
    while i < n {
        let batch: Vec<Vec<u8>> = (i..(i + 1000).min(n))
            .map(|j| payloads[j % payloads.len()].clone())
            .collect();
        bytes += batch.iter().map(|p| p.len() as u64).sum::<u64>();
        i += batch.len();
        q.append_blocking(batch).expect("append");
    }
    q.close().expect("close");
    (start.elapsed().as_secs_f64(), bytes)
}

/// A gateway process started with a NOTIFY_SOCKET the bench listens on.
struct Gateway {
    child: Child,
    ready: Duration,
}

impl Gateway {
    fn start(root: &Path, name: &str, config: &Path) -> Gateway {
        let sock_path = root.join(format!("notify-{name}.sock"));
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let log = std::fs::File::create(root.join(format!("{name}.log"))).expect("log file");
        let start = Instant::now();
        let child = Command::new(EXE)
            .args(["run", "--config"])
            .arg(config)
            .arg("--simulate-devices")
            .arg(SCENARIO)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("VECTORCARE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn gateway");
        let mut buf = [0u8; 256];
        loop {
            let n = sock.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "{name}: no READY=1 ({e}); see {}",
                    root.join(format!("{name}.log")).display()
                )
            });
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        Gateway {
            ready: start.elapsed(),
            child,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; returns the exit code.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on a child this bench spawned and has not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait").code()
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Collects notification → durable enqueue times.
#[derive(Default)]
struct LatencyObserver(Mutex<Vec<Duration>>);

impl IngestObserver for LatencyObserver {
    fn stored(&self, readings: &[Reading]) {
        let now = time::OffsetDateTime::now_utc();
        let mut out = self.0.lock().expect("lock");
        for r in readings {
            out.push((now - r.received_at).try_into().unwrap_or(Duration::ZERO));
        }
    }
    fn rejected(&self, _: &[Reading], _: &str) {}
}

/// The gateway's runtime in this process with the footprint scenario played at `speed`.
fn latency(config_path: &Path, seconds: u64, speed: f64) -> Vec<Duration> {
    use vectorcare_gateway::simulator::engine::PlayOptions;
    use vectorcare_gateway::simulator::inprocess::InProcessTarget;
    use vectorcare_hal::ble::simulated::SimulatedCentral;
    use vectorcare_hal::serial::simulated::SimulatedOpener;

    let config = load_config(config_path);
    let scenario = vectorcare_gateway::simulator::load_file(Path::new(SCENARIO)).expect("scenario");
    let observer = Arc::new(LatencyObserver::default());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    vectorcare_gateway::crypto::install_providers();
    tokio.block_on(async {
        let queue = runtime::open_queue(&config).expect("open queue");
        let real = Hardware::real(&config);
        let central = SimulatedCentral::new();
        let serial = SimulatedOpener::new();
        let hardware = Hardware {
            clock: real.clock.clone(),
            ble: BleHardware::Simulated(central.clone()),
            serial: Arc::new(serial.clone()),
        };
        let mut target = InProcessTarget::new(central, serial);
        target.start(&scenario).await.expect("devices");
        let stop_devices = Arc::new(tokio::sync::Notify::new());
        let stopped = stop_devices.clone();
        let play = tokio::spawn(async move {
            let options = PlayOptions {
                seed: None,
                speed,
                start: None,
                repeat: true,
            };
            let _ = vectorcare_gateway::simulator::play(
                &scenario,
                &mut target,
                options,
                stopped.notified(),
            )
            .await;
        });
        let observability = runtime::observability(&config, hardware.clock.clone())
            .await
            .expect("observability");
        let stop = async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            "benchmark window over".to_owned()
        };
        runtime::run(
            &config,
            hardware,
            queue.clone(),
            observer.clone(),
            observability,
            stop,
        )
        .await
        .expect("runtime");
        stop_devices.notify_one();
        let _ = play.await;
        drop(queue);
    });
    let mut samples = observer.0.lock().expect("lock").clone();
    samples.sort();
    samples
}

/// The physical floor of a durable enqueue: 1 KiB appended + fdatasync, `n` times.
fn fdatasync_floor(dir: &Path, n: usize) -> Vec<Duration> {
    let path = dir.join("floor.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("floor file");
    let buf = vec![b'x'; 1024];
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&buf).expect("write");
            f.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    out.sort();
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    vectorcare_gateway::crypto::install_providers();
    let o = opts();
    let root = tempfile::Builder::new()
        .prefix("vc-footprint")
        .tempdir_in(&o.dir)
        .expect("bench dir");
    let root = root.path();
    let key = generate_into_dir(&root.join("keys"), SigningAlg::ES384).expect("key");
    let port = dead_port();
    let empty_cfg = write_config(root, "empty", &key.private_key_path, &key.kid, port);
    let backlog_cfg = write_config(root, "backlog", &key.private_key_path, &key.kid, port);
    let latency_cfg = write_config(root, "latency", &key.private_key_path, &key.kid, port);
    println!(
        "footprint benchmark: {} (6 simulated BLE devices, 1 reading/min each), backlog {}, dir {}, load average at start {}",
        EXE,
        o.backlog,
        o.dir.display(),
        load_average()
    );

    let (fill_s, payload_bytes) = fill(&backlog_cfg, o.backlog);
    let backlog_dir = root.join("state-backlog");
    println!(
        "backlog written: {} upload units, {:.0} B each on average, {:.1} s, {:.0} MiB on disk",
        o.backlog,
        payload_bytes as f64 / o.backlog.max(1) as f64,
        fill_s,
        dir_size(&backlog_dir) as f64 / 1_048_576.0
    );

    // Start → READY, then idle CPU and peak RSS over the same window for all three processes.
    let empty = Gateway::start(root, "empty", &empty_cfg);
    let backlog = Gateway::start(root, "backlog", &backlog_cfg);
    let mut sleeper = Command::new("sleep").arg("100000").spawn().expect("sleep");
    std::thread::sleep(Duration::from_secs(3));
    let pids = [backlog.pid(), empty.pid(), sleeper.id()];
    let before: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(o.idle_seconds));
    let after: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let window = window.elapsed().as_secs_f64();
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) / window * 100.0)
        .collect();
    let hwm: Vec<f64> = pids.iter().map(|p| status_mib(*p, "VmHWM:")).collect();
    let rss: Vec<f64> = pids.iter().map(|p| status_mib(*p, "VmRSS:")).collect();
    let (ready_empty, ready_backlog) = (empty.ready, backlog.ready);
    let exit_empty = empty.stop();
    let exit_backlog = backlog.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // What sled::open alone costs on the same directory now (its snapshot was rewritten by the
    // gateway's open, so only the log written since is replayed), in this process.
    let open_alone = {
        let config = load_config(&backlog_cfg);
        let start = Instant::now();
        let q = SledQueue::open(&config.gateway.state_dir, &config.queue).expect("open");
        let opened = start.elapsed();
        let depth = q.stats().expect("stats").depth;
        q.close().expect("close");
        (opened, depth)
    };
    let again = Gateway::start(root, "backlog-again", &backlog_cfg);
    let ready_again = again.ready;
    let hwm_again = status_mib(again.pid(), "VmHWM:");
    let exit_again = again.stop();

    // Notification → durable enqueue, in-process.
    let lat_empty = latency(&latency_cfg, o.latency_seconds, o.latency_speed);
    let lat_backlog = latency(&backlog_cfg, o.latency_seconds, o.latency_speed);
    let floor = fdatasync_floor(root, 200);

    println!();
    println!(
        "| measure | gateway, {} backlog | baseline | goal |",
        o.backlog
    );
    println!("|---|---|---|---|");
    println!(
        "| start → READY (first start after the backlog was written) | {:.0} ms | {:.0} ms (empty queue) | ≤ 300 ms |",
        ms(ready_backlog),
        ms(ready_empty)
    );
    println!(
        "| start → READY (second start) | {:.0} ms | {:.0} ms (`SledQueue::open` alone, in-process, just before; depth {}) | ≤ 300 ms |",
        ms(ready_again),
        ms(open_alone.0),
        open_alone.1
    );
    println!(
        "| idle CPU over {:.0} s, % of one core | {:.3} % | {:.3} % (empty queue); {:.3} % (`sleep`) | ≤ 0.2 % |",
        window, cpu[0], cpu[1], cpu[2]
    );
    println!(
        "| peak RSS (VmHWM) | {:.1} MiB (second start: {:.1} MiB) | {:.1} MiB (empty queue); {:.1} MiB (`sleep`) | ≤ 24 MiB |",
        hwm[0], hwm_again, hwm[1], hwm[2]
    );
    println!(
        "| RSS at the end of the window (VmRSS) | {:.1} MiB | {:.1} MiB (empty queue) | |",
        rss[0], rss[1]
    );
    println!(
        "| notification → durable enqueue p50 / p99 ({} / {} readings, speed {}) | {:.2} / {:.2} ms | {:.2} / {:.2} ms (empty queue); {:.2} / {:.2} ms (1 KiB write + fdatasync) | |",
        lat_backlog.len(),
        lat_empty.len(),
        o.latency_speed,
        ms(percentile(&lat_backlog, 50.0)),
        ms(percentile(&lat_backlog, 99.0)),
        ms(percentile(&lat_empty, 50.0)),
        ms(percentile(&lat_empty, 99.0)),
        ms(percentile(&floor, 50.0)),
        ms(percentile(&floor, 99.0)),
    );
    println!(
        "exit codes after SIGTERM: backlog {exit_backlog:?}, empty {exit_empty:?}, second start {exit_again:?}; load average at end {}",
        load_average()
    );
}
