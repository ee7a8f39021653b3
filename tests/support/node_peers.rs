//! Starts the real Node peers (`tests/peers/fhir-server/server.mjs`: Medplum's FHIR router
//! behind a small wrapper + oidc-provider) on 127.0.0.1 free ports and stops them by PID when
//! dropped. Shared by `tests/upload_peers.rs` and `benches/upload.rs`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

/// Where the peer lives in the repo.
pub fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/fhir-server")
}

/// What the peers are started with.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub client_id: String,
    /// The client's public keys, registered by value with oidc-provider.
    pub jwks: JwkSet,
    pub access_token_ttl_seconds: u64,
    pub allowed_scopes: Vec<String>,
    /// Serve both endpoints over https with this (cert chain PEM, key PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl PeerOptions {
    pub fn new(client_id: &str, jwks: JwkSet) -> Self {
        Self {
            client_id: client_id.to_owned(),
            jwks,
            access_token_ttl_seconds: 300,
            allowed_scopes: [
                "system/Observation.cus",
                "system/Observation.cu",
                "system/Observation.rs",
                "system/Device.cus",
                "system/Device.rs",
            ]
            .map(String::from)
            .to_vec(),
            tls: None,
        }
    }
}

/// Running peers; killed (by PID, through the `Child` handle) on drop.
pub struct NodePeers {
    child: Child,
    /// Held open: the peer exits by itself when it closes (the test process is gone).
    _stdin: ChildStdin,
    pub fhir_base: String,
    pub token_endpoint: String,
    pub control: String,
    _config_dir: tempfile::TempDir,
}

impl NodePeers {
    /// Starts the peers and waits until both listen.
    ///
    /// Panics with the install command when `node_modules` is missing: these tests must fail,
    /// not silently pass, on a machine without the peers.
    pub fn start(opts: &PeerOptions) -> Self {
        let dir = peer_dir();
        assert!(
            dir.join("node_modules/.installed-lock-sha256").exists(),
            "the Node peers are not installed in {}: run scripts/install/fhir-server.sh",
            dir.display()
        );
        let config_dir = tempfile::tempdir().expect("tempdir");
        let config_path = config_dir.path().join("peer.json");
        let config = json!({
            "client_id": opts.client_id,
            "jwks": opts.jwks,
            "access_token_ttl": opts.access_token_ttl_seconds,
            "allowed_scopes": opts.allowed_scopes,
            "tls": opts.tls.as_ref().map(|(c, k)| json!({"cert": c, "key": k})),
        });
        std::fs::write(&config_path, config.to_string()).expect("write peer config");
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (is Node >= 20.19 installed? run scripts/install/fhir-server.sh)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the Node peers did not start (see stderr above): {other:?}");
            }
        };
        let info: Value = serde_json::from_str(&line).expect("peer start line is JSON");
        let field = |k: &str| info[k].as_str().expect("peer info field").to_owned();
        Self {
            fhir_base: field("fhir_base"),
            token_endpoint: field("token_endpoint"),
            control: field("control"),
            child,
            _stdin: stdin,
            _config_dir: config_dir,
        }
    }

    /// Queues faults for the next FHIR POSTs, one each: `{"status":503,"retry_after":"2"}`,
    /// `{"reset":true}` (RST before processing), `{"process_then_reset":true}` (store, then RST).
    pub async fn inject(&self, http: &reqwest::Client, faults: Value) {
        let r = http
            .post(format!("{}/faults", self.control))
            .json(&faults)
            .send()
            .await
            .expect("control");
        assert!(r.status().is_success(), "inject: {}", r.status());
    }

    /// Every access token issued so far is refused (401) from now on.
    pub async fn revoke_tokens(&self, http: &reqwest::Client) {
        let r = http
            .post(format!("{}/revoke-tokens", self.control))
            .send()
            .await
            .expect("control");
        assert!(r.status().is_success(), "revoke: {}", r.status());
    }

    /// Counters of the peers (tokens issued, token errors with oidc-provider's detail, ...).
    pub async fn stats(&self, http: &reqwest::Client) -> Value {
        http.get(format!("{}/stats", self.control))
            .send()
            .await
            .expect("control")
            .json()
            .await
            .expect("stats json")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodePeers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::io::stderr().flush();
    }
}
