//! The command line: `getopt_long` as the C tool sees it, then validation.
//!
//! Mirrors `pkcscca.c: main()` (3.27): short options `m:d:s:k:v:h`, long options
//! `--datastore`, `--slotid`, `--verbose`, parsed with GNU `getopt_long` semantics
//! (permutation of non-options, `--`, clustered short options, attached or separate
//! arguments, a required argument taken even when it starts with `-`, unambiguous long
//! prefixes, `--name=value`, `POSIXLY_CORRECT`). Two stages, as in the style guide:
//!
//! 1. [`parse_low`] records what was typed, in argv order, as [`LowItem`]s. A `getopt`
//!    error ends the list, because upstream stops at the first one.
//! 2. [`validate`] walks the items in order exactly like upstream's `switch` (so
//!    `-h -m foo` prints help while `-m foo -h` is an error), then applies upstream's
//!    after-loop checks, and yields [`Command`]. Unlike upstream, every check happens here,
//!    before any PIN prompt.
//!
//! Why not clap: upstream's contract is `getopt_long`'s byte-level behaviour and messages
//! (`invalid option -- 'x'` for one byte of a cluster, `'--slotid'` named in full after an
//! abbreviation, errors reported lazily in argv order). clap's parser and error kinds cannot
//! reproduce those, and with its help, usage and errors switched off nothing of it would be
//! left in use, so this is a small hand parser over the raw argument bytes.
//!
//! Compatibility additions: a bare `-v` / `--verbose` (openCryptoki 3.8.1, and upstream's
//! own usage says the level is optional) means `info`; the level is taken from the next
//! word only when that word does not start with `-`. `--verbose=LEVEL` is accepted. Slot
//! 0 is a valid slot (upstream 3.27 calls it "missing"; later upstream fixed that). Our
//! own options: `--dry-run`, `--json`, `--no-backup`, `--threads N`, `--from BACKUP`,
//! `--help` and `--version`; our own modes: `-m status` and `-m restore`, which take
//! the token from `-s SLOTID` or `-d DATASTORE` (either is enough); and `-k all`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::cca::MkType;
use crate::exit::Exit;

/// The `-v` levels, in upstream's order (`pkcscca.c: verbose_str2level()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `none` (the default): only the always-printed lines.
    #[default]
    None,
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info` (what a bare `-v` or `--verbose` selects)
    Info,
    /// `devel`
    Devel,
    /// `debug`
    Debug,
}

impl Verbosity {
    /// All levels with their command-line names, in numeric order.
    pub const ALL: [(Verbosity, &'static str); 6] = [
        (Verbosity::None, "none"),
        (Verbosity::Error, "error"),
        (Verbosity::Warn, "warn"),
        (Verbosity::Info, "info"),
        (Verbosity::Devel, "devel"),
        (Verbosity::Debug, "debug"),
    ];

    /// Exact, case-sensitive lookup of a level name, as upstream's `strcmp` loop.
    pub fn from_name(name: &[u8]) -> Option<Verbosity> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map(|(v, _)| *v)
    }

    /// The command-line name of this level.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("none", |(_, n)| n)
    }

    /// Whether the verbose-only lines are printed (any level but `none`).
    pub fn is_verbose(self) -> bool {
        self != Verbosity::None
    }
}

/// Highest number of slots openCryptoki manages (`slotmgr.h: NUMBER_SLOTS_MANAGED`); a slot
/// id at or above it can never be configured.
pub const NUMBER_SLOTS_MANAGED: u64 = 1024;

/// The `-m` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeName {
    /// `v2objectsv3`: re-encrypt v2 private token objects in software.
    V2ObjectsV3,
    /// `keys`: re-encipher secure keys from the OLD to the CURRENT master key.
    Keys,
    /// `oldrsakeys`: convert RSA-CRT tokens to RSA-AESC, strip private parts of public keys.
    OldRsaKeys,
    /// Ours, `status`: which master key register each secure key is under (reads only).
    Status,
    /// Ours, `restore`: put back the objects a run changed, from the backup it made.
    Restore,
}

impl ModeName {
    /// In upstream's dispatch priority (when several `-m` are given, the first set wins),
    /// then ours.
    pub const ALL: [ModeName; 5] = [
        ModeName::V2ObjectsV3,
        ModeName::Keys,
        ModeName::OldRsaKeys,
        ModeName::Status,
        ModeName::Restore,
    ];

    /// The word used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModeName::V2ObjectsV3 => "v2objectsv3",
            ModeName::Keys => "keys",
            ModeName::OldRsaKeys => "oldrsakeys",
            ModeName::Status => "status",
            ModeName::Restore => "restore",
        }
    }

    /// Whether a run of this mode may write to the data store (all but `status`).
    pub fn writes(self) -> bool {
        self != ModeName::Status
    }

    /// Exact lookup (`strcmp`).
    pub fn from_name(word: &[u8]) -> Option<ModeName> {
        Self::ALL.into_iter().find(|m| m.name().as_bytes() == word)
    }
}

/// What `-k` selects: one master key type, or (ours) `all` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySelection {
    /// `-k aes|apka|asym|sym`.
    One(MkType),
    /// `-k all`: every type in one run, in the order of [`KeySelection::ALL_ORDER`].
    All,
}

impl KeySelection {
    /// The order `-k all` takes the types in.
    pub const ALL_ORDER: [MkType; 4] = [MkType::Sym, MkType::Aes, MkType::Apka, MkType::Asym];

    /// The types selected, in the order they are processed.
    pub fn types(self) -> Vec<MkType> {
        match self {
            KeySelection::One(t) => vec![t],
            KeySelection::All => Self::ALL_ORDER.to_vec(),
        }
    }

    /// The `-k` word.
    pub fn name(self) -> &'static str {
        match self {
            KeySelection::One(t) => t.arg_name(),
            KeySelection::All => "all",
        }
    }

    /// Exact lookup (`strcmp`) of a `-k` word.
    pub fn from_name(word: &[u8]) -> Option<KeySelection> {
        if word == b"all" {
            return Some(KeySelection::All);
        }
        MkType::from_arg(word).map(KeySelection::One)
    }
}

/// Most re-encipher verbs in flight at once (`--threads`).
pub const MAX_THREADS: usize = 64;

/// A validated mode with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-m v2objectsv3` (`-s` and `-k` are ignored, as upstream).
    V2ObjectsV3,
    /// `-m keys -s SLOT -k TYPE`.
    Keys {
        /// PKCS#11 slot id.
        slot: u64,
        /// Master key type(s) to migrate.
        key_type: KeySelection,
    },
    /// `-m oldrsakeys -s SLOT`.
    OldRsaKeys {
        /// PKCS#11 slot id.
        slot: u64,
    },
    /// Ours: `-m status -s SLOT|-d DIR [-k TYPE]` (`-k` defaults to `all`).
    Status {
        /// PKCS#11 slot id, if given.
        slot: Option<u64>,
        /// Master key type(s) to report.
        key_type: KeySelection,
    },
    /// Ours: `-m restore -s SLOT|-d DIR --from BACKUP`.
    Restore {
        /// PKCS#11 slot id, if given.
        slot: Option<u64>,
        /// The backup directory to put back.
        from: PathBuf,
    },
}

impl Mode {
    /// The `-m` word of this mode.
    pub fn name(&self) -> ModeName {
        match self {
            Mode::V2ObjectsV3 => ModeName::V2ObjectsV3,
            Mode::Keys { .. } => ModeName::Keys,
            Mode::OldRsaKeys { .. } => ModeName::OldRsaKeys,
            Mode::Status { .. } => ModeName::Status,
            Mode::Restore { .. } => ModeName::Restore,
        }
    }
}

/// Validated arguments of a run that migrates something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// What to do.
    pub mode: Mode,
    /// `-d`/`--datastore`, if given (upstream's default is `/var/lib/opencryptoki/ccatok`).
    pub datastore: Option<PathBuf>,
    /// `-v` level.
    pub verbose: Verbosity,
    /// `--dry-run`: do everything but write.
    pub dry_run: bool,
    /// `--json`: machine-readable summary on stdout (keys and oldrsakeys only).
    pub json: bool,
    /// `--no-backup`: no snapshot of the store before a run rewrites objects.
    pub no_backup: bool,
    /// `--threads N`: how many re-encipher verbs may be in flight at once (`None`:
    /// `PKCSCCA_THREADS`, else the default).
    pub threads: Option<usize>,
}

impl Args {
    /// The slot, for the modes that take one (and `-m status` and `-m restore` when
    /// it was given).
    pub fn slot(&self) -> Option<u64> {
        match self.mode {
            Mode::V2ObjectsV3 => None,
            Mode::Keys { slot, .. } | Mode::OldRsaKeys { slot } => Some(slot),
            Mode::Status { slot, .. } | Mode::Restore { slot, .. } => slot,
        }
    }

    /// The master key type(s), for `-m keys` and `-m status`.
    pub fn key_type(&self) -> Option<KeySelection> {
        match self.mode {
            Mode::Keys { key_type, .. } | Mode::Status { key_type, .. } => Some(key_type),
            _ => None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-h` or `--help`: print the usage text, exit 0.
    Help,
    /// `--version`: print our name, version and git revision, exit 0.
    Version,
    /// Run a migration mode.
    Run(Args),
}

/// A diagnostic that glibc's `getopt_long` prints (prefixed with `argv[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    /// `invalid option -- 'c'` (one byte, as getopt sees it).
    InvalidShort(u8),
    /// `option requires an argument -- 'c'`.
    ShortNeedsArgument(u8),
    /// `unrecognized option '--<typed>'` (as typed, including any `=value`).
    UnrecognizedLong(Vec<u8>),
    /// `option '--<typed>' is ambiguous; possibilities: '--a' '--b'`.
    AmbiguousLong {
        /// Text after `--`, as typed.
        typed: Vec<u8>,
        /// Full names of the matching options.
        candidates: Vec<&'static str>,
    },
    /// `option '--<name>' requires an argument` (full name even when abbreviated).
    LongNeedsArgument(&'static str),
    /// `option '--<name>' doesn't allow an argument`.
    LongTakesNoArgument(&'static str),
}

/// One option as typed, in argv order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowItem {
    /// `-h`
    Help,
    /// `-m WORD`
    Mode(OsString),
    /// `-k WORD`
    KeyType(OsString),
    /// `-s TEXT` / `--slotid TEXT`
    Slot(OsString),
    /// `-d DIR` / `--datastore DIR`
    Datastore(OsString),
    /// `-v [LEVEL]` / `--verbose [LEVEL]`
    Verbose(Option<OsString>),
    /// `--dry-run`
    DryRun,
    /// `--json`
    Json,
    /// `--version`
    Version,
    /// `--no-backup`
    NoBackup,
    /// `--threads N`
    Threads(OsString),
    /// `--from BACKUP`
    From(OsString),
    /// A getopt error; always the last item.
    Error(GetoptError),
}

/// The command line as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowArgs {
    /// `argv[0]` as typed (used in the usage text and getopt messages).
    pub progname: OsString,
    /// Options in argv order, up to and including the first getopt error.
    pub items: Vec<LowItem>,
    /// Non-option words; upstream ignores them and so do we.
    pub positionals: Vec<OsString>,
}

/// A command-line error, reported before any prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// getopt's own diagnostic.
    Getopt(GetoptError),
    /// `unknown key type (%s)`
    UnknownKeyType(Vec<u8>),
    /// `unknown migration type (%s)`
    UnknownMode(Vec<u8>),
    /// `Invalid verbose level '%s' specified.`
    InvalidVerbose(Vec<u8>),
    /// `missing migration type`
    MissingMode,
    /// `missing slot number` (also for a slot word with no digits, as upstream's `atoi`).
    MissingSlot,
    /// `missing key type`
    MissingKeyType,
    /// A slot id that cannot exist (negative, too large); upstream fails later in
    /// `C_OpenSession` with `CKR_SLOT_ID_INVALID`, exit 5.
    SlotInvalid(Vec<u8>),
    /// Our `--json` given with a mode that has no summary to report.
    JsonNotSupported(ModeName),
    /// `--threads` (or `PKCSCCA_THREADS`) not a number from 1 to [`MAX_THREADS`].
    InvalidThreads(Vec<u8>),
    /// Ours: `-m status` or `-m restore` without `-s` or `-d`.
    MissingSlotOrDatastore(ModeName),
    /// Ours: `-m restore` without `--from`.
    MissingFrom,
    /// Ours: `--from` with a mode other than `-m restore`.
    FromWithoutRestore(ModeName),
}

impl CliError {
    /// Whether upstream prints the usage text after this error.
    pub fn prints_usage(&self) -> bool {
        !matches!(self, CliError::SlotInvalid(_))
    }

    /// The exit status for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::SlotInvalid(_) => Exit::NoToken,
            _ => Exit::Usage,
        }
    }
}

/// How a long option takes its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HasArg {
    Required,
    /// Our `--verbose`: `=LEVEL`, or the next word if it does not start with `-`.
    OptionalNext,
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LongId {
    Datastore,
    Slotid,
    Verbose,
    DryRun,
    Json,
    Help,
    Version,
    NoBackup,
    Threads,
    From,
}

struct LongOpt {
    name: &'static str,
    has_arg: HasArg,
    id: LongId,
}

/// Upstream's table; matched first, so our additions never make an upstream
/// abbreviation (`--d` for `--datastore`) ambiguous.
const UPSTREAM_LONG: [LongOpt; 3] = [
    LongOpt {
        name: "datastore",
        has_arg: HasArg::Required,
        id: LongId::Datastore,
    },
    LongOpt {
        name: "slotid",
        has_arg: HasArg::Required,
        id: LongId::Slotid,
    },
    LongOpt {
        name: "verbose",
        has_arg: HasArg::OptionalNext,
        id: LongId::Verbose,
    },
];

/// Our additions, matched only when nothing in [`UPSTREAM_LONG`] matches.
const OUR_LONG: [LongOpt; 7] = [
    LongOpt {
        name: "dry-run",
        has_arg: HasArg::No,
        id: LongId::DryRun,
    },
    LongOpt {
        name: "json",
        has_arg: HasArg::No,
        id: LongId::Json,
    },
    LongOpt {
        name: "help",
        has_arg: HasArg::No,
        id: LongId::Help,
    },
    LongOpt {
        name: "version",
        has_arg: HasArg::No,
        id: LongId::Version,
    },
    LongOpt {
        name: "no-backup",
        has_arg: HasArg::No,
        id: LongId::NoBackup,
    },
    LongOpt {
        name: "threads",
        has_arg: HasArg::Required,
        id: LongId::Threads,
    },
    LongOpt {
        name: "from",
        has_arg: HasArg::Required,
        id: LongId::From,
    },
];

/// getopt_long's lookup: exact name, else a unique prefix, within one table.
fn lookup(
    table: &'static [LongOpt],
    name: &[u8],
    typed: &[u8],
) -> Result<Option<&'static LongOpt>, GetoptError> {
    if let Some(opt) = table.iter().find(|o| o.name.as_bytes() == name) {
        return Ok(Some(opt));
    }
    let matches: Vec<&'static LongOpt> = table
        .iter()
        .filter(|o| o.name.as_bytes().starts_with(name))
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(GetoptError::AmbiguousLong {
            typed: typed.to_vec(),
            candidates: many.iter().map(|o| o.name).collect(),
        }),
    }
}

fn find_long(body: &[u8]) -> Result<(&'static LongOpt, Option<&[u8]>), GetoptError> {
    let (name, value) = match body.iter().position(|&b| b == b'=') {
        Some(eq) => (body.get(..eq).unwrap_or(body), body.get(eq + 1..)),
        None => (body, None),
    };
    let found = match lookup(&UPSTREAM_LONG, name, body)? {
        Some(opt) => Some(opt),
        None => lookup(&OUR_LONG, name, body)?,
    };
    match found {
        Some(opt) => Ok((opt, value)),
        None => Err(GetoptError::UnrecognizedLong(body.to_vec())),
    }
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

/// Stage 1: what was typed. `args` starts with `argv[0]`. With `posixly_correct` (the
/// `POSIXLY_CORRECT` environment variable), option parsing stops at the first non-option.
pub fn parse_low<I, S>(args: I, posixly_correct: bool) -> LowArgs
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let progname = args.next().unwrap_or_else(|| OsString::from("pkcscca"));
    let mut rest = args.peekable();
    let mut items = Vec::new();
    let mut positionals = Vec::new();

    // Next word as an optional level: only when it does not look like an option.
    fn optional_level(
        rest: &mut std::iter::Peekable<impl Iterator<Item = OsString>>,
    ) -> Option<OsString> {
        rest.next_if(|w| !w.as_bytes().starts_with(b"-"))
    }

    while let Some(word) = rest.next() {
        let arg = word.as_bytes();
        if arg == b"--" {
            positionals.extend(rest.by_ref());
            break;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let item = match find_long(body) {
                Err(e) => LowItem::Error(e),
                Ok((opt, value)) => match opt.has_arg {
                    HasArg::Required => match value.map(os).or_else(|| rest.next()) {
                        Some(v) => match opt.id {
                            LongId::Datastore => LowItem::Datastore(v),
                            LongId::Threads => LowItem::Threads(v),
                            LongId::From => LowItem::From(v),
                            _ => LowItem::Slot(v),
                        },
                        None => LowItem::Error(GetoptError::LongNeedsArgument(opt.name)),
                    },
                    HasArg::OptionalNext => {
                        LowItem::Verbose(value.map(os).or_else(|| optional_level(&mut rest)))
                    }
                    HasArg::No if value.is_some() => {
                        LowItem::Error(GetoptError::LongTakesNoArgument(opt.name))
                    }
                    HasArg::No => match opt.id {
                        LongId::DryRun => LowItem::DryRun,
                        LongId::Help => LowItem::Help,
                        LongId::Version => LowItem::Version,
                        LongId::NoBackup => LowItem::NoBackup,
                        _ => LowItem::Json,
                    },
                },
            };
            let stop = matches!(item, LowItem::Error(_));
            items.push(item);
            if stop {
                break;
            }
            continue;
        }
        if arg.len() > 1 && arg.starts_with(b"-") {
            // A cluster of short options: `-hv`, `-mkeys`, `-s2`.
            let mut stop = false;
            for (j, &c) in arg.iter().enumerate().skip(1) {
                let tail = arg.get(j + 1..).unwrap_or_default();
                let item = match c {
                    b'h' => LowItem::Help,
                    b'm' | b'd' | b's' | b'k' => {
                        let value = if tail.is_empty() {
                            rest.next()
                        } else {
                            Some(os(tail))
                        };
                        match (c, value) {
                            (_, None) => LowItem::Error(GetoptError::ShortNeedsArgument(c)),
                            (b'm', Some(v)) => LowItem::Mode(v),
                            (b'd', Some(v)) => LowItem::Datastore(v),
                            (b's', Some(v)) => LowItem::Slot(v),
                            (_, Some(v)) => LowItem::KeyType(v),
                        }
                    }
                    b'v' if tail.is_empty() => LowItem::Verbose(optional_level(&mut rest)),
                    b'v' => LowItem::Verbose(Some(os(tail))),
                    _ => LowItem::Error(GetoptError::InvalidShort(c)),
                };
                let takes_rest = matches!(c, b'm' | b'd' | b's' | b'k' | b'v');
                stop = matches!(item, LowItem::Error(_));
                items.push(item);
                if stop || takes_rest {
                    break;
                }
            }
            if stop {
                break;
            }
            continue;
        }
        positionals.push(word);
        if posixly_correct {
            positionals.extend(rest.by_ref());
            break;
        }
    }
    LowArgs {
        progname,
        items,
        positionals,
    }
}

/// How a `-s` word reads, following `atoi`/`strtoul`: leading blanks, an optional sign,
/// decimal digits; anything after the digits is ignored, as upstream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotWord {
    /// No digits at all (upstream: `atoi` gives 0, reported as a missing slot).
    NoDigits,
    /// Negative, overflowing, or not below [`NUMBER_SLOTS_MANAGED`].
    Invalid,
    /// A usable slot id.
    Valid(u64),
}

fn read_slot_word(word: &[u8]) -> SlotWord {
    let start = word
        .iter()
        .position(|b| !b" \t\n\x0b\x0c\r".contains(b))
        .unwrap_or(word.len());
    let mut rest = word.get(start..).unwrap_or_default();
    let negative = rest.first() == Some(&b'-');
    if let Some(unsigned) = rest.strip_prefix(b"-").or_else(|| rest.strip_prefix(b"+")) {
        rest = unsigned;
    }
    let digits: Vec<u8> = rest
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return SlotWord::NoDigits;
    }
    let value = digits.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    match value {
        Some(0) => SlotWord::Valid(0),
        Some(v) if !negative && v < NUMBER_SLOTS_MANAGED => SlotWord::Valid(v),
        _ => SlotWord::Invalid,
    }
}

/// Stage 2: check what was typed, in upstream's order, and build the [`Command`].
/// Mirrors `pkcscca.c: main()`'s option switch and its checks after the loop.
pub fn validate(low: &LowArgs) -> Result<Command, CliError> {
    let mut modes = [false; ModeName::ALL.len()];
    let mut key_type = None;
    let mut slot_word: Option<&OsStr> = None;
    let mut datastore = None;
    let mut verbose = Verbosity::None;
    let mut dry_run = false;
    let mut json = false;
    let mut no_backup = false;
    let mut threads = None;
    let mut from = None;

    for item in &low.items {
        match item {
            LowItem::Help => return Ok(Command::Help),
            LowItem::Version => return Ok(Command::Version),
            LowItem::Mode(word) => {
                let mode = ModeName::from_name(word.as_bytes())
                    .ok_or_else(|| CliError::UnknownMode(word.as_bytes().to_vec()))?;
                for (flag, m) in modes.iter_mut().zip(ModeName::ALL) {
                    *flag |= m == mode;
                }
            }
            LowItem::KeyType(word) => {
                key_type = Some(
                    KeySelection::from_name(word.as_bytes())
                        .ok_or_else(|| CliError::UnknownKeyType(word.as_bytes().to_vec()))?,
                );
            }
            LowItem::Slot(word) => slot_word = Some(word),
            LowItem::Datastore(dir) => datastore = Some(PathBuf::from(dir)),
            LowItem::Verbose(None) => verbose = Verbosity::Info,
            LowItem::Verbose(Some(level)) => {
                verbose = Verbosity::from_name(level.as_bytes())
                    .ok_or_else(|| CliError::InvalidVerbose(level.as_bytes().to_vec()))?;
            }
            LowItem::DryRun => dry_run = true,
            LowItem::Json => json = true,
            LowItem::NoBackup => no_backup = true,
            LowItem::Threads(word) => threads = Some(parse_threads(word.as_bytes())?),
            LowItem::From(dir) => from = Some(PathBuf::from(dir)),
            LowItem::Error(e) => return Err(CliError::Getopt(e.clone())),
        }
    }

    // Upstream dispatches `if (m_version) ... else if (m_keys) ... else if (m_rsakeys)`.
    let mode_name = modes
        .iter()
        .zip(ModeName::ALL)
        .find_map(|(set, m)| set.then_some(m))
        .ok_or(CliError::MissingMode)?;

    let slot = || -> Result<u64, CliError> {
        match slot_word.map(|w| (w, read_slot_word(w.as_bytes()))) {
            None | Some((_, SlotWord::NoDigits)) => Err(CliError::MissingSlot),
            Some((w, SlotWord::Invalid)) => Err(CliError::SlotInvalid(w.as_bytes().to_vec())),
            Some((_, SlotWord::Valid(n))) => Ok(n),
        }
    };
    // Upstream's order: missing slot, then missing key type; an impossible slot only fails
    // later (C_OpenSession), so it is checked after both.
    let mode = match mode_name {
        ModeName::V2ObjectsV3 => Mode::V2ObjectsV3,
        ModeName::Keys => {
            let slot = slot();
            if slot == Err(CliError::MissingSlot) {
                return Err(CliError::MissingSlot);
            }
            let key_type = key_type.ok_or(CliError::MissingKeyType)?;
            Mode::Keys {
                slot: slot?,
                key_type,
            }
        }
        ModeName::OldRsaKeys => Mode::OldRsaKeys { slot: slot()? },
        // Ours: the token is the slot's or the store of `-d`; either is enough.
        ModeName::Status | ModeName::Restore => {
            let slot = match (slot_word, &datastore) {
                (None, None) => return Err(CliError::MissingSlotOrDatastore(mode_name)),
                (None, Some(_)) => None,
                (Some(_), _) => Some(slot()?),
            };
            if mode_name == ModeName::Status {
                Mode::Status {
                    slot,
                    key_type: key_type.unwrap_or(KeySelection::All),
                }
            } else {
                Mode::Restore {
                    slot,
                    from: from.clone().ok_or(CliError::MissingFrom)?,
                }
            }
        }
    };

    if json && matches!(mode_name, ModeName::V2ObjectsV3 | ModeName::Restore) {
        return Err(CliError::JsonNotSupported(mode_name));
    }
    if from.is_some() && mode_name != ModeName::Restore {
        return Err(CliError::FromWithoutRestore(mode_name));
    }

    Ok(Command::Run(Args {
        mode,
        datastore,
        verbose,
        dry_run,
        json,
        no_backup,
        threads,
    }))
}

/// A `--threads` value (or `PKCSCCA_THREADS`): a number from 1 to [`MAX_THREADS`].
pub fn parse_threads(word: &[u8]) -> Result<usize, CliError> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .ok_or_else(|| CliError::InvalidThreads(word.to_vec()))
}

#[cfg(any(test, feature = "testkit"))]
/// Both stages over `args` (which start with `argv[0]`), without `POSIXLY_CORRECT`.
pub fn parse<I, S>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    validate(&parse_low(args, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        parse(std::iter::once("pkcscca").chain(args.iter().copied()))
    }

    fn run(args: &[&str]) -> Args {
        match p(args) {
            Ok(Command::Run(a)) => a,
            other => panic!("{args:?} -> {other:?}"),
        }
    }

    #[test]
    fn keys_mode_with_all_spellings() {
        let want = Mode::Keys {
            slot: 2,
            key_type: KeySelection::One(MkType::Aes),
        };
        for args in [
            &["-m", "keys", "-s", "2", "-k", "aes"][..],
            &["-mkeys", "-s2", "-kaes"],
            &["--slotid", "2", "-k", "aes", "-m", "keys"],
            &["--slotid=2", "-k", "aes", "-m", "keys"],
            &["--slot", "2", "-k", "aes", "-m", "keys"],
            &["--s=2", "-k", "aes", "-m", "keys"],
            &["extra", "-m", "keys", "more", "-s", "2", "-k", "aes"],
        ] {
            assert_eq!(run(args).mode, want, "{args:?}");
        }
    }

    #[test]
    fn help_is_handled_in_argv_order() {
        assert_eq!(p(&["-h", "-m", "foo"]), Ok(Command::Help));
        assert_eq!(
            p(&["-m", "foo", "-h"]),
            Err(CliError::UnknownMode(b"foo".to_vec()))
        );
        assert_eq!(p(&["-hx"]), Ok(Command::Help));
        assert_eq!(
            p(&["-xh"]),
            Err(CliError::Getopt(GetoptError::InvalidShort(b'x')))
        );
        assert_eq!(p(&["-h", "extra"]), Ok(Command::Help));
    }

    #[test]
    fn required_arguments_take_the_next_word_even_if_it_looks_like_an_option() {
        assert_eq!(p(&["-m", "-s"]), Err(CliError::UnknownMode(b"-s".to_vec())));
        assert_eq!(
            p(&["-k"]),
            Err(CliError::Getopt(GetoptError::ShortNeedsArgument(b'k')))
        );
        assert_eq!(
            p(&["-m", "keys", "--slot"]),
            Err(CliError::Getopt(GetoptError::LongNeedsArgument("slotid")))
        );
        // `--slotid=` is an empty (present) argument, which reads as no digits.
        assert_eq!(p(&["-m", "keys", "--slotid="]), Err(CliError::MissingSlot));
    }

    #[test]
    fn bare_verbose_means_info_and_a_level_is_taken_only_from_a_non_option_word() {
        for (args, want) in [
            (&["-v", "-m", "v2objectsv3"][..], Verbosity::Info),
            (&["-m", "v2objectsv3", "--verbose"], Verbosity::Info),
            (&["-m", "v2objectsv3", "--verb", "debug"], Verbosity::Debug),
            (&["-m", "v2objectsv3", "--verbose=warn"], Verbosity::Warn),
            (&["-m", "v2objectsv3", "-vdevel"], Verbosity::Devel),
            (&["-m", "v2objectsv3", "-v", "none"], Verbosity::None),
        ] {
            assert_eq!(run(args).verbose, want, "{args:?}");
        }
        assert_eq!(
            p(&["-m", "keys", "-v", "foo"]),
            Err(CliError::InvalidVerbose(b"foo".to_vec()))
        );
        assert_eq!(
            p(&["-m", "keys", "-v", ""]),
            Err(CliError::InvalidVerbose(Vec::new()))
        );
    }

    #[test]
    fn long_option_errors_follow_glibc() {
        let e = |args: &[&str]| match p(args) {
            Err(CliError::Getopt(g)) => g,
            other => panic!("{other:?}"),
        };
        // Ours: --help and --version (upstream has neither).
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["--version", "-m", "x"]), Ok(Command::Version));
        assert_eq!(
            e(&["--helpx"]),
            GetoptError::UnrecognizedLong(b"helpx".to_vec())
        );
        assert_eq!(
            e(&["--foo=bar"]),
            GetoptError::UnrecognizedLong(b"foo=bar".to_vec())
        );
        assert_eq!(e(&["--json=1"]), GetoptError::LongTakesNoArgument("json"));
        assert_eq!(
            e(&["--dry-run=yes"]),
            GetoptError::LongTakesNoArgument("dry-run")
        );
        assert_eq!(
            e(&["--=x"]),
            GetoptError::AmbiguousLong {
                typed: b"=x".to_vec(),
                candidates: vec!["datastore", "slotid", "verbose"]
            }
        );
        // Upstream abbreviations stay unambiguous despite `--dry-run`.
        assert_eq!(
            run(&["-m", "v2objectsv3", "--d", "/x"]).datastore,
            Some("/x".into())
        );
        assert!(run(&["-m", "v2objectsv3", "--dr"]).dry_run);
    }

    #[test]
    fn double_dash_ends_options_and_posixly_correct_stops_at_first_word() {
        assert_eq!(p(&["--", "-m", "keys"]), Err(CliError::MissingMode));
        let low = parse_low(["pkcscca", "extra", "-m", "foo"], true);
        assert_eq!(validate(&low), Err(CliError::MissingMode));
        assert_eq!(low.positionals.len(), 3);
        let low = parse_low(["pkcscca", "extra", "-m", "foo"], false);
        assert_eq!(validate(&low), Err(CliError::UnknownMode(b"foo".to_vec())));
    }

    #[test]
    fn slot_words_follow_atoi_with_our_bounds() {
        assert_eq!(read_slot_word(b"2"), SlotWord::Valid(2));
        assert_eq!(read_slot_word(b" +2abc"), SlotWord::Valid(2));
        assert_eq!(read_slot_word(b"0"), SlotWord::Valid(0));
        assert_eq!(read_slot_word(b"-0"), SlotWord::Valid(0));
        assert_eq!(read_slot_word(b"1023"), SlotWord::Valid(1023));
        assert_eq!(read_slot_word(b"1024"), SlotWord::Invalid);
        assert_eq!(read_slot_word(b"-1"), SlotWord::Invalid);
        assert_eq!(
            read_slot_word(b"99999999999999999999999"),
            SlotWord::Invalid
        );
        assert_eq!(read_slot_word(b"abc"), SlotWord::NoDigits);
        assert_eq!(read_slot_word(b""), SlotWord::NoDigits);
        assert_eq!(read_slot_word(b"-"), SlotWord::NoDigits);
    }

    #[test]
    fn after_loop_checks_come_in_upstream_order() {
        assert_eq!(p(&[]), Err(CliError::MissingMode));
        assert_eq!(p(&["-m", "keys"]), Err(CliError::MissingSlot));
        assert_eq!(
            p(&["-m", "keys", "-s", "abc", "-k", "aes"]),
            Err(CliError::MissingSlot)
        );
        assert_eq!(p(&["-m", "keys", "-s", "2"]), Err(CliError::MissingKeyType));
        assert_eq!(
            p(&["-m", "keys", "-s", "-1"]),
            Err(CliError::MissingKeyType)
        );
        assert_eq!(
            p(&["-m", "keys", "-s", "-1", "-k", "aes"]),
            Err(CliError::SlotInvalid(b"-1".to_vec()))
        );
        assert_eq!(p(&["-m", "oldrsakeys"]), Err(CliError::MissingSlot));
        assert_eq!(
            run(&["-m", "oldrsakeys", "-s", "0"]).mode,
            Mode::OldRsaKeys { slot: 0 }
        );
        // v2objectsv3 ignores -s and -k values it does not use, but -k is still checked.
        assert_eq!(
            run(&["-m", "v2objectsv3", "-s", "junk"]).mode,
            Mode::V2ObjectsV3
        );
        assert_eq!(
            p(&["-m", "v2objectsv3", "-k", "foo"]),
            Err(CliError::UnknownKeyType(b"foo".to_vec()))
        );
    }

    #[test]
    fn several_modes_resolve_by_upstream_priority() {
        assert_eq!(
            run(&["-m", "keys", "-m", "v2objectsv3"]).mode,
            Mode::V2ObjectsV3
        );
        assert_eq!(
            run(&["-m", "oldrsakeys", "-m", "keys", "-s", "1", "-k", "sym"]).mode,
            Mode::Keys {
                slot: 1,
                key_type: KeySelection::One(MkType::Sym)
            }
        );
    }

    #[test]
    fn json_is_refused_for_v2objectsv3_only() {
        assert_eq!(
            p(&["-m", "v2objectsv3", "--json"]),
            Err(CliError::JsonNotSupported(ModeName::V2ObjectsV3))
        );
        assert!(run(&["-m", "oldrsakeys", "-s", "1", "--json", "--dry-run"]).json);
        let a = run(&["-m", "keys", "-s", "1", "-k", "apka", "--json"]);
        assert!(a.json && !a.dry_run);
        assert_eq!(a.slot(), Some(1));
        assert_eq!(a.key_type(), Some(KeySelection::One(MkType::Apka)));
    }

    #[test]
    fn status_and_restore_take_a_slot_or_a_datastore() {
        assert_eq!(
            run(&["-m", "status", "-s", "2"]).mode,
            Mode::Status {
                slot: Some(2),
                key_type: KeySelection::All
            }
        );
        let a = run(&["-m", "status", "-d", "/x", "-k", "aes", "--json"]);
        assert_eq!(
            a.mode,
            Mode::Status {
                slot: None,
                key_type: KeySelection::One(MkType::Aes)
            }
        );
        assert!(a.json);
        assert_eq!(
            p(&["-m", "status"]),
            Err(CliError::MissingSlotOrDatastore(ModeName::Status))
        );
        assert_eq!(
            p(&["-m", "status", "-s", "x", "-d", "/x"]),
            Err(CliError::MissingSlot)
        );
        assert_eq!(
            run(&["-m", "restore", "-d", "/x", "--from", "/b", "--dry-run"]).mode,
            Mode::Restore {
                slot: None,
                from: "/b".into()
            }
        );
        assert_eq!(
            run(&["-m", "restore", "-s", "3", "--fr=/b"]).mode,
            Mode::Restore {
                slot: Some(3),
                from: "/b".into()
            }
        );
        assert_eq!(p(&["-m", "restore", "-s", "3"]), Err(CliError::MissingFrom));
        assert_eq!(
            p(&["-m", "restore", "--from", "/b"]),
            Err(CliError::MissingSlotOrDatastore(ModeName::Restore))
        );
        assert_eq!(
            p(&["-m", "restore", "-s", "1", "--from", "/b", "--json"]),
            Err(CliError::JsonNotSupported(ModeName::Restore))
        );
        assert_eq!(
            p(&["-m", "keys", "-s", "1", "-k", "aes", "--from", "/b"]),
            Err(CliError::FromWithoutRestore(ModeName::Keys))
        );
        // Upstream's modes come first when several are given.
        assert_eq!(
            run(&["-m", "status", "-m", "oldrsakeys", "-s", "1"]).mode,
            Mode::OldRsaKeys { slot: 1 }
        );
        assert!(!ModeName::Status.writes() && ModeName::Restore.writes());
    }

    #[test]
    fn invalid_short_option_reports_one_raw_byte() {
        let low = parse_low([os(b"pkcscca"), os(b"-\xc3\xa9")], false);
        assert_eq!(
            low.items,
            vec![LowItem::Error(GetoptError::InvalidShort(0xc3))]
        );
        assert_eq!(
            p(&["-:"]),
            Err(CliError::Getopt(GetoptError::InvalidShort(b':')))
        );
        // A lone "-" is a non-option word.
        assert_eq!(p(&["-"]), Err(CliError::MissingMode));
    }

    #[test]
    fn argv0_defaults_when_absent() {
        let low = parse_low(Vec::<OsString>::new(), false);
        assert_eq!(low.progname, OsString::from("pkcscca"));
    }
}
