//! The token endpoint of the test double: verifies SMART Backend Services client assertions
//! the way a strict authorisation server does and issues short-lived opaque bearer tokens.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live, per SMART Backend Services.
const MAX_ASSERTION_LIFETIME_S: u64 = 300;
/// Clock skew tolerated on `exp`.
const LEEWAY_S: u64 = 5;

/// An OAuth error reply (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn client(description: impl Into<String>) -> Self {
        Self {
            status: 401,
            error: "invalid_client",
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            description: description.into(),
        }
    }
}

/// A token this double issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub scopes: Vec<String>,
    pub expires: Instant,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: Option<String>,
}

/// Verifies assertions and keeps issued tokens and seen `jti`s.
#[derive(Debug)]
pub(crate) struct TokenService {
    pub client_id: String,
    pub jwks: JwkSet,
    pub token_url: String,
    /// Scopes the client may be granted; requested scopes outside this set are dropped.
    pub allowed_scopes: Vec<String>,
    pub token_lifetime: Duration,
    /// `jti` → its `exp`, kept until the assertion could no longer be accepted anyway.
    seen_jti: HashMap<String, u64>,
    tokens: HashMap<String, IssuedToken>,
}

/// What the token endpoint returns on success.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenService {
    pub fn new(
        client_id: String,
        jwks: JwkSet,
        token_url: String,
        allowed_scopes: Vec<String>,
        token_lifetime: Duration,
    ) -> Self {
        Self {
            client_id,
            jwks,
            token_url,
            allowed_scopes,
            token_lifetime,
            seen_jti: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Handles a form-encoded token request body.
    pub fn token_request(&mut self, body: &[u8]) -> Result<Grant, OAuthError> {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let field = |name: &str| form.get(name).map(String::as_str);
        match field("grant_type") {
            Some("client_credentials") => {}
            Some(other) => {
                return Err(OAuthError {
                    status: 400,
                    error: "unsupported_grant_type",
                    description: format!("grant_type {other} is not supported"),
                });
            }
            None => return Err(OAuthError::request("missing grant_type")),
        }
        if field("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(OAuthError::request(
                "client_assertion_type must be jwt-bearer",
            ));
        }
        let assertion = field("client_assertion")
            .ok_or_else(|| OAuthError::request("missing client_assertion"))?;
        self.verify_assertion(assertion)?;
        let requested = field("scope").unwrap_or_default();
        let granted: Vec<String> = requested
            .split_whitespace()
            .filter(|s| self.allowed_scopes.iter().any(|a| a == s))
            .map(str::to_owned)
            .collect();
        if granted.is_empty() {
            return Err(OAuthError {
                status: 400,
                error: "invalid_scope",
                description: format!("none of the requested scopes are allowed: {requested}"),
            });
        }
        self.issue(granted)
    }

    fn verify_assertion(&mut self, assertion: &str) -> Result<(), OAuthError> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| OAuthError::client(format!("assertion is not a JWT: {e}")))?;
        if header.typ.as_deref() != Some("JWT") {
            return Err(OAuthError::client("assertion header typ must be JWT"));
        }
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(OAuthError::client(format!(
                "assertion alg {:?} not allowed (RS384, ES384)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| OAuthError::client("assertion header has no kid"))?;
        let jwk = self
            .jwks
            .find(&kid)
            .ok_or_else(|| OAuthError::client(format!("kid {kid} is not registered")))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| OAuthError::client(format!("registered key {kid} is unusable: {e}")))?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.set_audience(&[&self.token_url]);
        validation.set_issuer(&[&self.client_id]);
        validation.sub = Some(self.client_id.clone());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| OAuthError::client(format!("assertion rejected: {e}")))?;
        let claims = data.claims;
        if claims.iss != claims.sub {
            return Err(OAuthError::client("iss and sub must both be the client_id"));
        }
        let now = now_unix();
        if claims.exp > now + MAX_ASSERTION_LIFETIME_S + LEEWAY_S {
            return Err(OAuthError::client(
                "assertion exp is more than 300 s in the future",
            ));
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or_else(|| OAuthError::client("assertion has no jti"))?;
        self.seen_jti.retain(|_, exp| *exp + LEEWAY_S >= now);
        if self.seen_jti.insert(jti, claims.exp).is_some() {
            return Err(OAuthError::client("assertion jti was already used"));
        }
        Ok(())
    }

    fn issue(&mut self, scopes: Vec<String>) -> Result<Grant, OAuthError> {
        let mut raw = [0u8; 32];
        SystemRandom::new().fill(&mut raw).map_err(|_| OAuthError {
            status: 500,
            error: "server_error",
            description: "no randomness for a token".into(),
        })?;
        let access_token = URL_SAFE_NO_PAD.encode(raw);
        let scope = scopes.join(" ");
        let now = Instant::now();
        self.tokens.retain(|_, t| t.expires > now);
        self.tokens.insert(
            access_token.clone(),
            IssuedToken {
                scopes,
                expires: now + self.token_lifetime,
            },
        );
        Ok(Grant {
            access_token,
            expires_in: self.token_lifetime.as_secs(),
            scope,
        })
    }

    /// The token behind an `Authorization` header value, if it is one we issued and it is live.
    pub fn check_bearer(&self, authorization: Option<&str>) -> Option<&IssuedToken> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())
    }

    /// Makes every issued token invalid at once (tests: "token expired mid-drain").
    pub fn expire_all(&mut self) {
        self.tokens.clear();
    }
}

/// Whether `scopes` allow `interaction` (`'c'` create, `'u'` update) on `resource_type`.
/// Understands SMART v2 (`system/Observation.cu`) and v1 (`system/Observation.write`, `.*`).
pub(crate) fn scopes_permit(scopes: &[String], resource_type: &str, interaction: char) -> bool {
    scopes.iter().any(|scope| {
        let Some(rest) = scope.strip_prefix("system/") else {
            return false;
        };
        let Some((ty, perm)) = rest.split_once('.') else {
            return false;
        };
        if ty != resource_type && ty != "*" {
            return false;
        }
        match perm {
            "*" | "write" => true,
            "read" => false,
            v2 => v2.chars().all(|c| "cruds".contains(c)) && v2.contains(interaction),
        }
    })
}
