//! The FHIR HTTP client: one pooled `reqwest` client (connection reuse, HTTP/2 when the server
//! offers it by ALPN), timeouts, rustls on ring with the platform's roots plus an optional extra
//! CA, optional client certificate (mTLS), TLS ≥ 1.2, and no redirects (a bearer token must not
//! follow a redirect to another host).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::fhir::BundleJson;

use super::config::UploadConfig;
use super::retry::parse_retry_after;

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not usable PEM: {reason}")]
    Pem { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

fn read(path: &Path) -> Result<Vec<u8>, ClientBuildError> {
    std::fs::read(path).map_err(|source| ClientBuildError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// TLS and timeout settings of the HTTP client.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings<'a> {
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub extra_ca_file: Option<&'a Path>,
    pub client_identity: Option<(&'a Path, &'a Path)>,
}

impl<'a> From<&'a UploadConfig> for HttpSettings<'a> {
    fn from(cfg: &'a UploadConfig) -> Self {
        Self {
            request_timeout: Some(cfg.request_timeout),
            connect_timeout: Some(cfg.connect_timeout),
            extra_ca_file: cfg.extra_ca_file.as_deref(),
            client_identity: cfg
                .client_identity
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path())),
        }
    }
}

/// Builds the shared client. Requires [`crate::crypto::install_providers`] to have run.
pub fn build_http_client(settings: &HttpSettings<'_>) -> Result<reqwest::Client, ClientBuildError> {
    crate::crypto::install_providers();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("vectorcare-gateway/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .pool_idle_timeout(Duration::from_secs(90));
    if let Some(t) = settings.request_timeout {
        builder = builder.timeout(t);
    }
    if let Some(t) = settings.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if let Some(path) = settings.extra_ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| {
            ClientBuildError::Pem {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = settings.client_identity {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| ClientBuildError::Pem {
            path: format!("{} + {}", cert.display(), key.display()),
            reason: e.to_string(),
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| ClientBuildError::Build(e.to_string()))
}

/// What the server said to a Bundle POST.
#[derive(Debug, Clone)]
pub struct BundleReply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: bytes::Bytes,
}

/// Network-level failure of a request (no HTTP status): always transient.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TransportError {
    pub kind: &'static str,
    pub message: String,
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        };
        TransportError {
            kind,
            message: error_chain(&e),
        }
    }
}

/// The error with its source chain: the cause ("connection reset", "invalid peer certificate:
/// UnknownIssuer") hides below reqwest's summary ("error sending request for url ...").
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// The Bundle text as a request body that a resend (after a 401) shares instead of copying.
pub fn bundle_body(bundle: BundleJson) -> bytes::Bytes {
    bytes::Bytes::from(bundle.into_string())
}

/// POSTs a Bundle ([`bundle_body`]) to the FHIR base with a bearer token.
///
/// `Prefer: return=minimal` (FHIR R4 http §3.1.0.9, also for each batch/transaction entry)
/// lets a server that honours it leave the created resources out of the response: the
/// uploader reads only each entry's status and OperationOutcome ([`super::reply`]). Servers
/// that ignore it (Medplum 4.5) answer in full, which is still read correctly.
pub async fn post_bundle(
    http: &reqwest::Client,
    fhir_base_url: impl reqwest::IntoUrl,
    bearer: &str,
    body: bytes::Bytes,
) -> Result<BundleReply, TransportError> {
    let response = http
        .post(fhir_base_url)
        .bearer_auth(bearer)
        .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
        .header(reqwest::header::ACCEPT, "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = response.bytes().await?;
    Ok(BundleReply {
        status,
        retry_after,
        body,
    })
}
