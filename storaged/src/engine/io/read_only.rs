//! A backend that can only read: what `inspect` runs on, so "changes nothing" is enforced, and
//! a read-only snapshot or mount can be inspected.

use super::{IoBackend, IoFile};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Opens files through the inner backend's read-only open; every change is refused.
pub struct ReadOnly<B>(pub B);

struct ReadOnlyFile(Arc<dyn IoFile>);

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "read-only: this tool changes nothing",
    )
}

impl IoFile for ReadOnlyFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(refused())
    }
    fn sync_data(&self) -> io::Result<()> {
        Err(refused())
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(refused())
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl<B: IoBackend> IoBackend for ReadOnly<B> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        if create {
            return Err(refused());
        }
        Ok(Arc::new(ReadOnlyFile(self.0.open_read(path)?)))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused())
    }
    fn remove(&self, _path: &Path) -> io::Result<()> {
        Err(refused())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(dir)
    }
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Err(refused())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Err(refused())
    }
}
