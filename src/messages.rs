//! Every line `pkcscca` shows the user, and the verbosity that gates it.
//!
//! The wording and stream of each line follow openCryptoki 3.27's
//! `usr/sbin/pkcscca/pkcscca.c` (each method names the function that prints its line).
//! Two rules of the C tool are kept here:
//!
//! * its own error lines go to stderr behind a location prefix; upstream prints
//!   `usr/sbin/pkcscca/pkcscca.c:LINE `, we print [`PREFIX`] (`pkcscca: `) instead, while
//!   the lines written by `getopt_long` start with `argv[0]` as typed, like upstream;
//! * informational lines, summaries and "Skipping" notices go to stdout; the `-v` level only
//!   matters as "none" versus "anything else", because upstream tests `if (v_level)`.
//!
//! Deliberate difference: upstream leaves some stderr lines without a final newline
//! (`print_error("Migrating %s key failed. ...")` and friends); we end every line.
//!
//! Nothing else in the crate prints: callers hand an [`Output`] around. It writes to
//! `&mut dyn Write` so tests can run the whole program in-process, and it swallows write
//! errors like `printf` does, remembering the first one ([`Output::write_error`]).

use std::fmt::{self, Display};
use std::io::{self, Write};

use crate::cli::{CliError, GetoptError};
use crate::pin::PinKind;
use crate::usage;

/// Prefix of our own error lines (upstream: `usr/sbin/pkcscca/pkcscca.c:LINE `).
pub const PREFIX: &str = "pkcscca: ";

use crate::cli::Verbosity;

/// Per-type key counters of `-m keys`, in the order upstream prints them
/// (`pkcscca.h: struct key_count`, `pkcscca.c: key_migration_results()`).
///
/// Upstream counts every DES flavour under `des`; `des2` and `des3` exist only because the
/// summary has slots for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct KeyCounts {
    pub aes: u32,
    pub des: u32,
    pub des2: u32,
    pub des3: u32,
    pub ecc: u32,
    pub hmac: u32,
    pub rsa: u32,
    pub ibm_dilithium: u32,
    pub ibm_ml_dsa: u32,
    pub ibm_ml_kem: u32,
    pub ml_dsa: u32,
    /// Ours: `CKK_ML_KEM` keys (upstream has no counter for them).
    pub ml_kem: u32,
}

impl KeyCounts {
    /// `(summary name, count)` in upstream's order.
    pub fn entries(&self) -> [(&'static str, u32); 12] {
        [
            ("AES", self.aes),
            ("DES", self.des),
            ("DES2", self.des2),
            ("DES3", self.des3),
            ("ECC", self.ecc),
            ("HMAC", self.hmac),
            ("RSA", self.rsa),
            ("IBM Dilithium", self.ibm_dilithium),
            ("IBM ML-DSA", self.ibm_ml_dsa),
            ("IBM ML-KEM", self.ibm_ml_kem),
            ("ML-DSA", self.ml_dsa),
            ("ML-KEM", self.ml_kem),
        ]
    }

    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &KeyCounts) {
        let pairs = [
            (&mut self.aes, other.aes),
            (&mut self.des, other.des),
            (&mut self.des2, other.des2),
            (&mut self.des3, other.des3),
            (&mut self.ecc, other.ecc),
            (&mut self.hmac, other.hmac),
            (&mut self.rsa, other.rsa),
            (&mut self.ibm_dilithium, other.ibm_dilithium),
            (&mut self.ibm_ml_dsa, other.ibm_ml_dsa),
            (&mut self.ibm_ml_kem, other.ibm_ml_kem),
            (&mut self.ml_dsa, other.ml_dsa),
            (&mut self.ml_kem, other.ml_kem),
        ];
        for (mine, theirs) in pairs {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.entries().iter().map(|(_, n)| u64::from(*n)).sum()
    }
}

/// What a `-m keys` run did, in our words (the last line of its output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Keys whose tokens the card re-enciphered.
    pub reenciphered: usize,
    /// Keys already under the CURRENT master key.
    pub current: usize,
    /// Keys that could not be re-enciphered (their blobs were kept).
    pub failed: usize,
    /// Object files that could not be read or decrypted (left untouched).
    pub unreadable: usize,
    /// Object files to rewrite.
    pub rewrite: usize,
    /// Object files rewritten (0 with `--dry-run`).
    pub written: usize,
}

/// One key line of `-m status`.
#[derive(Debug, Clone)]
pub struct StatusKey<'a> {
    /// The object file name in `TOK_OBJ`.
    pub object: &'a str,
    /// Stored encrypted.
    pub private: bool,
    /// `CKA_KEY_TYPE` by name (`CKK_AES`).
    pub key_type: &'a str,
    /// The master key type of its token(s) (`AES`).
    pub mk_type: &'a str,
    /// The token's MKVP in hex (two joined by `+` for AES XTS).
    pub mkvp: &'a str,
    /// The register it matches (`CURRENT`, `OLD`, `NEW`, `none`; joined by `+`).
    pub register: &'a str,
    /// `CKA_LABEL` bytes.
    pub label: &'a [u8],
}

/// One register line of `-m status`.
#[derive(Debug, Clone)]
pub struct StatusRegister<'a> {
    /// The master key type (`AES`).
    pub mk_type: &'a str,
    /// `NEW`, `CURRENT`, `OLD`, or `none` (the keys under no register).
    pub register: &'a str,
    /// `empty`, `partial`, `loaded`, `unknown`, or `-`.
    pub state: &'a str,
    /// The register's MKVP in hex, or `-`.
    pub mkvp: &'a str,
    /// How many keys are under it.
    pub keys: usize,
}

/// The totals of `-m status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Keys reported.
    pub keys: usize,
    /// Keys under the CURRENT master key.
    pub current: usize,
    /// Keys under the OLD master key.
    pub old: usize,
    /// Keys under the NEW master key.
    pub new: usize,
    /// Keys under no register of the card.
    pub none: usize,
    /// Object files that could not be read.
    pub unreadable: usize,
}

/// A key label as upstream prints it: its copy is NUL-terminated, so it ends at the
/// first NUL byte. Non-UTF-8 bytes are written through unchanged.
struct Label<'a>(&'a [u8]);

impl Label<'_> {
    fn bytes(&self) -> &[u8] {
        label_bytes(self.0)
    }
}

/// A label's bytes up to its first NUL byte.
fn label_bytes(label: &[u8]) -> &[u8] {
    let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    label.get(..end).unwrap_or(label)
}

/// The user-visible output of one run: stdout, stderr, the program name as invoked and
/// the verbosity.
pub struct Output<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    progname: Vec<u8>,
    verbosity: Verbosity,
    json: bool,
    /// Whether a progress line may be shown (standard error is a terminal).
    progress: bool,
    /// A progress line is on the screen.
    progress_shown: bool,
    write_error: Option<io::Error>,
}

impl<'a> Output<'a> {
    /// Output to the given streams; `progname` is `argv[0]` as typed.
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, progname: &[u8]) -> Self {
        Output {
            out,
            err,
            progname: progname.to_vec(),
            verbosity: Verbosity::None,
            json: false,
            progress: false,
            progress_shown: false,
            write_error: None,
        }
    }

    /// Sets the verbosity chosen on the command line.
    pub fn set_verbosity(&mut self, verbosity: Verbosity) {
        self.verbosity = verbosity;
    }

    /// `--json`: stdout carries only [`Output::json_document`]; every human stdout
    /// line is dropped (stderr is unchanged).
    pub fn set_json(&mut self, json: bool) {
        self.json = json;
    }

    /// Allows a progress line on standard error (the caller knows it is a terminal);
    /// never with `--json`.
    pub fn set_progress(&mut self, allowed: bool) {
        self.progress = allowed;
    }

    /// Shows `text` as the one updating progress line on standard error, when allowed.
    pub fn progress(&mut self, text: impl Display) {
        if !self.progress || self.json {
            return;
        }
        // Carriage return, the text, then erase to the end of the line.
        let r = write!(self.err, "\r{text}\x1b[K").and_then(|()| self.err.flush());
        self.progress_shown = true;
        self.note(r);
    }

    /// Removes the progress line, if one is shown.
    pub fn progress_done(&mut self) {
        if self.progress_shown {
            let r = write!(self.err, "\r\x1b[K").and_then(|()| self.err.flush());
            self.progress_shown = false;
            self.note(r);
        }
    }

    /// The current verbosity.
    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// The first write error met, if any (output is best effort, like `printf`).
    pub fn write_error(&self) -> Option<&io::Error> {
        self.write_error.as_ref()
    }

    /// `pin_prompt()`'s prompt, flushed: `Enter the SO PIN: ` on stdout (on stderr with
    /// `--json`, so stdout carries only the document). An error is returned, not
    /// remembered: a prompt nobody can see means no PIN is read.
    pub fn pin_prompt(&mut self, kind: PinKind) -> io::Result<()> {
        let w = self.prompt_stream();
        write!(w, "Enter the {} PIN: ", kind.name())?;
        w.flush()
    }

    /// The line break `pin_prompt()` prints after every read, also when it failed.
    pub fn pin_prompt_end(&mut self) -> io::Result<()> {
        let w = self.prompt_stream();
        w.write_all(b"\n")?;
        w.flush()
    }

    fn prompt_stream(&mut self) -> &mut dyn Write {
        if self.json {
            &mut *self.err
        } else {
            &mut *self.out
        }
    }

    /// Flushes both streams.
    pub fn flush(&mut self) {
        let r = self.out.flush().and_then(|()| self.err.flush());
        self.note(r);
    }

    fn note(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            self.write_error.get_or_insert(e);
        }
    }

    fn out_bytes(&mut self, parts: &[&[u8]]) {
        if self.json {
            return;
        }
        let r = parts.iter().try_for_each(|p| self.out.write_all(p));
        self.note(r);
    }

    fn err_bytes(&mut self, parts: &[&[u8]]) {
        let r = parts.iter().try_for_each(|p| self.err.write_all(p));
        self.note(r);
    }

    fn out_fmt(&mut self, args: fmt::Arguments<'_>) {
        if self.json {
            return;
        }
        let r = self.out.write_fmt(args);
        self.note(r);
    }

    fn verbose_fmt(&mut self, args: fmt::Arguments<'_>) {
        if self.verbosity.is_verbose() {
            self.out_fmt(args);
        }
    }

    /// One of our error lines on stderr: `pkcscca: <text>\n`.
    pub fn error(&mut self, text: impl Display) {
        let r = writeln!(self.err, "{PREFIX}{text}");
        self.note(r);
    }

    /// An error line that names a key label (raw bytes): `pkcscca: <before><label><after>\n`.
    fn error_with_label(&mut self, before: &str, label: &[u8], after: impl Display) {
        let r = write!(self.err, "{PREFIX}{before}")
            .and_then(|()| self.err.write_all(Label(label).bytes()))
            .and_then(|()| writeln!(self.err, "{after}"));
        self.note(r);
    }

    /// A stdout line naming a key label, printed always or only when verbose.
    fn info_with_label(&mut self, verbose_only: bool, before: &str, label: &[u8], after: &str) {
        if self.json || (verbose_only && !self.verbosity.is_verbose()) {
            return;
        }
        let r = self
            .out
            .write_all(before.as_bytes())
            .and_then(|()| self.out.write_all(Label(label).bytes()))
            .and_then(|()| writeln!(self.out, ", handle={after}"));
        self.note(r);
    }

    // ----- command line ------------------------------------------------------------------

    /// The usage text on stdout, as upstream prints it after every argument error.
    pub fn usage(&mut self) {
        let text = usage::usage_text(&self.progname);
        self.out_bytes(&[&text]);
    }

    /// `-h` / `--help`: upstream's usage text, then our additions.
    pub fn help(&mut self) {
        self.usage();
        let text = usage::additions_text(&self.progname);
        self.out_bytes(&[&text]);
    }

    /// A `getopt_long` diagnostic, prefixed with `argv[0]` as upstream's glibc does.
    pub fn getopt_error(&mut self, e: &GetoptError) {
        let prog = self.progname.clone();
        match e {
            GetoptError::InvalidShort(c) => {
                self.err_bytes(&[&prog, b": invalid option -- '", &[*c], b"'\n"]);
            }
            GetoptError::ShortNeedsArgument(c) => {
                self.err_bytes(&[&prog, b": option requires an argument -- '", &[*c], b"'\n"]);
            }
            GetoptError::UnrecognizedLong(typed) => {
                self.err_bytes(&[&prog, b": unrecognized option '--", typed, b"'\n"]);
            }
            GetoptError::AmbiguousLong { typed, candidates } => {
                self.err_bytes(&[
                    &prog,
                    b": option '--",
                    typed,
                    b"' is ambiguous; possibilities:",
                ]);
                for name in candidates {
                    self.err_bytes(&[b" '--", name.as_bytes(), b"'"]);
                }
                self.err_bytes(&[b"\n"]);
            }
            GetoptError::LongNeedsArgument(name) => {
                self.err_bytes(&[
                    &prog,
                    b": option '--",
                    name.as_bytes(),
                    b"' requires an argument\n",
                ]);
            }
            GetoptError::LongTakesNoArgument(name) => {
                self.err_bytes(&[
                    &prog,
                    b": option '--",
                    name.as_bytes(),
                    b"' doesn't allow an argument\n",
                ]);
            }
        }
    }

    /// Reports a command-line error the way upstream does: the message, then the usage
    /// text where upstream prints it.
    pub fn cli_error(&mut self, e: &CliError) {
        fn raw(prefix: &str, value: &[u8], suffix: &str) -> Vec<u8> {
            let mut v = Vec::with_capacity(prefix.len() + value.len() + suffix.len() + 16);
            v.extend_from_slice(PREFIX.as_bytes());
            v.extend_from_slice(prefix.as_bytes());
            v.extend_from_slice(value);
            v.extend_from_slice(suffix.as_bytes());
            v
        }
        match e {
            CliError::Getopt(g) => self.getopt_error(g),
            CliError::UnknownKeyType(v) => {
                self.err_bytes(&[&raw("unknown key type (", v, ")\n")]);
            }
            CliError::UnknownMode(v) => {
                self.err_bytes(&[&raw("unknown migration type (", v, ")\n")]);
            }
            CliError::InvalidVerbose(v) => {
                self.err_bytes(&[&raw("Invalid verbose level '", v, "' specified.\n")]);
            }
            CliError::MissingMode => self.error("missing migration type"),
            CliError::MissingSlot => self.error("missing slot number"),
            CliError::MissingKeyType => self.error("missing key type"),
            CliError::SlotInvalid(_) => self.slot_id_invalid(),
            CliError::InvalidThreads(v) => {
                self.err_bytes(&[&raw(
                    "invalid number of threads '",
                    v,
                    &format!("' (give 1 to {})\n", crate::cli::MAX_THREADS),
                )]);
            }
            CliError::JsonNotSupported(mode) => self.error(format_args!(
                "--json is only valid with -m keys, -m oldrsakeys or -m status, not with -m {}",
                mode.name()
            )),
            CliError::MissingSlotOrDatastore(mode) => self.error(format_args!(
                "missing slot number or datastore (-m {} needs -s SLOTID or -d DATASTORE)",
                mode.name()
            )),
            CliError::MissingFrom => {
                self.error("missing backup directory (-m restore needs --from BACKUP)")
            }
            CliError::FromWithoutRestore(mode) => self.error(format_args!(
                "--from is only valid with -m restore, not with -m {}",
                mode.name()
            )),
        }
        if e.prints_usage() {
            self.usage();
        }
    }

    /// The line upstream prints when the slot does not exist
    /// (`p11_error("C_OpenSession", CKR_SLOT_ID_INVALID)`); we print it for a slot that
    /// cannot be or is not configured, before prompting.
    pub fn slot_id_invalid(&mut self) {
        self.pkcs11_failed("C_OpenSession", 0x3, "CKR_SLOT_ID_INVALID");
    }

    /// Upstream's `p11_error()` shape: `<what> failed: rc=0x<RC> (<name>)`.
    pub fn pkcs11_failed(&mut self, what: &str, rc: u64, rc_name: &str) {
        self.error(format_args!("{what} failed: rc=0x{rc:X} ({rc_name})"));
    }

    // ----- PINs ---------------------------------------------------------------------------

    /// `Could not get SO PIN.` / `Could not get USER PIN.` (`pkcscca.c: main()`).
    pub fn could_not_get_pin(&mut self, kind: PinKind) {
        self.error(format_args!("Could not get {} PIN.", kind.name()));
    }

    /// `SO PIN is incorrect.` / `USER PIN is incorrect.` (`pkcs_utils.c: verify_pins()`;
    /// silent in upstream 3.27, printed by 3.8.1; we print it, correctly attributed).
    pub fn pin_incorrect(&mut self, kind: PinKind) {
        self.error(format_args!("{} PIN is incorrect.", kind.name()));
    }

    /// `--version`: `pkcscca (pkcscca-rs) <version>`, plus the git revision when
    /// the build knew it (`PKCSCCA_GIT_REV` at build time).
    pub fn version(&mut self) {
        let rev = option_env!("PKCSCCA_GIT_REV")
            .map(|r| format!(" (git {r})"))
            .unwrap_or_default();
        self.out_fmt(format_args!(
            "pkcscca (pkcscca-rs) {}{rev}\n",
            env!("CARGO_PKG_VERSION")
        ));
    }

    /// `dlopen(libcsulcca.so) failed: <reason>` (no prefix upstream; we add ours).
    pub fn dlopen_failed(&mut self, library: &str, reason: impl Display) {
        self.error(format_args!("dlopen({library}) failed: {reason}"));
    }

    /// Ours, on stderr before the commit: where the backup of `store` is.
    pub fn backup_made(&mut self, dir: &std::path::Path, store: &std::path::Path) {
        self.error(format_args!(
            "backup of {} in {} (to undo this run: pkcscca -m restore -d {} --from {})",
            store.display(),
            dir.display(),
            store.display(),
            dir.display()
        ));
    }

    /// Our hint after a failed `dlopen` of the CCA library.
    pub fn cca_library_hint(&mut self, library: &str) {
        self.error(format_args!(
            "{library} is the host library of IBM's CCA package for the coprocessor: \
             install that package, or add the directory that holds {library} to \
             LD_LIBRARY_PATH"
        ));
    }

    /// `Cannot find required CCA symbols in libcsulcca.so: <dlerror>` (`pkcscca.c:
    /// main()`, `-m keys` and `-m oldrsakeys`; our prefix added).
    pub fn missing_cca_symbols(&mut self, library: &str, detail: &str) {
        self.error(format_args!(
            "Cannot find required CCA symbols in {library}: {detail}"
        ));
    }

    /// `Cannot find CSNBDEC in libcsulcca.so: <dlerror>` (`pkcscca.c: main()`,
    /// `-m v2objectsv3`; our prefix added).
    pub fn missing_cca_symbol(&mut self, verb: &str, library: &str, detail: &str) {
        self.error(format_args!("Cannot find {verb} in {library}: {detail}"));
    }

    /// A line of ours on stdout, printed always (e.g. the `--dry-run` note).
    pub fn notice(&mut self, text: impl Display) {
        self.out_fmt(format_args!("{text}\n"));
    }

    /// A line of ours on stdout, printed only when verbose.
    pub fn verbose_notice(&mut self, text: impl Display) {
        self.verbose_fmt(format_args!("{text}\n"));
    }

    /// The `--json` document: one line on stdout.
    pub fn json_document(&mut self, doc: &str) {
        let r = self
            .out
            .write_all(doc.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.note(r);
    }

    // ----- -m keys and -m oldrsakeys ------------------------------------------------------

    /// Verbose `PKCS#11 library initialized` (`pkcscca.c: p11_init()`, after
    /// `C_Initialize`, before `C_Login`).
    pub fn pkcs11_initialized(&mut self) {
        self.verbose_fmt(format_args!("PKCS#11 library initialized\n"));
    }

    /// Upstream's `C_Login (USER) failed: rc=0xA0 (CKR_PIN_INCORRECT)`, the line
    /// 3.27 prints for a wrong USER PIN on a 3.12+ store (its `verify_pins()` does
    /// not check that PIN there, `C_Login` does).
    pub fn user_login_failed(&mut self) {
        self.pkcs11_failed("C_Login (USER)", 0xA0, "CKR_PIN_INCORRECT");
    }

    /// Verbose `Search for <what> keys` (`migrate_wrapped_keys()`); `what` is one of
    /// `AES`, `HMAC`, `ECC`, `RSA`, `IBM Dilithium`, `IBM ML-DSA`, `IBM ML-KEM`, `ML-DSA`,
    /// `old RSA`, `DES`, `DES2`, `DES3`.
    pub fn search_for(&mut self, what: &str) {
        self.verbose_fmt(format_args!("Search for {what} keys\n"));
    }

    /// Verbose `Found N keys to examine` (`find_wrapped_keys()`).
    pub fn found_keys(&mut self, count: u64) {
        self.verbose_fmt(format_args!("Found {count} keys to examine\n"));
    }

    /// Verbose `Migratable key found: type=..., label=..., handle=...` (`add_key()`);
    /// `type_name` is one of `pkcscca.h`'s names (`AES`, `AES XTS`, `2DES`, ...).
    pub fn migratable_key_found(&mut self, type_name: &str, label: &[u8], handle: &str) {
        let before = format!("Migratable key found: type={type_name}, label=");
        self.info_with_label(true, &before, label, handle);
    }

    /// Verbose `Successfully migrated <algo> key. label=..., handle=...`.
    pub fn key_migrated(&mut self, algo: &str, label: &[u8], handle: &str) {
        let before = format!("Successfully migrated {algo} key. label=");
        self.info_with_label(true, &before, label, handle);
    }

    /// Always: `Skipping key, its a public key. ...` (`cca_migrate_asymmetric()`).
    pub fn skipping_public_key(&mut self, label: &[u8], handle: &str) {
        self.info_with_label(
            false,
            "Skipping key, its a public key. label=",
            label,
            handle,
        );
    }

    /// Always: `Skipping key, its not an old RSA key. ...` (`-k asym`).
    pub fn skipping_not_old_rsa(&mut self, label: &[u8], handle: &str) {
        let before = "Skipping key, its not an old RSA key. label=";
        self.info_with_label(false, before, label, handle);
    }

    /// Always: `Skipping key, its not an new RSA key. ...` (`-k apka`; upstream's wording).
    pub fn skipping_not_new_rsa(&mut self, label: &[u8], handle: &str) {
        let before = "Skipping key, its not an new RSA key. label=";
        self.info_with_label(false, before, label, handle);
    }

    /// Always: `Skipping, <algo> token is  wrapped with current master key. ...` (two
    /// spaces, as upstream).
    pub fn skipping_current_master_key(&mut self, algo: &str, label: &[u8], handle: &str) {
        let before = format!("Skipping, {algo} token is  wrapped with current master key. label=");
        self.info_with_label(false, &before, label, handle);
    }

    /// `<verb> (<description>) failed. return code: RC, reason code: RSN`
    /// (`pkcscca.h: cca_error()`), e.g. `verb` = `CSNBKTC2 (Key Token Change)`.
    pub fn cca_failed(&mut self, verb: &str, return_code: i64, reason_code: i64) {
        self.error(format_args!(
            "{verb} failed. return code: {return_code}, reason code: {reason_code}"
        ));
    }

    /// `Migrating <algo> key failed. label=..., handle=...` (newline added, see module doc).
    pub fn key_migration_failed(&mut self, algo: &str, label: &[u8], handle: &str) {
        let before = format!("Migrating {algo} key failed. label=");
        self.error_with_label(&before, label, format_args!(", handle={handle}"));
    }

    /// Ours: the card has no valid CURRENT master key of `mk_type`.
    pub fn no_current_master_key(&mut self, mk_type: impl Display) {
        self.error(format_args!(
            "the CCA adapter has no valid CURRENT {mk_type} master key; load and set it \
             before migrating (nothing was changed)"
        ));
    }

    /// Ours, after upstream's summary: what really happened, `Re-enciphered: N. Already
    /// current: M. Failed: K. Object files rewritten: W.` (and the unreadable objects,
    /// if any); with `--dry-run`, what would have happened.
    pub fn run_counts(&mut self, c: &RunCounts, dry_run: bool) {
        let unreadable = if c.unreadable > 0 {
            format!(" Unreadable objects: {}.", c.unreadable)
        } else {
            String::new()
        };
        if dry_run {
            self.out_fmt(format_args!(
                "Dry run: would re-encipher: {}. Already current: {}. Failed: {}. \
                 Object files to rewrite: {}.{unreadable} Nothing was written.\n",
                c.reenciphered, c.current, c.failed, c.rewrite
            ));
        } else {
            self.out_fmt(format_args!(
                "Re-enciphered: {}. Already current: {}. Failed: {}. \
                 Object files rewritten: {}.{unreadable}\n",
                c.reenciphered, c.current, c.failed, c.written
            ));
        }
    }

    // ----- -m status and -m restore (ours) --------------------------------------------

    /// `-m status` with no PIN given: one line on stderr.
    pub fn status_public_only(&mut self) {
        self.error(
            "no PIN given (standard input ended): private objects were not read, \
             only public objects are reported",
        );
    }

    /// A table on stdout: `header` and `rows` in columns two blanks apart, each as
    /// wide as its widest cell; the last column (raw bytes, a label) is not padded.
    fn table(&mut self, header: &[&str], rows: &[Vec<&[u8]>]) {
        if self.json {
            return;
        }
        let head: Vec<&[u8]> = header.iter().map(|h| h.as_bytes()).collect();
        let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut text = Vec::new();
        for row in std::iter::once(&head).chain(rows) {
            let mut line = Vec::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.extend_from_slice(cell);
                } else {
                    let w = widths.get(i).copied().unwrap_or(0);
                    line.extend_from_slice(cell);
                    line.resize(line.len() + w.saturating_sub(cell.len()) + 2, b' ');
                }
            }
            while line.last() == Some(&b' ') {
                line.pop();
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        self.out_bytes(&[&text]);
    }

    /// `-m status`: one line per key, under a header.
    pub fn status_keys(&mut self, keys: &[StatusKey<'_>]) {
        let rows: Vec<Vec<&[u8]>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.object.as_bytes(),
                    if k.private { b"yes" } else { b"no" },
                    k.key_type.as_bytes(),
                    k.mk_type.as_bytes(),
                    k.mkvp.as_bytes(),
                    k.register.as_bytes(),
                    label_bytes(k.label),
                ]
            })
            .collect();
        self.table(
            &["OBJECT", "PRIVATE", "KEY_TYPE", "MK_TYPE", "MKVP", "REGISTER", "LABEL"],
            &rows,
        );
    }

    /// `-m status`: the card's registers of each master key type and the keys under
    /// each, after a blank line.
    pub fn status_registers(&mut self, registers: &[StatusRegister<'_>]) {
        let counts: Vec<String> = registers.iter().map(|r| r.keys.to_string()).collect();
        let rows: Vec<Vec<&[u8]>> = registers
            .iter()
            .zip(&counts)
            .map(|(r, n)| {
                vec![
                    r.mk_type.as_bytes(),
                    r.register.as_bytes(),
                    r.state.as_bytes(),
                    r.mkvp.as_bytes(),
                    n.as_bytes(),
                ]
            })
            .collect();
        self.out_bytes(&[b"\n"]);
        self.table(&["MK_TYPE", "REGISTER", "STATE", "MKVP", "KEYS"], &rows);
    }

    /// `-m status`, after a blank line: the totals, then what they mean. `old_types`
    /// are the `-k` words of the types with keys under OLD.
    pub fn status_summary(&mut self, c: &StatusCounts, old_types: &[&str]) {
        let unreadable = if c.unreadable > 0 {
            format!(" Unreadable objects: {}.", c.unreadable)
        } else {
            String::new()
        };
        self.out_fmt(format_args!(
            "\nKeys: {}. Under CURRENT: {}. Under OLD: {}. Under NEW: {}. Under no register: \
             {}.{unreadable}\n",
            c.keys, c.current, c.old, c.new, c.none
        ));
        let mut verdict = Vec::new();
        if c.none > 0 {
            verdict.push(format!(
                "{} key(s) match no master key register of the card: they cannot be used \
                 or migrated until their master key is loaded again.",
                c.none
            ));
        }
        if c.unreadable > 0 {
            verdict.push(format!(
                "{} object file(s) could not be read: their keys are unknown.",
                c.unreadable
            ));
        }
        if c.old > 0 {
            let run = match old_types {
                [one] => format!("pkcscca -m keys -k {one}"),
                many => format!(
                    "pkcscca -m keys with {} (or -k all)",
                    many.iter()
                        .map(|t| format!("-k {t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            verdict.push(format!(
                "Migration needed: keys are under the OLD master key; run {run}."
            ));
        }
        if c.new > 0 {
            verdict.push(
                "A master key change is not finished: keys are under the NEW master key, \
                 which is not yet CURRENT."
                    .to_string(),
            );
        }
        if verdict.is_empty() {
            verdict.push(if c.keys == 0 {
                "No secure key of the selected master key type(s) was found.".to_string()
            } else {
                "Every key is under the CURRENT master key.".to_string()
            });
        }
        self.out_fmt(format_args!("{}\n", verdict.join(" ")));
    }

    /// `-m restore`: the objects put back (`restored`), or with `dry_run` those that
    /// would be, each named when verbose.
    pub fn restore_summary(&mut self, backup: &std::path::Path, objects: &[String], dry_run: bool) {
        for name in objects {
            let what = if dry_run {
                "Would restore"
            } else {
                "Restored"
            };
            self.verbose_fmt(format_args!("{what} TOK_OBJ/{name}\n"));
        }
        if dry_run {
            self.out_fmt(format_args!(
                "Dry run: would restore {} object file(s) from {}. Nothing was written.\n",
                objects.len(),
                backup.display()
            ));
        } else {
            self.out_fmt(format_args!(
                "Restored {} object file(s) from {}.\n",
                objects.len(),
                backup.display()
            ));
        }
    }

    /// The `-m keys` summary (`key_migration_results()`), byte for byte, always printed.
    pub fn keys_summary(&mut self, migrated: &KeyCounts, failed: &KeyCounts) {
        let mut line = String::new();
        if migrated.total() > 0 {
            line.push_str("Successfully migrated: ");
        }
        for (name, n) in migrated.entries() {
            if n > 0 {
                line.push_str(&format!("{name}: {n}. "));
            }
        }
        if failed.total() > 0 {
            line.push_str("\nFailed to migrate: ");
        }
        for (name, n) in failed.entries() {
            if n > 0 {
                line.push_str(&format!("{name}: {n}. "));
            }
        }
        line.push('\n');
        self.out_bytes(&[line.as_bytes()]);
    }

    /// Verbose `Skipping RSA key, its not an old RSA key. ...` (`cca_migrate_old_rsa()`).
    pub fn old_rsa_skipping(&mut self, label: &[u8], handle: &str) {
        let before = "Skipping RSA key, its not an old RSA key. label=";
        self.info_with_label(true, before, label, handle);
    }

    /// Verbose `Successfully migrated old RSA key. ...`.
    pub fn old_rsa_migrated(&mut self, label: &[u8], handle: &str) {
        let before = "Successfully migrated old RSA key. label=";
        self.info_with_label(true, before, label, handle);
    }

    /// `Migrating old RSA key failed. ...` (newline added, see module doc).
    pub fn old_rsa_failed(&mut self, label: &[u8], handle: &str) {
        let before = "Migrating old RSA key failed. label=";
        self.error_with_label(before, label, format_args!(", handle={handle}"));
    }

    /// The `-m oldrsakeys` summary (`migrate_old_rsa_keys()`), always printed.
    pub fn old_rsa_summary(&mut self, migrated: u32, failed: u32) {
        self.out_fmt(format_args!("Successfully migrated: {migrated}"));
        if failed > 0 {
            self.out_fmt(format_args!("\nFailed to migrate:   {failed}"));
        }
        self.out_bytes(&[b"\n"]);
    }

    // ----- -m v2objectsv3 ------------------------------------------------------------------

    /// `Cannot find <path>.` (`migrate_version()`, stderr).
    pub fn cannot_find(&mut self, path: impl Display) {
        self.error(format_args!("Cannot find {path}."));
    }

    /// Always: `OBJ.IDX file is empty. Thus no objects to migrate.`
    pub fn obj_idx_empty(&mut self) {
        self.out_bytes(&[b"OBJ.IDX file is empty. Thus no objects to migrate.\n"]);
    }

    /// Verbose `<store> has an MK_SO, MK_USER and TOK/OBJ.IDX`.
    pub fn store_complete(&mut self, store: impl Display) {
        self.verbose_fmt(format_args!(
            "{store} has an MK_SO, MK_USER and TOK/OBJ.IDX\n"
        ));
    }

    /// `Could not load masterkey from MK_SO.` / `... MK_USER.`
    pub fn could_not_load_master_key(&mut self, kind: PinKind) {
        self.error(format_args!(
            "Could not load masterkey from MK_{}.",
            kind.name()
        ));
    }

    /// `<path> appears to have been tampered!` then `Cannot migrate.` (`load_masterkey()`:
    /// the MK file does not open with a PIN that matched NVTOK.DAT).
    pub fn master_key_tampered(&mut self, path: impl Display) {
        self.error(format_args!("{path} appears to have been tampered!"));
        self.error("Cannot migrate.");
    }

    /// `CSNBDEC (DES3 DECRYPT) failed: return_code=RC reason_code=RSN` (`cca_decrypt()`).
    pub fn csnbdec_failed(&mut self, return_code: i64, reason_code: i64) {
        self.error(format_args!(
            "CSNBDEC (DES3 DECRYPT) failed: return_code={return_code} reason_code={reason_code}"
        ));
    }

    /// `Decrypted object data is inconsistent. Possibly already migrated?`
    /// (`reencrypt_private_token_object()`).
    pub fn decrypted_data_inconsistent(&mut self) {
        self.error("Decrypted object data is inconsistent. Possibly already migrated?");
    }

    /// `Stored hash does not match restored data hash.`
    pub fn stored_hash_mismatch(&mut self) {
        self.error("Stored hash does not match restored data hash.");
    }

    /// `No CKA_CLASS attribute found` (`adjust_key_object_attributes()`).
    pub fn no_class_attribute(&mut self) {
        self.error("No CKA_CLASS attribute found");
    }

    /// `No CKA_VALUE attribute found` (`adjust_secret_key_attributes()`).
    pub fn no_value_attribute(&mut self) {
        self.error("No CKA_VALUE attribute found");
    }

    /// `CKA_VALUE does not contain a CCA secure key` (the object is left as it is).
    pub fn value_not_secure_key(&mut self) {
        self.error("CKA_VALUE does not contain a CCA secure key");
    }

    /// Verbose `Successfully verified SO Pin.` / `... USER Pin.`
    pub fn pin_verified(&mut self, kind: PinKind) {
        self.verbose_fmt(format_args!("Successfully verified {} Pin.\n", kind.name()));
    }

    /// Verbose `Processed <path>.`
    pub fn object_processed(&mut self, path: impl Display) {
        self.verbose_fmt(format_args!("Processed {path}.\n"));
    }

    /// Verbose `Failed to process <path>`
    pub fn object_failed(&mut self, path: impl Display) {
        self.verbose_fmt(format_args!("Failed to process {path}\n"));
    }

    /// Always `Successfully migrated N object(s).`, then, when verbose and N failed > 0,
    /// `Failed to migrate N object(s).` (`load_token_objects()`).
    pub fn objects_summary(&mut self, migrated: u32, failed: u32) {
        self.out_fmt(format_args!(
            "Successfully migrated {migrated} object(s).\n"
        ));
        if failed > 0 {
            self.verbose_fmt(format_args!("Failed to migrate {failed} object(s).\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(verbosity: Verbosity, f: impl FnOnce(&mut Output<'_>)) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        {
            let mut o = Output::new(&mut out, &mut err, b"pkcscca");
            o.set_verbosity(verbosity);
            f(&mut o);
        }
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn verbosity_names_round_trip_and_only_none_is_quiet() {
        for (v, n) in Verbosity::ALL {
            assert_eq!(Verbosity::from_name(n.as_bytes()), Some(v));
            assert_eq!(v.name(), n);
            assert_eq!(v.is_verbose(), v != Verbosity::None);
        }
        assert_eq!(Verbosity::from_name(b"INFO"), None);
        assert_eq!(Verbosity::from_name(b""), None);
    }

    #[test]
    fn keys_summary_matches_upstream_bytes() {
        let migrated = KeyCounts {
            aes: 2,
            hmac: 1,
            ..KeyCounts::default()
        };
        let failed = KeyCounts {
            aes: 1,
            ..KeyCounts::default()
        };
        let (out, _) = run(Verbosity::None, |o| o.keys_summary(&migrated, &failed));
        assert_eq!(
            out,
            "Successfully migrated: AES: 2. HMAC: 1. \nFailed to migrate: AES: 1. \n"
        );
        let none = KeyCounts::default();
        let (out, _) = run(Verbosity::None, |o| o.keys_summary(&none, &none));
        assert_eq!(out, "\n");
        let (out, _) = run(Verbosity::None, |o| o.keys_summary(&none, &failed));
        assert_eq!(out, "\nFailed to migrate: AES: 1. \n");
    }

    #[test]
    fn old_rsa_summary_has_three_spaces_before_failed_count() {
        let (out, _) = run(Verbosity::None, |o| o.old_rsa_summary(3, 1));
        assert_eq!(out, "Successfully migrated: 3\nFailed to migrate:   1\n");
        let (out, _) = run(Verbosity::None, |o| o.old_rsa_summary(0, 0));
        assert_eq!(out, "Successfully migrated: 0\n");
    }

    #[test]
    fn verbose_lines_need_a_level_other_than_none() {
        let (out, _) = run(Verbosity::None, |o| o.key_migrated("AES", b"k", "00000001"));
        assert_eq!(out, "");
        let (out, _) = run(Verbosity::Error, |o| {
            o.key_migrated("AES", b"k", "00000001")
        });
        assert_eq!(
            out,
            "Successfully migrated AES key. label=k, handle=00000001\n"
        );
    }

    #[test]
    fn labels_stop_at_nul_and_keep_raw_bytes() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        Output::new(&mut out, &mut err, b"pkcscca")
            .skipping_public_key(b"a\xffb\0junk", "OBa7Kq0Z");
        assert_eq!(
            out,
            b"Skipping key, its a public key. label=a\xffb, handle=OBa7Kq0Z\n"
        );
    }

    #[test]
    fn skipping_current_key_keeps_the_double_space() {
        let (out, _) = run(Verbosity::None, |o| {
            o.skipping_current_master_key("ECC", b"e", "OB000004")
        });
        assert_eq!(
            out,
            "Skipping, ECC token is  wrapped with current master key. label=e, handle=OB000004\n"
        );
    }

    #[test]
    fn error_lines_use_our_prefix_and_end_with_newline() {
        let (_, err) = run(Verbosity::None, |o| {
            o.cca_failed("CSNBKTC2 (Key Token Change)", 8, 48);
            o.key_migration_failed("AES", b"k1", "OBk1k1k1");
        });
        assert_eq!(
            err,
            "pkcscca: CSNBKTC2 (Key Token Change) failed. return code: 8, reason code: 48\n\
             pkcscca: Migrating AES key failed. label=k1, handle=OBk1k1k1\n"
        );
    }
}
