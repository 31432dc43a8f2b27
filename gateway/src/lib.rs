//! photondb-gateway: the public edge (pingora + rustls) and the `photonctl` operator tool.

/// Certificates for the internal CA, storaged, the gateway's client identity and its public
/// TLS endpoint (`photonctl certs init`; tests use the same code).
pub mod certs;
/// The `photonctl` subcommands (the binary in `src/bin/photonctl.rs` only parses arguments).
pub mod ctl;

/// Refusal and success answers: problem+json and gRPC status renderings.
pub mod answer;
/// Pipeline step 5: bounded, hashed request bodies; `Content-Encoding` refused.
pub mod body;
/// Circuit breaker on storaged failures.
pub mod breaker;
/// The injected clock.
pub mod clock;
/// Gateway configuration: TOML, env overrides, validation, domain types.
pub mod config;
/// Read-only degraded mode: operator switch and overload shedding.
pub mod degraded;
/// The pingora application answering every request, and connection limits.
pub mod edge;
/// Refusals and the one mapping to HTTP status, codes and gRPC status.
pub mod errors;
/// Pipeline step 11: read-only, overload and breaker gate; health document.
pub mod gate;
/// Native gRPC at the edge: unframe, decode, re-encode.
pub mod grpc;
/// Pipeline step 3: per-client-IP rate limit.
pub mod ip_limit;
/// JSON document validation.
pub mod json;
/// Prometheus metrics and the private `/metrics` listener.
pub mod metrics;
/// Validated names and keys.
pub mod names;
/// Typed storage operations, policy targets, batch bodies.
pub mod operation;
/// The request pipeline of DESIGN §2 and its slots (auth, replay, rate limit, policy).
pub mod pipeline;
/// REST/JSON <-> gRPC mapping.
pub mod rest;
/// Pipeline step 4: routing to typed operations.
pub mod route;
/// The pingora server: listeners, TLS, background services.
pub mod server;
/// Public TLS: certificate loading and reload.
pub mod tls;
/// The tonic mTLS client to storaged.
pub mod upstream;
