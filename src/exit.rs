//! Exit statuses of `pkcscca`, in one place.
//!
//! The numbers follow the C tool's return values (`pkcscca.c: main()`,
//! `migrate_wrapped_keys()`, `migrate_old_rsa_keys()`), so maintenance scripts that test
//! `$?` keep working. The C tool returns `-1` from `main` for every usage, PIN and
//! library-load problem, which the shell sees as 255. Our one addition is
//! [`Exit::KeysFailed`]: upstream exits 0 even when some keys could not be re-enciphered.
//! (openCryptoki 3.8.1 used 3 for a failed `C_GetSlotList`; 3.27 never returns 3.)

use std::process::ExitCode;

/// How a run of `pkcscca` ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done (also `-h`).
    Success = 0,
    /// Mirrors upstream's `p11_init()` failure (`migrate_wrapped_keys()` returns 2): the
    /// token environment could not be set up (for us: configuration or exclusive access).
    Pkcs11Init = 2,
    /// Our addition: the run completed but at least one key failed to migrate.
    KeysFailed = 3,
    /// Mirrors upstream's `C_OpenSession` failure (5): unknown or unusable slot.
    OpenSession = 5,
    /// Mirrors upstream's `C_Login (USER)` failure (8), and `-m oldrsakeys` find/write-back
    /// failures.
    Login = 8,
    /// Upstream's `return -1`: usage errors, missing or wrong PINs, CCA library load
    /// failure, `-m v2objectsv3` store errors.
    Failure = 255,
    /// Ours: the run's work ended as it would have succeeded, but a line could not be
    /// written to stdout or stderr (e.g. `> /dev/full`); the store's state is what a
    /// successful run leaves.
    OutputFailed = 12,
}

impl Exit {
    /// The numeric status handed to the operating system.
    pub fn code(self) -> u8 {
        self as u8
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
        assert_eq!(Exit::Pkcs11Init.code(), 2);
        assert_eq!(Exit::KeysFailed.code(), 3);
        assert_eq!(Exit::OpenSession.code(), 5);
        assert_eq!(Exit::Login.code(), 8);
        // `return -1` from main() as seen by the shell.
        assert_eq!(Exit::Failure.code(), (-1i32) as u8);
    }
}
