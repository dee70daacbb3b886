//! `opencryptoki.conf` and slot → token data store resolution.
//!
//! Mirrors `usr/lib/common/new_host.c: ST_Initialize()` and
//! `usr/lib/common/loadsave.c: init_data_store()`: `PKCS_APP_STORE` (then the slot's
//! `tokname` is ignored), else `<data root>/<tokname>`, else the STDLL's default
//! subdirectory. Also the per-token lock file (`usr/lib/common/utility.c:
//! CreateXProcLock()`), the shared-memory segment name (`usr/lib/common/shared_memory.c`)
//! and whether the slot's `tokversion` (3.12 or later) selects the new data store
//! format.
//! Every system path sits in [`SystemPaths`] so tests can point them at
//! temporary directories.

pub mod parse;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[cfg(feature = "testkit")]
pub use parse::{parse_with, Grammar};
pub use parse::{parse_str, ConfigError, SlotConfig};

use crate::store::Format;

/// Environment variable that relocates `opencryptoki.conf` for this tool.
pub const CONF_ENV: &str = "PKCSCCA_OPENCRYPTOKI_CONF";
/// Environment variable that relocates openCryptoki's lock directory for this tool
/// (upstream's `LOCKDIR_PATH` is fixed when openCryptoki is built).
pub const LOCK_DIR_ENV: &str = "PKCSCCA_LOCK_DIR";
/// openCryptoki's environment variable that relocates data stores.
pub const APP_STORE_ENV: &str = "PKCS_APP_STORE";

/// Where openCryptoki keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPaths {
    /// `opencryptoki.conf`. Default `/etc/opencryptoki/opencryptoki.conf`;
    /// [`SystemPaths::from_env`] takes it from the environment variable
    /// `PKCSCCA_OPENCRYPTOKI_CONF` when set (openCryptoki itself has no
    /// such variable; this one is ours, for tests and unusual installs).
    pub conf_file: PathBuf,
    /// Data store root (`CONFIG_PATH`), default `/var/lib/opencryptoki`.
    pub data_root: PathBuf,
    /// Lock directory (`LOCKDIR_PATH`), default `/var/lock/opencryptoki`.
    pub lock_root: PathBuf,
    /// Run directory, default `/run/opencryptoki`.
    pub run_dir: PathBuf,
    /// pkcsslotd pid files to check, newest location first (`PID_FILE_PATH` of
    /// `usr/include/slotmgr.h`, and 3.8.1's older location).
    pub pkcsslotd_pid_files: Vec<PathBuf>,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// Where POSIX shared memory appears, default `/dev/shm`.
    pub shm_root: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            conf_file: PathBuf::from("/etc/opencryptoki/opencryptoki.conf"),
            data_root: PathBuf::from("/var/lib/opencryptoki"),
            lock_root: PathBuf::from("/var/lock/opencryptoki"),
            run_dir: PathBuf::from("/run/opencryptoki"),
            pkcsslotd_pid_files: vec![
                PathBuf::from("/run/opencryptoki/pkcsslotd.pid"),
                PathBuf::from("/run/pkcsslotd.pid"),
                PathBuf::from("/var/run/pkcsslotd.pid"),
            ],
            proc_root: PathBuf::from("/proc"),
            shm_root: PathBuf::from("/dev/shm"),
        }
    }
}

impl SystemPaths {
    /// The defaults, with `conf_file` from `PKCSCCA_OPENCRYPTOKI_CONF` and
    /// `lock_root` from `PKCSCCA_LOCK_DIR` if set (for installations built with other
    /// paths, and for tests).
    pub fn from_env() -> Self {
        let mut p = SystemPaths::default();
        if let Some(c) = std::env::var_os(CONF_ENV).filter(|c| !c.is_empty()) {
            p.conf_file = PathBuf::from(c);
        }
        if let Some(c) = std::env::var_os(LOCK_DIR_ENV).filter(|c| !c.is_empty()) {
            p.lock_root = PathBuf::from(c);
        }
        p
    }
}

/// The default token subdirectory of each STDLL (each STDLL's `tok_struct.h`, e.g.
/// `usr/lib/cca_stdll/tok_struct.h`).
pub const STDLL_SUBDIRS: &[(&str, &str)] = &[
    ("libpkcs11_cca.so", "ccatok"),
    ("libpkcs11_ep11.so", "ep11tok"),
    ("libpkcs11_ica.so", "lite"),
    ("libpkcs11_sw.so", "swtok"),
    ("libpkcs11_tpm.so", "tpm"),
    ("libpkcs11_icsf.so", "icsf"),
];

/// The default subdirectory for an `stdll` value (a file name or path,
/// possibly with a version suffix such as `.so.0`).
pub fn stdll_subdir(stdll: &str) -> Option<&'static str> {
    let base = stdll.rsplit('/').next().unwrap_or(stdll);
    let base = match base.find(".so") {
        Some(i) => base.get(..i + 3).unwrap_or(base),
        None => base,
    };
    STDLL_SUBDIRS
        .iter()
        .find(|(lib, _)| *lib == base)
        .map(|(_, dir)| *dir)
}

/// Everything about where slot N's token lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLocation {
    /// Slot number.
    pub slot: u32,
    /// The data store directory.
    pub dir: PathBuf,
    /// Lock name N: the `tokname`, else the STDLL's default subdirectory.
    pub lock_name: String,
    /// `<lock root>/<N>/LCK..<N>`.
    pub lock_file: PathBuf,
    /// POSIX shared memory name of the token (leading `/`).
    pub shm_name: String,
    /// The configured `tokversion` (0 when absent).
    pub tokversion: u32,
    /// Data store format selected by `tokversion`.
    pub format: Format,
    /// The slot's `usergroup`, if any.
    pub usergroup: Option<String>,
    /// The slot's `stdll` as configured.
    pub stdll: String,
}

impl TokenLocation {
    /// Options to open this token's store with the format its slot selects.
    #[cfg(feature = "testkit")]
    pub fn open_options(&self) -> crate::store::OpenOptions {
        crate::store::OpenOptions {
            format: Some(self.format),
            byte_order: None,
        }
    }

    /// Where the token's shared-memory segment appears (`/dev/shm/...`).
    /// Removing it after an offline change makes the next openCryptoki
    /// process rebuild its object lists from OBJ.IDX.
    #[cfg(feature = "testkit")]
    pub fn shm_file(&self, paths: &SystemPaths) -> PathBuf {
        paths.shm_root.join(self.shm_name.trim_start_matches('/'))
    }
}

/// Why a slot cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No stanza for the slot, or one without `stdll`.
    #[error("{file}: slot {slot} is not configured")]
    NoSuchSlot {
        /// The configuration file.
        file: String,
        /// The slot.
        slot: u32,
    },
    /// The STDLL is not one whose default directory we know, and no tokname is set.
    #[error("{file}:{line}: slot {slot}: cannot tell the data store of stdll '{stdll}'")]
    UnknownStdll {
        /// The configuration file.
        file: String,
        /// Line of the slot.
        line: u32,
        /// The slot.
        slot: u32,
        /// The STDLL.
        stdll: String,
    },
}

/// The shared-memory name of a data store: `/` + the path without its
/// leading `/`, other `/` replaced by `.` (`usr/lib/common/loadsave.c`,
/// `usr/lib/common/shared_memory.c`).
pub fn shm_name(dir: &Path) -> String {
    let s = dir.to_string_lossy();
    format!("/{}", s.trim_start_matches('/').replace('/', "."))
}

/// Resolves slot `slot` of `slots` (parsed from `file`). `app_store` is the
/// value of `PKCS_APP_STORE`, if set.
pub fn resolve_slot(
    slots: &[SlotConfig],
    slot: u32,
    paths: &SystemPaths,
    app_store: Option<OsString>,
    file: &str,
) -> Result<TokenLocation, ResolveError> {
    let s = slots
        .iter()
        .find(|s| s.slot == slot && s.stdll.is_some())
        .ok_or_else(|| ResolveError::NoSuchSlot {
            file: file.to_string(),
            slot,
        })?;
    let stdll = s.stdll.clone().unwrap_or_default();
    let subdir = stdll_subdir(&stdll);
    let unknown = || ResolveError::UnknownStdll {
        file: file.to_string(),
        line: s.line,
        slot,
        stdll: stdll.clone(),
    };
    let dir = match (app_store.filter(|a| !a.is_empty()), &s.tokname) {
        (Some(app), _) => PathBuf::from(app).join(subdir.ok_or_else(unknown)?),
        (None, Some(t)) => paths.data_root.join(t),
        (None, None) => paths.data_root.join(subdir.ok_or_else(unknown)?),
    };
    let lock_name = match &s.tokname {
        Some(t) => t.clone(),
        None => subdir.ok_or_else(unknown)?.to_string(),
    };
    let tokversion = s.tokversion.unwrap_or(0);
    Ok(TokenLocation {
        slot,
        lock_file: paths
            .lock_root
            .join(&lock_name)
            .join(format!("LCK..{lock_name}")),
        lock_name,
        shm_name: shm_name(&dir),
        dir,
        tokversion,
        format: Format::from_tokversion(tokversion),
        usergroup: s.usergroup.clone(),
        stdll: stdll.clone(),
    })
}

/// Reads and parses `paths.conf_file`, then resolves `slot`, taking
/// `PKCS_APP_STORE` from the environment.
pub fn locate_token(paths: &SystemPaths, slot: u32) -> Result<TokenLocation, LocateError> {
    let file = paths.conf_file.display().to_string();
    let text = std::fs::read_to_string(&paths.conf_file).map_err(|e| LocateError::Read {
        file: file.clone(),
        source: e,
    })?;
    let slots = parse_str(&text, &file)?;
    Ok(resolve_slot(
        &slots,
        slot,
        paths,
        std::env::var_os(APP_STORE_ENV),
        &file,
    )?)
}

/// Failure of [`locate_token`].
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Parse error.
    #[error(transparent)]
    Parse(#[from] ConfigError),
    /// Resolution error.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}
