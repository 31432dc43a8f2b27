//! The disk I/O boundary: a small backend trait, the real filesystem, a latch, and (for tests,
//! behind the `testing` feature) a simulator.

mod latch;
mod read_only;
mod real;
#[cfg(any(test, feature = "testing"))]
mod sim;

pub use latch::LatchedIo;
pub use read_only::ReadOnly;
pub use real::StdFs;
#[cfg(any(test, feature = "testing"))]
pub use sim::SimFs;

use std::io;
use std::path::Path;
use std::sync::Arc;

/// One open file. Offsets are absolute; there is no cursor.
#[allow(clippy::len_without_is_empty)] // a file's length is a size, not a collection's
pub trait IoFile: Send + Sync {
    /// Reads up to `buf.len()` bytes; fewer only at end of file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every earlier write to this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
}

/// A filesystem as the engine needs it. Directory changes are durable only after `sync_dir`.
pub trait IoBackend: Send + Sync {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>>;
    /// Opens an existing file for reading only (the real filesystem asks the OS for no write
    /// access, so a read-only mount or snapshot opens).
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        self.open(path, false)
    }
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the files directly inside `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` when the file ends first.
pub(crate) fn read_exact_at(file: &dyn IoFile, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

/// Writes `len` zero bytes from `offset`, in chunks, so the blocks are really allocated.
pub(crate) fn write_zeros(file: &dyn IoFile, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        file.write_at(offset + at, &zeros[..n as usize])?;
        at += n;
    }
    Ok(())
}
