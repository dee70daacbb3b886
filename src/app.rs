//! The program as a function: arguments and streams in, exit status out.
//!
//! Mirrors the flow of `usr/sbin/pkcscca/pkcscca.c: main()` with one deliberate change
//! of order: every argument is validated before anything is asked. The flow is one way,
//! `cli -> app -> migrate`:
//!
//! 1. parse and validate the command line (`cli`); `-h` prints usage;
//! 2. [`Migrator::prepare`]: checks that need no PIN (configuration, slot, exclusive
//!    access to the token directory), giving a `migrate::Prepared` run;
//! 3. prompt for the SO PIN, then the USER PIN (`pin` reads them, `messages::Output`
//!    prints the prompts); `-m status` goes on without PINs when standard input ends
//!    before the SO PIN;
//! 4. `Prepared::run`: verify the PINs and migrate;
//! 5. a run that could write leaves its audit record in syslog (`audit`).

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

pub use crate::audit::Target as AuditTarget;
pub use crate::migrate::Migrator;
pub use crate::pin::RawInput;

use crate::audit;
use crate::cli::{self, Command};
use crate::exit::Exit;
use crate::messages::Output;
use crate::migrate::Prepared;
use crate::pin::{self, PinKind, Pins, SecretPin};

/// The process streams a run uses.
pub struct Io<'a> {
    /// Standard input (both PINs are read from it; the binary passes
    /// [`pin::RawInput`], which keeps no buffer).
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
    /// Standard input's descriptor when it is a terminal (echo is turned off on it while
    /// a PIN is typed); `None` for pipes, files and in-process tests.
    pub terminal: Option<BorrowedFd<'a>>,
}

/// Settings taken from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `POSIXLY_CORRECT` is set: option parsing stops at the first non-option, as GNU
    /// `getopt_long` does.
    pub posixly_correct: bool,
    /// `PKCSCCA_THREADS`, as set: how many verbs may be in flight at once, unless
    /// `--threads` says otherwise.
    pub threads: Option<OsString>,
    /// Standard error is a terminal: long runs may show a progress line there.
    pub progress: bool,
    /// Where the audit record of a writing run goes (the default: nowhere; from the
    /// environment: `PKCSCCA_SYSLOG_SOCKET`, else the system's syslog socket).
    pub audit: AuditTarget,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Settings {
        Settings {
            posixly_correct: std::env::var_os("POSIXLY_CORRECT").is_some(),
            threads: std::env::var_os("PKCSCCA_THREADS"),
            progress: std::io::stderr().is_terminal(),
            audit: AuditTarget::from_env(),
        }
    }
}

/// Runs `pkcscca` with `args` (starting with `argv[0]`) on the given streams, with the
/// environment's [`Settings`] and openCryptoki's system paths; stdin is treated as a
/// non-terminal.
pub fn run<I, S>(
    args: I,
    stdin: &mut dyn Read,
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
    run_with(args, io, Settings::from_env(), &Migrator::from_env())
}

/// Runs `pkcscca` with everything explicit: streams, settings and where openCryptoki's
/// files are.
pub fn run_with<I, S>(args: I, io: Io<'_>, settings: Settings, migrator: &Migrator) -> Exit
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let low = cli::parse_low(args, settings.posixly_correct);
    let mut out = Output::new(io.stdout, io.stderr, low.progname.as_bytes());
    let exit = match cli::validate(&low) {
        Ok(Command::Help) => {
            out.help();
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
        Ok(Command::Run(mut args)) => {
            out.set_verbosity(args.verbose);
            out.set_json(args.json);
            out.set_progress(settings.progress);
            if args.threads.is_none() {
                if let Some(word) = &settings.threads {
                    match cli::parse_threads(word.as_bytes()) {
                        Ok(n) => args.threads = Some(n),
                        Err(_) => {
                            out.error(format_args!(
                                "PKCSCCA_THREADS={}: give a number from 1 to {}",
                                word.to_string_lossy(),
                                cli::MAX_THREADS
                            ));
                            out.flush();
                            return Exit::Usage;
                        }
                    }
                }
            }
            let mut record = audit::Record::new(&args);
            let exit = match migrator.prepare(&args, &mut out, &mut record) {
                Ok(prepared) => {
                    prompt_and_run(prepared, io.stdin, io.terminal, &mut out, &mut record)
                }
                Err(exit) => exit,
            };
            out.flush();
            if record.wanted() {
                let exit = final_exit(exit, &out);
                let line = record.line(&audit::Caller::current(), exit);
                if let Err(e) = audit::send(&line, exit == Exit::Success, &settings.audit) {
                    out.error(format_args!(
                        "warning: the audit record was not logged: {e}"
                    ));
                }
            }
            exit
        }
    };
    out.flush();
    final_exit(exit, &out)
}

/// A line that could not be written (stdout on a full disk, a closed pipe) must not
/// pass for success: the caller's script would read a summary that is not there.
fn final_exit(exit: Exit, out: &Output<'_>) -> Exit {
    match (exit, out.write_error()) {
        (Exit::Success, Some(_)) => Exit::OutputFailed,
        _ => exit,
    }
}

/// Prompts for both PINs, then runs the prepared mode. A PIN that cannot be read is
/// upstream's `Could not get SO PIN.` and exit 255; for `-m status`, standard input
/// that ends before any byte of the SO PIN means no PINs (public objects only).
fn prompt_and_run(
    prepared: Prepared,
    stdin: &mut dyn Read,
    terminal: Option<BorrowedFd<'_>>,
    out: &mut Output<'_>,
    record: &mut audit::Record,
) -> Exit {
    let mut read = |kind: PinKind, out: &mut Output<'_>| -> Result<SecretPin, pin::PinError> {
        let pin = out
            .pin_prompt(kind)
            .map_err(pin::PinError::Io)
            .and_then(|()| pin::read_pin(stdin, terminal));
        // Upstream prints the line break whatever happened.
        let ended = out.pin_prompt_end();
        match (pin, ended) {
            (Ok(pin), Ok(())) => Ok(pin),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(pin::PinError::Io(e)),
        }
    };
    let so = match read(PinKind::So, out) {
        Ok(so) => so,
        Err(pin::PinError::Eof) if prepared.pins_optional() => {
            return prepared.run(None, out, record);
        }
        Err(_) => {
            out.could_not_get_pin(PinKind::So);
            return Exit::PinRejected;
        }
    };
    let user = match read(PinKind::User, out) {
        Ok(user) => user,
        Err(_) => {
            out.could_not_get_pin(PinKind::User);
            return Exit::PinRejected;
        }
    };
    prepared.run(Some(Pins { so, user }), out, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SystemPaths;

    /// A directory that passes [`Migrator::prepare`] (an `NVTOK.DAT`, a lock
    /// directory, no pkcsslotd) but holds no real store: a run stops at its first
    /// store read, after both prompts.
    struct Bare {
        dir: tempfile::TempDir,
    }

    impl Bare {
        fn new() -> Bare {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("store")).unwrap();
            std::fs::write(dir.path().join("store/NVTOK.DAT"), b"").unwrap();
            Bare { dir }
        }

        fn store(&self) -> String {
            self.dir.path().join("store").display().to_string()
        }

        fn migrator(&self) -> Migrator {
            let root = self.dir.path();
            Migrator::with_paths(SystemPaths {
                conf_file: root.join("no-opencryptoki.conf"),
                data_root: root.join("data"),
                lock_root: root.join("lock"),
                run_dir: root.join("run"),
                pkcsslotd_pid_files: vec![root.join("run/pkcsslotd.pid")],
                proc_root: root.join("proc"),
                shm_root: root.join("shm"),
            })
        }
    }

    fn go(bare: &Bare, args: &[&str], stdin: &[u8]) -> (Exit, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin;
        let io = Io {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            terminal: None,
        };
        let argv = std::iter::once("pkcscca").chain(args.iter().copied());
        let exit = run_with(argv, io, Settings::default(), &bare.migrator());
        (
            exit,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_prepared_run_prompts_for_both_pins_then_opens_the_store() {
        let bare = Bare::new();
        let store = bare.store();
        let (exit, out, err) = go(
            &bare,
            &["-m", "keys", "-s", "2", "-k", "aes", "-d", &store],
            b"76543210\n11223344\n",
        );
        assert_eq!(out, "Enter the SO PIN: \nEnter the USER PIN: \n");
        // The empty NVTOK.DAT is refused when the store is opened, after the prompts.
        assert_eq!(exit, Exit::NoToken, "{err}");
        assert!(err.contains("NVTOK.DAT"), "{err}");
    }

    #[test]
    fn a_refused_prepare_never_prompts() {
        let bare = Bare::new();
        let missing = bare.dir.path().join("nowhere").display().to_string();
        let (exit, out, err) = go(
            &bare,
            &["-m", "oldrsakeys", "-s", "7", "-d", &missing],
            b"1\n2\n",
        );
        assert_eq!(exit, Exit::NoToken);
        assert_eq!(out, "");
        assert!(err.contains("NVTOK.DAT not found"), "{err}");
    }

    #[test]
    fn missing_user_pin_is_reported_like_upstream() {
        let bare = Bare::new();
        let store = bare.store();
        let (exit, out, err) = go(&bare, &["-m", "v2objectsv3", "-d", &store], b"76543210\n");
        assert_eq!(exit, Exit::PinRejected);
        assert_eq!(out, "Enter the SO PIN: \nEnter the USER PIN: \n");
        assert_eq!(err, "pkcscca: Could not get USER PIN.\n");
    }

    #[test]
    fn json_moves_prompts_to_stderr() {
        let bare = Bare::new();
        let store = bare.store();
        let (_, out, err) = go(
            &bare,
            &["-m", "oldrsakeys", "-s", "1", "-d", &store, "--json"],
            b"a\nb\n",
        );
        assert_eq!(out, "");
        assert!(
            err.starts_with("Enter the SO PIN: \nEnter the USER PIN: \n"),
            "{err}"
        );
    }

    #[test]
    fn argument_errors_never_reach_prepare() {
        let bare = Bare::new();
        let (exit, out, err) = go(&bare, &["-m", "keys", "-k", "aes"], b"1\n2\n");
        assert_eq!(exit, Exit::Usage);
        assert!(!out.contains("Enter the"), "{out}");
        assert_eq!(err, "pkcscca: missing slot number\n");
    }
}
