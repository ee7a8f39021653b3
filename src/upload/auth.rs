//! SMART Backend Services authorisation: discovery, token requests, the token cache.
//!
//! Discovery (`{fhirBase}/.well-known/smart-configuration`) is fetched once and cached; its
//! checks name what is missing. Tokens are cached until `expires_in` minus a margin and
//! re-minted on demand (no refresh tokens in this profile). Assertions are never signed while
//! the kernel reports the clock unsynchronised (a Pi has no RTC), unless a test rig overrides it.

use std::sync::Arc;
#[cfg(test)]
use std::time::UNIX_EPOCH;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;
use vectorcare_hal::clock::Clock;

use super::assertion::{AssertionError, AssertionSigner};
use super::client::error_chain;
use super::config::transport_allowed;
use crate::fhir::WriteMode;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A refusal comes with a clock diagnosis when this gateway's clock and the token server's
/// `Date` differ by more than this. `Date` has whole seconds and the request takes a moment;
/// authorization servers commonly tolerate a few seconds to a minute, and an assertion lives
/// at most 300 s, so an offset this large is worth naming and a smaller one is not the cause.
const CLOCK_OFFSET_LIMIT: Duration = Duration::from_secs(30);

/// The discovery document fields this client uses.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SmartConfiguration {
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Errors of the authorisation boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the system clock is not synchronised (no NTP sync yet); refusing to sign a client assertion"
    )]
    ClockUnsynchronized,
    #[error("SMART discovery at {url} is unusable: {reason}")]
    Discovery { url: String, reason: String },
    #[error("SMART discovery at {url} failed: {reason}")]
    DiscoveryUnavailable { url: String, reason: String },
    #[error("token endpoint refused the client: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Refused, and the server's `Date` says this gateway's clock is off by more than
    /// [`CLOCK_OFFSET_LIMIT`]: the likely cause is the clock (synchronised in the kernel's view
    /// but wrong, e.g. a stale NTP source), not the registration.
    #[error(
        "{refused}; this gateway's clock is {} s {} the token server's (its Date header), and an assertion signed with a wrong clock is refused: fix this gateway's time synchronisation",
        offset_secs.unsigned_abs(),
        if *offset_secs > 0 { "ahead of" } else { "behind" }
    )]
    ClockOffset {
        /// This gateway's clock minus the server's, in seconds.
        offset_secs: i64,
        /// The refusal as the server gave it.
        refused: String,
    },
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
    #[error("token response unusable: {0}")]
    BadResponse(String),
    #[error("cannot sign the client assertion: {0}")]
    Assertion(String),
}

impl AuthError {
    /// True for problems only a person can fix (keys, registration, scopes, discovery content):
    /// log once, back off long, show in status, never hammer.
    pub fn is_config_problem(&self) -> bool {
        match self {
            AuthError::Discovery { .. } | AuthError::Assertion(_) => true,
            AuthError::Rejected { status, error, .. } => {
                matches!(
                    error.as_str(),
                    "invalid_client"
                        | "invalid_scope"
                        | "unauthorized_client"
                        | "invalid_request"
                        | "unsupported_grant_type"
                        | "invalid_grant"
                ) || (400..500).contains(status) && *status != 429 && *status != 408
            }
            _ => false,
        }
    }

    /// True when retrying after a normal backoff may succeed.
    pub fn is_retriable(&self) -> bool {
        !self.is_config_problem()
    }
}

impl From<AssertionError> for AuthError {
    fn from(e: AssertionError) -> Self {
        AuthError::Assertion(e.to_string())
    }
}

impl SmartConfiguration {
    /// Checks what Backend Services needs; names everything missing at once.
    pub fn check(&self, alg: &str) -> Result<Url, String> {
        let mut missing = Vec::new();
        let token_endpoint = match self.token_endpoint.as_deref().map(Url::parse) {
            Some(Ok(url)) if transport_allowed(&url) => Some(url),
            Some(Ok(_)) => {
                missing.push("token_endpoint must be https (http only to loopback)".to_owned());
                None
            }
            Some(Err(e)) => {
                missing.push(format!("token_endpoint is not a URL ({e})"));
                None
            }
            None => {
                missing.push("token_endpoint".to_owned());
                None
            }
        };
        if !self
            .grant_types_supported
            .iter()
            .any(|g| g == "client_credentials")
        {
            missing.push("grant_types_supported lacks client_credentials".to_owned());
        }
        if !self.token_endpoint_auth_methods_supported.is_empty()
            && !self
                .token_endpoint_auth_methods_supported
                .iter()
                .any(|m| m == "private_key_jwt")
        {
            missing.push("token_endpoint_auth_methods_supported lacks private_key_jwt".to_owned());
        }
        // Some servers omit the alg list: then the configured alg is simply tried.
        let algs = &self.token_endpoint_auth_signing_alg_values_supported;
        if !algs.is_empty() && !algs.iter().any(|a| a == alg) {
            missing.push(format!(
                "token_endpoint_auth_signing_alg_values_supported lacks {alg} (has {})",
                algs.join(", ")
            ));
        }
        match token_endpoint {
            Some(url) if missing.is_empty() => Ok(url),
            _ => Err(missing.join("; ")),
        }
    }

    /// Whether the server speaks only SMART v1 scopes.
    pub fn v1_only(&self) -> bool {
        let has = |c: &str| self.capabilities.iter().any(|x| x == c);
        has("permission-v1") && !has("permission-v2")
    }
}

/// Default scopes: SMART v2 `c`+`u` on Observation and Device, plus `s` where conditional
/// create searches by identifier; v1 `.write`/`.read` when the server only knows v1.
pub fn default_scopes(write_mode: WriteMode, v1_only: bool) -> Vec<String> {
    // Devices are always written by conditional create (see fhir::build_bundle).
    let observation_needs_search = write_mode == WriteMode::ConditionalCreate;
    let scope = |ty: &str, search: bool| -> Vec<String> {
        match (v1_only, search) {
            (false, true) => vec![format!("system/{ty}.cus")],
            (false, false) => vec![format!("system/{ty}.cu")],
            (true, true) => vec![format!("system/{ty}.write"), format!("system/{ty}.read")],
            (true, false) => vec![format!("system/{ty}.write")],
        }
    };
    let mut scopes = scope("Observation", observation_needs_search);
    scopes.extend(scope("Device", true));
    scopes
}

/// A bearer token and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub access_token: String,
    pub granted_scope: String,
    pub expires_in: Duration,
    /// When the cache stops handing this token out (expiry minus margin).
    pub refresh_at: Instant,
    pub token_endpoint: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Default)]
struct AuthState {
    discovery: Option<(SmartConfiguration, Url)>,
    token: Option<Arc<AccessToken>>,
}

/// Settings of an [`Authorizer`].
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub fhir_base_url: Url,
    pub scopes: Option<Vec<String>>,
    pub write_mode: WriteMode,
    pub refresh_margin: Duration,
    pub allow_unsynchronized_clock: bool,
}

/// Obtains and caches access tokens.
#[derive(Debug)]
pub struct Authorizer {
    http: reqwest::Client,
    signer: AssertionSigner,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
    state: Mutex<AuthState>,
}

impl Authorizer {
    pub fn new(
        http: reqwest::Client,
        signer: AssertionSigner,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
    ) -> Self {
        Self {
            http,
            signer,
            clock,
            settings,
            state: Mutex::new(AuthState::default()),
        }
    }

    fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/smart-configuration",
            self.settings.fhir_base_url.as_str().trim_end_matches('/')
        )
    }

    /// Fetches (or returns the cached) discovery document and its checked token endpoint.
    pub async fn discover(&self) -> Result<(SmartConfiguration, Url), AuthError> {
        let mut state = self.state.lock().await;
        if let Some(found) = &state.discovery {
            return Ok(found.clone());
        }
        let url = self.discovery_url();
        let unavailable = |reason: String| AuthError::DiscoveryUnavailable {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let status = response.status().as_u16();
        if status >= 500 || status == 429 || status == 408 {
            return Err(unavailable(format!("HTTP {status}")));
        }
        if status != 200 {
            return Err(AuthError::Discovery {
                url,
                reason: format!("HTTP {status} (is fhir_base_url right?)"),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let conf: SmartConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| AuthError::Discovery {
                url: url.clone(),
                reason: format!("not a SMART configuration JSON: {e}"),
            })?;
        let token_endpoint =
            conf.check(self.signer.key.alg.as_str())
                .map_err(|reason| AuthError::Discovery {
                    url: url.clone(),
                    reason,
                })?;
        state.discovery = Some((conf.clone(), token_endpoint.clone()));
        Ok((conf, token_endpoint))
    }

    /// Scopes this client requests.
    pub fn scopes(&self, conf: &SmartConfiguration) -> Vec<String> {
        match &self.settings.scopes {
            Some(s) => s.clone(),
            None => default_scopes(self.settings.write_mode, conf.v1_only()),
        }
    }

    /// A live token: the cached one, or a freshly requested one.
    pub async fn token(&self) -> Result<Arc<AccessToken>, AuthError> {
        if let Some(token) = &self.state.lock().await.token
            && Instant::now() < token.refresh_at
        {
            return Ok(Arc::clone(token));
        }
        let token = Arc::new(self.request_token().await?);
        self.state.lock().await.token = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Drops the cached token (after a 401), so the next [`Authorizer::token`] mints a new one.
    pub async fn invalidate(&self) {
        self.state.lock().await.token = None;
    }

    /// Discovery + one token request, bypassing the cache.
    pub async fn request_token(&self) -> Result<AccessToken, AuthError> {
        let (conf, token_endpoint) = self.discover().await?;
        if !self.settings.allow_unsynchronized_clock && !self.clock.sync_state().is_synchronized() {
            return Err(AuthError::ClockUnsynchronized);
        }
        let assertion = self
            .signer
            .sign(token_endpoint.as_str(), self.clock.now())?;
        let scope = self.scopes(&conf).join(" ");
        let response = self
            .http
            .post(token_endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let server_date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AuthError::Unavailable(error_chain(&e)))?;
        if status != 200 {
            if status >= 500 || status == 429 || status == 408 {
                return Err(AuthError::Unavailable(format!("HTTP {status}")));
            }
            let body: Option<OAuthErrorBody> = serde_json::from_slice(&bytes).ok();
            let rejected = match body {
                Some(b) => AuthError::Rejected {
                    status,
                    error: b.error,
                    description: b.error_description,
                },
                None => AuthError::Rejected {
                    status,
                    error: format!("HTTP {status}"),
                    description: None,
                },
            };
            return Err(clock_diagnosis(rejected, self.clock.now(), server_date));
        }
        let body: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::BadResponse(format!("not a token response: {e}")))?;
        if let Some(t) = &body.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(AuthError::BadResponse(format!(
                "token_type {t} is not bearer"
            )));
        }
        // SMART servers send expires_in; without it assume the profile's usual 300 s.
        let expires_in = Duration::from_secs(body.expires_in.unwrap_or(300));
        let usable = expires_in.saturating_sub(self.settings.refresh_margin);
        Ok(AccessToken {
            access_token: body.access_token,
            granted_scope: body.scope.unwrap_or(scope),
            expires_in,
            refresh_at: Instant::now() + usable,
            token_endpoint: token_endpoint.to_string(),
        })
    }
}

/// Names the clock as the likely cause of a refusal when `now` and the server's `Date`
/// differ by more than [`CLOCK_OFFSET_LIMIT`]; otherwise returns the refusal as it is.
fn clock_diagnosis(
    rejected: AuthError,
    now: SystemTime,
    server_date: Option<SystemTime>,
) -> AuthError {
    let Some(server) = server_date else {
        return rejected;
    };
    let offset = match now.duration_since(server) {
        Ok(ahead) => ahead.as_secs() as i64,
        Err(behind) => -(behind.duration().as_secs() as i64),
    };
    if offset.unsigned_abs() <= CLOCK_OFFSET_LIMIT.as_secs() {
        return rejected;
    }
    AuthError::ClockOffset {
        offset_secs: offset,
        refused: rejected.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> SmartConfiguration {
        SmartConfiguration {
            token_endpoint: Some("https://ehr.test/token".into()),
            grant_types_supported: vec!["client_credentials".into()],
            token_endpoint_auth_methods_supported: vec!["private_key_jwt".into()],
            token_endpoint_auth_signing_alg_values_supported: vec!["RS384".into()],
            scopes_supported: vec![],
            capabilities: vec!["permission-v1".into()],
        }
    }

    #[test]
    fn discovery_check_names_everything_missing() {
        assert!(conf().check("RS384").is_ok());
        let err = conf().check("ES384").expect_err("alg");
        assert!(err.contains("lacks ES384"), "{err}");
        let bad = SmartConfiguration {
            token_endpoint: None,
            grant_types_supported: vec!["authorization_code".into()],
            ..conf()
        };
        let err = bad.check("RS384").expect_err("missing");
        assert!(
            err.contains("token_endpoint") && err.contains("client_credentials"),
            "{err}"
        );
        let http = SmartConfiguration {
            token_endpoint: Some("http://ehr.test/token".into()),
            ..conf()
        };
        assert!(http.check("RS384").is_err());
        // An omitted alg list means "try the configured one".
        let no_algs = SmartConfiguration {
            token_endpoint_auth_signing_alg_values_supported: vec![],
            ..conf()
        };
        assert!(no_algs.check("ES384").is_ok());
    }

    #[test]
    fn default_scopes_follow_write_mode_and_server_version() {
        assert_eq!(
            default_scopes(WriteMode::ConditionalCreate, false),
            ["system/Observation.cus", "system/Device.cus"]
        );
        assert_eq!(
            default_scopes(WriteMode::Put, false),
            ["system/Observation.cu", "system/Device.cus"]
        );
        assert_eq!(
            default_scopes(WriteMode::Put, true),
            [
                "system/Observation.write",
                "system/Device.write",
                "system/Device.read"
            ]
        );
        assert!(conf().v1_only());
    }

    #[test]
    fn oauth_errors_are_classified() {
        let rejected = |error: &str, status| AuthError::Rejected {
            status,
            error: error.into(),
            description: None,
        };
        assert!(rejected("invalid_client", 401).is_config_problem());
        assert!(rejected("invalid_scope", 400).is_config_problem());
        assert!(rejected("unauthorized_client", 400).is_config_problem());
        assert!(AuthError::Unavailable("timeout".into()).is_retriable());
        assert!(!AuthError::ClockUnsynchronized.is_config_problem());
    }

    #[test]
    fn a_refusal_names_the_clock_only_when_the_servers_date_is_far_off() {
        let refused = || AuthError::Rejected {
            status: 401,
            error: "invalid_client".into(),
            description: Some("jwt expired".into()),
        };
        let server = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let behind = clock_diagnosis(refused(), server - Duration::from_secs(3600), Some(server));
        assert_eq!(
            behind,
            AuthError::ClockOffset {
                offset_secs: -3600,
                refused: "token endpoint refused the client: invalid_client (jwt expired)".into()
            }
        );
        let text = behind.to_string();
        assert!(text.contains("invalid_client (jwt expired)"), "{text}");
        assert!(
            text.contains("clock is 3600 s behind the token server's"),
            "{text}"
        );
        assert!(
            text.contains("fix this gateway's time synchronisation"),
            "{text}"
        );
        assert!(
            !behind.is_config_problem(),
            "a clock fixes itself once NTP works"
        );

        let ahead = clock_diagnosis(refused(), server + Duration::from_secs(600), Some(server));
        assert!(ahead.to_string().contains("600 s ahead of"), "{ahead}");
        // Within the limit, or without a Date header, the refusal stays a configuration problem.
        let limit = CLOCK_OFFSET_LIMIT;
        assert_eq!(
            clock_diagnosis(refused(), server + limit, Some(server)),
            refused()
        );
        assert_eq!(
            clock_diagnosis(refused(), server - limit, Some(server)),
            refused()
        );
        assert_eq!(
            clock_diagnosis(refused(), server - 2 * limit, None),
            refused()
        );
    }
}
