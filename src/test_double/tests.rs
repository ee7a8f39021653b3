//! Tests of the double itself, over real HTTP on loopback.

use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use super::*;
use crate::upload::assertion::AssertionSigner;
use crate::upload::keys::{SigningAlg, SigningKey, generate_private_key_pem};

struct Rig {
    double: TestDouble,
    signer: AssertionSigner,
    http: reqwest::Client,
}

async fn rig(alg: SigningAlg) -> Rig {
    crate::crypto::install_providers();
    let pem = generate_private_key_pem(alg).expect("gen");
    let key = SigningKey::from_pem(pem.as_bytes(), alg).expect("key");
    let jwk = key.public_jwk().expect("jwk");
    let kid = jwk.common.key_id.clone().expect("kid");
    let double = start(TestDoubleOptions::new("gw-1", JwkSet { keys: vec![jwk] }))
        .await
        .expect("start");
    Rig {
        double,
        signer: AssertionSigner {
            client_id: "gw-1".into(),
            kid,
            jku: None,
            key,
            lifetime: Duration::from_secs(120),
        },
        http: reqwest::Client::new(),
    }
}

impl Rig {
    async fn token_with(&self, assertion: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.double.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", token::ASSERTION_TYPE),
                ("client_assertion", assertion),
                ("scope", "system/Observation.cu system/Device.cu"),
            ])
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    async fn token(&self) -> String {
        let a = self
            .signer
            .sign(self.double.token_url(), SystemTime::now())
            .expect("sign");
        let (status, body) = self.token_with(&a).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn post_bundle(&self, token: &str, bundle: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.double.fhir_base_url())
            .bearer_auth(token)
            .json(bundle)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }
}

fn observation(value: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:test", "value": value}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "device": {"reference": "urn:uuid:dev-1"}
    })
}

fn conditional_entry(value: &str) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:obs-{value}"),
        "resource": observation(value),
        "request": {"method": "POST", "url": "Observation",
                    "ifNoneExist": format!("identifier=urn:test|{value}")}
    })
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

#[tokio::test]
async fn conditional_create_is_idempotent_with_both_algs() {
    for alg in [SigningAlg::ES384, SigningAlg::RS384] {
        let rig = rig(alg).await;
        let token = rig.token().await;
        let b = bundle(
            "batch",
            vec![conditional_entry("a"), conditional_entry("b")],
        );
        let (status, first) = rig.post_bundle(&token, &b).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["entry"][0]["response"]["status"], "201 Created");
        let (_, second) = rig.post_bundle(&token, &b).await;
        assert_eq!(second["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(rig.double.count("Observation"), 2);
        assert_eq!(
            rig.double
                .find_by_identifier("Observation", "urn:test|a")
                .len(),
            1
        );
        let stats = rig.double.stats();
        assert_eq!((stats.accepted, stats.duplicate, stats.rejected), (2, 2, 0));
        rig.double.shutdown().await;
    }
}

#[tokio::test]
async fn assertion_checks_reject_what_a_strict_server_rejects() {
    let rig = rig(SigningAlg::ES384).await;
    // Wrong aud: the FHIR base instead of the token endpoint.
    let a = rig
        .signer
        .sign(rig.double.fhir_base_url(), SystemTime::now())
        .expect("sign");
    let (status, body) = rig.token_with(&a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Replayed jti.
    let a = rig
        .signer
        .sign(rig.double.token_url(), SystemTime::now())
        .expect("sign");
    assert_eq!(rig.token_with(&a).await.0, 200);
    let (status, body) = rig.token_with(&a).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or("")
            .contains("jti"),
        "{body}"
    );

    // Expired: signed with a clock ten minutes behind.
    let a = rig
        .signer
        .sign(
            rig.double.token_url(),
            SystemTime::now() - Duration::from_secs(600),
        )
        .expect("sign");
    assert_eq!(rig.token_with(&a).await.0, 401);

    // Wrong key: same kid, different private key.
    let other = SigningKey::from_pem(
        generate_private_key_pem(SigningAlg::ES384)
            .expect("gen")
            .as_bytes(),
        SigningAlg::ES384,
    )
    .expect("key");
    let forged = AssertionSigner {
        key: other,
        ..rig.signer.clone()
    };
    let a = forged
        .sign(rig.double.token_url(), SystemTime::now())
        .expect("sign");
    let (status, body) = rig.token_with(&a).await;
    assert_eq!(status, 401);
    assert!(
        rig.double
            .last_auth_error()
            .unwrap_or_default()
            .contains("invalid_client"),
        "{body}"
    );
    assert_eq!(rig.double.auth_stats().token_requests_rejected, 4);
    rig.double.shutdown().await;
}

#[tokio::test]
async fn fhir_requires_a_live_bearer_token() {
    let rig = rig(SigningAlg::ES384).await;
    let b = bundle("batch", vec![conditional_entry("a")]);
    let (status, body) = rig.post_bundle("not-a-token", &b).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (401, Some("OperationOutcome"))
    );
    let token = rig.token().await;
    rig.double.expire_tokens();
    assert_eq!(rig.post_bundle(&token, &b).await.0, 401);
    assert_eq!(rig.double.auth_stats().unauthorized, 2);
    assert_eq!(rig.double.count("Observation"), 0);
}

#[tokio::test]
async fn malformed_resources_are_rejected_and_transactions_are_atomic() {
    let rig = rig(SigningAlg::ES384).await;
    let token = rig.token().await;
    let mut bad = conditional_entry("bad");
    bad["resource"]
        .as_object_mut()
        .expect("object")
        .remove("status");
    let (status, body) = rig
        .post_bundle(
            &token,
            &bundle("batch", vec![conditional_entry("ok"), bad.clone()]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["entry"][1]["response"]["status"], "400 Bad Request");
    assert_eq!(
        body["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(rig.double.count("Observation"), 1);

    let (status, body) = rig
        .post_bundle(
            &token,
            &bundle("transaction", vec![conditional_entry("t1"), bad]),
        )
        .await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );
    assert_eq!(
        rig.double.count("Observation"),
        1,
        "a failed transaction stores nothing"
    );
}

#[tokio::test]
async fn transaction_resolves_urn_uuid_references_and_put_is_idempotent() {
    let rig = rig(SigningAlg::ES384).await;
    let token = rig.token().await;
    let device = json!({
        "fullUrl": "urn:uuid:dev-1",
        "resource": {"resourceType": "Device", "id": "dev-abc",
                     "identifier": [{"system": "urn:dev", "value": "abc"}]},
        "request": {"method": "PUT", "url": "Device/dev-abc"}
    });
    let b = bundle("transaction", vec![device, conditional_entry("x")]);
    let (status, body) = rig.post_bundle(&token, &b).await;
    assert_eq!(status, 200, "{body}");
    let obs = rig.double.find_by_identifier("Observation", "urn:test|x");
    assert_eq!(obs[0]["device"]["reference"], "Device/dev-abc");
    let (_, again) = rig.post_bundle(&token, &b).await;
    assert_eq!(again["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(
        (rig.double.count("Device"), rig.double.count("Observation")),
        (1, 1)
    );
}

#[tokio::test]
async fn injected_faults_come_in_order_then_normal_service_resumes() {
    let rig = rig(SigningAlg::ES384).await;
    let token = rig.token().await;
    rig.double.inject(Fault::Status {
        status: 503,
        retry_after: Some("7".into()),
    });
    rig.double.inject(Fault::ResetConnection);
    let b = bundle("batch", vec![conditional_entry("f")]);
    let r = rig
        .http
        .post(rig.double.fhir_base_url())
        .bearer_auth(&token)
        .json(&b)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    let reset = rig
        .http
        .post(rig.double.fhir_base_url())
        .bearer_auth(&token)
        .json(&b)
        .send()
        .await;
    assert!(reset.is_err(), "connection must be dropped");
    assert_eq!(rig.post_bundle(&token, &b).await.0, 200);
    assert_eq!(rig.double.count("Observation"), 1);
}

#[tokio::test]
async fn medplum_like_conditional_create_limit() {
    crate::crypto::install_providers();
    let pem = generate_private_key_pem(SigningAlg::ES384).expect("gen");
    let key = SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES384).expect("key");
    let jwk = key.public_jwk().expect("jwk");
    let mut options = TestDoubleOptions::new(
        "gw-1",
        JwkSet {
            keys: vec![jwk.clone()],
        },
    );
    options.max_transaction_conditional_creates = Some(8);
    let double = start(options).await.expect("start");
    let rig = Rig {
        double,
        signer: AssertionSigner {
            client_id: "gw-1".into(),
            kid: jwk.common.key_id.clone().expect("kid"),
            jku: None,
            key,
            lifetime: Duration::from_secs(60),
        },
        http: reqwest::Client::new(),
    };
    let token = rig.token().await;
    let nine = (0..9).map(|i| conditional_entry(&i.to_string())).collect();
    assert_eq!(
        rig.post_bundle(&token, &bundle("transaction", nine))
            .await
            .0,
        400
    );
    let eight = (0..8).map(|i| conditional_entry(&i.to_string())).collect();
    assert_eq!(
        rig.post_bundle(&token, &bundle("transaction", eight))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn dump_writes_one_file_per_resource() {
    let rig = rig(SigningAlg::ES384).await;
    let token = rig.token().await;
    rig.post_bundle(
        &token,
        &bundle(
            "batch",
            vec![conditional_entry("d1"), conditional_entry("d2")],
        ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(rig.double.dump_to_dir(dir.path()).expect("dump"), 2);
    let files = std::fs::read_dir(dir.path().join("Observation"))
        .expect("dir")
        .count();
    assert_eq!(files, 2);
}
