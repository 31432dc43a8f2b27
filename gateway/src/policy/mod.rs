//! The policy directory (DESIGN §3.5, §4): the types of a validated policy set, the loader
//! that builds one from TOML files (every error with `file:line`), the one decision function
//! the gateway and `photonctl policy explain` both run, and the store that swaps sets on reload.
//!
//! The directory's file format is described in `load.rs` and shown by the example set in the
//! repository's `policies/`.

/// The one decision: which binding allows a principal a permission on a resource, or why none.
pub mod decide;
/// Reads and validates a policy directory as one set.
pub mod load;
/// The policy set's types.
pub mod model;
/// Resource patterns (`*`, `db:<db>`, `db:<db>/table:<table>`): parsing and matching.
pub mod pattern;
/// The current set, swapped atomically on a good reload and kept on a bad one.
pub mod store;
/// Wakes the reloader when a file of the directory changes (inotify).
#[cfg(feature = "server")]
pub mod watch;
