//! State the pipeline keeps in memory and writes to the gateway's sled database behind the
//! request path (replay ids, quota counters): a thread per store writes what changed every
//! [`EVERY`], so a request costs a map update rather than a sled write, and a restart loses
//! at most the last interval plus sled's own flush interval (500 ms) — none at all on a clean
//! stop, which writes everything before the process ends.

use std::sync::Weak;
use std::time::Duration;

/// How often changed state is written to sled.
pub(crate) const EVERY: Duration = Duration::from_millis(100);

/// Calls `write` on `target` every [`EVERY`] until `target` is dropped; a failure is logged
/// once until a write succeeds again.
pub(crate) fn spawn<T: Send + Sync + 'static>(
    name: &'static str,
    target: Weak<T>,
    write: fn(&T) -> sled::Result<()>,
) -> sled::Result<()> {
    let run = move || {
        let mut failing = false;
        loop {
            std::thread::sleep(EVERY);
            let Some(target) = target.upgrade() else {
                return;
            };
            match write(&target) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, store = name, "cannot write to the gateway's state; a crash now would lose what was not written");
                }
                Err(_) => {}
            }
        }
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(drop)
        .map_err(sled::Error::Io)
}
