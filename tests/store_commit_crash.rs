//! The commit protocol of `src/store/atomic.rs`, seen from outside the real binary
//! with `strace`: every temp file written, one `syncfs`, the renames, one `fsync` of
//! the directory; and a crash (`SIGKILL`) at every point between that barrier and
//! the last rename leaves every object old or new, and a re-run finishes.
//!
//! `strace -e inject=...:signal=KILL:when=N` kills the process on entry to its N-th
//! rename, before the kernel performs it: N = 1 is right after the barrier, N = the
//! number of changed objects is just before the last rename. No hook in the binary
//! is needed. They need `strace` (and ptrace), which a fresh machine may lack, so they
//! are ignored by a plain `cargo test` and run by `.ci/run` with `--ignored`, where
//! a missing `strace` is a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test: a panic is a failure"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::lab::{object_files, Lab, PINS};

const LAYOUT: &[&str] = &["--format", "old", "--openCryptoki-3.8.1-style"];
/// The syscalls a rename may be made with.
const RENAMES: &str = "rename,renameat,renameat2";

/// Whether `strace` can trace here; a reason when it cannot.
fn strace_usable() -> Result<(), String> {
    let ok = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success());
    match ok {
        Ok(true) => Ok(()),
        Ok(false) => Err("strace cannot trace here (ptrace not allowed?)".into()),
        Err(e) => Err(format!("no strace ({e}); apt-get install strace")),
    }
}

fn require_strace() {
    if let Err(why) = strace_usable() {
        panic!("{why}");
    }
}

/// `pkcscca -m keys -k aes` on `store` under `strace -f STRACE_ARGS` (every thread: the
/// temp files are written from the verb pool's threads); returns the exit code
/// (`None`: killed) and the trace, each line without its thread id.
fn traced_run(lab: &Lab, store: &Path, strace_args: &[&str]) -> (Option<i32>, String) {
    let trace = store.with_extension("strace");
    let mut cmd = Command::new("strace");
    cmd.arg("-f")
        .arg("-o")
        .arg(&trace)
        .args(strace_args)
        .arg("--")
        .arg(common::lab::pkcscca_bin())
        // The commit alone: a backup's own directory fsyncs would come between.
        .args(["-m", "keys", "-s", "2", "-k", "aes", "--no-backup", "-d"])
        .arg(store);
    let r = lab.run_with_stdin(cmd, PINS);
    let text: String = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            // With -f and -o, every line starts with the thread id.
            let l = l.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{}\n", l.trim_start())
        })
        .collect();
    // strace ends as its tracee did: killed by the same signal (-1 here) or, in
    // some versions, with 128 + the signal number.
    let code = (r.code != -1 && r.code != 128 + 9).then_some(r.code);
    (code, text)
}

/// Every temp file written before one `syncfs`, then the renames, then one `fsync`
/// of the directory, and no per-file sync.
#[test]
#[ignore = "needs strace and ptrace: .ci/run runs it"]
fn commit_is_temps_then_one_barrier_then_renames_then_one_directory_fsync() {
    require_strace();
    let lab = Lab::new(LAYOUT);
    lab.change_mk("aes", 1);
    let (code, trace) = traced_run(
        &lab,
        &lab.store,
        &[
            "-e",
            &format!("trace=openat,syncfs,fsync,fdatasync,sync,{RENAMES}"),
        ],
    );
    assert_eq!(code, Some(0), "{trace}");
    let lines: Vec<&str> = trace.lines().collect();
    let at = |pred: &dyn Fn(&str) -> bool| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| pred(l))
            .map(|(i, _)| i)
            .collect()
    };
    let temps =
        at(&|l| l.starts_with("openat(") && l.contains(".pkcscca.tmp") && l.contains("O_CREAT"));
    let barriers = at(&|l| l.starts_with("syncfs("));
    let renames = at(&|l| l.starts_with("rename") && l.contains(".pkcscca.tmp"));
    let fsyncs = at(&|l| l.starts_with("fsync(") || l.starts_with("fdatasync("));
    let n = 9; // the sample store's AES keys (tests/migrate_keys.rs keys_of("aes"))
    assert_eq!((temps.len(), renames.len()), (n, n), "{trace}");
    assert_eq!(barriers.len(), 1, "one barrier: {trace}");
    let b = barriers[0];
    assert!(
        temps.iter().all(|&t| t < b),
        "temps before the barrier: {trace}"
    );
    assert!(renames.iter().all(|&r| r > b), "renames after it: {trace}");
    let last_rename = *renames.last().unwrap();
    let syncs_in_commit: Vec<usize> = fsyncs.iter().copied().filter(|&f| f > temps[0]).collect();
    assert_eq!(
        syncs_in_commit.len(),
        1,
        "no per-file sync, one directory fsync: {trace}"
    );
    assert!(syncs_in_commit[0] > last_rename, "{trace}");
    // That fsync is of the directory the renames used.
    let dir_fd = lines[last_rename]
        .split(['(', ','])
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        lines[syncs_in_commit[0]].starts_with(&format!("fsync({dir_fd})")),
        "{trace}"
    );
}

/// A kill on entry to the k-th rename (k = 1 right after the barrier, up to the
/// last one): each object is byte for byte as before or as a complete run writes
/// it, exactly k - 1 were replaced, and a re-run finishes the migration.
#[test]
#[ignore = "needs strace and ptrace: .ci/run runs it"]
fn crash_between_the_barrier_and_the_last_rename_then_rerun() {
    require_strace();
    let lab = Lab::new(LAYOUT);
    lab.change_mk("aes", 1);
    let before = lab.objects();
    // What a complete run writes (old-format objects and the emulator's re-enciphered
    // tokens are deterministic, so a second complete run writes the same bytes).
    let reference = |name: &str| {
        let dir = lab.root().join(name);
        common::copy_tree(&lab.store, &dir);
        let d = dir.display().to_string();
        let r = lab.pkcscca(&["-m", "keys", "-s", "2", "-k", "aes", "-d", &d], PINS);
        assert_eq!(r.code, 0, "{r:?}");
        object_files(&dir)
    };
    let after = reference("reference");
    assert_eq!(after, reference("reference-2"), "complete runs differ");
    let changed: Vec<&String> = before.keys().filter(|n| before[*n] != after[*n]).collect();
    assert_eq!(changed.len(), 9);

    for k in 1..=changed.len() {
        let dir = lab.root().join(format!("crash-{k}"));
        common::copy_tree(&lab.store, &dir);
        let (code, trace) = traced_run(
            &lab,
            &dir,
            &[
                "-e",
                &format!("trace={RENAMES},syncfs"),
                "-e",
                &format!("inject={RENAMES}:signal=KILL:when={k}"),
            ],
        );
        assert_eq!(code, None, "k={k}: not killed: {trace}");
        assert_eq!(trace.matches("syncfs(").count(), 1, "k={k}: {trace}");
        let now: BTreeMap<String, Vec<u8>> = object_files(&dir);
        let mut replaced = 0;
        for (name, old) in &before {
            let got = &now[name];
            if got == old {
                continue;
            }
            assert_eq!(got, &after[name], "k={k}: {name} is neither old nor new");
            replaced += 1;
        }
        assert_eq!(replaced, k - 1, "k={k}: renames done before the kill");
        let temps = now.keys().filter(|n| n.ends_with(".pkcscca.tmp")).count();
        assert_eq!(temps, changed.len() - (k - 1), "k={k}: temps left");

        let d = dir.display().to_string();
        let r = lab.pkcscca(&["-m", "keys", "-s", "2", "-k", "aes", "-d", &d], PINS);
        assert_eq!(r.code, 0, "k={k}: re-run: {r:?}");
        let files = object_files(&dir);
        assert!(
            !files.keys().any(|n| n.ends_with(".pkcscca.tmp")),
            "k={k}: temps after the re-run"
        );
        assert_eq!(
            files, after,
            "k={k}: the re-run ends where a complete run does"
        );
        let c = lab.check_store(&dir, Some("aes"));
        assert_eq!(c.code, 0, "k={k}: {c:?}");
    }
}
