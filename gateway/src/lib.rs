//! photondb-gateway: the public edge (pingora + rustls). The `photonctl` binary lives in
//! `src/bin/photonctl/` and uses only what the gateway exposes for itself (the upstream client).

/// Refusal and success answers: problem+json and gRPC status renderings.
pub mod answer;
/// The hash-chained audit log of security refusals and policy changes.
pub mod audit;
/// Circuit breaker on storaged failures.
pub mod breaker;
/// The injected clock.
pub mod clock;
/// Gateway configuration: TOML, env overrides, validation, domain types.
pub mod config;
/// Which connections the public listener keeps: counted from `accept`, before TLS.
#[cfg(feature = "server")]
pub mod connections;
/// Read-only degraded mode: operator switch and overload shedding.
pub mod degraded;
/// Per-minute counts and alerts of attack signals (signature failures, quota bypass).
pub mod detect;
/// A request whose names are checked and whose payload is not yet.
pub mod draft;
/// The pingora application answering every request, and connection limits.
#[cfg(feature = "server")]
pub mod edge;
/// Refusals and the one mapping to HTTP status, codes and gRPC status.
pub mod errors;
/// Entry points for the fuzz targets (`fuzz/`); not a stable API.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
/// Native gRPC at the edge: unframe, decode, re-encode.
pub mod grpc;
/// JSON document validation.
pub mod json;
/// Prometheus metrics and the private `/metrics` listener.
pub mod metrics;
/// Typed storage operations, storaged's replies, policy targets, operation labels.
pub mod operation;
/// The operator's incident switches (a hot JSON file).
pub mod ops;
/// The request pipeline of DESIGN §2 as a library function, every step in order.
pub mod pipeline;
/// The policy directory: principals, roles, bindings, plans; loading, decisions, reload.
pub mod policy;
/// One shared, reconnecting Redis connection (replay and rate-limit stores).
pub mod redis_conn;
/// REST/JSON <-> gRPC mapping.
pub mod rest;
/// Pipeline step 4: routing to typed operations.
pub mod route;
/// The pingora server: listeners, TLS, background services.
#[cfg(feature = "server")]
pub mod server;
/// Public TLS: certificate loading and reload.
pub mod tls;
/// The tonic mTLS client to storaged.
pub mod upstream;
/// Usage metering per principal and hour (sled), and its bounded metrics.
pub mod usage;
