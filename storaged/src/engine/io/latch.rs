//! A backend wrapper that stops all I/O after the first failed write or sync.
//!
//! After a failed fsync the kernel may have dropped the dirty pages, so a retry that "succeeds"
//! proves nothing; the only safe continuation is recovery from the WAL.

use super::{IoBackend, IoFile};
use crate::engine::error::previous_io_error;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Wraps a backend; once latched, every call returns `PreviousIo`.
pub struct LatchedIo {
    inner: Arc<dyn IoBackend>,
    latched: Arc<AtomicBool>,
}

struct LatchedFile {
    inner: Arc<dyn IoFile>,
    latched: Arc<AtomicBool>,
}

fn guard(latched: &AtomicBool) -> io::Result<()> {
    if latched.load(Ordering::Acquire) {
        Err(previous_io_error())
    } else {
        Ok(())
    }
}

/// Runs a mutating call; a failure latches.
fn mutate<T>(latched: &AtomicBool, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    guard(latched)?;
    op().inspect_err(|_| latched.store(true, Ordering::Release))
}

impl LatchedIo {
    pub fn new(inner: Arc<dyn IoBackend>) -> Self {
        LatchedIo {
            inner,
            latched: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_latched(&self) -> bool {
        self.latched.load(Ordering::Acquire)
    }
}

impl IoFile for LatchedFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        guard(&self.latched)?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        mutate(&self.latched, || self.inner.write_at(offset, data))
    }
    fn sync_data(&self) -> io::Result<()> {
        mutate(&self.latched, || self.inner.sync_data())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        mutate(&self.latched, || self.inner.set_len(len))
    }
    fn len(&self) -> io::Result<u64> {
        guard(&self.latched)?;
        self.inner.len()
    }
}

impl IoBackend for LatchedIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let inner = mutate(&self.latched, || self.inner.open(path, create))?;
        Ok(Arc::new(LatchedFile {
            inner,
            latched: self.latched.clone(),
        }))
    }
    /// Opening to read changes nothing: a failure (a missing file) does not latch.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        guard(&self.latched)?;
        let inner = self.inner.open_read(path)?;
        Ok(Arc::new(LatchedFile {
            inner,
            latched: self.latched.clone(),
        }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        guard(&self.latched)?;
        self.inner.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        mutate(&self.latched, || self.inner.rename(from, to))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        mutate(&self.latched, || self.inner.remove(path))
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        guard(&self.latched)?;
        self.inner.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        mutate(&self.latched, || self.inner.create_dir_all(dir))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        mutate(&self.latched, || self.inner.sync_dir(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::SimFs;

    #[test]
    fn a_failed_sync_latches_every_later_call() {
        let sim = SimFs::new();
        let io = LatchedIo::new(Arc::new(sim.clone()));
        let f = io.open(Path::new("/a"), true).unwrap();
        f.write_at(0, b"x").unwrap();
        sim.fail_sync_after(0);
        assert!(f.sync_data().is_err());
        let later = f.read_at(0, &mut [0u8; 1]).unwrap_err();
        assert!(crate::engine::error::is_previous_io(&later));
        assert!(crate::engine::error::is_previous_io(
            &f.sync_data().unwrap_err()
        ));
        assert!(io.is_latched());
    }
}
