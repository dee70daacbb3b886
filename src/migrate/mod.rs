//! The migration modes, plugged into [`crate::app`] through [`ModeRunner`].
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
pub mod select;
pub mod v2;

use std::path::{Path, PathBuf};

use crate::app::{ModeRunner, Pins};
use crate::cca::token::MkType;
use crate::cca::Csulcca;
use crate::cli::{Args, KeyType as MkArg, Mode};
use crate::config::{self, SystemPaths};
use crate::exit::Exit;
use crate::messages::Output;
use crate::pin::PinKind;
use crate::pkcs11::AttrType;
use crate::store::lock::{self, TokenLock};
use crate::store::{atomic, Format, MasterKey, StoreError, StoredObject, TokenStore};

use keys::{Card, KeyStatus, Tally};

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

/// The runner of the migration modes.
#[derive(Debug)]
pub struct Migrator {
    paths: SystemPaths,
    target: Option<Target>,
    /// openCryptoki's token lock, taken before the prompts and held to the end.
    lock: Option<TokenLock>,
}

impl Migrator {
    /// A runner using openCryptoki's system paths (`PKCSCCA_OPENCRYPTOKI_CONF` may
    /// relocate the configuration file).
    pub fn from_env() -> Migrator {
        Migrator::with_paths(SystemPaths::from_env())
    }

    /// A runner using `paths` (tests point them at temporary directories).
    pub fn with_paths(paths: SystemPaths) -> Migrator {
        Migrator {
            paths,
            target: None,
            lock: None,
        }
    }
}

/// The master key type a `-k` value re-enciphers to.
pub fn mk_type(k: MkArg) -> MkType {
    match k {
        MkArg::Aes => MkType::Aes,
        MkArg::Apka => MkType::Apka,
        MkArg::Asym => MkType::Asym,
        MkArg::Sym => MkType::Sym,
    }
}

/// Resolves the data store of the run: `-d DIR` is the store itself (the slot need
/// not be configured then); otherwise the slot's stanza in `opencryptoki.conf`.
/// `-m v2objectsv3` takes no slot: its store is `-d DIR`, by default upstream's
/// `/var/lib/opencryptoki/ccatok`.
fn resolve_target(paths: &SystemPaths, args: &Args, out: &mut Output<'_>) -> Result<Target, Exit> {
    let slot = args.slot().unwrap_or(0);
    let located = match args.mode {
        Mode::V2ObjectsV3 => None,
        _ => u32::try_from(slot)
            .ok()
            .map(|s| config::locate_token(paths, s)),
    };
    let group =
        |usergroup: Option<&str>| lock::group_gid(&paths.group_file, usergroup.unwrap_or("pkcs11"));
    let datastore = match (&args.datastore, args.mode) {
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
            Err(Exit::OpenSession)
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
            Err(Exit::OpenSession)
        }
        Some(Err(e @ config::LocateError::Resolve(_))) => {
            out.error(e);
            out.slot_id_invalid();
            Err(Exit::OpenSession)
        }
        Some(Err(e)) => {
            out.error(e);
            Err(Exit::Pkcs11Init)
        }
        None => {
            out.slot_id_invalid();
            Err(Exit::OpenSession)
        }
    }
}

/// Checks that need no PIN: the store exists, nothing else is using it, and no
/// concurrent HSM master key change is pending.
fn preflight(paths: &SystemPaths, target: &Target, out: &mut Output<'_>) -> Result<(), Exit> {
    let nvtok = target.dir.join("NVTOK.DAT");
    if !nvtok.is_file() {
        out.error(format_args!(
            "{}: no token data store here (NVTOK.DAT not found)",
            target.dir.display()
        ));
        return Err(Exit::OpenSession);
    }
    if let Some(pid) = lock::pkcsslotd_running(paths) {
        out.error(format_args!(
            "pkcsslotd is running (pid {pid}): stop it and every openCryptoki application \
             before migrating keys offline"
        ));
        return Err(Exit::Pkcs11Init);
    }
    let mk_change = paths.data_root.join("HSM_MK_CHANGE");
    if let Ok(mut entries) = std::fs::read_dir(&mk_change) {
        if let Some(Ok(e)) = entries.next() {
            out.error(format_args!(
                "{}: a concurrent HSM master key change is pending; finish or cancel it \
                 with pkcshsm_mk_change first",
                e.path().display()
            ));
            return Err(Exit::Pkcs11Init);
        }
    }
    for p in lock::processes_using_opencryptoki(paths) {
        out.error(format_args!(
            "warning: process {} ({}) has openCryptoki loaded; stop it before migrating",
            p.pid, p.name
        ));
    }
    Ok(())
}

impl ModeRunner for Migrator {
    fn prepare(&mut self, args: &Args, out: &mut Output<'_>) -> Result<(), Exit> {
        let target = resolve_target(&self.paths, args, out)?;
        match (preflight(&self.paths, &target, out), args.mode) {
            // Upstream's v2objectsv3 fails on an unusable store with -1 (255).
            (Err(Exit::OpenSession), Mode::V2ObjectsV3) => return Err(Exit::Failure),
            (r, _) => r?,
        }
        self.lock = Some(take_lock(&target, out)?);
        self.target = Some(target);
        Ok(())
    }

    fn run(&mut self, args: &Args, pins: &Pins, out: &mut Output<'_>) -> Exit {
        let Some(target) = self.target.clone() else {
            // `app` calls `prepare` first and stops when it fails.
            out.error("internal error: no token data store was resolved");
            return Exit::Failure;
        };
        match args.mode {
            Mode::Keys { key_type, .. } => {
                run_keys(&self.paths, &target, key_type, args, pins, out)
            }
            Mode::OldRsaKeys { .. } => oldrsa::run(&self.paths, &target, args, pins, out),
            Mode::V2ObjectsV3 => v2::run(&self.paths, &target, args, pins, out),
        }
    }
}

/// Opens the store and checks both PINs; returns the store and its master key.
fn open_and_login(
    target: &Target,
    pins: &Pins,
    out: &mut Output<'_>,
) -> Result<(TokenStore, MasterKey), Exit> {
    let store = TokenStore::open(&target.dir).map_err(|e| {
        out.error(e);
        Exit::OpenSession
    })?;
    match store.login_so(pins.so.as_bytes()) {
        Ok(()) => {}
        Err(StoreError::WrongSoPin { .. }) => {
            out.pin_incorrect(PinKind::So);
            return Err(Exit::Failure);
        }
        Err(e) => {
            out.error(e);
            return Err(Exit::Failure);
        }
    }
    match store.login_user(pins.user.as_bytes()) {
        Ok(mk) => Ok((store, mk)),
        // Upstream 3.27 checks the USER PIN of a 3.12+ store only at C_Login, after
        // C_Initialize: its line and exit 8 follow ours.
        Err(StoreError::WrongUserPin { .. }) if store.format() != Format::Old => {
            out.pin_incorrect(PinKind::User);
            out.pkcs11_initialized();
            out.user_login_failed();
            Err(Exit::Login)
        }
        Err(StoreError::WrongUserPin { .. }) => {
            out.pin_incorrect(PinKind::User);
            Err(Exit::Failure)
        }
        Err(e) => {
            out.error(e);
            Err(Exit::Login)
        }
    }
}

/// `-m keys`, start to end.
fn run_keys(
    paths: &SystemPaths,
    target: &Target,
    k: MkArg,
    args: &Args,
    pins: &Pins,
    out: &mut Output<'_>,
) -> Exit {
    let (store, mk) = match open_and_login(target, pins, out) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let lib = match open_library(crate::cca::keys_verbs(mk_type(k)), out) {
        Ok(lib) => lib,
        Err(e) => return e,
    };
    out.pkcs11_initialized();
    let mk_type = mk_type(k);
    let status = match lib.mk_status(mk_type) {
        Ok(s) if s.current.state != 2 => {
            out.error(format_args!(
                "the CCA adapter has no valid CURRENT {mk_type} master key; load and set it \
                 before migrating (nothing was changed)"
            ));
            return Exit::Pkcs11Init;
        }
        Ok(s) => Some(s),
        Err(e) => {
            out.verbose_notice(format_args!(
                "Cannot read the master key registers ({e}); each key goes to the card"
            ));
            None
        }
    };
    let card = Card {
        lib: &lib,
        mk_type,
        status,
    };

    if let Err(e) = clean_temps(&store, args.dry_run, out) {
        return e;
    }
    let (mut objects, unreadable) = match load_keys(&store, &mk, out) {
        Ok(x) => x,
        Err(exit) => return exit,
    };

    let kinds = select::searches(k);
    let (tally, changed) = keys::migrate(&card, &kinds, &mut objects, out);

    let written = match write_keys(paths, target, &store, &mk, &objects, &changed, args, out) {
        Ok(n) => n,
        Err(e) => return e,
    };

    if args.json {
        out.json_document(&json_document(args, k, target, &tally, written, unreadable));
    } else {
        out.keys_summary(&tally.migrated, &tally.failed);
        if args.dry_run {
            dry_run_note(changed.len(), out);
        }
    }
    if tally.count(KeyStatus::Failed) > 0 || unreadable > 0 {
        Exit::KeysFailed
    } else {
        Exit::Success
    }
}

/// Loads `libcsulcca.so`; a failure is upstream's `dlopen(...) failed` and exit 255.
fn open_library(verbs: &[crate::cca::Verb], out: &mut Output<'_>) -> Result<Csulcca, Exit> {
    Csulcca::open(verbs).map_err(|e| {
        // The loader's own text already names the library: print it alone after
        // upstream's `dlopen(libcsulcca.so) failed: `.
        match e {
            crate::cca::LoadError::Open { detail, .. } => {
                out.dlopen_failed(Csulcca::LIBRARY, detail)
            }
            e => out.dlopen_failed(Csulcca::LIBRARY, e),
        }
        Exit::Failure
    })
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
            Err(Exit::Pkcs11Init)
        }
        Err(e) => {
            out.error(e);
            Err(Exit::Pkcs11Init)
        }
    }
}

/// Unless `dry_run`, removes the temporary files an interrupted run left in
/// `TOK_OBJ/` (under the token lock, before the objects are read).
fn clean_temps(store: &TokenStore, dry_run: bool, out: &mut Output<'_>) -> Result<(), Exit> {
    if dry_run {
        return Ok(());
    }
    match atomic::remove_stale_temps(&store.tok_obj_dir()) {
        Ok(removed) => {
            for p in removed {
                out.verbose_notice(format_args!(
                    "Removed {} left by an interrupted run",
                    p.display()
                ));
            }
            Ok(())
        }
        Err(e) => {
            out.error(e);
            Err(Exit::Login)
        }
    }
}

/// The key objects of `-m keys` / `-m oldrsakeys`: every object in find order (see
/// [`load_in_find_order`]), refusing a store where a concurrent HSM master key change
/// left `CKA_IBM_OPAQUE_REENC` behind.
fn load_keys(
    store: &TokenStore,
    mk: &MasterKey,
    out: &mut Output<'_>,
) -> Result<(Vec<StoredObject>, usize), Exit> {
    let (objects, unreadable) = load_in_find_order(store, mk, out)?;
    if let Some(o) = objects
        .iter()
        .find(|o| o.template.get(AttrType::IBM_OPAQUE_REENC).is_some())
    {
        out.error(format_args!(
            "{}: holds CKA_IBM_OPAQUE_REENC: a concurrent HSM master key change is in \
             progress; finish or cancel it with pkcshsm_mk_change first",
            store.object_path(o.name).display()
        ));
        return Err(Exit::Pkcs11Init);
    }
    Ok((objects, unreadable))
}

/// Rewrites `objects[changed]` in one atomic batch (unless `--dry-run`) and removes
/// the token's shared memory; returns how many files were written. A failure is
/// upstream's `Error replacing old key with migrated key.` and exit 8.
#[allow(clippy::too_many_arguments)]
fn write_keys(
    paths: &SystemPaths,
    target: &Target,
    store: &TokenStore,
    mk: &MasterKey,
    objects: &[StoredObject],
    changed: &[usize],
    args: &Args,
    out: &mut Output<'_>,
) -> Result<usize, Exit> {
    let batch: Vec<&StoredObject> = changed.iter().filter_map(|&i| objects.get(i)).collect();
    commit(paths, target, store, mk, &batch, args.dry_run, out).map_err(|e| {
        out.error("Error replacing old key with migrated key.");
        out.error(e);
        Exit::Login
    })
}

/// Commits `batch` atomically and removes the token's shared memory segment (also when
/// the batch is empty); nothing with `dry_run`. Returns how many files were written.
fn commit(
    paths: &SystemPaths,
    target: &Target,
    store: &TokenStore,
    mk: &MasterKey,
    batch: &[&StoredObject],
    dry_run: bool,
    out: &mut Output<'_>,
) -> Result<usize, StoreError> {
    if dry_run {
        return Ok(0);
    }
    let written = if batch.is_empty() {
        0
    } else {
        match store.commit(mk, batch) {
            Ok(report) => report.written.len(),
            Err(e) => {
                // Some files may have been renamed already (a partial commit).
                remove_shm(paths, &target.shm_name, out);
                return Err(e);
            }
        }
    };
    // Also when this run changed nothing: an earlier run may have been killed after
    // its renames and before it could remove the segment.
    remove_shm(paths, &target.shm_name, out);
    Ok(written)
}

/// The `--dry-run` note printed after the summary.
fn dry_run_note(would_write: usize, out: &mut Output<'_>) {
    out.notice(format_args!(
        "Dry run: {would_write} object(s) would be rewritten; nothing was written."
    ));
}

/// Loads every object listed in `OBJ.IDX`, private ones first (the order a USER
/// session's `C_FindObjects` returns them in). An object that cannot be read or
/// decrypted is reported, left untouched and counted; the rest go on.
fn load_in_find_order(
    store: &TokenStore,
    mk: &MasterKey,
    out: &mut Output<'_>,
) -> Result<(Vec<StoredObject>, usize), Exit> {
    let names = match store.read_index() {
        Ok(n) => n,
        Err(StoreError::MissingIndex { .. } | StoreError::EmptyIndex { .. }) => Vec::new(),
        Err(e) => {
            out.error(e);
            return Err(Exit::Login);
        }
    };
    let mut objects = Vec::with_capacity(names.len());
    let mut unreadable = 0usize;
    for name in names {
        match store.load_object(name, Some(mk)) {
            Ok(o) => objects.push(o),
            Err(e) => {
                out.error(format_args!("{e} (object left untouched)"));
                unreadable += 1;
            }
        }
    }
    objects.sort_by_key(|o| !o.private);
    Ok((objects, unreadable))
}

/// Removes the token's shared memory segment so the next openCryptoki process rebuilds
/// its object list from disk (what `pkcstok_migrate` does, datastore.md §9.6).
fn remove_shm(paths: &SystemPaths, shm_name: &str, out: &mut Output<'_>) {
    let file = paths.shm_root.join(shm_name.trim_start_matches('/'));
    match std::fs::remove_file(&file) {
        Ok(()) => out.verbose_notice(format_args!("Removed {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out.error(format_args!(
            "warning: {}: cannot remove the token's shared memory: {e}",
            file.display()
        )),
    }
}

fn json_document(
    args: &Args,
    k: MkArg,
    target: &Target,
    tally: &Tally,
    written: usize,
    unreadable: usize,
) -> String {
    use serde_json::{json, Map, Value};
    let counts = |c: &crate::messages::KeyCounts| -> Value {
        let mut m = Map::new();
        for (name, n) in c.entries() {
            if n > 0 {
                m.insert(name.to_string(), json!(n));
            }
        }
        Value::Object(m)
    };
    let keys: Vec<Value> = tally.keys.iter().map(key_json).collect();
    let doc = json!({
        "mode": "keys",
        "mk_type": k.name(),
        "datastore": display_path(&target.dir),
        "dry_run": args.dry_run,
        "keys": keys,
        "summary": {
            "migrated": tally.count(KeyStatus::Migrated),
            "current": tally.count(KeyStatus::Current),
            "skipped": tally.count(KeyStatus::Skipped),
            "failed": tally.count(KeyStatus::Failed),
            "unreadable_objects": unreadable,
            "objects_written": written,
            "upstream_migrated": counts(&tally.migrated),
            "upstream_failed": counts(&tally.failed),
        },
    });
    doc.to_string()
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
