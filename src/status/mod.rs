//! The local status endpoint: what a clinic technician or a support line looks at.
//!
//! | route | answers |
//! |---|---|
//! | `/healthz` | 200 `ok` while every pipeline task is alive, 503 with the failing part otherwise |
//! | `/metrics` | Prometheus text exposition ([`crate::telemetry::prometheus`]) |
//! | `/status` | the [`Snapshot`] as JSON, for scripts and `vectorcare-gateway status` |
//! | `/` | a self-contained HTML page (`page.html`: inline CSS/JS/SVG, no external assets) |
//!
//! Bound to loopback by default. A configured token (required for any other address) must come
//! with every request as `Authorization: Bearer <token>`, or as HTTP Basic with the token as the
//! password so a browser can prompt for it.
//!
//! Connections are served inside the server's own future (no spawned tasks): the runtime owns
//! every task, and a status page needs no parallelism.

pub mod config;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub use config::{RawStatusConfig, StatusConfig};

use crate::telemetry::{Snapshot, Telemetry, prometheus};

const PAGE: &str = include_str!("page.html");
/// Where the page template takes the initial snapshot.
const PAGE_DATA_MARK: &str = "/*STATUS_JSON*/null";
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A connection (keep-alive included) is closed after this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the status token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("the status token file {0} is empty")]
    EmptyToken(String),
}

/// Reads the bearer token from `[status] token_file` (surrounding whitespace ignored).
pub fn read_token(config: &StatusConfig) -> Result<Option<String>, StatusError> {
    let Some(path) = &config.token_file else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| StatusError::Token {
        path: shown.clone(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(StatusError::EmptyToken(shown));
    }
    Ok(Some(token.to_owned()))
}

/// A bound, not yet serving, status endpoint.
pub struct StatusServer {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    telemetry: Arc<Telemetry>,
    token: Option<String>,
}

impl StatusServer {
    /// Binds the configured address (port 0: any free port) and reads the token file.
    pub async fn bind(
        config: &StatusConfig,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, StatusError> {
        let token = read_token(config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StatusError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared { telemetry, token }),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes; open connections are dropped then.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut connections = FuturesUnordered::new();
        loop {
            let room = connections.len() < MAX_CONNECTIONS;
            tokio::select! {
                () = &mut shutdown => return,
                Some(()) = connections.next(), if !connections.is_empty() => {}
                accepted = self.listener.accept(), if room => match accepted {
                    Ok((stream, _)) => {
                        let shared = Arc::clone(&self.shared);
                        let service = service_fn(move |request| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(respond(&shared, &request)) }
                        });
                        let connection = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        connections.push(async move {
                            // Errors are the client's (reset, garbage); lifetime bounds slow ones.
                            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                        });
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %err, "status endpoint cannot accept connections");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
    }
}

fn respond(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(token) = &shared.token
        && !authorized(request, token)
    {
        let mut response = text(StatusCode::UNAUTHORIZED, "a status token is required\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"vectorcare-gateway\""),
        );
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let snapshot = shared.telemetry.snapshot();
    let mut response = match request.uri().path() {
        "/healthz" => healthz(&snapshot),
        "/metrics" => body(
            StatusCode::OK,
            prometheus::CONTENT_TYPE,
            prometheus::render(&snapshot),
        ),
        "/status" => match serde_json::to_string_pretty(&snapshot) {
            Ok(json) => body(StatusCode::OK, "application/json", json),
            Err(err) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the status: {err}\n"),
            ),
        },
        "/" | "/index.html" => body(StatusCode::OK, "text/html; charset=utf-8", page(&snapshot)),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /status, /metrics or /healthz\n",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page loads nothing from anywhere (self-contained); say so to the browser too.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// 200 `ok` or 503 with one failing part per line.
pub fn healthz(snapshot: &Snapshot) -> Response<Full<Bytes>> {
    if snapshot.healthy {
        text(StatusCode::OK, "ok\n")
    } else {
        let mut message = String::from("unhealthy\n");
        for part in &snapshot.failing {
            message.push_str(part);
            message.push('\n');
        }
        text(StatusCode::SERVICE_UNAVAILABLE, &message)
    }
}

/// The page with the snapshot embedded, so it renders without a second request (and with
/// JavaScript disabled the numbers are still in the source).
pub fn page(snapshot: &Snapshot) -> String {
    let json = serde_json::to_string(snapshot).unwrap_or_else(|_| "null".into());
    // Inside <script>, "</" could close the element: JSON allows escaping the slash.
    let json = json.replace("</", "<\\/");
    PAGE.replacen(PAGE_DATA_MARK, &json, 1)
}

fn authorized(request: &Request<Incoming>, token: &str) -> bool {
    let Some(value) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let presented = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().as_bytes().to_vec()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        // user:password — the user name is ignored, the password is the token.
        match decoded.iter().position(|b| *b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    constant_time_eq(&presented, token.as_bytes())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", message.to_owned())
}

#[cfg(test)]
mod tests;
