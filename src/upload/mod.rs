//! Network egress: SMART Backend Services authorisation, the FHIR HTTP client and the retry
//! policy (issue #5).
//!
//! | file | owns |
//! |---|---|
//! | `keys.rs` | client signing keys: generation, loading (refuses group/other-readable files), JWKS |
//! | `assertion.rs` | the signed client assertion (JWT) |

pub mod assertion;
pub mod keys;
