//! A simulated filesystem for crash tests.
//!
//! Each file remembers what was synced and the writes since; the namespace remembers what was
//! made durable by `sync_dir`. `crash(seed)` builds the filesystem a power cut could leave: the
//! synced state plus a random subset of unsynced writes, each torn at 512-byte sectors.

use super::{IoBackend, IoFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

const SECTOR: u64 = 512;

/// An in-memory filesystem with crash and fault injection. Clones share state.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<Faults>>,
    held: Arc<Hold>,
}

/// While `held`, file syncs wait: a slow disk, for tests of what may be answered before a sync.
#[derive(Default)]
struct Hold {
    held: Mutex<bool>,
    released: Condvar,
}

impl Hold {
    fn wait(&self) {
        let mut held = lock(&self.held);
        while *held {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[derive(Default)]
struct State {
    live: BTreeMap<PathBuf, Inode>,
    durable: BTreeMap<PathBuf, Inode>,
}

/// Countdowns: `Some(0)` makes the next such call fail.
#[derive(Default)]
struct Faults {
    writes_left: Option<u64>,
    syncs_left: Option<u64>,
}

type Inode = Arc<Mutex<SimFile>>;

#[derive(Default)]
struct SimFile {
    current: Vec<u8>,
    synced: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

struct SimHandle {
    inode: Inode,
    faults: Arc<Mutex<Faults>>,
    held: Arc<Hold>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements a countdown; true when this call is the one that must fail.
fn fires(left: &mut Option<u64>) -> bool {
    match left {
        Some(0) => {
            *left = None;
            true
        }
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

fn injected() -> io::Error {
    io::Error::other("injected i/o error")
}

fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write(off, data) => {
            let end = *off as usize + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*off as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

impl SimFile {
    fn record(&mut self, op: Pending) {
        apply(&mut self.current, &op);
        self.pending.push(op);
    }

    fn sync(&mut self) {
        for op in std::mem::take(&mut self.pending) {
            apply(&mut self.synced, &op);
        }
    }

    /// What survives a power cut: synced bytes plus some sectors of each later write.
    fn after_crash(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut out = self.synced.clone();
        for op in &self.pending {
            match op {
                Pending::SetLen(_) if rng.gen_bool(0.5) => apply(&mut out, op),
                Pending::SetLen(_) => {}
                Pending::Write(off, data) => apply_torn(&mut out, *off, data, rng),
            }
        }
        out
    }
}

fn apply_torn(out: &mut Vec<u8>, off: u64, data: &[u8], rng: &mut StdRng) {
    let all_or_nothing = rng.gen_range(0..3);
    let mut at = off;
    let end = off + data.len() as u64;
    while at < end {
        let next = ((at / SECTOR) + 1) * SECTOR;
        let piece_end = next.min(end);
        let keep = match all_or_nothing {
            0 => true,
            1 => false,
            _ => rng.gen_bool(0.5),
        };
        if keep {
            let piece = &data[(at - off) as usize..(piece_end - off) as usize];
            apply(out, &Pending::Write(at, piece.to_vec()));
        }
        at = piece_end;
    }
}

impl IoFile for SimHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let file = lock(&self.inode);
        let start = (offset as usize).min(file.current.len());
        let n = buf.len().min(file.current.len() - start);
        buf[..n].copy_from_slice(&file.current[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if fires(&mut lock(&self.faults).writes_left) {
            return Err(injected());
        }
        lock(&self.inode).record(Pending::Write(offset, data.to_vec()));
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.held.wait();
        if fires(&mut lock(&self.faults).syncs_left) {
            return Err(injected());
        }
        lock(&self.inode).sync();
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.inode).record(Pending::SetLen(len));
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.inode).current.len() as u64)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl SimFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the write after the next `n` writes fail (`0` = the very next one).
    pub fn fail_write_after(&self, n: u64) {
        lock(&self.faults).writes_left = Some(n);
    }

    /// Makes the sync (file or directory) after the next `n` syncs fail.
    pub fn fail_sync_after(&self, n: u64) {
        lock(&self.faults).syncs_left = Some(n);
    }

    /// Makes every file sync wait until `release_syncs` (the syncs already running finish).
    pub fn hold_syncs(&self) {
        *lock(&self.held.held) = true;
    }

    pub fn release_syncs(&self) {
        *lock(&self.held.held) = false;
        self.held.released.notify_all();
    }

    /// The filesystem a power cut at this instant could leave behind, chosen by `seed`.
    pub fn crash(&self, seed: u64) -> SimFs {
        let mut rng = StdRng::seed_from_u64(seed);
        let state = lock(&self.state);
        let mut files = BTreeMap::new();
        for (path, inode) in &state.durable {
            let bytes = lock(inode).after_crash(&mut rng);
            let file = SimFile {
                current: bytes.clone(),
                synced: bytes,
                pending: Vec::new(),
            };
            files.insert(path.clone(), Arc::new(Mutex::new(file)));
        }
        let state = State {
            live: files.clone(),
            durable: files,
        };
        SimFs {
            state: Arc::new(Mutex::new(state)),
            faults: Arc::default(),
            held: Arc::default(),
        }
    }

    /// The current contents of a file, for tests.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        state
            .live
            .get(path)
            .map(|inode| lock(inode).current.clone())
    }

    /// Overwrites bytes as if the disk changed them: both the current and the synced state.
    pub fn corrupt(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let state = lock(&self.state);
        if let Some(inode) = state.live.get(path) {
            let mut file = lock(inode);
            let op = Pending::Write(offset, bytes.to_vec());
            apply(&mut file.current, &op);
            apply(&mut file.synced, &op);
        }
    }
}

impl IoBackend for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let mut state = lock(&self.state);
        let inode = match state.live.get(path) {
            Some(inode) => inode.clone(),
            None if create => state.live.entry(path.to_path_buf()).or_default().clone(),
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimHandle {
            inode,
            faults: self.faults.clone(),
            held: self.held.clone(),
        }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = lock(&self.state);
        Ok(state.live.contains_key(path) || state.live.keys().any(|p| p.starts_with(path)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let inode = state.live.remove(from).ok_or_else(|| not_found(from))?;
        state.live.insert(to.to_path_buf(), inode);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state
            .live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let names = state.live.keys().filter(|p| p.parent() == Some(dir));
        Ok(names
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }
    /// Directories themselves are treated as always durable (created once, at setup).
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if fires(&mut lock(&self.faults).syncs_left) {
            return Err(injected());
        }
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.durable.retain(|p, _| p.parent() != Some(dir));
        for (path, inode) in state.live.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            state.durable.insert(path.clone(), inode.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_files_and_names_vanish_in_a_crash() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let a = fs.open(&dir.join("a"), true).unwrap();
        a.write_at(0, b"synced").unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        let b = fs.open(&dir.join("b"), true).unwrap();
        b.write_at(0, b"never named").unwrap();
        b.sync_data().unwrap();
        let after = fs.crash(1);
        assert_eq!(after.read_file(&dir.join("a")).unwrap(), b"synced");
        assert!(after.read_file(&dir.join("b")).is_none());
    }

    #[test]
    fn unsynced_writes_survive_only_in_whole_sectors() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/f"), true).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        f.write_at(0, &[7u8; 2048]).unwrap();
        for seed in 0..20 {
            let bytes = fs.crash(seed).read_file(Path::new("/f")).unwrap();
            for sector in bytes.chunks(512) {
                assert!(sector.iter().all(|&b| b == 7) || sector.iter().all(|&b| b == 0));
            }
        }
    }
}
