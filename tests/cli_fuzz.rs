//! Arbitrary command lines never panic, and always end in exactly one outcome: usage
//! (help), a reported error with a non-zero status, or the mode runner.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use pkcscca::app::{run_with, Io, Settings};
use pkcscca::config::SystemPaths;
use pkcscca::exit::Exit;
use pkcscca::migrate::Migrator;
use proptest::prelude::*;

/// openCryptoki's files in an empty directory: every mode is refused before
/// prompting (no slot is configured, no data store exists), with a message: the
/// property is about the command line, not the migrations.
fn refuse_all(root: &std::path::Path) -> Migrator {
    Migrator::with_paths(SystemPaths {
        conf_file: root.join("opencryptoki.conf"),
        data_root: root.join("data"),
        lock_root: root.join("lock"),
        run_dir: root.join("run"),
        pkcsslotd_pid_files: vec![root.join("run/pkcsslotd.pid")],
        proc_root: root.join("proc"),
        shm_root: root.join("shm"),
    })
}

fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Words built from the option alphabet, so real options are hit often.
        proptest::collection::vec(
            prop::sample::select(b"-=hmdskv0129 aeyspkjonrt\xff".to_vec()),
            0..8
        ),
        Just(b"--".to_vec()),
        Just(b"keys".to_vec()),
        any::<Vec<u8>>(),
    ]
}

proptest! {
    #![proptest_config(common::proptest_config(256))]

    #[test]
    fn any_command_line_ends_cleanly(words in proptest::collection::vec(word(), 0..8), posix in any::<bool>()) {
        let argv = std::iter::once(OsString::from("pkcscca"))
            .chain(words.into_iter().map(OsString::from_vec));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"1234\n5678\n";
        let io = Io { stdin: &mut stdin, stdout: &mut out, stderr: &mut err, terminal: None };
        let root = tempfile::tempdir().unwrap();
        let exit = run_with(argv, io, Settings { posixly_correct: posix, ..Settings::default() }, &refuse_all(root.path()));
        match exit {
            // Help: usage only, nothing on stderr.
            Exit::Success => prop_assert!(err.is_empty() && out.starts_with(b" Help:")),
            // Every failure says why on stderr, and never prompts for a PIN.
            _ => {
                prop_assert!(!err.is_empty());
                prop_assert!(!out.windows(9).any(|w| w == b"Enter the"));
            }
        }
    }
}
