//! Building the upload side from the validated `[upload]` config: the HTTP client, the
//! authorizer (signing key, discovery, token cache) and the uploader.

use std::sync::Arc;
use std::time::Duration;

use vectorcare_hal::clock::Clock;

use super::UploadConfig;
use super::assertion::{AssertionSigner, MAX_LIFETIME};
use super::auth::{AuthSettings, Authorizer};
use super::client::{ClientBuildError, HttpSettings, build_http_client};
use super::keys::{KeyError, load_private_key};
use super::uploader::{AckGrouping, Uploader, UploaderSettings};
use crate::fhir::BundleOptions;
use crate::queue::DurableQueue;

/// How often an empty queue is looked at again.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Why the upload side could not be built. Both are configuration problems (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum UploadBuildError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// The HTTP client and the authorizer for `config`.
pub fn authorizer(
    config: &UploadConfig,
    clock: Arc<dyn Clock>,
) -> Result<(reqwest::Client, Arc<Authorizer>), UploadBuildError> {
    let key = load_private_key(&config.private_key, config.alg)?;
    let http = build_http_client(&HttpSettings::from(config))?;
    let authorizer = Authorizer::new(
        http.clone(),
        AssertionSigner {
            client_id: config.client_id.clone(),
            kid: config.active_kid.clone(),
            jku: config.jku.clone(),
            key,
            lifetime: MAX_LIFETIME,
        },
        clock,
        AuthSettings {
            fhir_base_url: config.fhir_base_url.clone(),
            scopes: config.scopes.clone(),
            write_mode: config.write_mode,
            refresh_margin: config.token_refresh_margin,
            allow_unsynchronized_clock: config.allow_unsynchronized_clock,
        },
    );
    Ok((http, Arc::new(authorizer)))
}

/// The uploader draining `queue` to the configured server.
pub fn uploader(
    config: &UploadConfig,
    queue: Arc<dyn DurableQueue>,
    clock: Arc<dyn Clock>,
) -> Result<Uploader, UploadBuildError> {
    let (http, auth) = authorizer(config, clock)?;
    let settings = UploaderSettings {
        fhir_base_url: config.fhir_base_url.to_string(),
        bundle: BundleOptions {
            bundle_type: config.bundle_type,
            write_mode: config.write_mode,
        },
        bundle_size: config.bundle_size,
        max_bundle_entries: config.max_bundle_entries,
        backoff: config.backoff,
        config_error_backoff: config.config_error_backoff,
        idle_poll: IDLE_POLL,
    };
    Ok(Uploader::new(queue, http, auth, settings).with_ack_grouping(AckGrouping::DEFAULT))
}
