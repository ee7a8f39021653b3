//! Network egress: SMART Backend Services authorisation, the FHIR HTTP client and the retry
//! policy (issue #5). Data flow: queue → [`uploader`] → Bundle → [`client`] → FHIR server, with
//! [`auth`] supplying bearer tokens.
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | `[upload]` config → `UploadConfig` |
//! | `keys.rs` | client signing keys: generation, loading (refuses group/other-readable files), JWKS |
//! | `assertion.rs` | the signed client assertion (JWT) |
//! | `build.rs` | building client, authorizer and uploader from `UploadConfig` |
//! | `auth.rs` | discovery, token requests, token cache, clock gate |
//! | `client.rs` | the HTTP client (TLS, timeouts, pooling) and the Bundle POST |
//! | `reply.rs` | reading a response Bundle: per-entry status and OperationOutcome only |
//! | `retry.rs` | what a response means, backoff with full jitter, Retry-After |
//! | `uploader.rs` | the drain loop: ack / dead-letter / nack, probing a down server |

pub mod assertion;
pub mod auth;
pub mod build;
pub mod client;
pub mod config;
pub mod keys;
pub mod reply;
pub mod retry;
pub mod uploader;

pub use config::{RawUploadConfig, UploadConfig};
pub use uploader::{UploadObserver, UploadStatus, Uploader, UploaderSettings};
