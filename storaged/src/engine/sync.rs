//! Locking that shrugs off poisoning: a panicking writer is already answered with an error, and
//! what it guarded is page images that are only installed whole, so the data stays usable.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
