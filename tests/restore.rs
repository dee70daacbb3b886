//! `pkcscca -m restore` (ours) end to end: the backup a writing run makes, put back.
//!
//! What matters: after migrate + restore the store is the store before, file for file
//! (content, owner, group, mode), also after a migration killed during its commit; a
//! backup that does not fit the store (its object list changed since) is refused with
//! nothing written; the PINs are checked against the backup; the checks every writing
//! run makes (token lock) hold.
//!
//! Golden cases: `tests/cmd/restore/*.case` (`PKCSCCA_UPDATE_GOLDEN=1` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use common::lab::{object_files, Lab, Run, PINS};

const OLD_381: &[&str] = &["--format", "old", "--openCryptoki-3.8.1-style"];
const NEW: &[&str] = &["--format", "new"];

/// What must come back: every path with content, owner, group and mode (a restored
/// file is a new inode, as every file a migration writes).
fn contents(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, u32, u32)> {
    common::snapshot(dir)
        .into_iter()
        .map(|(p, e)| (p, (e.content, e.mode, e.uid, e.gid)))
        .collect()
}

/// `pkcscca -m restore -d STORE --from BACKUP EXTRA...` with `stdin`.
fn restore(
    lab: &Lab,
    store: &Path,
    backup: &Path,
    extra: &[&str],
    stdin: &[u8],
) -> (Vec<String>, Run) {
    let mut args: Vec<String> = ["-m", "restore", "-d"].map(String::from).to_vec();
    args.push(store.display().to_string());
    args.push("--from".into());
    args.push(backup.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.pkcscca(&refs, stdin);
    (args, r)
}

fn golden(lab: &Lab, case: &str, args: &[String], stdin: &[u8], run: &Run) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.check_golden(&format!("restore/{case}"), &args, stdin, run);
}

/// The backup directories beside the lab's store.
fn backups(lab: &Lab) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(lab.root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ccatok.pkcscca-backup."))
        })
        .collect();
    v.sort();
    v
}

fn migrate_restore_cycle(layout: &[&str]) {
    let lab = Lab::new(layout);
    if common::running_as_root() {
        // Owners and modes that are not the defaults come back as they were.
        let tok = lab.store.join("TOK_OBJ");
        for (i, name) in lab.objects().keys().enumerate().take(6) {
            let p = tok.join(name);
            std::os::unix::fs::chown(&p, Some(1000 + i as u32), Some(2000 + i as u32)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
    for ty in ["sym", "aes", "apka", "asym"] {
        lab.change_mk(ty, 1);
    }
    let before = contents(&lab.store);
    let m = lab.migrate("all", &[]);
    assert_eq!(m.code, 0, "{m:?}");
    let backup = common::backup_named_in(&m.stderr, &lab.store);
    assert_ne!(
        contents(&lab.store),
        before,
        "the migration changed nothing"
    );
    let mode = fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "no access for others: {mode:o}");
    let migrated = contents(&lab.store);

    // A dry run names what it would put back and writes nothing.
    let (_, r) = restore(&lab, &lab.store, &backup, &["--dry-run", "-v"], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    let would: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Would restore TOK_OBJ/"))
        .collect();
    let written = m
        .stdout
        .lines()
        .last()
        .and_then(|l| l.rsplit("rewritten: ").next())
        .and_then(|n| n.trim_end_matches('.').parse::<usize>().ok())
        .unwrap();
    assert_eq!(would.len(), written, "{r:?}");
    assert_eq!(contents(&lab.store), migrated);

    let (_, r) = restore(&lab, &lab.store, &backup, &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.ends_with(&format!(
            "Restored {written} object file(s) from {}.\n",
            backup.display()
        )),
        "{r:?}"
    );
    assert_eq!(
        contents(&lab.store),
        before,
        "the store before the migration"
    );
    // The restore backed the migrated store up in its turn: restoring that undoes it.
    let second = common::backup_named_in(&r.stderr, &lab.store);
    let (_, r) = restore(&lab, &lab.store, &second, &["--no-backup"], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains(".pkcscca-backup."), "{r:?}");
    assert_eq!(contents(&lab.store), migrated);
    assert_eq!(lab.check(None).code, 0, "every key under CURRENT again");
}

#[test]
fn migrate_then_restore_gives_back_the_old_store() {
    migrate_restore_cycle(OLD_381);
}

#[test]
fn migrate_then_restore_gives_back_the_new_store() {
    migrate_restore_cycle(NEW);
}

#[test]
fn golden_restore_and_its_refusals() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let before = contents(&lab.store);
    let m = lab.migrate("sym", &[]);
    assert_eq!(m.code, 0, "{m:?}");
    let backup = common::backup_named_in(&m.stderr, &lab.store);

    // PINs are checked against the backup's files.
    let snap = common::snapshot(&lab.store);
    let (args, r) = restore(&lab, &lab.store, &backup, &[], b"00000000\n11223344\n");
    assert_eq!(r.code, 255, "{r:?}");
    golden(&lab, "wrong-so-pin", &args, b"00000000\n11223344\n", &r);
    assert_eq!(common::snapshot(&lab.store), snap);

    // Not a backup at all.
    let nowhere = lab.root().join("not-a-backup");
    fs::create_dir(&nowhere).unwrap();
    let (args, r) = restore(&lab, &lab.store, &nowhere, &[], PINS);
    assert_eq!(r.code, 2, "{r:?}");
    golden(&lab, "not-a-backup", &args, PINS, &r);
    assert_eq!(common::snapshot(&lab.store), snap);

    // The token is locked by another process.
    let lock_file = lab.lock_dir.join("ccatok").join("LCK..ccatok");
    let held = pkcscca::store::lock::TokenLock::acquire(&lock_file, None).unwrap();
    let (args, r) = restore(&lab, &lab.store, &backup, &[], PINS);
    assert_eq!(r.code, 2, "{r:?}");
    golden(&lab, "token-locked", &args, PINS, &r);
    drop(held);
    assert_eq!(common::snapshot(&lab.store), snap);

    let (args, r) = restore(&lab, &lab.store, &backup, &["-v"], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    golden(&lab, "verbose", &args, PINS, &r);
    assert_eq!(contents(&lab.store), before);
}

/// A restore when the object list changed since the backup is refused in one line,
/// and nothing is written: no file, no backup. openCryptoki creates an object by
/// appending its name to `OBJ.IDX` in place (the backup's linked index follows) and
/// deletes one by renaming a new `OBJ.IDX` over the old one; both are done here as
/// openCryptoki does them.
#[test]
fn a_store_whose_object_list_changed_is_not_restored() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("aes", 1);
    let m = lab.migrate("aes", &[]);
    assert_eq!(m.code, 0, "{m:?}");
    let backup = common::backup_named_in(&m.stderr, &lab.store);
    let tok = lab.store.join("TOK_OBJ");
    let idx = fs::read(tok.join("OBJ.IDX")).unwrap();
    let refused = |case: &str, what: &str| {
        let snap = common::snapshot(&lab.store);
        let backups_before = backups(&lab);
        let (args, r) = restore(&lab, &lab.store, &backup, &[], PINS);
        assert_eq!(r.code, 2, "{case}: {r:?}");
        assert_eq!(r.stdout, "", "{case}: refused before any prompt: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{case}: {r:?}");
        assert!(r.stderr.contains(what), "{case}: {r:?}");
        golden(&lab, case, &args, PINS, &r);
        assert_eq!(
            common::snapshot(&lab.store),
            snap,
            "{case}: nothing written"
        );
        assert_eq!(backups(&lab), backups_before, "{case}: no backup made");
    };

    // An object created: its file, and its name appended to OBJ.IDX in place.
    let first = lab.objects().into_keys().find(|n| n != "OBJ.IDX").unwrap();
    fs::copy(tok.join(&first), tok.join("Z0000000")).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(tok.join("OBJ.IDX"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"Z0000000\n").unwrap();
    drop(f);
    refused("object-created", "Z0000000: was created after the backup");
    fs::remove_file(tok.join("Z0000000")).unwrap();
    fs::write(tok.join("OBJ.IDX"), &idx).unwrap();

    // An object deleted: a new OBJ.IDX renamed over the old one, then its file removed.
    let text = String::from_utf8(idx.clone()).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| *l != first)
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(tok.join("IDX.TMP"), kept).unwrap();
    fs::rename(tok.join("IDX.TMP"), tok.join("OBJ.IDX")).unwrap();
    fs::remove_file(tok.join(&first)).unwrap();
    refused("object-list-changed", "OBJ.IDX: differs from the backup's");
}

/// The states a crash during a migration's commit can leave (the new object files as
/// our temp files, `k` of them renamed over their originals), each with the backup the
/// run made before its commit: a restore gives back the store before the migration.
#[test]
fn restore_after_a_crash_at_every_rename() {
    let base = Lab::new(OLD_381);
    base.change_mk("aes", 1);
    let migrated = base.root().join("migrated");
    common::copy_tree(&base.store, &migrated);
    let d = migrated.display().to_string();
    let r = base.pkcscca(
        &[
            "-m",
            "keys",
            "-s",
            "2",
            "-k",
            "aes",
            "-d",
            &d,
            "--no-backup",
        ],
        PINS,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let old = base.objects();
    let new = object_files(&migrated);
    let changed: Vec<&String> = old.keys().filter(|n| old[*n] != new[*n]).collect();
    assert!(changed.len() > 2);

    for k in 0..=changed.len() {
        let dir = base.root().join(format!("crash-{k}"));
        common::copy_tree(&base.store, &dir);
        let before = contents(&dir);
        let backup = pkcscca::store::backup::backup_dir_for(&dir, SystemTime::now()).unwrap();
        pkcscca::store::backup::snapshot(&dir, &backup).unwrap();
        let tok = dir.join("TOK_OBJ");
        for (i, name) in changed.iter().enumerate() {
            let tmp = tok.join(format!(".{name}.pkcscca.tmp"));
            fs::write(&tmp, &new[*name]).unwrap();
            // The commit gives each temp file the mode of the file it replaces.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o660)).unwrap();
            if i < k {
                fs::rename(&tmp, tok.join(name)).unwrap();
            }
        }
        let (_, r) = restore(&base, &dir, &backup, &["--no-backup"], PINS);
        assert_eq!(r.code, 0, "k={k}: {r:?}");
        assert!(
            r.stdout.ends_with(&format!(
                "Restored {k} object file(s) from {}.\n",
                backup.display()
            )),
            "k={k}: {r:?}"
        );
        assert_eq!(contents(&dir), before, "k={k}");
    }
}

/// A real `kill -9` of a slowed-down migration at random points of its commit end,
/// then a restore from the backup it made (if it got that far): the store before.
/// The points come from `PKCSCCA_TEST_SEED` (printed).
#[test]
fn restore_after_kill_9_during_a_migration() {
    const LATENCY_US: u32 = 10_000;
    let mut x = common::test_seed() | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let _guard = common::lab::no_pkcsslotd_guard();
    let spawn = |lab: &Lab| {
        use std::io::Write;
        let store = lab.store.display().to_string();
        let mut cmd = Command::new(common::lab::pkcscca_bin());
        cmd.args(["-m", "keys", "-s", "2", "-k", "aes", "-d", &store]);
        lab.env(&mut cmd);
        cmd.env("CSULCCA_EMU_LATENCY_US", LATENCY_US.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let started = Instant::now();
        let _ = child.stdin.take().unwrap().write_all(PINS);
        (child, started)
    };
    let calibrate = Lab::new(OLD_381);
    calibrate.change_mk("aes", 1);
    let (mut child, started) = spawn(&calibrate);
    assert!(child.wait().unwrap().success());
    let full = started.elapsed();

    for round in 0..3 {
        let lab = Lab::new(OLD_381);
        lab.change_mk("aes", 1);
        let before = contents(&lab.store);
        let permille = 800 + next() % 250;
        let delay = full * u32::try_from(permille).unwrap() / 1000;
        let (mut child, started) = spawn(&lab);
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let found = backups(&lab);
        eprintln!("round {round}: kill at {delay:?} of {full:?} ({status}): {found:?}");
        match found.first() {
            // Killed before the backup: no object was replaced (new files may have
            // been written next to them, which the next run removes).
            None => {
                let mut now = contents(&lab.store);
                now.retain(|name, _| !name.to_string_lossy().ends_with(".pkcscca.tmp"));
                assert_eq!(now, before, "round {round}");
            }
            Some(backup) => {
                let (_, r) = restore(&lab, &lab.store, backup, &["--no-backup"], PINS);
                // A backup cut short by the kill is refused; the run wrote nothing
                // then (its commit comes after the backup).
                assert!(r.code == 0 || r.code == 2, "round {round}: {r:?}");
                if r.code == 2 {
                    let tok = lab.store.join("TOK_OBJ");
                    for n in object_files(&lab.store).keys() {
                        if n.ends_with(".pkcscca.tmp") {
                            fs::remove_file(tok.join(n)).unwrap();
                        }
                    }
                }
                assert_eq!(contents(&lab.store), before, "round {round}: {r:?}");
            }
        }
    }
}

/// The token's shared memory segment is removed by a restore, as by a migration.
#[test]
fn restore_removes_the_shared_memory_segment() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let m = lab.migrate("sym", &[]);
    assert_eq!(m.code, 0, "{m:?}");
    let backup = common::backup_named_in(&m.stderr, &lab.store);
    let name = pkcscca::config::shm_name(&lab.store);
    let segment = Path::new("/dev/shm").join(name.trim_start_matches('/'));
    fs::write(&segment, b"stale segment").expect("a writable /dev/shm");
    let (_, r) = restore(&lab, &lab.store, &backup, &[], PINS);
    let gone = !segment.exists();
    let _ = fs::remove_file(&segment);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(gone, "the segment is still there");
}
