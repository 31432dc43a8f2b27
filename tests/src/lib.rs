//! Helpers for end-to-end tests: start real binaries on loopback, generated certificates.
