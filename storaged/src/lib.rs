//! photondb-storaged: the storage daemon's library (engine, service, TLS, config).

/// Hash-chained audit events.
pub mod audit;
/// Command-line subcommands (`serve`, `verify`, `recover`, `inspect`).
pub mod cli;
/// TOML configuration, environment overrides and validation.
pub mod config;
/// Accepting bounded, authenticated mTLS connections; keepalive on their sockets.
pub mod conn;
/// Request id, principal and deadline from the gateway's metadata.
pub mod context;
/// The storage engine; it imports nothing above it (not even the wire contract).
pub mod engine;
/// TLS handshakes in progress: bounded in all and per network, the oldest evicted.
pub mod handshakes;
/// Prometheus metrics on a private listener.
pub mod metrics;
/// Refused connections on the audit log, aggregated per network, reason and interval.
pub mod refusals;
/// Starting and stopping the daemon.
pub mod server;
/// The gRPC services on the engine.
pub mod service;
/// Engine errors to gRPC status, in one place.
pub mod status;
/// Mutual TLS: TLS 1.3 only, CA chain and identity allowlist, reload on change.
pub mod tls;
/// Request tracing spans.
pub mod trace;
/// The wire contract (names, keys, limits) checked on every request before the engine.
pub mod wire;
