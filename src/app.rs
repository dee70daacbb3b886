//! The program as a function: arguments and streams in, exit status out.
//!
//! Mirrors the flow of `pkcscca.c: main()` with one deliberate change of order: every
//! argument is validated before anything is asked. The flow is
//!
//! 1. parse and validate the command line ([`crate::cli`]); `-h` prints usage;
//! 2. [`ModeRunner::prepare`]: checks that need no PIN (configuration, slot, exclusive
//!    access to the token directory);
//! 3. prompt for the SO PIN, then the USER PIN ([`crate::pin`]);
//! 4. [`ModeRunner::run`]: verify the PINs and migrate.
//!
//! The migration modes are not part of this module. They plug in through [`ModeRunner`]
//! ([`crate::migrate::Migrator`] in the binary).

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use crate::cli::{self, Args, Command};
use crate::exit::Exit;
use crate::messages::Output;
use crate::pin::{self, PinKind, SecretPin};

/// The process streams a run uses.
pub struct Io<'a> {
    /// Standard input (both PINs are read from it, through one buffer).
    pub stdin: &'a mut dyn BufRead,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
    /// Standard input's descriptor when it is a terminal (echo is turned off on it while
    /// a PIN is typed); `None` for pipes, files and in-process tests.
    pub terminal: Option<BorrowedFd<'a>>,
}

/// Settings taken from the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// `POSIXLY_CORRECT` is set: option parsing stops at the first non-option, as GNU
    /// `getopt_long` does.
    pub posixly_correct: bool,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Settings {
        Settings {
            posixly_correct: std::env::var_os("POSIXLY_CORRECT").is_some(),
        }
    }
}

/// The two PINs, read after all arguments were accepted.
pub struct Pins {
    /// Security Officer PIN.
    pub so: SecretPin,
    /// User PIN.
    pub user: SecretPin,
}

/// The seam where the migration modes plug in.
pub trait ModeRunner {
    /// Checks that need no PIN, done before prompting (e.g. the slot is configured, the
    /// token directory exists, pkcsslotd is not running). On failure, print the reason
    /// through `out` and return the exit status.
    fn prepare(&mut self, args: &Args, out: &mut Output<'_>) -> Result<(), Exit>;

    /// Verifies the PINs and performs the mode; returns the exit status.
    fn run(&mut self, args: &Args, pins: &Pins, out: &mut Output<'_>) -> Exit;
}

/// Runs `pkcscca` with `args` (starting with `argv[0]`) on the given streams, with the
/// environment's [`Settings`] and the runner of this build; stdin is treated as a
/// non-terminal.
pub fn run<I, S>(
    args: I,
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let io = Io {
        stdin,
        stdout,
        stderr,
        terminal: None,
    };
    run_with(
        args,
        io,
        Settings::from_env(),
        &mut crate::migrate::Migrator::from_env(),
    )
}

/// Runs `pkcscca` with everything explicit: streams, settings and the mode runner.
pub fn run_with<I, S>(args: I, io: Io<'_>, settings: Settings, runner: &mut dyn ModeRunner) -> Exit
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let low = cli::parse_low(args, settings.posixly_correct);
    let mut out = Output::new(io.stdout, io.stderr, low.progname.as_bytes());
    let exit = match cli::validate(&low) {
        Ok(Command::Help) => {
            out.usage();
            Exit::Success
        }
        Ok(Command::Version) => {
            out.version();
            Exit::Success
        }
        Err(e) => {
            out.cli_error(&e);
            e.exit()
        }
        Ok(Command::Run(args)) => {
            out.set_verbosity(args.verbose);
            out.set_json(args.json);
            run_mode(&args, io.stdin, io.terminal, &mut out, runner)
        }
    };
    out.flush();
    // A line that could not be written (stdout on a full disk, a closed pipe) must not
    // pass for success: the caller's script would read a summary that is not there.
    match (exit, out.write_error()) {
        (Exit::Success, Some(_)) => Exit::OutputFailed,
        _ => exit,
    }
}

fn run_mode(
    args: &Args,
    stdin: &mut dyn BufRead,
    terminal: Option<BorrowedFd<'_>>,
    out: &mut Output<'_>,
    runner: &mut dyn ModeRunner,
) -> Exit {
    if let Err(exit) = runner.prepare(args, out) {
        return exit;
    }
    let pins = match read_pins(args.json, stdin, terminal, out) {
        Ok(pins) => pins,
        Err(exit) => return exit,
    };
    runner.run(args, &pins, out)
}

/// Prompts for both PINs. With `--json` the prompts go to stderr so stdout carries
/// only the JSON summary.
fn read_pins(
    json: bool,
    stdin: &mut dyn BufRead,
    terminal: Option<BorrowedFd<'_>>,
    out: &mut Output<'_>,
) -> Result<Pins, Exit> {
    let mut read = |kind: PinKind, out: &mut Output<'_>| {
        let prompt_to = if json { out.stderr() } else { out.stdout() };
        pin::read_pin(kind, stdin, prompt_to, terminal).map_err(|_| {
            out.could_not_get_pin(kind);
            Exit::Failure
        })
    };
    let so = read(PinKind::So, out)?;
    let user = read(PinKind::User, out)?;
    Ok(Pins { so, user })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Mode;

    /// A runner that records what it was given.
    #[derive(Default)]
    struct Recorder {
        prepared: Option<Mode>,
        pins: Option<(Vec<u8>, Vec<u8>)>,
        refuse: Option<Exit>,
    }

    impl ModeRunner for Recorder {
        fn prepare(&mut self, args: &Args, out: &mut Output<'_>) -> Result<(), Exit> {
            self.prepared = Some(args.mode);
            match self.refuse {
                Some(exit) => {
                    out.slot_id_invalid();
                    Err(exit)
                }
                None => Ok(()),
            }
        }

        fn run(&mut self, _args: &Args, pins: &Pins, _out: &mut Output<'_>) -> Exit {
            self.pins = Some((pins.so.as_bytes().to_vec(), pins.user.as_bytes().to_vec()));
            Exit::Success
        }
    }

    fn go(args: &[&str], stdin: &[u8], runner: &mut dyn ModeRunner) -> (Exit, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin;
        let io = Io {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            terminal: None,
        };
        let argv = std::iter::once("pkcscca").chain(args.iter().copied());
        let exit = run_with(argv, io, Settings::default(), runner);
        (
            exit,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn valid_arguments_prepare_then_prompt_then_run() {
        let mut r = Recorder::default();
        let (exit, out, err) = go(
            &["-m", "keys", "-s", "2", "-k", "aes"],
            b"76543210\n11223344\n",
            &mut r,
        );
        assert_eq!(exit, Exit::Success);
        assert_eq!(out, "Enter the SO PIN: \nEnter the USER PIN: \n");
        assert_eq!(err, "");
        assert_eq!(
            r.prepared,
            Some(Mode::Keys {
                slot: 2,
                key_type: cli::KeyType::Aes
            })
        );
        assert_eq!(r.pins, Some((b"76543210".to_vec(), b"11223344".to_vec())));
    }

    #[test]
    fn a_refused_prepare_never_prompts() {
        let mut r = Recorder {
            refuse: Some(Exit::OpenSession),
            ..Recorder::default()
        };
        let (exit, out, err) = go(&["-m", "oldrsakeys", "-s", "7"], b"1\n2\n", &mut r);
        assert_eq!(exit, Exit::OpenSession);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "pkcscca: C_OpenSession failed: rc=0x3 (CKR_SLOT_ID_INVALID)\n"
        );
        assert_eq!(r.pins, None);
    }

    #[test]
    fn missing_user_pin_is_reported_like_upstream() {
        let mut r = Recorder::default();
        let (exit, out, err) = go(&["-m", "v2objectsv3"], b"76543210\n", &mut r);
        assert_eq!(exit, Exit::Failure);
        assert_eq!(out, "Enter the SO PIN: \nEnter the USER PIN: \n");
        assert_eq!(err, "pkcscca: Could not get USER PIN.\n");
        assert_eq!(r.pins, None);
    }

    #[test]
    fn json_moves_prompts_to_stderr() {
        let mut r = Recorder::default();
        let (exit, out, err) = go(
            &["-m", "oldrsakeys", "-s", "1", "--json"],
            b"a\nb\n",
            &mut r,
        );
        assert_eq!(exit, Exit::Success);
        assert_eq!(out, "");
        assert_eq!(err, "Enter the SO PIN: \nEnter the USER PIN: \n");
    }

    #[test]
    fn argument_errors_never_reach_the_runner() {
        let mut r = Recorder::default();
        let (exit, _, err) = go(&["-m", "keys", "-k", "aes"], b"1\n2\n", &mut r);
        assert_eq!(exit, Exit::Failure);
        assert_eq!(err, "pkcscca: missing slot number\n");
        assert_eq!(r.prepared, None);
    }
}
