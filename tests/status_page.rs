//! End to end: the demo pipeline runs (the binary, simulated devices, the real runtime) with
//! its status endpoint on a free loopback port; headless Chromium loads the page, the test
//! checks that the device list and the 24 h chart rendered (in the DOM after the page's script
//! ran), keeps a screenshot in `target/test-artifacts/status-page.png`, and `status` against
//! the running demo exits 0.
//!
//! Needs `chromium` (scripts/install/chromium.sh, which `scripts/test` runs); fails with that
//! hint when it is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Long enough for Chromium to start twice on a busy 2-core machine while devices still
/// measure; the test stops the demo with SIGTERM once it has seen the page.
const DEMO_SECONDS: u64 = 60;
/// Devices in config/demo.toml: six BLE, one serial port, one MQTT topic.
const DEMO_DEVICES: usize = 8;

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("chromium is not installed: run scripts/install/chromium.sh (scripts/test does)");
}

/// The flags the issue asks for: headless, no sandbox (root in CI), no GPU, no background
/// traffic of any kind, a throwaway profile.
fn chromium_command(profile: &Path) -> Command {
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--hide-scrollbars",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Demo {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
            .args([
                "demo",
                "--duration",
                &DEMO_SECONDS.to_string(),
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .arg("--out")
            .arg(dir.join("out"))
            .env("VECTORCARE_STATUS__LISTEN", "127.0.0.1:0")
            .env("VECTORCARE_LOG__FORMAT", "plain")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stdout: Vec::new(),
        }
    }

    /// The status page URL the demo prints.
    fn status_url(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.stdout.push(line.clone());
                if let Some(rest) = line.strip_prefix("status page: ") {
                    return rest.split_whitespace().next().expect("url").to_owned();
                }
            }
        }
        panic!(
            "the demo printed no status page URL:\n{}",
            self.stdout.join("\n")
        );
    }

    /// Stops the demo as systemd would (SIGTERM) and waits for it.
    fn stop(mut self) -> (Option<i32>, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of the child this test started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("demo exit");
        self.stdout.extend(self.lines.try_iter());
        (status.code(), self.stdout.join("\n"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Only when the test failed half way: stop the demo we started, by its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn get_json(url: &str, path: &str) -> Option<serde_json::Value> {
    let parsed = url::Url::parse(url).ok()?.join(path).ok()?;
    let addr = format!("{}:{}", parsed.host_str()?, parsed.port()?);
    let mut stream = TcpStream::connect(&addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        parsed.path()
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Waits until every device has sent something and uploads succeeded (so the page shows a
/// full picture), or the demo's measuring phase is nearly over.
fn wait_for_activity(url: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = get_json(url, "status").expect("the demo answers /status");
        let devices = status["devices"].as_array().cloned().unwrap_or_default();
        let all_sent = devices.iter().all(|d| d["readings"].as_u64() > Some(0));
        let uploaded = status["upload"]["successes"].as_u64() > Some(0);
        if (all_sent && uploaded) || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[test]
fn status_page_renders_devices_and_chart_in_headless_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(dir.path());
    let url = demo.status_url();
    let status = wait_for_activity(&url);
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(
        status["devices"].as_array().map(Vec::len),
        Some(DEMO_DEVICES),
        "{status}"
    );

    // `status` against the running demo: healthy, exit 0.
    let check = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
        .args(["status", "--url", &url])
        .env("NO_COLOR", "1")
        .output()
        .expect("run status");
    let summary = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{summary}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(summary.contains("demo-hub  healthy"), "{summary}");
    assert!(summary.contains("sources.ble.devices[5]"), "{summary}");

    // The DOM after the page's script ran.
    let profile = tempfile::tempdir().expect("profile");
    let dom = chromium_command(profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", browser.display()));
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success() && html.contains("</html>"),
        "chromium --dump-dom failed:\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    std::fs::write(artifacts_dir().join("status-page.dom.html"), &html).expect("keep the DOM");

    let device_rows = html.matches("<tr class=\"device\">").count();
    assert_eq!(device_rows, DEMO_DEVICES, "device list rendered:\n{html}");
    for label in [
        "sources.ble.devices[0]",
        "sources.serial.ports[0]",
        "sources.mqtt.topics[0]",
    ] {
        assert!(
            html.contains(&format!("<td class=\"device-label\">{label}</td>")),
            "{label} missing"
        );
    }
    assert!(html.contains(">connected<"), "a connected device is shown");
    assert!(
        html.contains("<span id=\"health\" class=\"badge ok\">healthy</span>"),
        "health badge"
    );
    let chart_start = html.find("<svg id=\"chart\"").expect("chart svg");
    let chart =
        &html[chart_start..html[chart_start..].find("</svg>").expect("svg end") + chart_start];
    assert_eq!(
        chart.matches("<rect class=\"bar\"").count(),
        24,
        "one bar per hour:\n{chart}"
    );
    let tallest_now = chart
        .match_indices("<rect class=\"bar\"")
        .last()
        .map(|(i, _)| &chart[i..])
        .and_then(|bar| bar.split("height=\"").nth(1))
        .and_then(|h| h.split('"').next())
        .and_then(|h| h.parse::<f64>().ok())
        .expect("the current hour's bar has a height");
    assert!(
        tallest_now > 0.0,
        "this hour's readings show as a bar:\n{chart}"
    );
    let line = chart
        .split("<polyline id=\"depth-line\" points=\"")
        .nth(1)
        .and_then(|p| p.split('"').next())
        .expect("queue depth line");
    assert!(!line.is_empty(), "the queue depth of this hour is plotted");
    // No health data on the page by default (show_readings is off).
    assert!(!html.contains("C0:FF:EE"), "no device address on the page");

    // The screenshot, kept as a test artifact.
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let taken = chromium_command(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,1500")
        .arg(&url)
        .output()
        .expect("screenshot");
    let png = std::fs::read(&shot).unwrap_or_else(|err| {
        panic!(
            "no screenshot ({err}):\n{}",
            String::from_utf8_lossy(&taken.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real PNG"
    );

    let (code, stdout) = demo.stop();
    assert_eq!(
        code,
        Some(0),
        "the demo stops cleanly on SIGTERM:\n{stdout}"
    );
}
