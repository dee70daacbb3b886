//! The token lock is openCryptoki's flock, created with its modes; pkcsslotd
//! and library users are detected from (fake) /proc.
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use pkcscca::config::SystemPaths;
use pkcscca::host::{group_gid, pkcsslotd_running, processes_using_opencryptoki};
use pkcscca::store::lock::TokenLock;

/// `flock -n PATH true` (util-linux), as another process taking openCryptoki's lock.
fn flock_n(path: &std::path::Path) -> bool {
    Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .expect("flock(1) from util-linux")
        .success()
}

#[test]
fn lock_is_created_with_opencryptoki_modes_and_excludes_others() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lock/ccatok/LCK..ccatok");
    let lock = TokenLock::acquire(&path, None).unwrap();
    let dmd = std::fs::metadata(path.parent().unwrap()).unwrap();
    let fmd = std::fs::metadata(&path).unwrap();
    assert_eq!(dmd.permissions().mode() & 0o7777, 0o770);
    assert_eq!(fmd.permissions().mode() & 0o7777, 0o440);
    // A second open file description cannot take it (flock semantics)...
    assert!(TokenLock::try_acquire(&path, None).unwrap().is_none());
    // ...nor can another process using flock(1), as openCryptoki would.
    assert!(!flock_n(&path), "flock(1) got the lock while we held it");
    drop(lock);
    assert!(TokenLock::try_acquire(&path, None).unwrap().is_some());
    assert!(flock_n(&path));
}

#[test]
#[ignore = "needs root: gives the lock directory and file another group (.ci/run runs it)"]
fn lock_is_created_with_the_token_group() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lock/ccatok/LCK..ccatok");
    let _lock = TokenLock::acquire(&path, Some(5678)).unwrap();
    let dmd = std::fs::metadata(path.parent().unwrap()).unwrap();
    let fmd = std::fs::metadata(&path).unwrap();
    assert_eq!((dmd.gid(), fmd.gid()), (5678, 5678));
    assert_eq!(dmd.permissions().mode() & 0o7777, 0o770);
    assert_eq!(fmd.permissions().mode() & 0o7777, 0o440);
}

fn fake_paths(root: &std::path::Path) -> SystemPaths {
    SystemPaths {
        pkcsslotd_pid_files: vec![
            root.join("run/opencryptoki/pkcsslotd.pid"),
            root.join("run/pkcsslotd.pid"),
            root.join("var/run/pkcsslotd.pid"),
        ],
        proc_root: root.join("proc"),
        ..SystemPaths::default()
    }
}

fn put(root: &std::path::Path, rel: &str, content: &[u8]) {
    let p: PathBuf = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[test]
fn pkcsslotd_detection() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let p = fake_paths(r);
    assert_eq!(pkcsslotd_running(&p), None);
    // Stale pid file: process gone.
    put(r, "var/run/pkcsslotd.pid", b"4242\n");
    assert_eq!(pkcsslotd_running(&p), None);
    // Pid reused by something else.
    put(r, "proc/4242/cmdline", b"/bin/bash\0-c\0pkcsslotd\0");
    assert_eq!(pkcsslotd_running(&p), None);
    // The daemon (3.8.1 location).
    put(r, "proc/4242/cmdline", b"/usr/sbin/pkcsslotd\0");
    assert_eq!(pkcsslotd_running(&p), Some(4242));
    // Newest location first.
    put(r, "run/opencryptoki/pkcsslotd.pid", b"77\n");
    put(r, "proc/77/cmdline", b"pkcsslotd\0");
    assert_eq!(pkcsslotd_running(&p), Some(77));
    put(r, "run/opencryptoki/pkcsslotd.pid", b"garbage");
    assert_eq!(pkcsslotd_running(&p), Some(4242));
}

#[test]
fn processes_with_opencryptoki_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let p = fake_paths(r);
    put(
        r,
        "proc/10/maps",
        b"7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n",
    );
    put(r, "proc/10/comm", b"bash\n");
    put(
        r,
        "proc/11/maps",
        b"7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0.0.0\n",
    );
    put(r, "proc/11/comm", b"pkcs11-tool\n");
    put(
        r,
        "proc/12/maps",
        b"7f00-7f01 r-xp 0 08:01 1 /usr/lib/opencryptoki/stdll/libpkcs11_cca.so.0\n",
    );
    put(r, "proc/12/comm", b"app\n");
    let me = std::process::id();
    put(r, &format!("proc/{me}/maps"), b"libopencryptoki.so\n");
    put(r, "proc/self/maps", b"libopencryptoki.so\n");
    let found = processes_using_opencryptoki(&p);
    let pids: Vec<u32> = found.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [11, 12]);
    assert_eq!(found[0].name, "pkcs11-tool");
    // The real /proc works too (whatever it holds).
    let _ = processes_using_opencryptoki(&SystemPaths::default());
}

#[test]
fn group_lookup_goes_through_the_name_service() {
    // Every Linux system has group root (gid 0); Debian's base-files adds daemon (1).
    assert_eq!(group_gid("root"), Some(0));
    assert_eq!(group_gid("daemon"), Some(1));
    assert_eq!(group_gid("pkcscca-no-such-group"), None);
    assert_eq!(group_gid(""), None);
}

/// Takes the lock of slot 2 configured with `usergroup = daemon` (gid 1 on Debian).
fn configured_lock(tmp: &tempfile::TempDir) -> TokenLock {
    use pkcscca::config::{parse_str, resolve_slot};
    use pkcscca::host::lock_token;
    let paths = SystemPaths {
        lock_root: tmp.path().join("lock"),
        data_root: tmp.path().join("lib"),
        ..SystemPaths::default()
    };
    let slots = parse_str(
        "slot 2 {\n stdll = libpkcs11_cca.so\n usergroup = daemon\n}\n",
        "c",
    )
    .unwrap();
    let loc = resolve_slot(&slots, 2, &paths, None, "c").unwrap();
    lock_token(&loc).unwrap()
}

#[test]
fn lock_token_uses_the_configured_location() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = configured_lock(&tmp);
    assert_eq!(lock.path(), tmp.path().join("lock/ccatok/LCK..ccatok"));
}

#[test]
#[ignore = "needs root: gives the lock file the configured group (.ci/run runs it)"]
fn lock_token_uses_the_configured_group() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = configured_lock(&tmp);
    assert_eq!(std::fs::metadata(lock.path()).unwrap().gid(), 1);
}
