//! Engine tests through the public API: operations, concurrency, crashes, a model, recovery.
//! One test binary for the whole folder: each binary links the full dependency tree, so one
//! binary instead of many keeps the build's disk use and link time small.

// Crash and concurrency tests time real threads on a simulated disk; the engine's own timing
// goes through its injected clock.
#![allow(clippy::disallowed_methods)]

mod engine_backup;
mod engine_basic;
mod engine_concurrency;
mod engine_crash;
mod engine_log_loss;
mod engine_model;
mod engine_recovery;
