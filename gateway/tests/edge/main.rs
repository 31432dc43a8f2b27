//! Gateway tests: the real gateway binary, photonctl, TLS, gRPC and the upstream.
//! One test binary for the whole folder: each binary links the full dependency tree, so one
//! binary instead of many keeps the build's disk use and link time small.

mod http_edge;
mod photonctl;
mod startup;
mod support;
mod tls_grpc;
mod upstream;
