//! Runs the README's rehearsal script (`tests/demo/rehearsal.sh`): it must pass
//! and leave nothing behind in its temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod common;

#[test]
fn rehearsal_script_passes_and_cleans_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let _guard = common::lab::no_pkcsslotd_guard();
    let out = Command::new("bash")
        .arg(root.join("tests/demo/rehearsal.sh"))
        .env("CARGO", env!("CARGO"))
        .env("TMPDIR", tmp.path())
        .env("REHEARSAL_PBKDF2_ITERATIONS", "1000")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for summary in [
        "Successfully migrated: DES: 3. \n",
        "Successfully migrated: AES: 7. HMAC: 2. \n",
        "Successfully migrated: ECC: 2. RSA: 5. IBM Dilithium: 1. IBM ML-DSA: 1. IBM ML-KEM: 1. \n",
        "Successfully migrated: RSA: 5. \n",
    ] {
        assert!(stdout.contains(summary), "no {summary:?} in\n{stdout}");
    }
    let last_check = stdout
        .rsplit("=== Every key is under the CURRENT")
        .next()
        .unwrap();
    assert_eq!(last_check.matches("\nok ").count(), 24, "{last_check}");
    assert!(!last_check.contains("FAILED"));
    assert!(stdout.ends_with("=== Rehearsal passed\n"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
