//! End-to-end tests: the real storaged and gateway binaries, started on loopback.
//! One test binary for the whole folder: each binary links the full dependency tree, so one
//! binary instead of many keeps the build's disk use and link time small.
// End-to-end tests wait on real processes, so they read real time.
#![allow(clippy::disallowed_methods)]

mod gateway_audit;
mod gateway_authorization_matrix;
mod gateway_breaker;
mod gateway_concurrent_writes;
mod gateway_credentials;
mod gateway_edge_budgets;
mod gateway_graceful_stop;
mod gateway_http2;
mod gateway_http_limits;
mod gateway_incident_switches;
mod gateway_json_fidelity;
mod gateway_native_grpc;
mod gateway_policy_reload;
mod gateway_rate_limits;
mod gateway_read_only;
mod gateway_refusals;
mod gateway_replay;
mod gateway_request_id;
mod gateway_rest_routes;
mod gateway_rfc9421;
mod gateway_startup;
mod gateway_storaged_hangs;
mod gateway_tls;
mod gateway_usage;
mod photonctl;
mod photonctl_keys;
mod storaged_archive_kill;
mod storaged_cert_reload;
mod storaged_config;
mod storaged_connection_limits;
mod storaged_damaged_catalog;
mod storaged_data_loss;
mod storaged_deadlines;
mod storaged_graceful_stop;
mod storaged_kill9;
mod storaged_load_shedding;
mod storaged_log_loss;
mod storaged_metrics;
mod storaged_offline_tools;
mod storaged_operations;
mod storaged_power_cut;
mod storaged_refuses_connections;
mod storaged_restore_drill;
mod storaged_store_lock;
mod storaged_survives_garbage;
mod storaged_verify_under_load;
