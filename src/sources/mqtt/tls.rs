//! rustls client configuration for the broker connection, with ring as the crypto provider
//! (the only provider in the tree): CA file, optional client certificate and key (PEM).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::MqttError;
use super::config::TlsConfig;

pub fn client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| MqttError::Tls(format!("reading the {what} file failed: {e}")))
    };
    let ca_pem = read(&tls.ca_file, "CA")?;
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert =
            cert.map_err(|e| MqttError::Tls(format!("CA file is not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| MqttError::Tls(format!("CA certificate refused: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(MqttError::Tls("CA file holds no certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client_auth {
        Some((cert_path, key_path)) => {
            let cert_pem = read(cert_path, "client certificate")?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| MqttError::Tls(format!("client certificate is not PEM: {e}")))?;
            let key_pem = read(key_path, "client key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| MqttError::Tls(format!("client key is not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| MqttError::Tls(format!("client certificate refused: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
