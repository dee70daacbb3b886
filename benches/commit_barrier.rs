//! Benchmark: the durability barrier of a commit (`src/store/atomic.rs`).
//!
//! Replaces a batch of small files (default 2000 files of 1 KiB, the size of a
//! store's changed objects after a large migration) in a fresh directory of the
//! target directory's filesystem, with each barrier: one `syncfs`, an `fdatasync`
//! of every temp file from several threads, and one `fdatasync` after another.
//! Rounds alternate between the barriers; the median, minimum and maximum wall time
//! of each are printed.
//!
//! Run: `cargo bench --bench commit_barrier` (`PKCSCCA_BENCH_FILES=2000`,
//! `PKCSCCA_BENCH_ROUNDS=5`, `PKCSCCA_BENCH_DIR=/var/lib/opencryptoki` to measure
//! the filesystem a store lives on; default: the system's temp directory).
//! Timings are figures to read, not assertions.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use pkcscca::store::atomic::{bench_batch, Barrier};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let files = env_usize("PKCSCCA_BENCH_FILES", 2000);
    let rounds = env_usize("PKCSCCA_BENCH_ROUNDS", 5);
    let base = std::env::var_os("PKCSCCA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let barriers = [
        Barrier::SyncFs,
        Barrier::FdatasyncParallel,
        Barrier::FdatasyncSerial,
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); barriers.len()];
    println!(
        "commit of {files} files of 1 KiB in {}, {rounds} rounds per barrier",
        base.display()
    );
    for _ in 0..rounds {
        for (i, b) in barriers.iter().enumerate() {
            let dir = tempfile::tempdir_in(&base).unwrap();
            // The originals exist (and are on disk) before the timed commit.
            bench_batch(dir.path(), files, 1024, Barrier::SyncFs).unwrap();
            let t = Instant::now();
            bench_batch(dir.path(), files, 1024, *b).unwrap();
            times[i].push(t.elapsed());
        }
    }
    for (b, t) in barriers.iter().zip(&mut times) {
        t.sort();
        println!(
            "{:<20} median {:>8.3} s   min {:>8.3} s   max {:>8.3} s",
            format!("{b:?}"),
            t[t.len() / 2].as_secs_f64(),
            t[0].as_secs_f64(),
            t[t.len() - 1].as_secs_f64()
        );
    }
}
