//! Exit statuses of `pkcscca`, in one place.
//!
//! Each [`Exit`] variant names what happened; several share a number, because the
//! numbers follow the C tool's return values (`usr/sbin/pkcscca/pkcscca.c: main()`,
//! `migrate_wrapped_keys()`, `migrate_old_rsa_keys()`) so that maintenance scripts that
//! test `$?` keep working. The C tool returns `-1` from `main` for every usage, PIN and
//! library-load problem, which the shell sees as 255. The numbers of our own outcomes
//! ([`code::KEYS_FAILED`], [`code::MIGRATION_NEEDED`], [`code::OUTPUT_FAILED`]) are ones
//! upstream 3.27 never returns.
//! (openCryptoki 3.8.1 used 3 for a failed `C_GetSlotList`.)

use std::process::ExitCode;

/// The numbers handed to the operating system.
pub mod code {
    /// Everything asked for was done.
    pub const SUCCESS: u8 = 0;
    /// Upstream: `p11_init()` failed (`C_Initialize`, the daemon, the configuration).
    pub const PKCS11_INIT: u8 = 2;
    /// Ours: the run completed, but some key or object could not be migrated; with
    /// `-m status`, some key matches no master key register of the card.
    pub const KEYS_FAILED: u8 = 3;
    /// Ours, `-m status`: some key is under the OLD or NEW master key, none is lost.
    pub const MIGRATION_NEEDED: u8 = 4;
    /// Upstream: `C_OpenSession` failed (no such slot, no usable token).
    pub const OPEN_SESSION: u8 = 5;
    /// Upstream: `C_Login (USER)` failed; also its status for a failed write-back.
    pub const LOGIN: u8 = 8;
    /// Ours: a line could not be written to stdout or stderr.
    pub const OUTPUT_FAILED: u8 = 12;
    /// Upstream: `return -1` from `main()`.
    pub const FAILURE: u8 = 255;
}

/// How a run of `pkcscca` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done (also `-h`, and nothing to do) (0).
    Success,
    /// The token cannot be worked on now: pkcsslotd runs, the token is locked, an HSM
    /// master key change is pending, the card has no CURRENT master key, or the
    /// configuration cannot be read. Upstream's `p11_init()` failure (2).
    NotReady,
    /// The run completed, but at least one key or object could not be migrated; each
    /// kept its original bytes (ours, 3; upstream exits 0 and the key is lost at the
    /// next master key change).
    KeysFailed,
    /// The slot is not configured, not a CCA token, or has no data store. Upstream's
    /// `C_OpenSession` failure (5).
    NoToken,
    /// The USER login failed: a wrong USER PIN of a 3.12+ store, or `MK_USER` that
    /// cannot be opened. Upstream's `C_Login (USER)` failure (8).
    LoginFailed,
    /// The object index or the object directory could not be read (8, as upstream's
    /// failed object search).
    StoreUnreadable,
    /// Writing the migrated objects back failed (8, as upstream's failed
    /// `C_SetAttributeValue`).
    WriteFailed,
    /// A command-line error (255).
    Usage,
    /// A PIN could not be read or is wrong (255, as upstream's `verify_pins()`).
    PinRejected,
    /// `libcsulcca.so` could not be loaded or lacks a verb (255).
    LibraryUnavailable,
    /// `-m v2objectsv3` could not work on the store (255, as upstream).
    Failed,
    /// The run's work ended as it would have succeeded, but a line could not be written
    /// to stdout or stderr (e.g. `> /dev/full`) (ours, 12).
    OutputFailed,
    /// `-m status`: some key is under the OLD master key (it needs `-m keys`) or under
    /// the NEW one (a master key change is not finished), and every key is under some
    /// register of the card (ours, 4).
    MigrationNeeded,
    /// `-m status`: some key matches no master key register of the card (it cannot be
    /// used or migrated until its master key is loaded again), or an object could not
    /// be read (ours, 3).
    KeysLost,
    /// `-m restore`: the backup is not a backup of this store, or the store changed in
    /// other ways since it was made (its `NVTOK.DAT`, `MK_SO`, `MK_USER` or `OBJ.IDX`
    /// differ); nothing was written (ours, 2).
    RestoreRefused,
}

impl Exit {
    /// Every outcome, for tests and documentation checks.
    pub const ALL: [Exit; 15] = [
        Exit::Success,
        Exit::NotReady,
        Exit::KeysFailed,
        Exit::NoToken,
        Exit::LoginFailed,
        Exit::StoreUnreadable,
        Exit::WriteFailed,
        Exit::Usage,
        Exit::PinRejected,
        Exit::LibraryUnavailable,
        Exit::Failed,
        Exit::OutputFailed,
        Exit::MigrationNeeded,
        Exit::KeysLost,
        Exit::RestoreRefused,
    ];

    /// The numeric status handed to the operating system.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => code::SUCCESS,
            Exit::NotReady | Exit::RestoreRefused => code::PKCS11_INIT,
            Exit::KeysFailed | Exit::KeysLost => code::KEYS_FAILED,
            Exit::MigrationNeeded => code::MIGRATION_NEEDED,
            Exit::NoToken => code::OPEN_SESSION,
            Exit::LoginFailed | Exit::StoreUnreadable | Exit::WriteFailed => code::LOGIN,
            Exit::Usage | Exit::PinRejected | Exit::LibraryUnavailable | Exit::Failed => {
                code::FAILURE
            }
            Exit::OutputFailed => code::OUTPUT_FAILED,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_upstream_numbers() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::NotReady.code(), 2);
        assert_eq!(Exit::KeysFailed.code(), 3);
        assert_eq!(Exit::KeysLost.code(), 3);
        assert_eq!(Exit::MigrationNeeded.code(), 4);
        assert_eq!(Exit::RestoreRefused.code(), 2);
        assert_eq!(Exit::NoToken.code(), 5);
        assert_eq!(Exit::LoginFailed.code(), 8);
        assert_eq!(Exit::WriteFailed.code(), 8);
        // `return -1` from main() as seen by the shell.
        assert_eq!(Exit::Usage.code(), (-1i32) as u8);
        assert_eq!(Exit::PinRejected.code(), (-1i32) as u8);
    }
}
