//! End-to-end tests of `pkcscca -m keys`: the built binary against sample CCA
//! token stores made by the software CCA library (`csulcca-emu-sample`), with
//! master key changes made on the emulated card's panel (`csulcca-emu-admin`).
//!
//! Every test proves what matters with the key material itself: after our run,
//! `csulcca-emu-sample check` re-enciphers nothing; it confirms each token
//! carries the CURRENT MKVP and still reproduces the ciphertext, MAC or
//! signature recorded when the store was made. Files that must not change are
//! compared byte for byte.
//!
//! Golden cases (`tests/cmd/keys/*.case`, see `tests/cmd/README.md`) hold the
//! command, stdout, stderr and the exit status of the human output;
//! `PKCSCCA_UPDATE_GOLDEN=1` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab::{check_lines, object_files, Lab, Run, PINS};

/// Store layouts the sample tool makes.
const OLD_381: &[&str] = &["--format", "old", "--openCryptoki-3.8.1-style"];
const NEW: &[&str] = &["--format", "new"];
const OLD_BIG: &[&str] = &["--format", "old", "--byte-order", "big"];
const NEW_BIG: &[&str] = &["--format", "new", "--byte-order", "big"];

const PROMPTS: &str = "Enter the SO PIN: \nEnter the USER PIN: \n";

/// Our last line of a `-m keys` run (`Re-enciphered: ...` or `Dry run: ...`), and the
/// output before it: what upstream prints.
fn split_ours(stdout: &str) -> (&str, &str) {
    let body = stdout.strip_suffix('\n').unwrap_or(stdout);
    match body.rfind('\n') {
        Some(i) => (&stdout[..=i], &stdout[i + 1..]),
        None => ("", stdout),
    }
}

/// Upstream's part of a `-m keys` run's stdout (ours, the last line, removed).
fn upstream_part(stdout: &str) -> &str {
    let (up, ours) = split_ours(stdout);
    assert!(
        ours.starts_with("Re-enciphered: ") || ours.starts_with("Dry run: "),
        "our last line: {stdout:?}"
    );
    up
}

/// Our last line for `n` re-enciphered keys, `current` current ones, `failed` failed
/// ones, and `written` object files rewritten.
fn counts_line(n: usize, current: usize, failed: usize, written: usize) -> String {
    format!(
        "Re-enciphered: {n}. Already current: {current}. Failed: {failed}. \
         Object files rewritten: {written}.\n"
    )
}

/// The sample keys each `-k` value re-enciphers (labels from the sample tool).
fn keys_of(ty: &str) -> BTreeSet<&'static str> {
    let v: &[&str] = match ty {
        "sym" => &["des-priv-ext", "des2-pub-noext", "des3-priv-noext"],
        "aes" => &[
            "aes128-data-priv-ext",
            "aes192-data-pub-noext",
            "aes256-data-priv-noext",
            "aes256-cipher-priv-ext",
            "aes128-cipher-pub-noext",
            "aes-xts-priv-ext",
            "aes-xts-cipher-pub-noext",
            "generic-hmac-priv-ext",
            "sha256-hmac-pub-noext",
        ],
        "asym" => &["rsa08-priv-noext", "rsa08-pub-fulltoken"],
        "apka" => &[
            "rsa31-priv-ext",
            "rsa30-priv-noext",
            "ec-priv-noext",
            "mldsa-priv-ext",
            "dilithium-priv-noext",
            "mlkem-priv-ext",
        ],
        _ => unreachable!(),
    };
    v.iter().copied().collect()
}

/// Upstream's summary line for a run over a whole sample store.
fn summary_of(ty: &str) -> &'static str {
    match ty {
        "sym" => "Successfully migrated: DES: 3. \n",
        "aes" => "Successfully migrated: AES: 7. HMAC: 2. \n",
        // The RSA-AESC/AESM objects are skipped (counted, as upstream counts them).
        "asym" => "Successfully migrated: RSA: 5. \n",
        "apka" => {
            "Successfully migrated: ECC: 2. RSA: 5. IBM Dilithium: 1. IBM ML-DSA: 1. \
             IBM ML-KEM: 1. \n"
        }
        _ => unreachable!(),
    }
}

fn set(v: Vec<String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

fn owned(s: &BTreeSet<&str>) -> BTreeSet<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Asserts which objects changed between two `TOK_OBJ` listings: exactly the
/// objects labelled in `changed` (no file added or removed).
fn assert_changed(
    lab: &Lab,
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    changed: &BTreeSet<&str>,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the set of files in TOK_OBJ changed"
    );
    let labels = lab.labels();
    for (name, bytes) in before {
        let label = labels.get(name).map(String::as_str).unwrap_or("(OBJ.IDX)");
        let want_change = changed.contains(label);
        assert_eq!(
            &after[name] != bytes,
            want_change,
            "{name} ({label}): expected {}",
            if want_change {
                "a rewrite"
            } else {
                "identical bytes"
            }
        );
    }
}

/// How many `Skipping, ... token is  wrapped with current master key.` lines.
fn current_lines(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.contains("token is  wrapped with current master key."))
        .count()
}

/// Create → MK change → check fails → pkcscca → check passes, others untouched →
/// second run reports every key current and writes nothing.
fn full_cycle(layout: &[&str], ty: &str) {
    let lab = Lab::new(layout);
    let r = lab.check(None);
    assert_eq!(r.code, 0, "fresh store: {r:?}");

    let before = lab.objects();
    let meta_before = common::snapshot(&lab.store);
    lab.change_mk(ty, 1);
    let r = lab.check(Some(ty));
    assert_eq!(r.code, 1, "keys under OLD must fail the check: {r:?}");
    assert_eq!(set(check_lines(&r.stdout, "FAILED")), owned(&keys_of(ty)));

    let run = lab.migrate(ty, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with(PROMPTS), "{run:?}");
    assert!(
        upstream_part(&run.stdout).ends_with(summary_of(ty)),
        "{run:?}"
    );
    let n = keys_of(ty).len();
    assert_eq!(
        split_ours(&run.stdout).1,
        counts_line(n, 0, 0, n),
        "{run:?}"
    );
    // One line on stderr: where the backup went. It holds the store as it was.
    let backup = common::backup_named_in(&run.stderr, &lab.store);
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert_eq!(
        object_files(&backup),
        before,
        "the backup is the store before"
    );
    let mode = fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "no access for others: {mode:o}");

    let r = lab.check(Some(ty));
    assert_eq!(r.code, 0, "after migration: {r:?}");
    assert_eq!(set(check_lines(&r.stdout, "ok")), owned(&keys_of(ty)));
    let r = lab.check(None);
    assert_eq!(r.code, 0, "every object: {r:?}");
    let after = lab.objects();
    assert_changed(&lab, &before, &after, &keys_of(ty));
    assert!(!after.keys().any(|n| n.ends_with(".pkcscca.tmp")));
    // Rewritten files keep openCryptoki's owner, group and mode (rw-rw----).
    let meta_after = common::snapshot(&lab.store);
    assert_eq!(
        meta_before.keys().collect::<Vec<_>>(),
        meta_after.keys().collect::<Vec<_>>()
    );
    for (path, b) in &meta_before {
        let a = &meta_after[path];
        assert_eq!(
            (a.mode, a.uid, a.gid),
            (b.mode, b.uid, b.gid),
            "{}",
            path.display()
        );
    }

    let again = lab.migrate(ty, &[]);
    assert_eq!(again.code, 0, "{again:?}");
    let current = current_lines(&again.stdout);
    assert_eq!(current, keys_of(ty).len(), "{again:?}");
    assert!(upstream_part(&again.stdout).ends_with(summary_of(ty)));
    assert_eq!(
        split_ours(&again.stdout).1,
        counts_line(0, keys_of(ty).len(), 0, 0)
    );
    assert_eq!(lab.objects(), after, "a second run must write nothing");
}

macro_rules! cycles {
    ($($name:ident: $layout:expr, $ty:expr;)*) => {
        $(#[test] fn $name() { full_cycle($layout, $ty); })*
    };
}

cycles! {
    sym_old_381: OLD_381, "sym";
    aes_old_381: OLD_381, "aes";
    apka_old_381: OLD_381, "apka";
    asym_old_381: OLD_381, "asym";
    sym_new: NEW, "sym";
    aes_new: NEW, "aes";
    apka_new: NEW, "apka";
    asym_new: NEW, "asym";
    sym_old_big_endian: OLD_BIG, "sym";
    aes_new_big_endian: NEW_BIG, "aes";
    apka_new_big_endian: NEW_BIG, "apka";
    asym_old_big_endian: OLD_BIG, "asym";
}

// ----- golden output --------------------------------------------------------------------

/// Compares the run with `tests/cmd/keys/<case>.case` (command, exit status,
/// stdout and stderr, the lab's directory shown as `@LAB@`), or with
/// `PKCSCCA_UPDATE_GOLDEN=1` rewrites it.
fn golden(lab: &Lab, case: &str, args: &[&str], stdin: &[u8], run: &Run) {
    lab.check_golden(&format!("keys/{case}"), args, stdin, run);
}

/// Runs `pkcscca -m keys -s 2 -k TY -d @LAB@/ccatok EXTRA` and checks it against a golden.
fn golden_run(lab: &Lab, case: &str, ty: &str, extra: &[&str], stdin: &[u8]) -> Run {
    golden_run_on(lab, &lab.store, case, ty, extra, stdin)
}

/// [`golden_run`] on the store in `dir`.
fn golden_run_on(lab: &Lab, dir: &Path, case: &str, ty: &str, extra: &[&str], stdin: &[u8]) -> Run {
    let store = dir.display().to_string();
    let mut args = vec!["-m", "keys", "-s", "2", "-k", ty, "-d", &store];
    args.extend_from_slice(extra);
    let run = lab.pkcscca(&args, stdin);
    golden(lab, case, &args, stdin, &run);
    run
}

#[test]
fn golden_wrong_pins_change_nothing() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "wrong-so-pin", "sym", &[], b"00000000\n11223344\n");
    assert_eq!(r.code, 255);
    let r = golden_run(&lab, "wrong-user-pin", "sym", &[], b"76543210\n00000000\n");
    assert_eq!(r.code, 255);
    let r = golden_run(&lab, "no-pins", "sym", &[], b"");
    assert_eq!(r.code, 255);
    // A PIN line longer than 4096 bytes is refused as unreadable.
    let mut long = vec![b'1'; 4097];
    long.extend_from_slice(b"\n11223344\n");
    let r = golden_run(&lab, "pin-too-long", "sym", &[], &long);
    assert_eq!(r.code, 255);
    assert_eq!(common::snapshot(&lab.store), before);
}

#[test]
fn golden_wrong_so_pin_new_format() {
    let lab = Lab::new(NEW);
    let before = common::snapshot(&lab.store);
    let r = golden_run(
        &lab,
        "wrong-so-pin-new-format",
        "aes",
        &[],
        b"1\n11223344\n",
    );
    assert_eq!(r.code, 255);
    assert_eq!(common::snapshot(&lab.store), before);
}

#[test]
fn golden_wrong_user_pin_new_format_is_upstreams_c_login_failure() {
    // 3.27 checks the USER PIN of a 3.12+ store at C_Login: exit 8, its line after ours.
    let lab = Lab::new(NEW);
    let before = common::snapshot(&lab.store);
    let r = golden_run(
        &lab,
        "wrong-user-pin-new-format",
        "aes",
        &[],
        b"76543210\n1\n",
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.ends_with(
        "USER PIN is incorrect.\npkcscca: C_Login (USER) failed: rc=0xA0 (CKR_PIN_INCORRECT)\n"
    ));
    let r = golden_run(
        &lab,
        "wrong-user-pin-new-format-verbose",
        "aes",
        &["-v", "info"],
        b"76543210\n1\n",
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stdout.ends_with("PKCS#11 library initialized\n"));
    assert_eq!(common::snapshot(&lab.store), before);
}

#[test]
fn golden_missing_library() {
    let mut lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let empty = lab.root().join("no-cca-here");
    fs::create_dir(&empty).unwrap();
    lab.extra_env
        .push(("LD_LIBRARY_PATH".into(), empty.display().to_string()));
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "missing-library", "sym", &[], PINS);
    assert_eq!(r.code, 255);
    assert_eq!(common::snapshot(&lab.store), before);
}

#[test]
fn golden_no_keys_of_the_type() {
    let lab = Lab::new(&[
        "--format",
        "old",
        "--openCryptoki-3.8.1-style",
        "--only-data",
    ]);
    lab.change_mk("apka", 1);
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "no-keys", "apka", &[], PINS);
    assert_eq!(
        (r.code, r.stdout),
        (0, format!("{PROMPTS}\n{}", counts_line(0, 0, 0, 0)))
    );
    let r = golden_run(&lab, "no-keys-verbose", "apka", &["-v", "info"], PINS);
    assert_eq!(r.code, 0);
    assert_eq!(common::snapshot(&lab.store), before);
}

#[test]
fn golden_sym_migration_then_all_current() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let r = golden_run(&lab, "sym-verbose", "sym", &["-v", "info"], PINS);
    assert_eq!(r.code, 0);
    let r = golden_run(&lab, "sym-again", "sym", &[], PINS);
    assert_eq!(r.code, 0);
    // Every key is current: nothing is rewritten (the JSON summary counts the writes).
    let objects = lab.objects();
    let r = golden_run(&lab, "sym-again-json", "sym", &["--json"], PINS);
    assert_eq!(r.code, 0);
    assert_eq!(lab.objects(), objects);
    lab.change_mk("apka", 1);
    let r = golden_run(&lab, "apka", "apka", &[], PINS);
    assert_eq!(r.code, 0);
    lab.change_mk("asym", 1);
    let r = golden_run(&lab, "asym-verbose", "asym", &["-v", "debug"], PINS);
    assert_eq!(r.code, 0);
    lab.change_mk("aes", 1);
    let r = golden_run(&lab, "aes-verbose", "aes", &["--verbose"], PINS);
    assert_eq!(r.code, 0);
    assert_eq!(lab.check(None).code, 0);
}

#[test]
fn dry_run_writes_nothing() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("aes", 1);
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "aes-dry-run", "aes", &["--dry-run"], PINS);
    assert_eq!(r.code, 0);
    assert_eq!(common::snapshot(&lab.store), before, "--dry-run wrote");
    assert_eq!(lab.check(Some("aes")).code, 1, "still under OLD");
    // The real run afterwards migrates every key the dry run announced.
    let r = lab.migrate("aes", &[]);
    assert_eq!(r.code, 0);
    assert_eq!(lab.check(Some("aes")).code, 0);
}

fn json_statuses(run: &Run, lab: &Lab) -> BTreeMap<String, String> {
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run:?}"));
    assert_eq!(doc["mode"], "keys");
    assert_eq!(doc["datastore"], lab.store.display().to_string());
    let labels = lab.labels();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let object = k["object"].as_str().unwrap();
            assert_eq!(k["label"].as_str(), labels.get(object).map(String::as_str));
            (
                k["label"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn json_reports_status_per_object() {
    let lab = Lab::new(NEW);
    lab.change_mk("asym", 1);
    let r = lab.migrate("asym", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.starts_with(PROMPTS),
        "prompts go to stderr with --json"
    );
    let backup = common::backup_named_in(&r.stderr, &lab.store);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(doc["backup"].as_str(), Some(backup.to_str().unwrap()));
    let want: BTreeMap<String, String> = [
        ("rsa08-priv-noext", "migrated"),
        ("rsa08-pub-fulltoken", "migrated"),
        ("rsa31-priv-ext", "skipped"),
        ("rsa31-pub-external", "skipped"),
        ("rsa30-priv-noext", "skipped"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(json_statuses(&r, &lab), want);
    assert_eq!(lab.check(Some("asym")).code, 0);

    let before = lab.objects();
    let r = lab.migrate("asym", &["--json", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    let st = json_statuses(&r, &lab);
    assert_eq!(st["rsa08-priv-noext"], "current");
    assert_eq!(st["rsa08-pub-fulltoken"], "current");
    assert_eq!(lab.objects(), before);

    // Lost master key: both old RSA keys fail, exit 3, files untouched.
    lab.change_mk("asym", 2);
    lab.change_mk("asym", 3);
    let r = lab.migrate("asym", &["--json"]);
    assert_eq!(r.code, 3, "{r:?}");
    let st = json_statuses(&r, &lab);
    assert_eq!(st["rsa08-priv-noext"], "failed");
    assert_eq!(st["rsa08-pub-fulltoken"], "failed");
    assert_eq!(lab.objects(), before);
}

// ----- faults and lost keys -------------------------------------------------------------

/// Hex of bytes 16..48 of a key's first token (its wrapped key material: unique
/// to that key), for `CSULCCA_EMU_FAIL=VERB:token=HEX:RC:REASON`.
fn token_marker(lab: &Lab, label: &str) -> String {
    let store = pkcscca::store::TokenStore::open(&lab.store).unwrap();
    let mk = store.login_user(common::lab::USER_PIN.as_bytes()).unwrap();
    let name = pkcscca::store::ObjectName::parse(&lab.object_named(label)).unwrap();
    let obj = store.load_object(name, Some(&mk)).unwrap();
    let blob = obj
        .template
        .get(pkcscca::pkcs11::AttrType::IBM_OPAQUE)
        .unwrap();
    common::hex(&blob[16..48])
}

/// The DES and DES2 keys were rewritten and check out; the DES3 key's file is as
/// it was in `before` and fails the check.
fn assert_des3_alone_left_behind(lab: &Lab, before: &BTreeMap<String, Vec<u8>>) {
    let after = lab.objects();
    assert_changed(
        lab,
        before,
        &after,
        &["des-priv-ext", "des2-pub-noext"].into(),
    );
    let c = lab.check(Some("sym"));
    assert_eq!(check_lines(&c.stdout, "FAILED"), ["des3-priv-noext"]);
    assert_eq!(check_lines(&c.stdout, "ok").len(), 2);
}

/// One verb failing for one key leaves exactly that object as it was, the other
/// keys migrated, exit 3. After a second master key change that key is lost: it
/// fails with 8/48, stays byte-identical, and the summary says so (golden).
#[test]
fn fault_on_one_key_then_lost_after_second_change() {
    let mut lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let marker = token_marker(&lab, "des3-priv-noext");
    lab.extra_env.push((
        "CSULCCA_EMU_FAIL".into(),
        format!("CSNBKTC:token={marker}:12:8"),
    ));
    let before = lab.objects();
    let r = lab.migrate("sym", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(upstream_part(&r.stdout)
        .ends_with("Successfully migrated: DES: 2. \nFailed to migrate: DES: 1. \n"));
    assert_eq!(split_ours(&r.stdout).1, counts_line(2, 0, 1, 2));
    assert!(r
        .stderr
        .contains("CSNBKTC (Key Token Change) failed. return code: 12, reason code: 8"));
    assert_des3_alone_left_behind(&lab, &before);
    lab.extra_env.clear();

    // The second change loses the key des3 was still wrapped under.
    lab.change_mk("sym", 2);
    let verbose_copy = lab.root().join("ccatok-copy");
    common::copy_tree(&lab.store, &verbose_copy);
    let before = lab.objects();
    let r = golden_run(&lab, "lost-key", "sym", &[], PINS);
    assert_eq!(r.code, 3);
    assert_des3_alone_left_behind(&lab, &before);

    let r = golden_run_on(
        &lab,
        &verbose_copy,
        "lost-key-verbose",
        "sym",
        &["-v", "info"],
        PINS,
    );
    assert_eq!(r.code, 3);
    let copy_after = object_files(&verbose_copy);
    assert_eq!(
        copy_after[&lab.object_named("des3-priv-noext")],
        before[&lab.object_named("des3-priv-noext")]
    );
}

/// A new-format sample store after a master key change of `ty`, with the
/// card's fault knob set to `fault` for the runs that follow.
fn lab_after_change_with_fault(ty: &str, fault: &str) -> Lab {
    let mut lab = Lab::new(NEW);
    lab.change_mk(ty, 1);
    lab.extra_env
        .push(("CSULCCA_EMU_FAIL".into(), fault.into()));
    lab
}

/// A fault on every key of one verb (the HMAC path) fails those keys only.
#[test]
fn fault_on_a_whole_verb_fails_only_its_keys() {
    let mut lab = lab_after_change_with_fault("aes", "CSNBKTC2:*:16:336");
    let before = lab.objects();
    let r = lab.migrate("aes", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    // AES DATA tokens (also as XTS halves) go through CSNBKTC; AES CIPHER tokens
    // (also as XTS halves) and HMAC tokens through CSNBKTC2.
    assert!(
        upstream_part(&r.stdout)
            .ends_with("Successfully migrated: AES: 4. \nFailed to migrate: AES: 3. HMAC: 2. \n"),
        "{r:?}"
    );
    let migrated = [
        "aes128-data-priv-ext",
        "aes192-data-pub-noext",
        "aes256-data-priv-noext",
        "aes-xts-priv-ext",
    ];
    assert_changed(&lab, &before, &lab.objects(), &migrated.into());
    lab.extra_env.clear();
    let r = lab.migrate("aes", &[]);
    assert_eq!(r.code, 0, "the retry finishes the job: {r:?}");
    assert_eq!(lab.check(Some("aes")).code, 0);
}

// ----- interrupted runs -----------------------------------------------------------------

fn assert_recovered(lab: &Lab, ty: &str) {
    let r = lab.migrate(ty, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let files = lab.objects();
    assert!(
        !files.keys().any(|n| n.ends_with(".pkcscca.tmp")),
        "temp files left: {:?}",
        files.keys()
    );
    let c = lab.check(None);
    assert_eq!(c.code, 0, "{c:?}");
}

/// The states a crash during the commit can leave, built without any hook in the
/// binary: the new object files placed as our temp files, `k` of them already
/// renamed over their originals. A re-run ends with every key under CURRENT and
/// no temp file.
#[test]
fn recovery_from_every_commit_state() {
    let base = Lab::new(OLD_381);
    base.change_mk("aes", 1);
    let migrated_copy = base.root().join("migrated");
    common::copy_tree(&base.store, &migrated_copy);
    let copy = migrated_copy.display().to_string();
    let r = base.pkcscca(&["-m", "keys", "-s", "2", "-k", "aes", "-d", &copy], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    let old = base.objects();
    let new = object_files(&migrated_copy);
    let changed: Vec<&String> = old.keys().filter(|n| old[*n] != new[*n]).collect();
    assert_eq!(changed.len(), keys_of("aes").len());

    for k in 0..=changed.len() {
        let dir = base.root().join(format!("crash-{k}"));
        common::copy_tree(&base.store, &dir);
        let tok = dir.join("TOK_OBJ");
        for (i, name) in changed.iter().enumerate() {
            let tmp = tok.join(format!(".{name}.pkcscca.tmp"));
            fs::write(&tmp, &new[*name]).unwrap();
            if i < k {
                fs::rename(&tmp, tok.join(name)).unwrap();
            }
        }
        let d = dir.display().to_string();
        let r = base.pkcscca(&["-m", "keys", "-s", "2", "-k", "aes", "-d", &d], PINS);
        assert_eq!(r.code, 0, "k={k}: {r:?}");
        let files = object_files(&dir);
        assert!(!files.keys().any(|n| n.ends_with(".pkcscca.tmp")), "k={k}");
        let c = base.check_store(&dir, None);
        assert_eq!(c.code, 0, "k={k}: {c:?}");
        // Keys of the other types are untouched.
        for (n, b) in &old {
            if !changed.contains(&n) {
                assert_eq!(&files[n], b, "k={k}: {n}");
            }
        }
    }
}

/// Starts `pkcscca -m keys -k aes` on the lab's store with the PINs piped, the
/// card slowed down by `latency_us` per verb; returns the child and when it started.
fn spawn_slow_aes_run(lab: &Lab, latency_us: u32) -> (std::process::Child, Instant) {
    use std::io::Write;
    let store = lab.store.display().to_string();
    let mut cmd = Command::new(common::lab::pkcscca_bin());
    cmd.args(["-m", "keys", "-s", "2", "-k", "aes", "-d", &store]);
    lab.env(&mut cmd);
    cmd.env("CSULCCA_EMU_LATENCY_US", latency_us.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    // A run refused before its prompts (the token lock is taken first) exits without
    // reading its input.
    let _ = child.stdin.take().unwrap().write_all(PINS);
    (child, started)
}

/// A real `kill -9` at a few random points of a run slowed down in the card,
/// weighted towards its end (the last verbs and the commit), then a re-run:
/// every key ends under CURRENT, no temp file remains. Which state each kill
/// left (how many files were already rewritten) is printed. The points are
/// drawn from `PKCSCCA_TEST_SEED` (printed) as fractions of a calibrated run, so
/// a seed repeats the same fractions; where in the run they land still depends
/// on the machine's speed at the time.
#[test]
fn kill_9_at_random_points_then_rerun() {
    const LATENCY_US: u32 = 10_000;
    let mut x = common::test_seed() | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let _guard = common::lab::no_pkcsslotd_guard();
    // How long a whole slowed-down run takes here.
    let calibrate = Lab::new(OLD_381);
    calibrate.change_mk("aes", 1);
    let (mut child, started) = spawn_slow_aes_run(&calibrate, LATENCY_US);
    assert!(child.wait().unwrap().success());
    let full = started.elapsed();

    for round in 0..6 {
        let lab = Lab::new(OLD_381);
        lab.change_mk("aes", 1);
        let before = lab.objects();
        // Uniform over [70%, 105%] of a full run.
        let permille = 700 + next() % 350;
        let delay = full * u32::try_from(permille).unwrap() / 1000;
        let (mut child, started) = spawn_slow_aes_run(&lab, LATENCY_US);
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let now = lab.objects();
        let rewritten = before
            .iter()
            .filter(|(n, b)| now.get(*n).is_some_and(|a| a != *b))
            .count();
        let temps = now.keys().filter(|n| n.ends_with(".pkcscca.tmp")).count();
        eprintln!(
            "round {round}: kill at {delay:?} of {full:?} ({status}): \
             {rewritten} file(s) rewritten, {temps} temp file(s)"
        );
        assert_recovered(&lab, "aes");
    }
}

// ----- a terminal -----------------------------------------------------------------------

/// The PINs typed on a pseudo-terminal (echo off while typing), as an admin
/// would at the console.
#[test]
fn pins_typed_on_a_terminal() {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use rustix::termios::{tcgetattr, LocalModes};
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;

    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
        .unwrap();
    let echo_on = |f: &fs::File| {
        tcgetattr(f.as_fd())
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    };

    let store = lab.store.display().to_string();
    let guard = common::lab::no_pkcsslotd_guard();
    let mut cmd = Command::new(common::lab::pkcscca_bin());
    cmd.args(["-m", "keys", "-s", "2", "-k", "sym", "-d", &store]);
    lab.env(&mut cmd);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let mut pipe = child.stdout.take().unwrap();
    let sink = Arc::clone(&stdout);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    let mut master = fs::File::from(master);
    let deadline = Instant::now() + Duration::from_secs(20);
    for (prompt, pin) in [
        (&b"Enter the SO PIN: "[..], &b"76543210\n"[..]),
        (b"Enter the USER PIN: ", b"11223344\n"),
    ] {
        // Wait for the prompt, then for echo to go off, then type.
        while !stdout
            .lock()
            .unwrap()
            .windows(prompt.len())
            .any(|w| w == prompt)
        {
            assert!(Instant::now() < deadline, "no prompt {prompt:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
        while echo_on(&slave) {
            assert!(Instant::now() < deadline, "echo never turned off");
            std::thread::sleep(Duration::from_millis(2));
        }
        master.write_all(pin).unwrap();
    }
    let status = child.wait().unwrap();
    drop(guard);
    reader.join().unwrap();
    let out = String::from_utf8(stdout.lock().unwrap().clone()).unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(
        out,
        format!(
            "{PROMPTS}Successfully migrated: DES: 3. \n{}",
            counts_line(3, 0, 0, 3)
        )
    );
    assert!(echo_on(&slave), "echo restored");
    assert_eq!(lab.check(Some("sym")).code, 0);
}

// ----- pkcsslotd ------------------------------------------------------------------------

/// Runs `pkcscca ARGV` in this process with `paths` for openCryptoki's system
/// files and no PINs on stdin (so a run that is not refused stops at the prompt
/// and never loads the CCA library here); returns status, stdout, stderr.
fn run_in_process(paths: pkcscca::config::SystemPaths, argv: &[&str]) -> (u8, String, String) {
    use pkcscca::app::{self, Io, Settings};
    use pkcscca::migrate::Migrator;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin: &[u8] = b"";
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
        &Migrator::with_paths(paths),
    );
    (
        exit.code(),
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// openCryptoki's system paths inside the lab, with these pkcsslotd pid files.
fn lab_paths(lab: &Lab, pid_files: Vec<std::path::PathBuf>) -> pkcscca::config::SystemPaths {
    pkcscca::config::SystemPaths {
        conf_file: lab.root().join("no-opencryptoki.conf"),
        lock_root: lab.lock_dir.clone(),
        pkcsslotd_pid_files: pid_files,
        data_root: lab.root().join("var-lib-opencryptoki"),
        shm_root: lab.root().join("shm"),
        ..pkcscca::config::SystemPaths::default()
    }
}

/// With a process named pkcsslotd alive (a copy of `sleep`) and a pid file naming
/// it, the run is refused before prompting, exit 2, and nothing is touched.
#[test]
fn refuses_while_pkcsslotd_runs() {
    let lab = Lab::new(OLD_381);
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a sleep binary");
    let fake = lab.root().join("pkcsslotd");
    fs::copy(sleep, &fake).unwrap();
    let mut daemon = Command::new(&fake).arg("30").spawn().unwrap();
    let pid_file = lab.root().join("pkcsslotd.pid");
    fs::write(&pid_file, format!("{}\n", daemon.id())).unwrap();
    // Right after spawn the new process's cmdline can still read empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmdline = format!("/proc/{}/cmdline", daemon.id());
    while !fs::read(&cmdline)
        .unwrap_or_default()
        .starts_with(fake.as_os_str().as_encoded_bytes())
    {
        assert!(
            Instant::now() < deadline,
            "the fake pkcsslotd did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let before = common::snapshot(&lab.store);
    let store = lab.store.display().to_string();
    let argv = [
        "pkcscca", "-m", "keys", "-s", "2", "-k", "sym", "-d", &store,
    ];
    let (code, out, err) = run_in_process(lab_paths(&lab, vec![pid_file]), &argv);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(out, "", "refused before prompting");
    assert_eq!(
        err,
        format!(
            "pkcscca: pkcsslotd is running (pid {}): stop it and every openCryptoki \
             application before migrating keys offline\n",
            daemon.id()
        )
    );
    assert_eq!(common::snapshot(&lab.store), before);
}

// ----- refusals that protect the keys ---------------------------------------------------

/// A card without a valid CURRENT master key of the type: stop before anything
/// is touched (re-enciphering would have nowhere to go).
#[test]
fn refuses_without_a_current_master_key() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    lab.admin(&["clear-current", "sym"]);
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "no-current-master-key", "sym", &[], PINS);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(common::snapshot(&lab.store), before);
}

/// Another process holding openCryptoki's token lock: refused, exit 2, nothing
/// touched; once the lock is free the run goes through.
#[test]
fn refuses_while_the_token_is_locked() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let lock_file = lab.lock_dir.join("ccatok").join("LCK..ccatok");
    let held = pkcscca::store::lock::TokenLock::acquire(&lock_file, None).unwrap();
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "token-locked", "sym", &[], PINS);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(common::snapshot(&lab.store), before);
    drop(held);
    let r = lab.migrate("sym", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(lab.check(Some("sym")).code, 0);
}

/// Removes a file when dropped (test cleanup, pass or fail).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// openCryptoki's shared memory segment of the token is removed by every
/// writing run, also one with nothing left to change (an earlier run may have
/// died between its renames and the removal); `--dry-run` leaves it alone.
#[test]
fn token_shared_memory_is_removed_by_every_writing_run() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    assert_eq!(lab.migrate("sym", &[]).code, 0);
    let name = pkcscca::config::shm_name(&lab.store);
    let segment = RemoveOnDrop(Path::new("/dev/shm").join(name.trim_start_matches('/')));
    fs::write(&segment.0, b"stale segment").expect("a writable /dev/shm");
    let r = lab.migrate("sym", &["--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(segment.0.exists(), "--dry-run removed the segment");
    let before = lab.objects();
    let r = lab.migrate("sym", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(lab.objects(), before, "nothing to change");
    assert!(!segment.0.exists(), "the stale segment is still there");
}

/// `-d` given relative to the working directory (with a trailing slash) names
/// the same token as its absolute path: same shared memory segment, same lock.
#[test]
fn relative_datastore_path_is_the_same_token() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let name = pkcscca::config::shm_name(&lab.store);
    let segment = RemoveOnDrop(Path::new("/dev/shm").join(name.trim_start_matches('/')));
    fs::write(&segment.0, b"stale segment").expect("a writable /dev/shm");
    let mut cmd = Command::new(common::lab::pkcscca_bin());
    cmd.args([
        "-m",
        "keys",
        "-s",
        "2",
        "-k",
        "sym",
        "-d",
        "./ccatok/",
        "--json",
    ])
    .current_dir(lab.root());
    let r = lab.run_with_stdin(cmd, PINS);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["datastore"], lab.store.display().to_string());
    assert!(!segment.0.exists(), "the token's segment was not removed");
    assert_eq!(lab.check(Some("sym")).code, 0);

    // The lock is the same one: held elsewhere, the relative run is refused.
    lab.change_mk("sym", 2);
    let lock_file = lab.lock_dir.join("ccatok").join("LCK..ccatok");
    let _held = pkcscca::store::lock::TokenLock::acquire(&lock_file, None).unwrap();
    let mut cmd = Command::new(common::lab::pkcscca_bin());
    cmd.args(["-m", "keys", "-s", "2", "-k", "sym", "-d", "ccatok"])
        .current_dir(lab.root());
    assert_eq!(lab.run_with_stdin(cmd, PINS).code, 2);
}

/// An object file that cannot be read is reported and never rewritten; the
/// other keys are migrated; the exit status says something was left (3).
#[test]
fn a_damaged_object_is_left_alone_and_reported() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let victim = lab.object_named("des3-priv-noext");
    let path = lab.store.join("TOK_OBJ").join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&path, &bytes).unwrap();
    let before = lab.objects();
    let r = golden_run(&lab, "damaged-object", "sym", &[], PINS);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        upstream_part(&r.stdout).ends_with("Successfully migrated: DES: 2. \n"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(&format!("TOK_OBJ/{victim}"))
            && r.stderr.contains("(object left untouched)"),
        "{r:?}"
    );
    assert_changed(
        &lab,
        &before,
        &lab.objects(),
        &["des-priv-ext", "des2-pub-noext"].into(),
    );
}

/// Without `-d`, the store is the slot's token directory from
/// `opencryptoki.conf` (here through `PKCS_APP_STORE`, as openCryptoki resolves
/// it); a slot that is not configured, or is not a CCA token, is refused before
/// prompting, exit 5.
#[test]
fn store_found_through_the_slot_configuration() {
    let mut lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let conf = lab.root().join("opencryptoki.conf");
    fs::write(
        &conf,
        "version opencryptoki-3.27\n\nslot 1\n{\nstdll = libpkcs11_sw.so\n}\n\nslot 2\n{\nstdll = libpkcs11_cca.so\n}\n",
    )
    .unwrap();
    lab.extra_env.push((
        "PKCSCCA_OPENCRYPTOKI_CONF".into(),
        conf.display().to_string(),
    ));
    lab.extra_env
        .push(("PKCS_APP_STORE".into(), lab.root().display().to_string()));
    let before = lab.objects();
    let args = ["-m", "keys", "-s", "3", "-k", "sym"];
    let r = lab.pkcscca(&args, PINS);
    golden(&lab, "slot-not-configured", &args, PINS, &r);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.stdout, "", "refused before prompting");
    assert!(r
        .stderr
        .ends_with("pkcscca: C_OpenSession failed: rc=0x3 (CKR_SLOT_ID_INVALID)\n"));
    assert_eq!(lab.objects(), before);

    // A configured slot of another token type (here the soft token) is refused too.
    let args = ["-m", "keys", "-s", "1", "-k", "sym"];
    let r = lab.pkcscca(&args, PINS);
    golden(&lab, "slot-not-a-cca-token", &args, PINS, &r);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.stdout, "", "refused before prompting");
    assert!(
        r.stderr
            .starts_with("pkcscca: slot 1 is not a CCA token (stdll libpkcs11_sw.so)"),
        "{r:?}"
    );
    assert_eq!(lab.objects(), before);

    let r = lab.pkcscca(&["-m", "keys", "-s", "2", "-k", "sym"], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        format!("{PROMPTS}{}{}", summary_of("sym"), counts_line(3, 0, 0, 3))
    );
    assert_eq!(lab.check(Some("sym")).code, 0);
    assert!(lab.lock_dir.join("ccatok").join("LCK..ccatok").exists());

    // With -d the store given is the one migrated, whatever the slot: here slot 1,
    // the soft token's, which upstream would open through PKCS#11 instead.
    lab.change_mk("sym", 2);
    let store = lab.store.display().to_string();
    let args = ["-m", "keys", "-s", "1", "-k", "sym", "-d", &store];
    let r = lab.pkcscca(&args, PINS);
    golden(&lab, "datastore-names-the-store", &args, PINS, &r);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(lab.check(Some("sym")).code, 0);
}

/// A key object without a secure key token (no `CKA_IBM_OPAQUE`) is reported
/// and skipped; the other keys of its type are migrated.
#[test]
fn a_key_without_a_secure_key_token_is_skipped() {
    use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
    use pkcscca::store::{Template, TokenStore};
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    {
        let mut store = TokenStore::open(&lab.store).unwrap();
        let mk = store.login_user(common::lab::USER_PIN.as_bytes()).unwrap();
        let mut t = Template::new(store.byte_order());
        t.set_ulong(AttrType::CLASS, ObjectClass::SECRET_KEY.value());
        t.set_ulong(AttrType::KEY_TYPE, KeyType::DES.value());
        t.set_bool(AttrType::TOKEN, true);
        t.set_bool(AttrType::PRIVATE, true);
        t.set(AttrType::LABEL, b"des-clear-value".to_vec());
        t.set(AttrType::VALUE, vec![0x5A; 8]);
        store.add_object(&mk, t).unwrap();
    }
    let before = lab.objects();
    let r = golden_run(&lab, "key-without-secure-key-token", "sym", &[], PINS);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(lab.check(Some("sym")).code, 0);
    assert_changed(&lab, &before, &lab.objects(), &keys_of("sym"));
}

/// An object carrying `CKA_IBM_OPAQUE_REENC` means openCryptoki's own (online)
/// HSM master key change is half done: refused, exit 2, nothing written.
#[test]
fn refuses_during_a_pending_hsm_master_key_change_object() {
    use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
    use pkcscca::store::{Template, TokenStore};
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    {
        let mut store = TokenStore::open(&lab.store).unwrap();
        let mk = store.login_user(common::lab::USER_PIN.as_bytes()).unwrap();
        let mut t = Template::new(store.byte_order());
        t.set_ulong(AttrType::CLASS, ObjectClass::SECRET_KEY.value());
        t.set_ulong(AttrType::KEY_TYPE, KeyType::AES.value());
        t.set_bool(AttrType::TOKEN, true);
        t.set_bool(AttrType::PRIVATE, false);
        t.set(AttrType::LABEL, b"reenc-pending".to_vec());
        t.set(AttrType::IBM_OPAQUE, vec![0; 64]);
        t.set(AttrType::IBM_OPAQUE_REENC, vec![0; 64]);
        store.add_object(&mk, t).unwrap();
    }
    let before = common::snapshot(&lab.store);
    let r = lab.migrate("sym", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("holds CKA_IBM_OPAQUE_REENC"), "{r:?}");
    assert_eq!(common::snapshot(&lab.store), before);
}

/// A file in `<data root>/HSM_MK_CHANGE/`: refused before prompting, exit 2.
#[test]
fn refuses_during_a_pending_hsm_master_key_change_file() {
    let lab = Lab::new(OLD_381);
    let paths = lab_paths(&lab, Vec::new());
    let pending = paths.data_root.join("HSM_MK_CHANGE");
    fs::create_dir_all(&pending).unwrap();
    fs::write(pending.join("op-1"), b"pending").unwrap();
    let before = common::snapshot(&lab.store);
    let store = lab.store.display().to_string();
    let argv = [
        "pkcscca", "-m", "keys", "-s", "2", "-k", "sym", "-d", &store,
    ];
    let (code, out, err) = run_in_process(paths, &argv);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "", "refused before prompting");
    assert!(
        err.contains("HSM_MK_CHANGE/op-1: a concurrent HSM master key change is pending"),
        "{err}"
    );
    assert_eq!(common::snapshot(&lab.store), before);
}

/// The checker itself: a key whose material changed (two keys' secure key
/// tokens swapped, both still under CURRENT) fails its proof, so a migration
/// that mixed up keys could not pass the tests above.
#[test]
fn sample_check_catches_swapped_key_material() {
    use pkcscca::pkcs11::AttrType;
    use pkcscca::store::{ObjectName, TokenStore};
    let lab = Lab::new(NEW);
    let store = TokenStore::open(&lab.store).unwrap();
    let mk = store.login_user(common::lab::USER_PIN.as_bytes()).unwrap();
    let load = |label: &str| {
        let name = ObjectName::parse(&lab.object_named(label)).unwrap();
        store.load_object(name, Some(&mk)).unwrap()
    };
    let (mut a, mut b) = (load("des-priv-ext"), load("des3-priv-noext"));
    let (ta, tb) = (
        a.template.get(AttrType::IBM_OPAQUE).unwrap().to_vec(),
        b.template.get(AttrType::IBM_OPAQUE).unwrap().to_vec(),
    );
    a.template.set(AttrType::IBM_OPAQUE, tb);
    b.template.set(AttrType::IBM_OPAQUE, ta);
    store.commit(&mk, &[&a, &b]).unwrap();
    let c = lab.check(None);
    assert_eq!(c.code, 1, "{c:?}");
    assert_eq!(
        set(check_lines(&c.stdout, "FAILED")),
        set(vec!["des-priv-ext".into(), "des3-priv-noext".into()])
    );
    assert!(c.stdout.contains("des proof differs"), "{c:?}");
}

/// A card that cannot report its master key registers (CSUACFQ failing):
/// upstream's way is used, every key goes to the verb and an unchanged answer
/// means "already current". The result is the same.
#[test]
fn without_the_register_query_every_key_goes_to_the_card() {
    let lab = lab_after_change_with_fault("apka", "CSUACFQ:*:16:336");
    let r = lab.migrate("apka", &["-v", "info"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("Cannot read the master key registers"),
        "{r:?}"
    );
    assert!(
        upstream_part(&r.stdout).ends_with(summary_of("apka")),
        "{r:?}"
    );
    assert_eq!(lab.check(Some("apka")).code, 0);
    let before = lab.objects();
    let r = lab.migrate("apka", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let current = current_lines(&r.stdout);
    assert_eq!(current, keys_of("apka").len(), "{r:?}");
    assert_eq!(lab.objects(), before);
}

/// Two runs started together on one store: openCryptoki's token lock lets one
/// through; the other is refused (exit 2) or, if it came after, finds every key
/// current. Either way the store ends consistent.
#[test]
fn two_runs_at_once() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("aes", 1);
    let _guard = common::lab::no_pkcsslotd_guard();
    let (mut a, _) = spawn_slow_aes_run(&lab, 5_000);
    let (mut b, _) = spawn_slow_aes_run(&lab, 5_000);
    let codes = [
        a.wait().unwrap().code().unwrap(),
        b.wait().unwrap().code().unwrap(),
    ];
    eprintln!("exit statuses {codes:?}");
    assert!(codes.contains(&0), "{codes:?}");
    assert!(codes.iter().all(|c| matches!(c, 0 | 2)), "{codes:?}");
    assert!(!lab.objects().keys().any(|n| n.ends_with(".pkcscca.tmp")));
    assert_eq!(lab.check(None).code, 0);
}

/// `pkcscca ... > /dev/full` is never a success (exit 12 when only the report could
/// not be written), and the store is left consistent: untouched when the prompt could
/// not even be written, fully migrated when only the `--json` report was lost.
#[test]
fn stdout_on_a_full_disk_is_not_success() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("aes", 1);
    let run_full = |extra: &[&str]| {
        let store = lab.store.display().to_string();
        let mut cmd = Command::new(common::lab::pkcscca_bin());
        cmd.args(["-m", "keys", "-s", "2", "-k", "aes", "-d", &store])
            .args(extra);
        lab.env(&mut cmd);
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let _guard = common::lab::no_pkcsslotd_guard();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), PINS);
        child.wait_with_output().unwrap()
    };
    // The human report: the SO PIN prompt goes to stdout, so the run stops there.
    let before = lab.objects();
    let o = run_full(&[]);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(lab.objects(), before, "nothing written");
    // --json: prompts on stderr, the document on stdout after the work is done.
    let o = run_full(&["--json"]);
    assert_eq!(o.status.code(), Some(12), "{o:?}");
    assert_changed(&lab, &before, &lab.objects(), &keys_of("aes"));
    let c = lab.check(Some("aes"));
    assert_eq!(c.code, 0, "{c:?}");
}

/// Flips one bit of byte `at` of the secure key token of the public object labelled
/// `label`, in its file; returns the object's file name.
fn flip_public_token_byte(lab: &Lab, label: &str, at: usize) -> String {
    let victim = lab.object_named(label);
    let p = lab.store.join("TOK_OBJ").join(&victim);
    let mut b = fs::read(&p).unwrap();
    let store = pkcscca::store::TokenStore::open(&lab.store).unwrap();
    let name = pkcscca::store::ObjectName::parse(&victim).unwrap();
    let token = store
        .load_object(name, None)
        .unwrap()
        .template
        .get(pkcscca::pkcs11::AttrType::IBM_OPAQUE)
        .unwrap()
        .to_vec();
    let start = b.windows(token.len()).position(|w| w == token).unwrap();
    b[start + at] ^= 0x01;
    fs::write(&p, &b).unwrap();
    victim
}

/// Damage the card cannot be trusted to see: a public object whose header version was
/// zeroed, and a public key token with a flipped byte (its validation value no longer
/// matches). Each is reported and left byte for byte as it was, not re-enciphered and
/// written back with the damage carried forward; the other keys are migrated (exit 3).
#[test]
fn damaged_header_and_damaged_token_are_reported_not_rewritten() {
    let lab = Lab::new(NEW);
    lab.change_mk("aes", 1);
    let tok = lab.store.join("TOK_OBJ");
    // A zeroed tokversion (0003000c -> 00000000) in a public AES CIPHER key.
    let header_victim = lab.object_named("aes128-cipher-pub-noext");
    let p = tok.join(&header_victim);
    let mut b = fs::read(&p).unwrap();
    assert_eq!(&b[..5], &[0, 3, 0, 0x0c, 0]);
    b[..4].fill(0);
    fs::write(&p, &b).unwrap();
    // A flipped key byte inside the public AES DATA key's token.
    let token_victim = flip_public_token_byte(&lab, "aes192-data-pub-noext", 20);

    let before = lab.objects();
    let r = lab.migrate("aes", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.lines().any(|l| l.contains(&header_victim)
            && l.contains("tokversion")
            && l.ends_with("(object left untouched)")),
        "{r:?}"
    );
    assert!(
        r.stderr.lines().any(|l| l.contains(&token_victim)
            && l.contains("the key token is damaged: token validation value")),
        "{r:?}"
    );
    let now = lab.objects();
    assert_eq!(now[&header_victim], before[&header_victim]);
    assert_eq!(now[&token_victim], before[&token_victim]);
    let mut migrated = keys_of("aes");
    migrated.remove("aes128-cipher-pub-noext");
    migrated.remove("aes192-data-pub-noext");
    assert_changed(&lab, &before, &now, &migrated);
}

/// A FIFO in the place of `OBJ.IDX` (something only tampering puts there) is named in
/// one line and nothing is read past it or written; the run does not block on it.
#[test]
fn golden_a_fifo_in_place_of_the_object_index() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let idx = lab.store.join("TOK_OBJ").join("OBJ.IDX");
    fs::remove_file(&idx).unwrap();
    let made = Command::new("mkfifo").arg(&idx).status().unwrap();
    assert!(made.success());
    let before = common::snapshot(&lab.store);
    let r = golden_run(&lab, "fifo-object-index", "sym", &[], PINS);
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stderr.contains("OBJ.IDX: is a FIFO, not a regular file"),
        "{r:?}"
    );
    assert_eq!(common::snapshot(&lab.store), before);
}

/// A DES key token with a flipped key byte (its validation value no longer matches) is
/// reported, not sent to the card, and left as it was; the other DES keys migrate.
#[test]
fn golden_a_damaged_token_is_not_sent_to_the_card() {
    let lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    let victim = flip_public_token_byte(&lab, "des2-pub-noext", 20);
    let before = lab.objects();
    let r = golden_run(&lab, "damaged-token", "sym", &[], PINS);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(lab.objects()[&victim], before[&victim]);
}
