//! Client signing keys: generation (`keygen`), loading with a permission check, and the public
//! JWK Set registered with the EHR.
//!
//! Files: each key is `<kid>.key.pem` (PKCS#8 `PRIVATE KEY`, mode 0600) next to one
//! `jwks.json` holding the public half of every key in the directory, so keys can be rotated:
//! generate a new key, register the grown JWKS, switch `upload.active_kid`, later drop the old.
//! The `kid` is the RFC 7638 SHA-256 thumbprint of the public key — stable and unique.
//!
//! Generation: ES384 keys come from ring. ring cannot generate RSA keys, so RS384 keys come from
//! the pure-Rust `rsa` crate (generation only; RUSTSEC-2023-0071 is about timing of RSA
//! decryption/signing in that crate, which we never call — ring signs). 2048-bit modulus: the
//! SMART minimum and what ring verifies fast on a Pi; pass a larger size for longer-lived keys.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

/// Signing algorithms SMART Backend Services requires clients to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum SigningAlg {
    RS384,
    ES384,
}

impl SigningAlg {
    pub fn jwt_alg(self) -> Algorithm {
        match self {
            SigningAlg::RS384 => Algorithm::RS384,
            SigningAlg::ES384 => Algorithm::ES384,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS384 => "RS384",
            SigningAlg::ES384 => "ES384",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS384" => Some(SigningAlg::RS384),
            "ES384" => Some(SigningAlg::ES384),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read private key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "private key {path} is readable by group or others (mode {mode:o}); fix with: chmod 600 {path}"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("private key {path} is not a PKCS#8/PKCS#1 PEM key for {alg}: {reason}")]
    Parse {
        path: PathBuf,
        alg: &'static str,
        reason: String,
    },
    #[error("cannot generate a {alg} key: {reason}")]
    Generate { alg: &'static str, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a JWK Set: {reason}")]
    Jwks { path: PathBuf, reason: String },
}

/// A loaded private key and its algorithm.
#[derive(Clone)]
pub struct SigningKey {
    pub alg: SigningAlg,
    pub key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PEM private key (PKCS#8, or PKCS#1 for RSA).
    pub fn from_pem(pem: &[u8], alg: SigningAlg) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = match alg {
            SigningAlg::RS384 => EncodingKey::from_rsa_pem(pem)?,
            SigningAlg::ES384 => EncodingKey::from_ec_pem(pem)?,
        };
        // Prove the key usable now rather than at the first token request.
        let _ = Jwk::from_encoding_key(&key, alg.jwt_alg())?;
        Ok(Self { alg, key })
    }

    /// The public JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Result<Jwk, jsonwebtoken::errors::Error> {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg.jwt_alg())?;
        jwk.common.key_algorithm = Some(match self.alg {
            SigningAlg::RS384 => KeyAlgorithm::RS384,
            SigningAlg::ES384 => KeyAlgorithm::ES384,
        });
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
        Ok(jwk)
    }
}

/// Loads a private key file, refusing one that group or others can read.
pub fn load_private_key(path: &Path, alg: SigningAlg) -> Result<SigningKey, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let pem = fs::read(path).map_err(read_err)?;
    SigningKey::from_pem(&pem, alg).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        alg: alg.as_str(),
        reason: e.to_string(),
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Generates a new private key as PKCS#8 PEM.
pub fn generate_private_key_pem(alg: SigningAlg) -> Result<String, KeyError> {
    let generate_err = |reason: String| KeyError::Generate {
        alg: alg.as_str(),
        reason,
    };
    let der = match alg {
        SigningAlg::ES384 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| generate_err("ring refused to generate a P-384 key".into()))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::RS384 => {
            use rsa::pkcs8::EncodePrivateKey;
            let mut rng = rsa::rand_core::OsRng;
            let key =
                rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| generate_err(e.to_string()))?;
            key.to_pkcs8_der()
                .map_err(|e| generate_err(e.to_string()))?
                .as_bytes()
                .to_vec()
        }
    };
    Ok(pem_encode("PRIVATE KEY", &der))
}

/// What `keygen` produced.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub kid: String,
    pub private_key_path: PathBuf,
    pub jwks_path: PathBuf,
    /// Number of keys in the JWKS after adding this one.
    pub keys_in_jwks: usize,
}

/// Generates a key into `dir`: `<kid>.key.pem` (0600) and adds its public JWK to `dir/jwks.json`.
pub fn generate_into_dir(dir: &Path, alg: SigningAlg) -> Result<GeneratedKey, KeyError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let pem = generate_private_key_pem(alg)?;
    let key = SigningKey::from_pem(pem.as_bytes(), alg).map_err(|e| KeyError::Generate {
        alg: alg.as_str(),
        reason: e.to_string(),
    })?;
    let jwk = key.public_jwk().map_err(|e| KeyError::Generate {
        alg: alg.as_str(),
        reason: e.to_string(),
    })?;
    let kid = jwk.common.key_id.clone().unwrap_or_default();

    let private_key_path = dir.join(format!("{kid}.key.pem"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private_key_path)
        .map_err(write_err(&private_key_path))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err(&private_key_path))?;

    let jwks_path = dir.join("jwks.json");
    let mut jwks = if jwks_path.exists() {
        let text = fs::read(&jwks_path).map_err(|source| KeyError::Read {
            path: jwks_path.clone(),
            source,
        })?;
        serde_json::from_slice::<JwkSet>(&text).map_err(|e| KeyError::Jwks {
            path: jwks_path.clone(),
            reason: e.to_string(),
        })?
    } else {
        JwkSet { keys: Vec::new() }
    };
    jwks.keys.push(jwk);
    let text = serde_json::to_vec_pretty(&jwks).map_err(|e| KeyError::Jwks {
        path: jwks_path.clone(),
        reason: e.to_string(),
    })?;
    let tmp = dir.join("jwks.json.tmp");
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, &jwks_path))
        .map_err(write_err(&jwks_path))?;
    Ok(GeneratedKey {
        kid,
        private_key_path,
        jwks_path,
        keys_in_jwks: jwks.keys.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_rotate_in_one_jwks() {
        crate::crypto::install_providers();
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate_into_dir(dir.path(), SigningAlg::ES384).expect("es384");
        let second = generate_into_dir(dir.path(), SigningAlg::RS384).expect("rs384");
        assert_ne!(first.kid, second.kid);
        assert_eq!(second.keys_in_jwks, 2);
        let mode = fs::metadata(&first.private_key_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let jwks: JwkSet =
            serde_json::from_slice(&fs::read(&first.jwks_path).expect("read")).expect("jwks");
        assert!(jwks.find(&first.kid).is_some() && jwks.find(&second.kid).is_some());
        let text = String::from_utf8(fs::read(&first.jwks_path).expect("read")).expect("utf8");
        assert!(!text.contains("\"d\""), "private part leaked into the JWKS");

        let es = load_private_key(&first.private_key_path, SigningAlg::ES384).expect("load es");
        assert_eq!(
            es.public_jwk().expect("jwk").common.key_id.as_deref(),
            Some(first.kid.as_str())
        );
        let rs = load_private_key(&second.private_key_path, SigningAlg::RS384).expect("load rs");
        assert_eq!(
            rs.public_jwk().expect("jwk").common.key_id.as_deref(),
            Some(second.kid.as_str())
        );
        // Wrong algorithm for the file is a parse error, not a panic.
        assert!(matches!(
            load_private_key(&first.private_key_path, SigningAlg::RS384),
            Err(KeyError::Parse { .. })
        ));
    }

    #[test]
    fn group_readable_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = generate_into_dir(dir.path(), SigningAlg::ES384).expect("gen");
        fs::set_permissions(
            &generated.private_key_path,
            fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        let err = load_private_key(&generated.private_key_path, SigningAlg::ES384)
            .expect_err("must refuse");
        assert!(matches!(err, KeyError::TooOpen { mode: 0o640, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }
}
