//! `-m restore` (ours): put back the object files a run changed, from the backup it
//! made (`crate::store::backup`).
//!
//! The way back after a migration that should not have happened, or one interrupted
//! halfway: the backup holds the store as it was before the run's commit. Before the
//! prompts (after the checks every writing mode makes: no pkcsslotd, no pending HSM
//! master key change, the token lock taken), the backup is opened as a data store and
//! compared with the store ([`backup::restore_plan`]): they must hold the same token
//! (`NVTOK.DAT`, `MK_SO`, `MK_USER`, `OBJ.IDX`), else the store changed in other ways
//! since the backup and the run is refused with nothing written. Then both PINs are
//! verified against the backup's files, the temporary files of an interrupted run are
//! removed, the store is backed up in turn (unless `--no-backup`), the differing object
//! files are put back in one atomic batch with the commit protocol of a migration
//! (owner, group and mode kept), and the token's shared memory segment is removed.
//!
//! It needs no CCA library, so it has its own small flow rather than a place in the
//! pipeline, whose steps load, convert and re-encode objects; restore copies files.

use std::path::{Path, PathBuf};

use crate::audit;
use crate::config::SystemPaths;
use crate::exit::Exit;
use crate::messages::Output;
use crate::pin::Pins;
use crate::store::backup::{self, RestorePlan};
use crate::store::TokenStore;

use super::{pipeline, Target};

/// A restore checked before the prompts.
pub(super) struct Restore {
    /// `--from`, as given.
    from: PathBuf,
    /// The backup, opened as a store.
    backup: TokenStore,
    /// The store.
    store: TokenStore,
    /// The object files to put back.
    plan: RestorePlan,
}

/// Opens the backup and the store and compares them; a backup that does not fit the
/// store is refused in one line (exit 2, [`Exit::RestoreRefused`]).
pub(super) fn prepare(target: &Target, from: &Path, out: &mut Output<'_>) -> Result<Restore, Exit> {
    let backup = TokenStore::open(from).map_err(|e| {
        out.error(format_args!(
            "{}: not a backup of a token data store ({e})",
            from.display()
        ));
        Exit::RestoreRefused
    })?;
    let store = TokenStore::open(&target.dir).map_err(|e| {
        out.error(e);
        Exit::NoToken
    })?;
    let plan = backup::restore_plan(&store, &backup).map_err(|e| {
        out.error(format_args!("{e} ({} is not restored)", from.display()));
        Exit::RestoreRefused
    })?;
    Ok(Restore {
        from: from.to_path_buf(),
        backup,
        store,
        plan,
    })
}

/// Verifies the PINs against the backup and puts its objects back (nothing with
/// `dry_run`; no backup of the store first with `no_backup`).
pub(super) fn run(
    paths: &SystemPaths,
    target: &Target,
    r: Restore,
    pins: Pins,
    (dry_run, no_backup): (bool, bool),
    out: &mut Output<'_>,
    record: &mut audit::Record,
) -> Exit {
    let login = super::login(&r.backup, &pins, out);
    drop(pins);
    if let Err(e) = login {
        return e;
    }
    let names: Vec<String> = r
        .plan
        .objects
        .iter()
        .map(|n| n.as_str().to_string())
        .collect();
    if dry_run {
        out.restore_summary(&r.from, &names, true);
        return Exit::Success;
    }
    if let Err(e) = pipeline::clean_temps(&r.store, false, out) {
        return e;
    }
    if !no_backup && !r.plan.objects.is_empty() {
        match pipeline::back_up_store(&r.store, out) {
            Ok(b) => record.set_backup(&b),
            Err(e) => return e,
        }
    }
    let put = backup::put_back(&r.store, &r.backup, &r.plan);
    // Also after a failure (some files may be back) and when nothing changed (an
    // earlier run may have died before removing it).
    pipeline::remove_shm_of(paths, target, out);
    match put {
        Ok(n) => {
            record.set_counts(&[("restored", n)]);
            out.restore_summary(&r.from, &names, false);
            Exit::Success
        }
        Err(e) => {
            record.set_counts(&[("restored", 0)]);
            out.error(e);
            out.error(
                "the objects could not be put back: each is either as it was or as in \
                 the backup; run the restore again",
            );
            Exit::WriteFailed
        }
    }
}
