//! Network egress: SMART Backend Services authorisation, the FHIR HTTP client and the retry
//! policy (issue #5).
