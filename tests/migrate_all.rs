//! `-m keys -k all`: every master key type in one run (one PIN prompt, one lock, one
//! commit), with the lines and summaries four runs print, and our counts line once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::lab::{object_files, Lab, Run, PINS};

const PROMPTS: &str = "Enter the SO PIN: \nEnter the USER PIN: \n";
const TYPES: [&str; 4] = ["sym", "aes", "apka", "asym"];

/// A copy of the lab's store and card state, to run against.
struct Copy {
    store: PathBuf,
    state: PathBuf,
}

fn copy_of(lab: &Lab, name: &str) -> Copy {
    let c = Copy {
        store: lab.root().join(format!("{name}-store")),
        state: lab.root().join(format!("{name}.state")),
    };
    common::copy_tree(&lab.store, &c.store);
    std::fs::copy(&lab.state, &c.state).unwrap();
    c
}

fn run_on(lab: &mut Lab, copy: &Copy, k: &str, extra: &[&str]) -> Run {
    lab.extra_env = vec![("CSULCCA_EMU_STATE".into(), copy.state.display().to_string())];
    let store = copy.store.display().to_string();
    let mut args = vec!["-m", "keys", "-s", "2", "-k", k, "-d", &store];
    args.extend_from_slice(extra);
    let r = lab.pkcscca(&args, PINS);
    lab.extra_env.clear();
    r
}

/// The lines of `stdout` between the prompts and our last line.
fn middle(stdout: &str) -> &str {
    let body = stdout.strip_prefix(PROMPTS).expect("prompts first");
    let trimmed = body.strip_suffix('\n').unwrap();
    let last = trimmed.rfind('\n').map_or(0, |i| i + 1);
    assert!(
        body[last..].starts_with("Re-enciphered: "),
        "our counts line last: {stdout:?}"
    );
    &body[..last]
}

/// Object files whose bytes differ from `before`.
fn changed(before: &BTreeMap<String, Vec<u8>>, store: &Path) -> Vec<String> {
    object_files(store)
        .into_iter()
        .filter(|(name, bytes)| before.get(name) != Some(bytes))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn all_types_in_one_run_equal_four_runs_line_for_line_and_object_for_object() {
    let mut lab = Lab::new(&["--format", "new"]);
    for ty in TYPES {
        lab.change_mk(ty, 1);
    }
    let before = lab.objects();
    let four = copy_of(&lab, "four");
    let one = copy_of(&lab, "one");

    let mut expected_out = String::new();
    let mut expected_err = String::new();
    let mut totals = [0usize; 4];
    for ty in TYPES {
        // Backups have names of their own: made in both, compared elsewhere.
        let r = run_on(&mut lab, &four, ty, &["--no-backup"]);
        assert_eq!(r.code, 0, "{ty}: {r:?}");
        expected_out.push_str(middle(&r.stdout));
        expected_err.push_str(&r.stderr);
        let last = r.stdout.lines().last().unwrap();
        let numbers: Vec<usize> = last
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect();
        for (t, n) in totals.iter_mut().zip(numbers) {
            *t += n;
        }
    }
    let all = run_on(&mut lab, &one, "all", &["--no-backup"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert_eq!(all.stdout.matches("Enter the SO PIN").count(), 1);
    assert_eq!(middle(&all.stdout), expected_out);
    assert_eq!(all.stderr, expected_err);
    let [n, current, failed, written] = totals;
    assert_eq!(
        all.stdout.lines().last().unwrap(),
        format!(
            "Re-enciphered: {n}. Already current: {current}. Failed: {failed}. \
             Object files rewritten: {written}."
        )
    );

    // The same objects were rewritten, and each one's keys are usable under the
    // CURRENT master keys of the (same) card.
    let changed_four = changed(&before, &four.store);
    assert_eq!(changed(&before, &one.store), changed_four);
    assert_eq!(changed_four.len(), written, "counts match the disk");
    assert!(written > 0);
    for copy in [&four, &one] {
        let r = lab.check_store(&copy.store, None);
        assert_eq!(r.code, 0, "{}: {r:?}", copy.store.display());
    }
}

#[test]
fn all_types_json_names_each_key_with_its_master_key_type() {
    let mut lab = Lab::new(&["--format", "old", "--openCryptoki-3.8.1-style"]);
    lab.change_mk("aes", 1);
    let copy = copy_of(&lab, "json");
    let r = run_on(&mut lab, &copy, "all", &["--json", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(doc["mk_type"], "all");
    let types: Vec<&str> = doc["types"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(types.len(), 4, "{types:?}");
    let keys = doc["keys"].as_array().unwrap();
    // Only the AES master key changed: AES keys would be re-enciphered, the others
    // are under CURRENT already.
    for k in keys {
        let status = k["status"].as_str().unwrap();
        match (k["mk_type"].as_str().unwrap(), status) {
            ("aes", s) => assert!(s == "migrated" || s == "skipped", "{k}"),
            (_, s) => assert!(s == "current" || s == "skipped", "{k}"),
        }
    }
    assert_eq!(doc["summary"]["objects_written"], 0);
    assert!(doc["summary"]["objects_to_write"].as_u64().unwrap() > 0);
    assert_eq!(object_files(&copy.store), lab.objects(), "dry run");
}

#[test]
fn a_type_without_a_current_master_key_is_refused_only_if_the_store_has_its_keys() {
    // A card whose APKA registers are empty: -k all works on a store without APKA keys
    // and refuses one that has them, before anything is written.
    let mut lab = Lab::new(&["--format", "new", "--only-data"]);
    lab.admin(&["clear-current", "apka"]);
    lab.change_mk("sym", 1);
    let copy = copy_of(&lab, "no-apka");
    let r = run_on(&mut lab, &copy, "all", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(lab.check_store(&copy.store, Some("sym")).code == 0);

    let mut lab = Lab::new(&["--format", "new"]);
    lab.admin(&["clear-current", "apka"]);
    lab.change_mk("sym", 1);
    let copy = copy_of(&lab, "with-apka");
    let before = object_files(&copy.store);
    let r = run_on(&mut lab, &copy, "all", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("the CCA adapter has no valid CURRENT APKA master key"),
        "{r:?}"
    );
    assert_eq!(object_files(&copy.store), before, "nothing written");
}

#[test]
fn golden_all_types_after_two_changes() {
    let lab = Lab::new(&["--format", "old", "--openCryptoki-3.8.1-style"]);
    lab.change_mk("sym", 1);
    lab.change_mk("apka", 1);
    let store = lab.store.display().to_string();
    let args = ["-m", "keys", "-s", "2", "-k", "all", "-d", &store];
    let r = lab.pkcscca(&args, PINS);
    assert_eq!(r.code, 0, "{r:?}");
    lab.check_golden("keys/all-types", &args, PINS, &r);
    assert_eq!(lab.check(None).code, 0, "every key under CURRENT");
}
