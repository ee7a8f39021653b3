//! A FHIR + token server **test double** for the demo and for tests. It is NOT a FHIR server:
//! it implements just enough of SMART Backend Services and FHIR R4 batch/transaction handling to
//! exercise the uploader end to end without a network, and it is strict where the gateway could
//! be wrong (assertion checks, bearer tokens, resource structure, idempotency).
//!
//! Routes (base URL `http://127.0.0.1:<port>/fhir`):
//! - `GET  /fhir/.well-known/smart-configuration` — discovery (no auth)
//! - `GET  /fhir/metadata` — a minimal CapabilityStatement (no auth)
//! - `POST /auth/token` — client_credentials + private_key_jwt; verifies signature (against the
//!   given JWKS), `typ`, `kid`, `iss` = `sub` = client_id, `aud` = this token URL, `exp` ≤ 300 s
//!   ahead, `jti` not replayed; issues opaque bearer tokens with a short lifetime
//! - `POST /fhir` — batch/transaction Bundle (bearer token required), see [`store`]
//! - `GET  /fhir/{type}/{id}`, `GET /fhir/{type}?identifier=system|value` — reads (bearer)
//!
//! Tests inject faults ([`Fault`]) and expire tokens through the [`TestDouble`] handle.

mod store;
mod token;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use store::Stats;
use store::{FhirStore, operation_outcome};
use token::TokenService;

const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How the double is set up.
#[derive(Debug, Clone)]
pub struct TestDoubleOptions {
    /// The one registered client.
    pub client_id: String,
    /// The client's registered public keys.
    pub jwks: JwkSet,
    /// Scopes the client may be granted.
    pub allowed_scopes: Vec<String>,
    /// Lifetime of issued bearer tokens.
    pub token_lifetime: Duration,
    /// `capabilities` advertised in discovery (e.g. drop `permission-v2` to test v1 fallback).
    pub capabilities: Vec<String>,
    /// Refuse transactions with more conditional creates than this (Medplum refuses > 8).
    pub max_transaction_conditional_creates: Option<usize>,
}

impl TestDoubleOptions {
    /// Defaults: v1 and v2 write scopes for Observation and Device, 300 s tokens.
    pub fn new(client_id: impl Into<String>, jwks: JwkSet) -> Self {
        let allowed_scopes = [
            "system/Observation.cu",
            "system/Observation.crus",
            "system/Observation.cus",
            "system/Observation.rs",
            "system/Observation.s",
            "system/Device.cu",
            "system/Device.crus",
            "system/Device.cus",
            "system/Device.rs",
            "system/Device.s",
            "system/Observation.write",
            "system/Observation.read",
            "system/Device.write",
            "system/Device.read",
        ]
        .map(str::to_owned)
        .to_vec();
        Self {
            client_id: client_id.into(),
            jwks,
            allowed_scopes,
            token_lifetime: Duration::from_secs(300),
            capabilities: [
                "client-confidential-asymmetric",
                "permission-v1",
                "permission-v2",
            ]
            .map(str::to_owned)
            .to_vec(),
            max_transaction_conditional_creates: None,
        }
    }
}

/// A failure to inject into the next FHIR request (Bundle POSTs and reads), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Reply with this status (and optional `Retry-After` header value) instead of processing.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Close the connection without a response.
    ResetConnection,
    /// Process the Bundle, store its resources, then close the connection without replying —
    /// the "crash with a bundle in flight" case from the client's point of view.
    ProcessThenReset,
}

/// Counts of token endpoint activity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthStats {
    pub tokens_issued: u64,
    pub token_requests_rejected: u64,
    /// FHIR requests refused for a missing/unknown/expired bearer token.
    pub unauthorized: u64,
}

/// Why the double could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestDoubleError {
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] io::Error),
}

#[derive(Debug)]
struct State {
    token: TokenService,
    store: FhirStore,
    auth: AuthStats,
    faults: VecDeque<Fault>,
    /// Last OAuth error description, for tests that check what was rejected.
    last_auth_error: Option<String>,
    smart_configuration: Value,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // to a test double; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running test double. Dropping it without [`TestDouble::shutdown`] also stops the server
/// (the accept task is aborted), but `shutdown` waits for it.
#[derive(Debug)]
pub struct TestDouble {
    addr: SocketAddr,
    fhir_base_url: String,
    token_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts the double on `127.0.0.1:0`. Must be called inside a tokio runtime.
pub async fn start(options: TestDoubleOptions) -> Result<TestDouble, TestDoubleError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(TestDoubleError::Bind)?;
    let addr = listener.local_addr().map_err(TestDoubleError::Bind)?;
    let origin = format!("http://{addr}");
    let fhir_base_url = format!("{origin}/fhir");
    let token_url = format!("{origin}/auth/token");
    let smart_configuration = json!({
        "token_endpoint": token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": options.allowed_scopes,
        "capabilities": options.capabilities,
    });
    let mut store = FhirStore::default();
    store.max_transaction_conditional_creates = options.max_transaction_conditional_creates;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            token: TokenService::new(
                options.client_id,
                options.jwks,
                token_url.clone(),
                options.allowed_scopes,
                options.token_lifetime,
            ),
            store,
            auth: AuthStats::default(),
            faults: VecDeque::new(),
            last_auth_error: None,
            smart_configuration,
        }),
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
    Ok(TestDouble {
        addr,
        fhir_base_url,
        token_url,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    // Connections live in the JoinSet: dropping it at shutdown aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    // Errors here are clients going away or injected resets.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("test double: injected connection reset")]
struct InjectedReset;

type Reply = Result<Response<Full<Bytes>>, InjectedReset>;

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/fhir+json"),
    );
    response
}

fn outcome_response(status: u16, code: &str, diagnostics: &str) -> Response<Full<Bytes>> {
    json_response(status, &operation_outcome(code, diagnostics))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(outcome_response(
                413,
                "too-costly",
                "request body too large or unreadable",
            ));
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = shared.lock();
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/fhir/.well-known/smart-configuration") => {
            Ok(json_response(200, &state.smart_configuration))
        }
        (&Method::GET, "/fhir/metadata") => Ok(json_response(
            200,
            &json!({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "4.0.1", "format": ["json"]}),
        )),
        (&Method::POST, "/auth/token") => Ok(token_endpoint(&mut state, &body)),
        (method, p) if p == "/fhir" || p.starts_with("/fhir/") => {
            let scopes = match state.token.check_bearer(authorization.as_deref()) {
                Some(t) => t.scopes.clone(),
                None => {
                    state.auth.unauthorized += 1;
                    let mut r =
                        outcome_response(401, "login", "missing, unknown or expired bearer token");
                    r.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        hyper::header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return Ok(r);
                }
            };
            let fault = state.faults.pop_front();
            match fault {
                Some(Fault::Status {
                    status,
                    retry_after,
                }) => {
                    let mut r = outcome_response(status, "transient", "injected fault");
                    if let Some(v) =
                        retry_after.and_then(|v| hyper::header::HeaderValue::from_str(&v).ok())
                    {
                        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                    }
                    return Ok(r);
                }
                Some(Fault::ResetConnection) => return Err(InjectedReset),
                Some(Fault::ProcessThenReset) | None => {}
            }
            let reply = fhir_request(&mut state, method, p, &query, &body, &scopes);
            if fault == Some(Fault::ProcessThenReset) {
                return Err(InjectedReset);
            }
            Ok(reply)
        }
        _ => Ok(outcome_response(404, "not-found", "no such route")),
    }
}

fn token_endpoint(state: &mut State, body: &[u8]) -> Response<Full<Bytes>> {
    match state.token.token_request(body) {
        Ok(grant) => {
            state.auth.tokens_issued += 1;
            let mut r = json_response(
                200,
                &json!({"access_token": grant.access_token, "token_type": "bearer",
                        "expires_in": grant.expires_in, "scope": grant.scope}),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            state.auth.token_requests_rejected += 1;
            state.last_auth_error = Some(format!("{}: {}", e.error, e.description));
            let mut r = json_response(
                e.status,
                &json!({"error": e.error, "error_description": e.description}),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

fn fhir_request(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    scopes: &[String],
) -> Response<Full<Bytes>> {
    let rest = path.trim_start_matches("/fhir").trim_start_matches('/');
    match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        (&Method::POST, [""]) => {
            let bundle: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    state.store.stats.rejected += 1;
                    return outcome_response(400, "structure", &format!("body is not JSON: {e}"));
                }
            };
            match state.store.process_bundle(&bundle, scopes) {
                Ok(response) => json_response(200, &response),
                Err(e) => json_response(e.status, &e.outcome),
            }
        }
        (&Method::GET, [ty, id]) => match state.store.get(ty, id) {
            Some(resource) => json_response(200, resource),
            None => outcome_response(404, "not-found", "no such resource"),
        },
        (&Method::GET, [ty]) => {
            let key = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "identifier")
                .map(|(_, v)| v.into_owned());
            let Some(key) = key else {
                return outcome_response(
                    400,
                    "not-supported",
                    "only identifier search is supported",
                );
            };
            let found = state.store.search_identifier(ty, &key);
            let entries: Vec<Value> = found.into_iter().map(|r| json!({"resource": r})).collect();
            json_response(
                200,
                &json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
            )
        }
        _ => outcome_response(404, "not-supported", "unsupported FHIR interaction"),
    }
}

impl TestDouble {
    /// FHIR base URL, e.g. `http://127.0.0.1:41234/fhir`.
    pub fn fhir_base_url(&self) -> &str {
        &self.fhir_base_url
    }

    /// Token endpoint URL (the `aud` assertions must carry).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().store.stats
    }

    pub fn auth_stats(&self) -> AuthStats {
        self.shared.lock().auth
    }

    /// The last token-request rejection, as `error: description`.
    pub fn last_auth_error(&self) -> Option<String> {
        self.shared.lock().last_auth_error.clone()
    }

    /// Every stored resource (by type, then id).
    pub fn resources(&self) -> Vec<Value> {
        self.shared.lock().store.all()
    }

    /// Number of stored resources of `resource_type`.
    pub fn count(&self, resource_type: &str) -> usize {
        self.shared.lock().store.count(resource_type)
    }

    /// Stored resources of `resource_type` with identifier `system|value`.
    pub fn find_by_identifier(&self, resource_type: &str, system_value: &str) -> Vec<Value> {
        self.shared
            .lock()
            .store
            .search_identifier(resource_type, system_value)
    }

    /// Queues a fault for the next FHIR request(s); faults are consumed in order.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Invalidates every issued bearer token (the next FHIR request gets 401).
    pub fn expire_tokens(&self) {
        self.shared.lock().token.expire_all();
    }

    /// Writes every stored resource to `dir/<Type>/<id>.json`; returns how many were written.
    pub fn dump_to_dir(&self, dir: &Path) -> io::Result<usize> {
        let resources = self.resources();
        for resource in &resources {
            let ty = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Unknown");
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("no-id");
            let type_dir = dir.join(ty);
            std::fs::create_dir_all(&type_dir)?;
            let pretty = serde_json::to_vec_pretty(resource).map_err(io::Error::other)?;
            std::fs::write(type_dir.join(format!("{id}.json")), pretty)?;
        }
        Ok(resources.len())
    }

    /// Stops accepting, drops open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestDouble {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
