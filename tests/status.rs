//! `pkcscca -m status` (ours) end to end: the built binary against sample stores over
//! the software CCA, through master key changes made on the emulated card's panel.
//!
//! What matters: each key is reported under the register whose MKVP its token carries
//! (checked against the card's own answer and against `csulcca-emu-sample check`),
//! the exit status says what to do (0 all CURRENT, 4 some OLD or NEW, 3 some under no
//! register), and the run changes nothing: every file of the store, its lock directory
//! and the token's shared memory are as before, also while the token is locked, while a
//! pkcsslotd runs and while an HSM master key change is pending.
//!
//! Golden cases: `tests/cmd/status/*.case` (`PKCSCCA_UPDATE_GOLDEN=1` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::lab::{Lab, Run, PINS};

/// openCryptoki 3.8.1-style stores name objects by number: stable golden output.
const OLD_381: &[&str] = &["--format", "old", "--openCryptoki-3.8.1-style"];
const NEW: &[&str] = &["--format", "new"];

/// `pkcscca -m status -d STORE EXTRA...` with `stdin`.
fn status(lab: &Lab, extra: &[&str], stdin: &[u8]) -> (Vec<String>, Run) {
    let store = lab.store.display().to_string();
    let mut args: Vec<String> = vec!["-m".into(), "status".into(), "-d".into(), store];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.pkcscca(&refs, stdin);
    (args, r)
}

/// Compares the run with `tests/cmd/status/<case>.case`.
fn golden(lab: &Lab, case: &str, args: &[String], stdin: &[u8], run: &Run) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.check_golden(&format!("status/{case}"), &args, stdin, run);
}

/// The `--json` document of a status run.
fn json(lab: &Lab, extra: &[&str], stdin: &[u8]) -> (serde_json::Value, Run) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (_, r) = status(lab, &args, stdin);
    let doc = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {r:?}"));
    (doc, r)
}

/// Object name -> register, of the keys of master key type `mk` in a status document.
fn registers(doc: &serde_json::Value, mk: &str) -> BTreeMap<String, String> {
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["mk_type"] == mk)
        .map(|k| {
            (
                k["object"].as_str().unwrap().to_string(),
                k["register"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The card's register MKVP (`current`, `old`, `new`) of `mk` in a status document.
fn register_mkvp(doc: &serde_json::Value, mk: &str, reg: &str) -> String {
    doc["registers"][mk][reg]["mkvp"]
        .as_str()
        .unwrap_or_else(|| panic!("no {reg} MKVP of {mk}: {doc}"))
        .to_string()
}

/// The objects `csulcca-emu-sample check` finds under CURRENT (`ok`) for type `mk`.
fn checked_ok(lab: &Lab, mk: &str) -> Vec<String> {
    let r = lab.check(Some(mk));
    let labels = lab.labels();
    common::lab::check_lines(&r.stdout, "ok")
        .into_iter()
        .map(|label| {
            labels
                .iter()
                .find(|(_, l)| **l == label)
                .map(|(o, _)| o.clone())
                .unwrap_or(label)
        })
        .collect()
}

/// Everything a status run could change: the store's files, the lock directory, the
/// token's shared memory segment.
fn untouched_state(lab: &Lab) -> (BTreeMap<std::path::PathBuf, common::Entry>, bool, bool) {
    let name = pkcscca::config::shm_name(&lab.store);
    let shm = Path::new("/dev/shm").join(name.trim_start_matches('/'));
    (
        common::snapshot(&lab.store),
        lab.lock_dir.exists(),
        shm.exists(),
    )
}

#[test]
fn through_a_master_key_change_current_then_old_then_none() {
    let lab = Lab::new(NEW);
    let (doc, r) = json(&lab, &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(doc["summary"]["verdict"], "current");
    assert_eq!(doc["private_objects_read"], true);
    // Every key the sample made is listed, under CURRENT, with the card's CURRENT MKVP.
    let keys = doc["keys"].as_array().unwrap();
    for mk in ["sym", "aes", "apka", "asym"] {
        let ours = registers(&doc, mk);
        let mut theirs = checked_ok(&lab, mk);
        theirs.sort();
        assert_eq!(ours.keys().cloned().collect::<Vec<_>>(), theirs, "{mk}");
        assert!(ours.values().all(|r| r == "current"), "{mk}: {ours:?}");
        let current = register_mkvp(&doc, mk, "current");
        for k in keys.iter().filter(|k| k["mk_type"] == mk) {
            for t in k["tokens"].as_array().unwrap() {
                assert_eq!(t["mkvp"], current.as_str(), "{k}");
            }
        }
    }
    assert_eq!(
        doc["summary"]["keys"].as_u64().unwrap() as usize,
        keys.len()
    );

    // After SET, the AES keys are under OLD (migration needed), the others untouched.
    lab.change_mk("aes", 1);
    let before = untouched_state(&lab);
    let (doc, r) = json(&lab, &[], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(doc["summary"]["verdict"], "migration-needed");
    let aes = registers(&doc, "aes");
    assert!(
        !aes.is_empty() && aes.values().all(|r| r == "old"),
        "{aes:?}"
    );
    assert!(registers(&doc, "apka").values().all(|r| r == "current"));
    let old = register_mkvp(&doc, "aes", "old");
    assert_ne!(old, register_mkvp(&doc, "aes", "current"));
    assert_eq!(doc["registers"]["aes"]["keys"]["old"], aes.len());
    assert_eq!(untouched_state(&lab), before, "status changed something");

    // A second change without migrating: the AES keys match no register (lost).
    lab.change_mk("aes", 2);
    let (doc, r) = json(&lab, &["-k", "aes"], PINS);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(doc["summary"]["verdict"], "keys-lost");
    assert!(registers(&doc, "aes").values().all(|r| r == "none"));
    assert_eq!(doc["summary"]["none"], aes.len());
    assert!(
        doc["registers"].get("apka").is_none(),
        "-k aes reports AES only"
    );
}

#[test]
fn after_a_migration_every_key_is_current_again() {
    let lab = Lab::new(NEW);
    lab.change_mk("sym", 1);
    lab.change_mk("apka", 1);
    let (_, r) = status(&lab, &[], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stdout.ends_with(
            "Migration needed: keys are under the OLD master key; run pkcscca -m keys with \
             -k sym, -k apka (or -k all).\n"
        ),
        "{r:?}"
    );
    let m = lab.migrate("all", &["--no-backup"]);
    assert_eq!(m.code, 0, "{m:?}");
    let (_, r) = status(&lab, &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r
        .stdout
        .ends_with("Every key is under the CURRENT master key.\n"));
    assert_eq!(lab.check(None).code, 0);
}

/// Keys under NEW: a master key change that loaded NEW but did not SET it, with the
/// keys re-enciphered to NEW (built here by loading their key again as NEW and
/// clearing OLD).
#[test]
fn keys_under_the_new_register_need_the_change_finished() {
    let lab = Lab::new(NEW);
    lab.change_mk("aes", 1);
    assert_eq!(lab.migrate("aes", &["--no-backup"]).code, 0);
    lab.change_mk("aes", 2);
    // The key of generation 1 (the keys' key) loaded again, as NEW; OLD cleared.
    let first = common::hex(&[1u8; 32]);
    let last = common::hex(&[0x5A; 32]);
    lab.admin_input(&["load-new", "aes", "--first"], first.as_bytes());
    lab.admin_input(&["load-new", "aes", "--last"], last.as_bytes());
    lab.admin(&["clear-old", "aes"]);
    let (doc, r) = json(&lab, &["-k", "aes"], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    let aes = registers(&doc, "aes");
    assert!(
        !aes.is_empty() && aes.values().all(|r| r == "new"),
        "{aes:?}"
    );
    assert_eq!(doc["registers"]["aes"]["new"]["state"], "loaded");
    assert_eq!(doc["registers"]["aes"]["old"]["state"], "empty");
    let (_, r) = status(&lab, &["-k", "aes"], PINS);
    assert!(
        r.stdout
            .ends_with("A master key change is not finished: keys are under the NEW master key, which is not yet CURRENT.\n"),
        "{r:?}"
    );
}

#[test]
fn golden_lines_before_and_after_a_change() {
    let lab = Lab::new(OLD_381);
    let (args, r) = status(&lab, &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    golden(&lab, "all-current", &args, PINS, &r);

    lab.change_mk("aes", 1);
    let (args, r) = status(&lab, &["-k", "aes"], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    golden(&lab, "aes-under-old", &args, PINS, &r);

    // Without PINs (standard input ends at once): the public objects only.
    let (args, r) = status(&lab, &["-k", "aes"], b"");
    assert_eq!(r.code, 4, "{r:?}");
    golden(&lab, "public-only", &args, b"", &r);

    lab.change_mk("aes", 2);
    let (args, r) = status(&lab, &["-k", "aes"], PINS);
    assert_eq!(r.code, 3, "{r:?}");
    golden(&lab, "aes-lost", &args, PINS, &r);

    let (args, r) = status(&lab, &["-k", "sym"], b"00000000\n11223344\n");
    assert_eq!(r.code, 255, "{r:?}");
    golden(&lab, "wrong-so-pin", &args, b"00000000\n11223344\n", &r);
}

#[test]
fn without_pins_only_public_objects_are_read() {
    let lab = Lab::new(NEW);
    let (all, r) = json(&lab, &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    let public: Vec<&serde_json::Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["private"] == false)
        .collect();
    assert!(!public.is_empty());
    let (doc, r) = json(&lab, &[], b"");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(doc["private_objects_read"], false);
    assert_eq!(doc["keys"].as_array().unwrap().len(), public.len());
    assert!(doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["private"] == false));
    assert_eq!(
        r.stderr,
        "Enter the SO PIN: \n\
         pkcscca: no PIN given (standard input ended): private objects were not read, \
         only public objects are reported\n"
    );
    // An SO PIN without a USER PIN is not "no PINs": upstream's line, 255.
    let (_, r) = status(&lab, &[], b"76543210\n");
    assert_eq!(r.code, 255, "{r:?}");
    assert_eq!(r.stderr, "pkcscca: Could not get USER PIN.\n");
    // A wrong USER PIN of a 3.12+ store: as -m keys.
    let (_, r) = status(&lab, &[], b"76543210\n00000000\n");
    assert_eq!(r.code, 8, "{r:?}");
}

#[test]
fn reads_only_while_the_token_is_locked() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let lock_file = lab.lock_dir.join("ccatok").join("LCK..ccatok");
    let held = pkcscca::store::lock::TokenLock::acquire(&lock_file, None).unwrap();
    let before = untouched_state(&lab);
    // A temp file of an interrupted run is not ours to remove in a read-only run.
    let tmp = lab.store.join("TOK_OBJ").join(".10000000.pkcscca.tmp");
    std::fs::write(&tmp, b"left by a crash").unwrap();
    let snap = common::snapshot(&lab.store);
    let (_, r) = status(&lab, &["-k", "sym"], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(common::snapshot(&lab.store), snap);
    std::fs::remove_file(&tmp).unwrap();
    assert_eq!(untouched_state(&lab), before);
    drop(held);
    // Without the lock directory, none is made.
    std::fs::remove_dir_all(&lab.lock_dir).unwrap();
    let (_, r) = status(&lab, &["-k", "sym"], PINS);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(!lab.lock_dir.exists(), "status created the lock directory");
}

// ----- pkcsslotd running, HSM master key change pending ---------------------------------

/// Set in the child this test starts (see [`runs_while_pkcsslotd_runs_and_a_change_is_pending`]).
const CHILD: &str = "PKCSCCA_STATUS_TEST_CHILD";

/// In the child: runs `pkcscca ARGS` in this process with the paths of the lab whose
/// root is `$CHILD` and prints `exit=N` and the output.
fn child(root: &str) {
    use pkcscca::app::{self, Io, Settings};
    use pkcscca::migrate::Migrator;
    let root = Path::new(root);
    let paths = pkcscca::config::SystemPaths {
        conf_file: root.join("no-opencryptoki.conf"),
        lock_root: root.join("lock"),
        pkcsslotd_pid_files: vec![root.join("pkcsslotd.pid")],
        data_root: root.join("var-lib-opencryptoki"),
        shm_root: root.join("shm"),
        ..pkcscca::config::SystemPaths::default()
    };
    let store = root.join("ccatok").display().to_string();
    for argv in [
        &["pkcscca", "-m", "status", "-k", "sym", "-d", &store][..],
        &[
            "pkcscca", "-m", "keys", "-s", "2", "-k", "sym", "-d", &store,
        ],
    ] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = PINS;
        let io = Io {
            stdin: &mut stdin,
            stdout: &mut out,
            stderr: &mut err,
            terminal: None,
        };
        let exit = app::run_with(
            argv.iter().copied(),
            io,
            Settings::default(),
            &Migrator::with_paths(paths.clone()),
        );
        println!(
            "<<<{} exit={}\n{}{}>>>",
            argv[2],
            exit.code(),
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    }
}

/// `-m status` runs while a pkcsslotd runs and an HSM master key change is pending,
/// where `-m keys` refuses. The run happens in a child of this test binary started
/// with the emulator's environment (the library is loaded by bare name through
/// `LD_LIBRARY_PATH`, which only takes effect at process start), so that openCryptoki's
/// system paths can point into the lab.
#[test]
fn runs_while_pkcsslotd_runs_and_a_change_is_pending() {
    if let Ok(root) = std::env::var(CHILD) {
        child(&root);
        return;
    }
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a sleep binary");
    let fake = lab.root().join("pkcsslotd");
    std::fs::copy(sleep, &fake).unwrap();
    let mut daemon = Command::new(&fake).arg("60").spawn().unwrap();
    let pid_file = lab.root().join("pkcsslotd.pid");
    std::fs::write(&pid_file, format!("{}\n", daemon.id())).unwrap();
    let data_root = lab.root().join("var-lib-opencryptoki");
    std::fs::create_dir_all(data_root.join("HSM_MK_CHANGE")).unwrap();
    std::fs::write(data_root.join("HSM_MK_CHANGE").join("op-1"), b"pending").unwrap();
    // Right after spawn the new process's cmdline can still read empty.
    let cmdline = format!("/proc/{}/cmdline", daemon.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read(&cmdline)
        .unwrap_or_default()
        .starts_with(fake.as_os_str().as_encoded_bytes())
    {
        assert!(std::time::Instant::now() < deadline, "no fake pkcsslotd");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before = common::snapshot(&lab.store);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "runs_while_pkcsslotd_runs_and_a_change_is_pending",
        "--nocapture",
        "--test-threads=1",
    ]);
    lab.env(&mut cmd);
    cmd.env(CHILD, lab.root());
    let r = lab.run_with_stdin(cmd, b"");
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(r.code, 0, "{r:?}");
    let status = r
        .stdout
        .split("<<<status exit=")
        .nth(1)
        .and_then(|s| s.split(">>>").next())
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(status.starts_with("4\n"), "{status}");
    assert!(status.contains("Under OLD: 3."), "{status}");
    assert!(!status.contains("pkcsslotd"), "{status}");
    let keys = r
        .stdout
        .split("<<<keys exit=")
        .nth(1)
        .and_then(|s| s.split(">>>").next())
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(keys.starts_with("2\n"), "{keys}");
    assert!(keys.contains("pkcsslotd is running"), "{keys}");
    assert_eq!(common::snapshot(&lab.store), before);
}
