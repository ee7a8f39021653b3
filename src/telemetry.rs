//! Logging setup and PHI-safe events.
