//! The I/O floor of a commit, shared by the benchmarks: on a copy of a store, write
//! one temporary file per object listed in `TOK_OBJ/OBJ.IDX`, of the object's size,
//! then one `syncfs`, then rename every temporary file over its object, then one
//! `fsync` of `TOK_OBJ`. No tool that replaces every object durably can do less I/O.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The time of each phase.
#[allow(dead_code, reason = "each benchmark prints the fields it needs")]
pub struct Floor {
    /// Objects rewritten.
    pub files: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Writing every temporary file.
    pub write: Duration,
    /// The one `syncfs`.
    pub syncfs: Duration,
    /// Renaming every temporary file.
    pub rename: Duration,
    /// The `fsync` of `TOK_OBJ`.
    pub dirsync: Duration,
}

impl Floor {
    /// All phases.
    pub fn total(&self) -> Duration {
        self.write + self.syncfs + self.rename + self.dirsync
    }
}

/// Measures the floor on the store in `dir` (which it rewrites: give it a copy).
pub fn measure(dir: &Path) -> Floor {
    let tok = dir.join("TOK_OBJ");
    let index = fs::read_to_string(tok.join("OBJ.IDX")).expect("read OBJ.IDX");
    let objects: Vec<(PathBuf, PathBuf, usize)> = index
        .split_whitespace()
        .map(|name| {
            let target = tok.join(name);
            let len = fs::metadata(&target).expect("stat object").len();
            let tmp = tok.join(format!(".{name}.floor.tmp"));
            (target, tmp, usize::try_from(len).expect("object size"))
        })
        .collect();
    let bytes: usize = objects.iter().map(|o| o.2).sum();
    let content = vec![0x5au8; objects.iter().map(|o| o.2).max().unwrap_or(0)];

    let t0 = Instant::now();
    for (_, tmp, len) in &objects {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .expect("create temp file");
        f.write_all(&content[..*len]).expect("write temp file");
    }
    let t1 = Instant::now();
    let d = File::open(&tok).expect("open TOK_OBJ");
    rustix::fs::syncfs(&d).expect("syncfs");
    let t2 = Instant::now();
    for (target, tmp, _) in &objects {
        fs::rename(tmp, target).expect("rename temp file");
    }
    let t3 = Instant::now();
    d.sync_all().expect("fsync TOK_OBJ");
    let t4 = Instant::now();
    Floor {
        files: objects.len(),
        bytes,
        write: t1 - t0,
        syncfs: t2 - t1,
        rename: t3 - t2,
        dirsync: t4 - t3,
    }
}
