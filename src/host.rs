//! The machine around the token: openCryptoki's processes, its token group, and the
//! token lock of a configured slot.
//!
//! Offline changes are only safe with no openCryptoki process attached (as
//! `usr/sbin/pkcstok_migrate/pkcstok_migrate.c` requires before it converts a store):
//! [`pkcsslotd_running`] and [`processes_using_opencryptoki`] let the caller refuse to
//! run or warn.

use std::fs;

use crate::config::SystemPaths;
#[cfg(feature = "testkit")]
use crate::{config::TokenLocation, store::lock::TokenLock, store::StoreError};

/// The default token group of openCryptoki (`--with-pkcs-group`).
pub const DEFAULT_TOKEN_GROUP: &str = "pkcs11";

/// Takes the lock of a configured token: its lock file, created if missing
/// in the slot's `usergroup` (else `pkcs11`), when that group exists.
#[cfg(feature = "testkit")]
pub fn lock_token(loc: &TokenLocation) -> Result<TokenLock, StoreError> {
    let group = loc.usergroup.as_deref().unwrap_or(DEFAULT_TOKEN_GROUP);
    TokenLock::acquire(&loc.lock_file, group_gid(group))
}

/// The gid of group `name` as the system's name service knows it (`getgrnam_r`, so
/// groups from LDAP or sssd count, as they do for openCryptoki), if it exists.
pub fn group_gid(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The pid of a running pkcsslotd, if any of the pid files names a live one.
///
/// Mirrors upstream tools: a pid file exists and the first word of
/// `/proc/<pid>/cmdline` contains `pkcsslotd` (the pid files `usr/sbin/pkcsslotd` writes).
pub fn pkcsslotd_running(paths: &SystemPaths) -> Option<u32> {
    paths.pkcsslotd_pid_files.iter().find_map(|pf| {
        let text = fs::read_to_string(pf).ok()?;
        let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
        let cmdline = fs::read(paths.proc_root.join(pid.to_string()).join("cmdline")).ok()?;
        let first = cmdline.split(|b| *b == 0).next()?;
        let first = String::from_utf8_lossy(first);
        first
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains("pkcsslotd"))
            .then_some(pid)
    })
}

/// Library names whose presence in a process's memory map means it uses openCryptoki.
pub const OPENCRYPTOKI_MAP_MARKERS: &[&str] = &[
    "libopencryptoki",
    "PKCS11_API",
    "libpkcs11_cca",
    "libpkcs11_ep11",
    "libpkcs11_ica",
    "libpkcs11_sw",
    "libpkcs11_tpm",
    "libpkcs11_icsf",
];

/// A process that has openCryptoki libraries mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Its `comm` name.
    pub name: String,
}

/// Other processes with an openCryptoki library mapped (`<proc>/*/maps`).
/// Processes we cannot inspect are skipped; our own process is excluded.
pub fn processes_using_opencryptoki(paths: &SystemPaths) -> Vec<ProcessInfo> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(&paths.proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(maps) = fs::read(ent.path().join("maps")) else {
            continue;
        };
        let maps = String::from_utf8_lossy(&maps);
        if OPENCRYPTOKI_MAP_MARKERS.iter().any(|m| maps.contains(m)) {
            let name = fs::read_to_string(ent.path().join("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            out.push(ProcessInfo { pid, name });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}
