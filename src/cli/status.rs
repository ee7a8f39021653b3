//! `status`: asks the running daemon's status endpoint and prints a compact summary.
//!
//! Exit codes: 0 healthy, 1 ([`exit::UNHEALTHY`]) the daemon answered and is unhealthy,
//! 69 the daemon is unreachable (or not a gateway), 78 the configuration cannot be read.
//! Works in scripts and monitoring checks; `--json` prints the daemon's `/status` JSON as is.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

use super::{Failure, Outcome};
use crate::config::{self, DEFAULT_CONFIG_PATH};
use crate::exit;
use crate::telemetry::Snapshot;

/// How long the daemon has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (a status JSON is a few KiB).
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the daemon's /status JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// The status endpoint, e.g. http://127.0.0.1:9180/ (default: `[status] listen` of the
    /// configuration).
    #[arg(long)]
    pub url: Option<String>,
    /// Configuration file (for the endpoint's address and token file).
    #[arg(long, short, env = "VECTORCARE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// File holding the status token (default: `[status] token_file` of the configuration).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

pub fn execute(args: Args) -> Outcome {
    let (url, mut token) = match &args.url {
        Some(url) => (url.clone(), None),
        None => {
            let config = config::load(&args.config, std::env::vars())
                .map_err(|err| super::validate::config_failure(&args.config, &err))?;
            let token = crate::status::read_token(&config.status)
                .map_err(|err| Failure::new(exit::CONFIG, err.to_string()))?;
            (endpoint_url(config.status.listen)?, token)
        }
    };
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Failure::new(
                exit::CONFIG,
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        token = Some(text.trim().to_owned());
    }
    let (status, body) = get(&url, "status", token.as_deref())?;
    if status == 401 {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            format!("{url} wants a status token (--token-file or [status] token_file)"),
        ));
    }
    if status != 200 {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            format!("{url}status answered HTTP {status}"),
        ));
    }
    let snapshot: Snapshot = serde_json::from_slice(&body).map_err(|err| {
        Failure::new(
            exit::UNAVAILABLE,
            format!("{url}status is not a gateway status: {err}"),
        )
    })?;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`status | head`) is not a failure of the check: the exit code still is.
    let _ = if args.json {
        out.write_all(&body).and_then(|()| writeln!(out))
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        out.write_all(summary(&snapshot, colour).as_bytes())
    };
    if snapshot.healthy {
        Ok(())
    } else {
        Err(Failure::new(
            exit::UNHEALTHY,
            format!("gateway unhealthy: {}", snapshot.failing.join("; ")),
        ))
    }
}

/// The URL the daemon serves on, from `[status] listen` (a wildcard address is asked on
/// loopback).
fn endpoint_url(listen: SocketAddr) -> Result<String, Failure> {
    if listen.port() == 0 {
        return Err(Failure::new(
            exit::USAGE,
            "[status] listen uses port 0 (any free port): give the daemon's address with --url",
        ));
    }
    let host = match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_owned(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_owned(),
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Ok(format!("http://{host}:{}/", listen.port()))
}

/// One HTTP/1.1 GET of `path` under `base` (plain http, loopback or LAN): status and body.
fn get(base: &str, path: &str, token: Option<&str>) -> Result<(u16, Vec<u8>), Failure> {
    let unreachable = |why: String| Failure::new(exit::UNAVAILABLE, format!("{base}: {why}"));
    let url = url::Url::parse(base)
        .and_then(|u| u.join(path))
        .map_err(|err| Failure::new(exit::USAGE, format!("--url {base}: {err}")))?;
    if url.scheme() != "http" {
        return Err(Failure::new(
            exit::USAGE,
            format!("--url {base}: only http:// is served by the status endpoint"),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Failure::new(exit::USAGE, format!("--url {base}: no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|err| unreachable(err.to_string()))?
        .next()
        .ok_or_else(|| unreachable("no address".into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| unreachable(format!("daemon not reachable ({err}); is it running?")))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n",
        url.path()
    );
    if let Some(token) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("status:{token}"));
        request.push_str(&format!("Authorization: Basic {basic}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| unreachable(err.to_string()))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|err| unreachable(err.to_string()))?;
    parse_response(&response).ok_or_else(|| unreachable("not an HTTP answer".into()))
}

/// Status code and body of an HTTP/1.1 response read to the end (`Connection: close`).
fn parse_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let status = head
        .lines()
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let mut body = response[end + 4..].to_vec();
    let length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length {
        body.truncate(length);
    }
    Some((status, body))
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn good(&self, text: &str) -> String {
        self.wrap("32", text)
    }
    fn bad(&self, text: &str) -> String {
        self.wrap("1;31", text)
    }
    fn warn(&self, text: &str) -> String {
        self.wrap("33", text)
    }
    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }
}

fn ago(seconds: Option<u64>) -> String {
    match seconds {
        None => "never".into(),
        Some(s) if s < 60 => format!("{s}s ago"),
        Some(s) if s < 3600 => format!("{}m ago", s / 60),
        Some(s) if s < 86400 => format!("{}h ago", s / 3600),
        Some(s) => format!("{}d ago", s / 86400),
    }
}

/// The compact summary (colour codes only when `colour`).
pub fn summary(s: &Snapshot, colour: bool) -> String {
    let p = Paint { on: colour };
    let mut out = String::new();
    let health = if s.healthy {
        p.good("healthy")
    } else {
        p.bad("UNHEALTHY")
    };
    out.push_str(&format!(
        "{} {}  {}  {}\n",
        "gateway",
        s.gateway_id,
        health,
        p.dim(&format!("v{}, up {}m", s.version, s.uptime_seconds / 60))
    ));
    for failing in &s.failing {
        out.push_str(&format!("  {} {failing}\n", p.bad("✗")));
    }
    for warning in &s.warnings {
        out.push_str(&format!("  {} {warning}\n", p.warn("!")));
    }
    let clock = if s.clock.synchronized {
        p.good("synchronised")
    } else {
        p.bad(&s.clock.state)
    };
    out.push_str(&format!("clock    {clock}\n"));
    if let Some(q) = &s.queue {
        out.push_str(&format!(
            "queue    {} waiting ({} bytes), oldest {}, {} dead letters\n",
            q.depth,
            q.bytes,
            q.oldest_age_seconds.map_or_else(
                || "-".to_owned(),
                |a| ago(Some(a as u64)).replace(" ago", "")
            ),
            q.dead_letters
        ));
    }
    let u = &s.upload;
    if u.configured {
        out.push_str(&format!(
            "upload   {}: {} stored, {} retried, {} refused, last success {}\n",
            u.state.as_deref().unwrap_or("starting"),
            u.successes,
            u.retries,
            u.dead_letters,
            ago(u.last_success_age_seconds)
        ));
        if let Some(error) = &u.last_error {
            out.push_str(&format!("         last error: {}\n", p.warn(error)));
        }
        let token = match s.token.valid_for_seconds {
            Some(valid) if valid > 0 => p.good(&format!("valid {valid}s")),
            Some(_) => p.warn("expired"),
            None => p.dim("none yet"),
        };
        out.push_str(&format!(
            "token    {token} ({} obtained, {} failed)\n",
            s.token.refreshes, s.token.failures
        ));
    } else {
        out.push_str(&format!("upload   {}\n", p.warn("not configured")));
    }
    let width = s.devices.iter().map(|d| d.label.len()).max().unwrap_or(0);
    out.push_str("devices\n");
    for d in &s.devices {
        let state = match d.connected {
            Some(true) => p.good("●"),
            Some(false) => p.bad("○"),
            None => p.dim("?"),
        };
        out.push_str(&format!(
            "  {state} {:<width$}  {:>6} readings, last {}\n",
            d.label,
            d.readings,
            ago(d.last_reading_age_seconds)
        ));
    }
    if s.devices.is_empty() {
        out.push_str(&format!("  {}\n", p.dim("none configured")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_with_and_without_length() {
        let (status, body) = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbad!extra",
        )
        .expect("parsed");
        assert_eq!((status, body.as_slice()), (503, b"bad!".as_slice()));
        let (status, body) = parse_response(b"HTTP/1.0 200 OK\r\n\r\n{}").expect("parsed");
        assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n").is_none());
    }

    #[test]
    fn endpoint_urls_ask_loopback_for_wildcards() {
        assert_eq!(
            endpoint_url("0.0.0.0:9180".parse().expect("addr")).expect("url"),
            "http://127.0.0.1:9180/"
        );
        assert_eq!(
            endpoint_url("[::1]:80".parse().expect("addr")).expect("url"),
            "http://[::1]:80/"
        );
        let port_zero = endpoint_url("127.0.0.1:0".parse().expect("addr")).expect_err("port 0");
        assert_eq!(port_zero.code, exit::USAGE);
    }
}
