//! photondb-storaged: the storage daemon's library (engine, service, TLS, config).

pub mod engine;
