//! Golden tests of the command-line contract, run against the built binary, through the
//! one golden harness (`tests/common/golden.rs`, format in `tests/cmd/README.md`):
//!
//! * `tests/cmd/upstream-3.27/NAME.case`: runs of upstream pkcscca 3.27.0, recorded. Our
//!   expected output is derived from upstream's bytes by the documented differences each
//!   case names, so the link to upstream stays visible.
//! * `tests/cmd/ours/NAME.case`: behaviour where we differ from or extend upstream, or
//!   that pins upstream's behaviour from its source, one file per case.
//!
//! Each case runs the binary with `argv[0]` set as upstream was invoked, a clean
//! environment, and the case's standard input; stdout, stderr and the exit status must
//! match byte for byte. All mismatches are reported together.

// Test helpers outside #[test] fns: a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::golden::{self, Case};

#[test]
fn upstream_vectors_match_after_documented_differences() {
    let cases = golden::cases_in("upstream-3.27");
    // The shared vectors hold 16 runs; losing some silently would weaken this test.
    assert_eq!(cases.len(), 16, "{cases:?}");
    assert!(cases.iter().all(|(_, c)| c.recorded.is_some()));
    golden::check_all(&cases);
}

#[test]
fn derivation_changes_only_prefix_and_prompts() {
    // Pins the derivation itself on one recording with both kinds of change.
    let raw = Case::read(&golden::cmd_dir().join("upstream-3.27/keys-missing-slot.case"));
    assert!(raw
        .stdout
        .starts_with(b"Enter the SO PIN: \nEnter the USER PIN: \n"));
    assert_eq!(raw.stdin, b"76543210\n11223344\n");
    assert_eq!(raw.args, ["-m", "keys", "-k", "aes"]);
    assert_eq!(raw.differences, ["arguments-first", "error-prefix"]);
    let (stdout, stderr) = raw.expected("@LAB@");
    assert_eq!(stdout, golden::usage_for("pkcscca"));
    assert_eq!(stderr, b"pkcscca: missing slot number\n");
    assert_eq!(raw.rc, 255);
}

#[test]
fn our_cases_match() {
    let cases = golden::cases_in("ours");
    assert!(cases.len() >= 30, "{cases:?}");
    golden::check_all(&cases);
}

#[test]
fn man_page_documents_every_exit_status() {
    use pkcscca::exit::Exit;
    let page =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/pkcscca.1")).unwrap();
    let section = page
        .split_once(".SH EXIT STATUS\n")
        .and_then(|(_, rest)| rest.split_once("\n.SH "))
        .map(|(s, _)| s)
        .expect("EXIT STATUS section");
    for exit in Exit::ALL {
        let entry = format!(".TP\n.B {}\n", exit.code());
        assert!(section.contains(&entry), "{exit:?} missing from man page");
    }
}

/// A summary that could not be written is not a success: `pkcscca ... > /dev/full`.
#[test]
fn failed_stdout_write_is_not_success() {
    for args in [&["-h"][..], &["--version"], &["--help"]] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(12), "{args:?}");
    }
    // The same command with a working stdout succeeds.
    let ok = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
        .arg("-h")
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
}
