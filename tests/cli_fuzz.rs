//! Arbitrary command lines never panic, and always end in exactly one outcome: usage
//! (help), a reported error with a non-zero status, or the mode runner.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use pkcscca::app::{run_with, Io, ModeRunner, Pins, Settings};
use pkcscca::cli::Args;
use pkcscca::exit::Exit;
use pkcscca::messages::Output;
use proptest::prelude::*;

/// A runner that refuses every mode before prompting, with a message: the property is
/// about the command line, not the migrations.
struct RefuseAll;

impl ModeRunner for RefuseAll {
    fn prepare(&mut self, _args: &Args, out: &mut Output<'_>) -> Result<(), Exit> {
        out.error("refused by the test runner");
        Err(Exit::Failure)
    }

    fn run(&mut self, _args: &Args, _pins: &Pins, _out: &mut Output<'_>) -> Exit {
        Exit::Failure
    }
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
    #[test]
    fn any_command_line_ends_cleanly(words in proptest::collection::vec(word(), 0..8), posix in any::<bool>()) {
        let argv = std::iter::once(OsString::from("pkcscca"))
            .chain(words.into_iter().map(OsString::from_vec));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"1234\n5678\n";
        let io = Io { stdin: &mut stdin, stdout: &mut out, stderr: &mut err, terminal: None };
        let exit = run_with(argv, io, Settings { posixly_correct: posix }, &mut RefuseAll);
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
