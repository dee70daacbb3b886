//! The one flow every mode runs, once the PINs are read:
//!
//! 1. open the data store (`NVTOK.DAT`, the format);
//! 2. the mode's checks of the opened store ([`ModeStep::check_store`]);
//! 3. verify both PINs and open the store's master key ([`ModeStep::login`]); the PINs
//!    are wiped right after;
//! 4. the mode's start ([`ModeStep::begin`]: its first lines, the card's registers);
//! 5. remove the temporary files an interrupted run left (not with `--dry-run`);
//! 6. read and convert the objects ([`ModeStep::convert`]);
//! 7. commit the changed objects in one atomic batch and remove the token's shared
//!    memory (nothing with `--dry-run`);
//! 8. the mode's report and exit status ([`ModeStep::report`]);
//! 9. the audit record of the run, also when a step ended it early
//!    ([`ModeStep::audit`], `crate::audit`).
//!
//! `libcsulcca.so` was loaded before the PIN prompts ([`open_library`]), with only the
//! verbs of the mode resolved.
//!
//! A mode supplies only the steps that are its own; everything else, and the order, is
//! here.

use crate::cca::{Csulcca, LoadError, ModeVerbs};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::audit;
use crate::config::SystemPaths;
use crate::exit::Exit;
use crate::messages::Output;
use crate::pin::Pins;
use crate::store::{backup, MasterKey, Staging, StoreError, StoredObject, TokenStore};

use super::Target;

/// Where a run works and how.
pub(crate) struct Setup<'a> {
    /// openCryptoki's system paths (for the shared memory segment).
    pub paths: &'a SystemPaths,
    /// The store of this run.
    pub target: &'a Target,
    /// `--dry-run`: nothing is written.
    pub dry_run: bool,
    /// `--json`: the report is one JSON document on stdout.
    pub json: bool,
    /// Back the store up before the commit renames anything (not `--no-backup`).
    pub backup: bool,
}

/// What the commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Object files to rewrite.
    pub rewrite: usize,
    /// Object files rewritten (0 with `--dry-run`).
    pub written: usize,
    /// The backup made before the renames, if any.
    pub backup: Option<PathBuf>,
}

/// What a mode's conversion leaves to commit.
pub(crate) enum Batch<'a> {
    /// The objects to rewrite (with `--dry-run`: that would be rewritten).
    Objects(Vec<StoredObject>),
    /// New files the mode already wrote next to their objects while it worked (the
    /// keys mode writes them while the card works on other keys); only the renames
    /// are left.
    Staged(Staging<'a>),
}

impl Batch<'_> {
    /// How many object files the commit replaces.
    fn len(&self) -> usize {
        match self {
            Batch::Objects(v) => v.len(),
            Batch::Staged(s) => s.len(),
        }
    }
}

/// What the steps after the login work with.
pub(crate) struct Context<'a> {
    /// How the run was asked for.
    pub setup: &'a Setup<'a>,
    /// The opened store.
    pub store: &'a TokenStore,
    /// The key that opens the store's private objects.
    pub mk: &'a MasterKey,
    /// The CCA host library.
    pub lib: &'a Csulcca,
}

/// The steps a mode supplies to [`run`].
pub(crate) trait ModeStep {
    /// The verbs the mode calls: the library is opened with only these resolved.
    fn verbs(&self) -> ModeVerbs;

    /// Upstream's line when a required verb is missing from the library (`detail` is
    /// the loader's message).
    fn missing_verb(&self, detail: &str, out: &mut Output<'_>) {
        out.missing_cca_symbols(Csulcca::LIBRARY, detail);
    }

    /// The exit status when the store cannot be opened.
    fn open_failed(&self) -> Exit {
        Exit::NoToken
    }

    /// Checks of the opened store before the PINs are tried.
    fn check_store(&self, _store: &TokenStore, _out: &mut Output<'_>) -> Result<(), Exit> {
        Ok(())
    }

    /// Verifies both PINs; returns the key of `MK_USER`. The default is the login of
    /// `-m keys` and `-m oldrsakeys`, with upstream's `C_Login` status.
    fn login(
        &self,
        store: &TokenStore,
        pins: &Pins,
        out: &mut Output<'_>,
    ) -> Result<MasterKey, Exit> {
        super::login(store, pins, out)
    }

    /// Runs after the library is loaded, before any object is read. `Err` ends the run
    /// with that status (which may be success: nothing to do).
    fn begin(&mut self, cx: &Context<'_>, out: &mut Output<'_>) -> Result<(), Exit>;

    /// Reads and converts the objects; returns those to rewrite.
    fn convert<'a>(
        &mut self,
        cx: &Context<'a>,
        out: &mut Output<'_>,
    ) -> Result<Batch<'a>, Exit>;

    /// Reports a commit that failed; returns the exit status.
    fn commit_failed(&self, e: StoreError, out: &mut Output<'_>) -> Exit;

    /// Reports the run (what the commit did in `done`). Returns the exit status.
    fn report(&self, cx: &Context<'_>, done: &Committed, out: &mut Output<'_>) -> Exit;

    /// Adds what the mode did to the run's audit record (called at the end of every
    /// run, also one a step ended early; `done` holds what was committed by then).
    fn audit(&self, _done: &Committed, _record: &mut audit::Record) {}
}

/// Runs `step` start to end; returns the exit status. `record` gets the backup and
/// the mode's own facts (see [`ModeStep::audit`]).
pub(crate) fn run(
    step: &mut dyn ModeStep,
    setup: &Setup<'_>,
    lib: &Csulcca,
    pins: Pins,
    out: &mut Output<'_>,
    record: &mut audit::Record,
) -> Exit {
    let mut done = Committed::default();
    let exit = run_steps(step, setup, lib, pins, out, &mut done).unwrap_or_else(|exit| exit);
    if let Some(b) = &done.backup {
        record.set_backup(b);
    }
    step.audit(&done, record);
    exit
}

fn run_steps(
    step: &mut dyn ModeStep,
    setup: &Setup<'_>,
    lib: &Csulcca,
    pins: Pins,
    out: &mut Output<'_>,
    done: &mut Committed,
) -> Result<Exit, Exit> {
    let store = TokenStore::open(&setup.target.dir).map_err(|e| {
        out.error(e);
        step.open_failed()
    })?;
    step.check_store(&store, out)?;
    let mk = step.login(&store, &pins, out);
    // Not needed past the login: zeroized now, not at the end of the run.
    drop(pins);
    let mk = mk?;
    let cx = Context {
        setup,
        store: &store,
        mk: &mk,
        lib,
    };
    step.begin(&cx, out)?;
    clean_temps(&store, setup.dry_run, out)?;
    let batch = step.convert(&cx, out)?;
    done.rewrite = batch.len();
    done.backup = back_up(setup, &store, done.rewrite, out)?;
    done.written = match commit(setup, &store, &mk, batch, out) {
        Ok(n) => n,
        Err(e) => return Err(step.commit_failed(e, out)),
    };
    Ok(step.report(&cx, done, out))
}

/// Unless `--dry-run`, `--no-backup`, or nothing to write: backs the store up (see
/// [`crate::store::backup`]) and says where. A backup that cannot be made stops the
/// run before anything is written.
fn back_up(
    setup: &Setup<'_>,
    store: &TokenStore,
    rewrite: usize,
    out: &mut Output<'_>,
) -> Result<Option<PathBuf>, Exit> {
    if setup.dry_run || !setup.backup || rewrite == 0 {
        return Ok(None);
    }
    back_up_store(store, out).map(Some)
}

/// Backs `store` up (see [`crate::store::backup`]) and says where; a backup that
/// cannot be made is reported and ends the run before anything is written (8).
pub(super) fn back_up_store(store: &TokenStore, out: &mut Output<'_>) -> Result<PathBuf, Exit> {
    let made = backup::backup_dir_for(store.dir(), SystemTime::now())
        .and_then(|dir| backup::snapshot(store.dir(), &dir));
    match made {
        Ok(b) => {
            out.backup_made(&b.dir, store.dir());
            Ok(b.dir)
        }
        Err(e) => {
            out.error(e);
            out.error(
                "cannot back up the data store, nothing was written; free the space or fix \
                 the permissions, or pass --no-backup to migrate without a backup",
            );
            Err(Exit::WriteFailed)
        }
    }
}

/// Loads `libcsulcca.so` with the verbs of `step`, before the PIN prompts (upstream
/// loads it after them: a deliberate difference, so nobody types PINs for a run that
/// cannot start). A library that cannot be loaded is upstream's `dlopen(...) failed`
/// line and a hint; one that lacks a required verb is upstream's `Cannot find ...`
/// line. Both exit 255, as upstream.
pub(crate) fn open_library(step: &dyn ModeStep, out: &mut Output<'_>) -> Result<Csulcca, Exit> {
    open_verbs(&step.verbs(), out, |detail, out| step.missing_verb(detail, out))
}

/// [`open_library`] for `verbs`, with `missing` reporting a required verb the library
/// lacks (for a mode outside this pipeline too).
pub(crate) fn open_verbs(
    verbs: &ModeVerbs,
    out: &mut Output<'_>,
    missing: impl FnOnce(&str, &mut Output<'_>),
) -> Result<Csulcca, Exit> {
    Csulcca::open(verbs).map_err(|e| {
        match e {
            // The loader's own text already names the library: print it alone after
            // upstream's `dlopen(libcsulcca.so) failed: `.
            LoadError::Open { detail, .. } => {
                out.dlopen_failed(Csulcca::LIBRARY, detail);
                out.cca_library_hint(Csulcca::LIBRARY);
            }
            LoadError::MissingSymbol { detail, .. } => missing(&detail, out),
        }
        Exit::LibraryUnavailable
    })
}

/// Unless `dry_run`, removes the temporary files an interrupted run left in
/// `TOK_OBJ/` (under the token lock, before the objects are read).
pub(super) fn clean_temps(store: &TokenStore, dry_run: bool, out: &mut Output<'_>) -> Result<(), Exit> {
    if dry_run {
        return Ok(());
    }
    match store.remove_stale_temps() {
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
            Err(Exit::WriteFailed)
        }
    }
}

/// Commits `batch` atomically and removes the token's shared memory segment (also when
/// the batch is empty); nothing with `--dry-run`. Returns how many files were written.
fn commit(
    setup: &Setup<'_>,
    store: &TokenStore,
    mk: &MasterKey,
    batch: Batch<'_>,
    out: &mut Output<'_>,
) -> Result<usize, StoreError> {
    if setup.dry_run {
        return Ok(0);
    }
    let committed = match batch {
        Batch::Objects(objects) if objects.is_empty() => Ok(0),
        Batch::Objects(objects) => {
            let refs: Vec<&StoredObject> = objects.iter().collect();
            store.commit(mk, &refs).map(|r| r.written.len())
        }
        Batch::Staged(staging) => staging.finish().map(|r| r.written.len()),
    };
    let written = match committed {
        Ok(n) => n,
        Err(e) => {
            // Some files may have been renamed already (a partial commit).
            remove_shm(setup, out);
            return Err(e);
        }
    };
    // Also when this run changed nothing: an earlier run may have been killed after
    // its renames and before it could remove the segment.
    remove_shm(setup, out);
    Ok(written)
}

/// Removes the token's shared memory segment so the next openCryptoki process rebuilds
/// its object list from disk (as `usr/sbin/pkcstok_migrate/pkcstok_migrate.c` does
/// after converting a store).
fn remove_shm(setup: &Setup<'_>, out: &mut Output<'_>) {
    remove_shm_of(setup.paths, setup.target, out);
}

/// [`remove_shm`] for the token of `target`.
pub(super) fn remove_shm_of(paths: &SystemPaths, target: &Target, out: &mut Output<'_>) {
    let file = paths
        .shm_root
        .join(target.shm_name.trim_start_matches('/'));
    match std::fs::remove_file(&file) {
        Ok(()) => out.verbose_notice(format_args!("Removed {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out.error(format_args!(
            "warning: {}: cannot remove the token's shared memory: {e}",
            file.display()
        )),
    }
}

/// The `--dry-run` note printed after the summary.
pub(crate) fn dry_run_note(would_write: usize, out: &mut Output<'_>) {
    out.notice(format_args!(
        "Dry run: {would_write} object(s) would be rewritten; nothing was written."
    ));
}
