//! The migration modes: [`Migrator::prepare`] does what needs no PIN, then
//! [`Prepared::run`] runs the mode: `-m keys`, `-m oldrsakeys` and `-m v2objectsv3`
//! through the one pipeline (`pipeline.rs`); our `-m status` (reads only, PINs
//! optional, no lock: `status.rs`) and `-m restore` (copies files back from a backup,
//! no CCA library: `restore.rs`) each by a small flow of its own, which says why.
//!
//! Upstream's `pkcscca -m keys` works online, through pkcsslotd and the PKCS#11 API.
//! Ours works offline on the token's data store, so the steps that upstream gets from
//! the daemon become checks of our own, each with upstream's exit status where the
//! same failure exists (see `man/pkcscca.1`, EXIT STATUS):
//!
//! | upstream step | ours |
//! |---|---|
//! | `C_Initialize` needs pkcsslotd (2) | refuse while pkcsslotd runs, or while a concurrent HSM master key change is pending, or while the token is locked (2) |
//! | `C_OpenSession(slot)` (5) | the slot's token directory from `opencryptoki.conf`, or `-d` (5) |
//! | `verify_pins()` (255) | both PINs verified against the store, with a message (255) |
//! | `C_Login(USER)` (8) | the store's master key from `MK_USER` (8) |
//! | `dlopen(libcsulcca.so)` (255) | the same (255) |
//! | `C_FindObjects` / `C_SetAttributeValue` | objects decrypted from `TOK_OBJ`, rewritten in one atomic batch (8 if that fails) |
//! | exit 0 even if keys failed | exit 3 if any key failed or any object could not be read (`-m v2objectsv3` keeps upstream's 0, see [`v2`]) |

pub mod keys;
pub mod oldrsa;
mod pipeline;
mod pool;
mod restore;
pub mod select;
mod status;
pub mod v2;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::audit;
use crate::cli::{Args, KeySelection, Mode};
use crate::config::{self, SystemPaths};
use crate::exit::Exit;
use crate::host;
use crate::messages::Output;
use crate::pin::{PinKind, Pins};
use crate::pkcs11::AttrType;
use crate::store::lock::TokenLock;
use crate::store::{Format, MasterKey, ObjectName, StoreError, StoredObject, TokenStore};

use crate::cca::Csulcca;
use pipeline::{ModeStep, Setup};

/// Where the token of this run lives, resolved before prompting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The data store directory.
    pub dir: PathBuf,
    /// openCryptoki's per-token lock file.
    pub lock_file: PathBuf,
    /// The token's POSIX shared memory segment name (leading `/`).
    pub shm_name: String,
    /// Group of the lock directory and file when we must create them.
    pub gid: Option<u32>,
}

/// Where openCryptoki's files are: the start of every run.
#[derive(Debug, Clone)]
pub struct Migrator {
    paths: SystemPaths,
}

/// A run that passed every check needing no PIN, holding the token's lock (not
/// `-m status`) and the CCA library (not `-m restore`).
pub struct Prepared {
    paths: SystemPaths,
    target: Target,
    args: Args,
    work: Work,
    /// openCryptoki's token lock, taken before the prompts and held to the end.
    _lock: Option<TokenLock>,
}

/// What a prepared run does.
enum Work {
    /// A mode of the pipeline, with `libcsulcca.so` opened with its verbs.
    Pipeline {
        mode: Box<dyn ModeStep>,
        lib: Csulcca,
    },
    /// `-m status`, with `libcsulcca.so` opened with CSUACFQ.
    Status {
        selection: KeySelection,
        lib: Csulcca,
    },
    /// `-m restore`, checked against its backup.
    Restore(Box<restore::Restore>),
}

impl Migrator {
    /// A runner using openCryptoki's system paths (`PKCSCCA_OPENCRYPTOKI_CONF` may
    /// relocate the configuration file).
    pub fn from_env() -> Migrator {
        Migrator::with_paths(SystemPaths::from_env())
    }

    /// A runner using `paths` (tests point them at temporary directories).
    pub fn with_paths(paths: SystemPaths) -> Migrator {
        Migrator { paths }
    }

    /// Checks that need no PIN, done before prompting: the slot is configured, the
    /// token directory exists, pkcsslotd is not running, the token's lock is ours, and
    /// the CCA library loads with the verbs of the mode (for `-m status` only the
    /// store and the library; for `-m restore` also the backup, and no library). On
    /// failure the reason is printed through `out` and the exit status returned.
    /// `record` learns the store.
    pub fn prepare(
        &self,
        args: &Args,
        out: &mut Output<'_>,
        record: &mut audit::Record,
    ) -> Result<Prepared, Exit> {
        let target = resolve_target(&self.paths, args, out)?;
        record.set_store(&target.dir);
        let prepared = |work, lock| Prepared {
            paths: self.paths.clone(),
            target: target.clone(),
            args: args.clone(),
            work,
            _lock: lock,
        };
        if let Mode::Status { key_type, .. } = args.mode {
            // Reads only: no lock, no check of pkcsslotd or of a pending HSM master
            // key change.
            probe(&target, out)?;
            let lib = pipeline::open_verbs(&crate::cca::status_verbs(), out, |d, out| {
                out.missing_cca_symbols(Csulcca::LIBRARY, d)
            })?;
            let work = Work::Status {
                selection: key_type,
                lib,
            };
            return Ok(prepared(work, None));
        }
        match (preflight(&self.paths, &target, out), &args.mode) {
            // Upstream's v2objectsv3 fails on an unusable store with -1 (255).
            (Err(Exit::NoToken), Mode::V2ObjectsV3) => return Err(Exit::Failed),
            (r, _) => r?,
        }
        let lock = take_lock(&target, out)?;
        let mode: Box<dyn ModeStep> = match &args.mode {
            Mode::Keys { key_type, .. } => {
                Box::new(keys::KeysMode::new(*key_type, threads(args)))
            }
            Mode::OldRsaKeys { .. } => Box::<oldrsa::OldRsaMode>::default(),
            Mode::V2ObjectsV3 => Box::<v2::V2Mode>::default(),
            Mode::Restore { from, .. } => {
                let r = restore::prepare(&target, from, out)?;
                return Ok(prepared(Work::Restore(Box::new(r)), Some(lock)));
            }
            Mode::Status { .. } => return Err(Exit::Failed),
        };
        let lib = pipeline::open_library(mode.as_ref(), out)?;
        Ok(prepared(Work::Pipeline { mode, lib }, Some(lock)))
    }
}

impl Prepared {
    /// Whether the run may go on without PINs (`-m status`: public objects only).
    pub fn pins_optional(&self) -> bool {
        matches!(self.work, Work::Status { .. })
    }

    /// Verifies the PINs and performs the mode; returns the exit status. The PINs are
    /// wiped as soon as they are verified. `pins` may be `None` only when
    /// [`Prepared::pins_optional`]. `record` gets what the run did.
    pub fn run(self, pins: Option<Pins>, out: &mut Output<'_>, record: &mut audit::Record) -> Exit {
        let setup = Setup {
            paths: &self.paths,
            target: &self.target,
            dry_run: self.args.dry_run,
            json: self.args.json,
            backup: !self.args.no_backup,
        };
        match (self.work, pins) {
            (Work::Status { selection, lib }, pins) => {
                status::run(&self.target, selection, self.args.json, &lib, pins, out)
            }
            (Work::Pipeline { mut mode, lib }, Some(pins)) => {
                pipeline::run(mode.as_mut(), &setup, &lib, pins, out, record)
            }
            (Work::Restore(r), Some(pins)) => restore::run(
                &self.paths,
                &self.target,
                *r,
                pins,
                (self.args.dry_run, self.args.no_backup),
                out,
                record,
            ),
            (_, None) => Exit::PinRejected,
        }
    }
}

/// How many verbs a run may have in flight at once.
fn threads(args: &Args) -> NonZeroUsize {
    args.threads
        .and_then(NonZeroUsize::new)
        .or(NonZeroUsize::new(pool::DEFAULT_THREADS))
        .unwrap_or(NonZeroUsize::MIN)
}

/// Resolves the data store of the run: `-d DIR` is the store itself (the slot need
/// not be configured then); otherwise the slot's stanza in `opencryptoki.conf`.
/// `-m v2objectsv3` takes no slot: its store is `-d DIR`, by default upstream's
/// `/var/lib/opencryptoki/ccatok`.
fn resolve_target(paths: &SystemPaths, args: &Args, out: &mut Output<'_>) -> Result<Target, Exit> {
    let slot = args.slot().unwrap_or(0);
    // `-m status` and `-m restore` given only `-d` have no slot to look up.
    let located = match args.mode {
        Mode::V2ObjectsV3 => None,
        _ => args
            .slot()
            .and_then(|s| u32::try_from(s).ok())
            .map(|s| config::locate_token(paths, s)),
    };
    let group =
        |usergroup: Option<&str>| host::group_gid(usergroup.unwrap_or(host::DEFAULT_TOKEN_GROUP));
    let datastore = match (&args.datastore, &args.mode) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Mode::V2ObjectsV3) => Some(paths.data_root.join("ccatok")),
        (None, _) => None,
    };
    if let Some(given) = &datastore {
        // openCryptoki names the token's shared memory segment after the absolute
        // data store path, and a configured slot's directory is absolute too:
        // compare and derive from `-d` made absolute (symlinks are kept as typed).
        let dir: &PathBuf = &std::path::absolute(given)
            .unwrap_or_else(|_| given.clone())
            .components()
            .collect();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ccatok".into());
        let (lock_file, gid) = match located {
            Some(Ok(loc)) if loc.dir == *dir => {
                let gid = group(loc.usergroup.as_deref());
                (loc.lock_file, gid)
            }
            _ => (
                paths.lock_root.join(&name).join(format!("LCK..{name}")),
                group(None),
            ),
        };
        return Ok(Target {
            dir: dir.clone(),
            lock_file,
            shm_name: config::shm_name(dir),
            gid,
        });
    }
    match located {
        Some(Ok(loc)) if config::stdll_subdir(&loc.stdll).is_some_and(|d| d != "ccatok") => {
            out.error(format_args!(
                "slot {slot} is not a CCA token (stdll {}); give the CCA token's slot",
                loc.stdll
            ));
            out.slot_id_invalid();
            Err(Exit::NoToken)
        }
        Some(Ok(loc)) => {
            let gid = group(loc.usergroup.as_deref());
            Ok(Target {
                dir: loc.dir,
                lock_file: loc.lock_file,
                shm_name: loc.shm_name,
                gid,
            })
        }
        Some(Err(config::LocateError::Resolve(config::ResolveError::NoSuchSlot {
            file, ..
        }))) => {
            out.error(format_args!(
                "{file}: slot {slot} is not configured (give the token directory with -d)"
            ));
            out.slot_id_invalid();
            Err(Exit::NoToken)
        }
        Some(Err(e @ config::LocateError::Resolve(_))) => {
            out.error(e);
            out.slot_id_invalid();
            Err(Exit::NoToken)
        }
        Some(Err(e)) => {
            out.error(e);
            Err(Exit::NotReady)
        }
        None => {
            out.slot_id_invalid();
            Err(Exit::NoToken)
        }
    }
}

/// Checks that need no PIN: the store exists, nothing else is using it, and no
/// concurrent HSM master key change is pending.
fn preflight(paths: &SystemPaths, target: &Target, out: &mut Output<'_>) -> Result<(), Exit> {
    probe(target, out)?;
    if let Some(pid) = host::pkcsslotd_running(paths) {
        out.error(format_args!(
            "pkcsslotd is running (pid {pid}): stop it and every openCryptoki application \
             before migrating keys offline"
        ));
        return Err(Exit::NotReady);
    }
    let mk_change = paths.data_root.join("HSM_MK_CHANGE");
    if let Ok(mut entries) = std::fs::read_dir(&mk_change) {
        if let Some(Ok(e)) = entries.next() {
            out.error(format_args!(
                "{}: a concurrent HSM master key change is pending; finish or cancel it \
                 with pkcshsm_mk_change first",
                e.path().display()
            ));
            return Err(Exit::NotReady);
        }
    }
    for p in host::processes_using_opencryptoki(paths) {
        out.error(format_args!(
            "warning: process {} ({}) has openCryptoki loaded; stop it before migrating",
            p.pid, p.name
        ));
    }
    Ok(())
}

/// Refuses a target without a data store (no `NVTOK.DAT`, or not readable).
fn probe(target: &Target, out: &mut Output<'_>) -> Result<(), Exit> {
    match crate::store::probe_store(&target.dir) {
        Ok(()) => Ok(()),
        Err(StoreError::Missing { .. }) => {
            out.error(format_args!(
                "{}: no token data store here (NVTOK.DAT not found)",
                target.dir.display()
            ));
            Err(Exit::NoToken)
        }
        // Permission denied, a FIFO or link in its place, ...: say which.
        Err(e) => {
            out.error(e);
            Err(Exit::NoToken)
        }
    }
}

/// Checks both PINs (`-m keys`, `-m oldrsakeys`); returns the store's master key.
fn login(store: &TokenStore, pins: &Pins, out: &mut Output<'_>) -> Result<MasterKey, Exit> {
    match store.login_so(pins.so.as_bytes()) {
        Ok(()) => {}
        Err(StoreError::WrongSoPin { .. }) => {
            out.pin_incorrect(PinKind::So);
            return Err(Exit::PinRejected);
        }
        Err(e) => {
            out.error(e);
            return Err(Exit::PinRejected);
        }
    }
    match store.login_user(pins.user.as_bytes()) {
        Ok(mk) => Ok(mk),
        // Upstream 3.27 checks the USER PIN of a 3.12+ store only at C_Login, after
        // C_Initialize: its line and exit 8 follow ours.
        Err(StoreError::WrongUserPin { .. }) if store.format() != Format::Old => {
            out.pin_incorrect(PinKind::User);
            out.pkcs11_initialized();
            out.user_login_failed();
            Err(Exit::LoginFailed)
        }
        Err(StoreError::WrongUserPin { .. }) => {
            out.pin_incorrect(PinKind::User);
            Err(Exit::PinRejected)
        }
        Err(e) => {
            out.error(e);
            Err(Exit::LoginFailed)
        }
    }
}

/// Takes openCryptoki's per-token lock (held until the returned guard drops): before
/// the PIN prompts, so that a busy token is reported at once, and so that no
/// openCryptoki process can start on the token while the PINs are typed.
fn take_lock(target: &Target, out: &mut Output<'_>) -> Result<TokenLock, Exit> {
    match TokenLock::try_acquire(&target.lock_file, target.gid) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => {
            out.error(format_args!(
                "{}: the token is locked by another process; stop every openCryptoki \
                 application first",
                target.lock_file.display()
            ));
            Err(Exit::NotReady)
        }
        Err(e) => {
            out.error(e);
            Err(Exit::NotReady)
        }
    }
}

/// The key objects of `-m oldrsakeys`: [`load_keys_with`] on one thread, with no work.
fn load_keys(
    store: &TokenStore,
    mk: &MasterKey,
    out: &mut Output<'_>,
) -> Result<(Vec<StoredObject>, usize), Exit> {
    let (loaded, unreadable) = load_keys_with(store, mk, NonZeroUsize::MIN, |_| (), None, out)?;
    Ok((loaded.into_iter().map(|(o, ())| o).collect(), unreadable))
}

/// More objects than this show a progress line on a terminal while they load.
const PROGRESS_ABOVE: usize = 200;

/// The key objects of a run: every object `OBJ.IDX` lists, loaded on up to `threads`
/// threads, each given to `work` as soon as it is loaded (the keys mode sends its keys
/// to the card there, so the card's latency overlaps with reading and decrypting the
/// store), then put in find order: private objects first, the order a USER session's
/// `C_FindObjects` returns them in, each in `OBJ.IDX` order.
///
/// An object that cannot be read or decrypted is reported (after the loading, in index
/// order), left untouched and counted; a link, FIFO, device or directory in an
/// object's place stops the run (tampering, not damage); so does a store where a
/// concurrent HSM master key change left `CKA_IBM_OPAQUE_REENC` behind. With
/// `progress`, a line `<progress>: N of M objects` shows on a terminal for big stores.
fn load_keys_with<W: Send>(
    store: &TokenStore,
    mk: &MasterKey,
    threads: NonZeroUsize,
    work: impl Fn(&StoredObject) -> W + Sync,
    progress: Option<&str>,
    out: &mut Output<'_>,
) -> Result<(Vec<(StoredObject, W)>, usize), Exit> {
    let (loaded, unreadable) = load_with(store, mk, threads, work, progress, out)?;
    if let Some((o, _)) = loaded
        .iter()
        .find(|(o, _)| o.template.get(AttrType::IBM_OPAQUE_REENC).is_some())
    {
        out.error(format_args!(
            "{}: holds CKA_IBM_OPAQUE_REENC: a concurrent HSM master key change is in \
             progress; finish or cancel it with pkcshsm_mk_change first",
            store.object_path(o.name).display()
        ));
        return Err(Exit::NotReady);
    }
    Ok((loaded, unreadable))
}

/// Every object `OBJ.IDX` lists, in find order, on one thread (`-m status`), reported
/// as [`load_keys_with`] reports them, without its refusal of `CKA_IBM_OPAQUE_REENC`.
fn load_in_find_order(
    store: &TokenStore,
    mk: &MasterKey,
    out: &mut Output<'_>,
) -> Result<(Vec<StoredObject>, usize), Exit> {
    let (loaded, unreadable) = load_with(store, mk, NonZeroUsize::MIN, |_| (), None, out)?;
    Ok((loaded.into_iter().map(|(o, ())| o).collect(), unreadable))
}

/// [`load_keys_with`] without its refusal of `CKA_IBM_OPAQUE_REENC`.
fn load_with<W: Send>(
    store: &TokenStore,
    mk: &MasterKey,
    threads: NonZeroUsize,
    work: impl Fn(&StoredObject) -> W + Sync,
    progress: Option<&str>,
    out: &mut Output<'_>,
) -> Result<(Vec<(StoredObject, W)>, usize), Exit> {
    let names = index_names(store, out)?;
    let total = names.len();
    let shown = progress.filter(|_| total > PROGRESS_ABOVE);
    let results = pool::map_in_order(
        &names,
        threads,
        |&name| {
            store
                .load_object(name, Some(mk))
                .map(|o| {
                    let w = work(&o);
                    (o, w)
                })
        },
        |done| {
            if let Some(what) = shown {
                out.progress(format_args!("{what}: {done} of {total} objects"));
            }
        },
    );
    if shown.is_some() {
        out.progress_done();
    }
    let mut loaded = Vec::with_capacity(results.len());
    let mut unreadable = 0usize;
    for r in results {
        match r {
            Ok(pair) => loaded.push(pair),
            Err(e) if e.is_wrong_file_type() => {
                out.error(e);
                return Err(Exit::StoreUnreadable);
            }
            Err(e) => {
                out.error(format_args!("{e} (object left untouched)"));
                unreadable += 1;
            }
        }
    }
    loaded.sort_by_key(|(o, _)| !o.private);
    Ok((loaded, unreadable))
}

/// A commit of `-m keys` or `-m oldrsakeys` that failed: upstream's `Error replacing
/// old key with migrated key.` and exit 8.
fn replace_failed(e: StoreError, out: &mut Output<'_>) -> Exit {
    out.error("Error replacing old key with migrated key.");
    out.error(e);
    Exit::WriteFailed
}

/// The objects of `changed` (indices into `objects`), in that order, each once.
fn take_changed(objects: Vec<StoredObject>, changed: &[usize]) -> Vec<StoredObject> {
    let mut slots: Vec<Option<StoredObject>> = objects.into_iter().map(Some).collect();
    changed
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// The object names `OBJ.IDX` lists (none when it is missing or empty), warning about
/// repeated lines.
fn index_names(store: &TokenStore, out: &mut Output<'_>) -> Result<Vec<ObjectName>, Exit> {
    match store.index() {
        Ok(index) => {
            for line in index.duplicate_lines {
                out.error(format_args!(
                    "warning: {}: line {line}: repeated object name skipped",
                    store.index_path().display()
                ));
            }
            Ok(index.names)
        }
        Err(StoreError::MissingIndex { .. } | StoreError::EmptyIndex { .. }) => Ok(Vec::new()),
        Err(e) => {
            out.error(e);
            Err(Exit::StoreUnreadable)
        }
    }
}

/// One examined key in a `--json` document.
fn key_json(r: &keys::KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "object": r.object,
        "class": r.class.map(|c| c.name().map_or_else(|| c.to_string(), str::to_string)),
        "key_type": r.key_type.name().map_or_else(|| r.key_type.to_string(), str::to_string),
        "label": String::from_utf8_lossy(&r.label),
        "private": r.private,
        "token": r.token,
        "mkvp_before": r.mkvp_before,
        "mkvp_after": r.mkvp_after,
        "status": r.status.name(),
        "reason": r.reason,
    })
}

fn display_path(p: &Path) -> String {
    p.display().to_string()
}
