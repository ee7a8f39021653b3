//! The SMART Backend Services client assertion (a JWT signed with the client's private key).
//!
//! Header: `alg` (RS384 | ES384), `kid`, `typ: JWT`, optional `jku`. Claims: `iss` = `sub` =
//! client_id, `aud` = the token endpoint URL (not the FHIR base), `exp` = now + lifetime
//! (≤ 300 s), `iat`, and a fresh random `jti`. Pure apart from the randomness of `jti`; the time
//! is passed in, so the caller decides whether the clock can be trusted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use serde::Serialize;

use super::keys::SigningKey;

/// The longest lifetime SMART allows for an assertion.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Everything needed to mint assertions for one client at one token endpoint.
#[derive(Debug, Clone)]
pub struct AssertionSigner {
    pub client_id: String,
    pub kid: String,
    pub jku: Option<String>,
    pub key: SigningKey,
    /// Clamped to [`MAX_LIFETIME`].
    pub lifetime: Duration,
}

#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("the clock reads before 1970; refusing to sign")]
    ClockBeforeEpoch,
    #[error("signing the client assertion failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl AssertionSigner {
    /// Signs an assertion for `token_url` at wall-clock time `now`.
    pub fn sign(&self, token_url: &str, now: SystemTime) -> Result<String, AssertionError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AssertionError::ClockBeforeEpoch)?
            .as_secs();
        let lifetime = self.lifetime.min(MAX_LIFETIME).as_secs();
        let mut header = Header::new(self.key.alg.jwt_alg());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        header.jku = self.jku.clone();
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: token_url,
            exp: now + lifetime,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        Ok(jsonwebtoken::encode(&header, &claims, &self.key.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::keys::{SigningAlg, SigningKey, generate_private_key_pem};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::Value;

    fn signer(alg: SigningAlg) -> (AssertionSigner, DecodingKey) {
        crate::crypto::install_providers();
        let pem = generate_private_key_pem(alg).expect("gen");
        let key = SigningKey::from_pem(pem.as_bytes(), alg).expect("key");
        let jwk = key.public_jwk().expect("jwk");
        let kid = jwk.common.key_id.clone().expect("kid");
        (
            AssertionSigner {
                client_id: "gw-1".into(),
                kid,
                jku: None,
                key,
                lifetime: Duration::from_secs(3600),
            },
            DecodingKey::from_jwk(&jwk).expect("dec"),
        )
    }

    fn check(alg: SigningAlg, jwt_alg: Algorithm) {
        let (signer, dec) = signer(alg);
        let token_url = "https://ehr.test/oauth/token";
        let a = signer.sign(token_url, SystemTime::now()).expect("sign");
        let b = signer.sign(token_url, SystemTime::now()).expect("sign");
        let mut v = Validation::new(jwt_alg);
        v.set_audience(&[token_url]);
        v.set_issuer(&["gw-1"]);
        let data_a = jsonwebtoken::decode::<Value>(&a, &dec, &v).expect("verify a");
        let data_b = jsonwebtoken::decode::<Value>(&b, &dec, &v).expect("verify b");
        assert_eq!(data_a.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data_a.header.kid.as_deref(), Some(signer.kid.as_str()));
        let c = &data_a.claims;
        assert_eq!(c["sub"], "gw-1");
        assert_eq!(c["aud"], token_url);
        let (exp, iat) = (
            c["exp"].as_u64().expect("exp"),
            c["iat"].as_u64().expect("iat"),
        );
        assert_eq!(exp - iat, 300, "lifetime must be clamped to 300 s");
        assert_ne!(c["jti"], data_b.claims["jti"], "jti must be fresh");
    }

    #[test]
    fn es384_assertion_has_smart_shape() {
        check(SigningAlg::ES384, Algorithm::ES384);
    }

    #[test]
    fn rs384_assertion_has_smart_shape() {
        check(SigningAlg::RS384, Algorithm::RS384);
    }

    #[test]
    fn wrong_aud_does_not_verify() {
        let (signer, dec) = signer(SigningAlg::ES384);
        let a = signer
            .sign("https://ehr.test/fhir", SystemTime::now())
            .expect("sign");
        let mut v = Validation::new(Algorithm::ES384);
        v.set_audience(&["https://ehr.test/oauth/token"]);
        assert!(jsonwebtoken::decode::<Value>(&a, &dec, &v).is_err());
    }
}
