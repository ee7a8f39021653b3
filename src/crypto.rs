//! The process's one crypto provider: ring.
//!
//! `jsonwebtoken` 12 no longer bundles a backend unless a feature picks aws-lc-rs or RustCrypto;
//! we enable neither (aws-lc needs a C toolchain and cmake in the Yocto build, and two providers
//! in one binary double the audit surface). This module implements its
//! [`jsonwebtoken::crypto::CryptoProvider`] with ring, the same library rustls uses here, so
//! TLS and JWT signing share one audited implementation.
//!
//! Call [`install_providers`] once at start-up (it is idempotent; tests call it freely).
//!
//! Key formats follow what `jsonwebtoken`'s PEM loaders hand us:
//! - RSA private keys: PKCS#1 `RSAPrivateKey` DER (its PEM loader unwraps PKCS#8), or PKCS#8;
//! - RSA public keys: PKCS#1 `RSAPublicKey` DER or modulus/exponent (from a JWK);
//! - EC private keys: PKCS#8 DER; EC public keys: the uncompressed point (`04 || x || y`);
//! - Ed25519: PKCS#8 private key, raw 32-byte public key.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as rsig, KeyPair};
use ring::{digest, hmac};

/// Installs ring as the crypto provider of both rustls and jsonwebtoken. Idempotent: a second
/// call (or a provider already installed by an earlier call) is not an error.
pub fn install_providers() {
    // `install_default` fails only when some provider is already installed; ring is the only
    // one compiled into this tree, so an existing default is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = RING_PROVIDER.install_default();
}

/// The ring-backed provider for `jsonwebtoken`.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_components_from_private_key,
        compute_digest,
    },
};

fn key_error(kind: ErrorKind) -> JwtError {
    JwtError::from(kind)
}

/// ring's `Unspecified` carries no detail (by design) and implements `std::error::Error` only
/// with ring's `std` feature, so it is wrapped here.
#[derive(Debug, thiserror::Error)]
#[error("ring rejected the signature operation")]
struct RingUnspecified;

fn sig_error(_: ring::error::Unspecified) -> signature::Error {
    signature::Error::from_source(RingUnspecified)
}

/// Parses an RSA private key given as PKCS#1 DER or PKCS#8 DER.
fn rsa_key_pair(der: &[u8]) -> Result<rsig::RsaKeyPair, JwtError> {
    rsig::RsaKeyPair::from_der(der)
        .or_else(|_| rsig::RsaKeyPair::from_pkcs8(der))
        .map_err(|e| key_error(ErrorKind::InvalidRsaKey(e.to_string())))
}

fn ecdsa_signing_alg(alg: Algorithm) -> Option<&'static rsig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&rsig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

/// A key parsed once, at factory time, so signing many assertions re-parses nothing.
enum SigningKey {
    Rsa(rsig::RsaKeyPair, &'static dyn rsig::RsaEncoding),
    Ecdsa(rsig::EcdsaKeyPair),
    Ed25519(rsig::Ed25519KeyPair),
    Hmac(hmac::Key),
}

struct RingSigner {
    alg: Algorithm,
    key: SigningKey,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &self.key {
            SigningKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), msg, &mut out)
                    .map_err(sig_error)?;
                Ok(out)
            }
            SigningKey::Ecdsa(pair) => Ok(pair
                .sign(&SystemRandom::new(), msg)
                .map_err(sig_error)?
                .as_ref()
                .to_vec()),
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SigningKey::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn expect_family(actual: AlgorithmFamily, wanted: AlgorithmFamily) -> Result<(), JwtError> {
    if actual == wanted {
        Ok(())
    } else {
        Err(key_error(ErrorKind::InvalidKeyFormat))
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, JwtError> {
    let alg = *alg;
    let bytes = key.as_bytes();
    let rsa = |encoding: &'static dyn rsig::RsaEncoding| -> Result<SigningKey, JwtError> {
        expect_family(key.family(), AlgorithmFamily::Rsa)?;
        Ok(SigningKey::Rsa(rsa_key_pair(bytes)?, encoding))
    };
    let hmac_key = |h: hmac::Algorithm| -> Result<SigningKey, JwtError> {
        expect_family(key.family(), AlgorithmFamily::Hmac)?;
        Ok(SigningKey::Hmac(hmac::Key::new(h, bytes)))
    };
    let signing_key = match alg {
        Algorithm::RS256 => rsa(&rsig::RSA_PKCS1_SHA256)?,
        Algorithm::RS384 => rsa(&rsig::RSA_PKCS1_SHA384)?,
        Algorithm::RS512 => rsa(&rsig::RSA_PKCS1_SHA512)?,
        Algorithm::PS256 => rsa(&rsig::RSA_PSS_SHA256)?,
        Algorithm::PS384 => rsa(&rsig::RSA_PSS_SHA384)?,
        Algorithm::PS512 => rsa(&rsig::RSA_PSS_SHA512)?,
        Algorithm::ES256 | Algorithm::ES384 => {
            expect_family(key.family(), AlgorithmFamily::Ec)?;
            let signing_alg =
                ecdsa_signing_alg(alg).ok_or_else(|| key_error(ErrorKind::InvalidAlgorithm))?;
            let pair = rsig::EcdsaKeyPair::from_pkcs8(signing_alg, bytes, &SystemRandom::new())
                .map_err(|_| key_error(ErrorKind::InvalidEcdsaKey))?;
            SigningKey::Ecdsa(pair)
        }
        Algorithm::EdDSA => {
            expect_family(key.family(), AlgorithmFamily::Ed)?;
            let pair = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                .map_err(|_| key_error(ErrorKind::InvalidEddsaKey))?;
            SigningKey::Ed25519(pair)
        }
        Algorithm::HS256 => hmac_key(hmac::HMAC_SHA256)?,
        Algorithm::HS384 => hmac_key(hmac::HMAC_SHA384)?,
        Algorithm::HS512 => hmac_key(hmac::HMAC_SHA512)?,
        _ => return Err(key_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(Box::new(RingSigner {
        alg,
        key: signing_key,
    }))
}

// ---------------------------------------------------------------------------------------------
// Verification

enum VerifyingKey {
    /// A public key ring parses itself (RSA PKCS#1 DER, EC point, Ed25519 bytes).
    Unparsed(
        &'static dyn rsig::VerificationAlgorithm,
        rsig::UnparsedPublicKey<Vec<u8>>,
    ),
    RsaComponents(&'static rsig::RsaParameters, Vec<u8>, Vec<u8>),
    Hmac(hmac::Key),
}

struct RingVerifier {
    alg: Algorithm,
    key: VerifyingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        match &self.key {
            VerifyingKey::Unparsed(_, key) => key.verify(msg, sig).map_err(sig_error),
            VerifyingKey::RsaComponents(params, n, e) => rsig::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .map_err(sig_error),
            VerifyingKey::Hmac(key) => hmac::verify(key, msg, sig).map_err(sig_error),
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            VerifyingKey::Unparsed(alg, _) => format!("Unparsed({alg:?})"),
            VerifyingKey::RsaComponents(..) => "RsaComponents".to_owned(),
            VerifyingKey::Hmac(_) => "Hmac".to_owned(),
        };
        f.write_str(&name)
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, JwtError> {
    let alg = *alg;
    let rsa = |params: &'static rsig::RsaParameters| -> Result<VerifyingKey, JwtError> {
        expect_family(key.family(), AlgorithmFamily::Rsa)?;
        Ok(match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => {
                VerifyingKey::Unparsed(params, rsig::UnparsedPublicKey::new(params, der.clone()))
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                VerifyingKey::RsaComponents(params, n.clone(), e.clone())
            }
        })
    };
    let raw = |family: AlgorithmFamily,
               v: &'static dyn rsig::VerificationAlgorithm|
     -> Result<VerifyingKey, JwtError> {
        expect_family(key.family(), family)?;
        let bytes = key.try_get_as_bytes()?.to_vec();
        Ok(VerifyingKey::Unparsed(
            v,
            rsig::UnparsedPublicKey::new(v, bytes),
        ))
    };
    let hmac_key = |h: hmac::Algorithm| -> Result<VerifyingKey, JwtError> {
        expect_family(key.family(), AlgorithmFamily::Hmac)?;
        Ok(VerifyingKey::Hmac(hmac::Key::new(
            h,
            key.try_get_as_bytes()?,
        )))
    };
    let verifying_key = match alg {
        Algorithm::RS256 => rsa(&rsig::RSA_PKCS1_2048_8192_SHA256)?,
        Algorithm::RS384 => rsa(&rsig::RSA_PKCS1_2048_8192_SHA384)?,
        Algorithm::RS512 => rsa(&rsig::RSA_PKCS1_2048_8192_SHA512)?,
        Algorithm::PS256 => rsa(&rsig::RSA_PSS_2048_8192_SHA256)?,
        Algorithm::PS384 => rsa(&rsig::RSA_PSS_2048_8192_SHA384)?,
        Algorithm::PS512 => rsa(&rsig::RSA_PSS_2048_8192_SHA512)?,
        Algorithm::ES256 => raw(AlgorithmFamily::Ec, &rsig::ECDSA_P256_SHA256_FIXED)?,
        Algorithm::ES384 => raw(AlgorithmFamily::Ec, &rsig::ECDSA_P384_SHA384_FIXED)?,
        Algorithm::EdDSA => raw(AlgorithmFamily::Ed, &rsig::ED25519)?,
        Algorithm::HS256 => hmac_key(hmac::HMAC_SHA256)?,
        Algorithm::HS384 => hmac_key(hmac::HMAC_SHA384)?,
        Algorithm::HS512 => hmac_key(hmac::HMAC_SHA512)?,
        _ => return Err(key_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(Box::new(RingVerifier {
        alg,
        key: verifying_key,
    }))
}

// ---------------------------------------------------------------------------------------------
// JWK helpers (public components, thumbprints)

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtError> {
    let pair = rsa_key_pair(der)?;
    let c = rsig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((c.n, c.e))
}

/// Splits a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtError> {
    let bad = || key_error(ErrorKind::InvalidRsaKey("not a PKCS#1 RSAPublicKey".into()));
    let (tag, body, rest) = der_item(der).ok_or_else(bad)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad());
    }
    let (tag_n, n, rest) = der_item(body).ok_or_else(bad)?;
    let (tag_e, e, rest) = der_item(rest).ok_or_else(bad)?;
    if tag_n != 0x02 || tag_e != 0x02 || !rest.is_empty() {
        return Err(bad());
    }
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    Ok((strip(n), strip(e)))
}

/// One DER TLV: (tag, contents, remaining input). Definite lengths only, as DER requires.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, after) = rest.split_at(count);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (body, after) = rest.split_at(len);
    Some((tag, body, after))
}

fn ec_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), JwtError> {
    let (curve, coord_len) = match alg {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        _ => return Err(key_error(ErrorKind::InvalidEcdsaKey)),
    };
    let signing_alg =
        ecdsa_signing_alg(alg).ok_or_else(|| key_error(ErrorKind::InvalidEcdsaKey))?;
    let pair = rsig::EcdsaKeyPair::from_pkcs8(signing_alg, der, &SystemRandom::new())
        .map_err(|_| key_error(ErrorKind::InvalidEcdsaKey))?;
    let point = pair.public_key().as_ref();
    match point.split_first() {
        Some((4, xy)) if xy.len() == 2 * coord_len => {
            let (x, y) = xy.split_at(coord_len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(key_error(ErrorKind::InvalidEcdsaKey)),
    }
}

fn ed_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, JwtError> {
    match curve {
        EllipticCurve::Ed25519 => Ok(rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| key_error(ErrorKind::InvalidEddsaKey))?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(key_error(ErrorKind::InvalidAlgorithm)),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, JwtError> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(key_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims {
            sub: "gateway-1".into(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
        }
    }

    fn es384_pkcs8() -> Vec<u8> {
        rsig::EcdsaKeyPair::generate_pkcs8(
            &rsig::ECDSA_P384_SHA384_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("generate")
        .as_ref()
        .to_vec()
    }

    #[test]
    fn install_is_idempotent() {
        install_providers();
        install_providers();
        assert!(CryptoProvider::try_get_default().is_some());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn es384_round_trip_and_tamper_detection() {
        install_providers();
        let pkcs8 = es384_pkcs8();
        let enc = EncodingKey::from_ec_der(&pkcs8);
        let token = encode(&Header::new(Algorithm::ES384), &claims(), &enc).expect("sign");
        let (_, x, y) = ec_components_from_private_key(&pkcs8, Algorithm::ES384).expect("jwk");
        assert_eq!((x.len(), y.len()), (48, 48));
        let mut point = vec![4u8];
        point.extend(&x);
        point.extend(&y);
        let dec = DecodingKey::from_ec_der(&point);
        let data =
            decode::<Claims>(&token, &dec, &Validation::new(Algorithm::ES384)).expect("verify");
        assert_eq!(data.claims.sub, "gateway-1");

        // Flip one character of the signature: verification must fail.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(decode::<Claims>(&bad, &dec, &Validation::new(Algorithm::ES384)).is_err());

        // A different key must not verify.
        let other = es384_pkcs8();
        let (_, x2, y2) = ec_components_from_private_key(&other, Algorithm::ES384).expect("jwk");
        let mut p2 = vec![4u8];
        p2.extend(&x2);
        p2.extend(&y2);
        let dec2 = DecodingKey::from_ec_der(&p2);
        assert!(decode::<Claims>(&token, &dec2, &Validation::new(Algorithm::ES384)).is_err());
    }

    #[test]
    fn rsa_public_key_der_is_split_into_components() {
        // SEQUENCE { INTEGER 0x00C3, INTEGER 0x010001 }
        let der = [
            0x30, 0x09, 0x02, 0x02, 0x00, 0xC3, 0x02, 0x03, 0x01, 0x00, 0x01,
        ];
        let (n, e) = rsa_components_from_public_key(&der).expect("parse");
        assert_eq!(n, vec![0xC3]);
        assert_eq!(e, vec![0x01, 0x00, 0x01]);
        assert!(rsa_components_from_public_key(&der[..5]).is_err());
    }

    #[test]
    fn wrong_family_is_rejected() {
        install_providers();
        let enc = EncodingKey::from_ec_der(&es384_pkcs8());
        let err = encode(&Header::new(Algorithm::RS384), &claims(), &enc).expect_err("family");
        // jsonwebtoken checks the key family against the algorithm before asking the provider.
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidKeyFormat | ErrorKind::InvalidAlgorithm
            ),
            "{err:?}"
        );
    }

    #[test]
    fn hmac_round_trip() {
        install_providers();
        let enc = EncodingKey::from_secret(b"secret").expect("key");
        let token = encode(&Header::new(Algorithm::HS384), &claims(), &enc).expect("sign");
        let dec = DecodingKey::from_secret(b"secret").expect("key");
        assert!(decode::<Claims>(&token, &dec, &Validation::new(Algorithm::HS384)).is_ok());
        let wrong = DecodingKey::from_secret(b"other").expect("key");
        assert!(decode::<Claims>(&token, &wrong, &Validation::new(Algorithm::HS384)).is_err());
    }
}
