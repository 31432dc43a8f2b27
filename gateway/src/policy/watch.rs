//! The policy directory's file watch: an inotify watch on the directory itself, so an edit
//! is applied within [`QUIET`] of the last write rather than at the next periodic check. It
//! sees editors that write in place or save through a rename, files added or removed, and a
//! Kubernetes ConfigMap update (an atomic swap of the `..data` symlink, a rename in the
//! directory). If the directory itself is replaced or inotify is unavailable (its watch limit
//! reached), the periodic check and SIGHUP still apply edits; the watch only makes it sooner.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use inotify::{EventStream, Inotify, WatchMask};
use tokio::time::Sleep;
use tokio_stream::StreamExt as _;

/// An edit is applied once the directory has been quiet this long: one save is often several
/// events (truncate, write, close; or write a temporary file, rename), and reading between
/// them would reject a half-written file.
pub const QUIET: Duration = Duration::from_millis(200);

pub struct PolicyWatch {
    events: EventStream<Vec<u8>>,
    /// Running from the last event seen: a change is reported once it ends. Kept here, not in
    /// [`PolicyWatch::changed`]'s future, so a caller that drops that future (a `select!` whose
    /// other branch fired) neither loses the event nor restarts the wait.
    quiet: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for PolicyWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatch").finish_non_exhaustive()
    }
}

impl PolicyWatch {
    /// Watches `dir`; must be called inside a tokio runtime.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let inotify = Inotify::init()?;
        let changes = WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        inotify.watches().add(dir, changes)?;
        let events = inotify.into_event_stream(vec![0; 4096])?;
        Ok(Self {
            events,
            quiet: None,
        })
    }

    /// Waits for a change and then for [`QUIET`] after its last event; `None` once the watch
    /// has failed (the caller stops waiting on it). Cancel-safe.
    pub async fn changed(&mut self) -> Option<()> {
        loop {
            let event = match self.quiet.as_mut() {
                None => self.events.next().await,
                Some(quiet) => tokio::select! {
                    () = quiet.as_mut() => {
                        self.quiet = None;
                        return Some(());
                    }
                    event = self.events.next() => event,
                },
            };
            event?.ok()?;
            self.quiet = Some(Box::pin(tokio::time::sleep(QUIET)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_edit_wakes_the_watch_once_the_directory_is_quiet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watch = PolicyWatch::new(dir.path()).expect("watch");
        let path = dir.path().join("roles.toml");
        std::fs::write(&path, "a").expect("write");
        std::fs::write(&path, "b").expect("write");
        let woke = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert_eq!(woke, Ok(Some(())), "an edit wakes the watch");
        // Nothing changed since: no wake-up.
        let idle = tokio::time::timeout(QUIET * 3, watch.changed()).await;
        assert!(idle.is_err(), "no change, no wake-up");
        // A rename into the directory (an editor's save, a ConfigMap's symlink swap) too.
        let tmp = dir.path().join(".roles.toml.swp");
        std::fs::write(&tmp, "c").expect("write");
        let woke = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert_eq!(woke, Ok(Some(())));
        std::fs::rename(&tmp, &path).expect("rename");
        let woke = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert_eq!(woke, Ok(Some(())), "a rename wakes the watch");
        // Waits cut shorter than QUIET (a select! whose tick fired) do not lose the change.
        std::fs::write(&path, "d").expect("write");
        let mut woke = false;
        for _ in 0..50 {
            if let Ok(Some(())) = tokio::time::timeout(QUIET / 4, watch.changed()).await {
                woke = true;
                break;
            }
        }
        assert!(
            woke,
            "an edit is reported even to a caller that keeps giving up early"
        );
    }
}
