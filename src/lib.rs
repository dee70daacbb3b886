//! `pkcscca`: a drop-in Rust replacement for openCryptoki's `pkcscca` tool.
//!
//! After a CCA master key change, every secure key held by openCryptoki's CCA
//! token (in the `CKA_IBM_OPAQUE` attribute of its token objects) must be
//! re-enciphered from the OLD to the CURRENT master key before the OLD register
//! is overwritten. This crate reads the token's data store offline, asks the CCA
//! host library (`libcsulcca.so`) to re-encipher each key token, and rewrites the
//! object files atomically.
//!
//! Layout:
//! * `config`: `opencryptoki.conf` parsing and slot → data store resolution.
//! * `store`: the on-disk data store (NVTOK.DAT, MK_SO/MK_USER, OBJ.IDX, objects).
//! * `host`: the machine around it (pkcsslotd, openCryptoki processes, groups).
//! * `pkcs11`: PKCS#11 numbers as open newtypes.
//! * `cca`: CCA key tokens, verb ABI, and the dynamically loaded host library.
//! * `cli`, `usage`, `messages`, `exit`, `pin`: the command line contract.
//! * `app`: the program as a function (`run`), with the seam for the migration modes.
//! * `audit`: the syslog record of every run that could write.
#![deny(unsafe_code)]

/// Declares a module that is public with the `testkit` feature (for the tests, benches
/// and the software CCA) and crate-private without it, so that in the shipped build
/// anything the program does not use is reported as dead code.
macro_rules! testkit_pub {
    ($(#[$meta:meta])* mod $name:ident;) => {
        $(#[$meta])*
        #[cfg(feature = "testkit")]
        pub mod $name;
        $(#[$meta])*
        #[cfg(not(feature = "testkit"))]
        pub(crate) mod $name;
    };
}

pub mod app;
testkit_pub!(
    mod audit;
);
// Written out, not through the macro: `cca` defines `#[macro_export]` macros (the verb
// table), which cannot be referred to by path when their module is macro-expanded.
#[cfg(feature = "testkit")]
pub mod cca;
#[cfg(not(feature = "testkit"))]
pub(crate) mod cca;
testkit_pub!(
    mod cli;
);
testkit_pub!(
    mod config;
);
testkit_pub!(
    mod exit;
);
testkit_pub!(
    mod host;
);
testkit_pub!(
    mod messages;
);
testkit_pub!(
    mod migrate;
);
testkit_pub!(
    mod pin;
);
testkit_pub!(
    mod pkcs11;
);
testkit_pub!(
    mod store;
);
testkit_pub!(
    mod usage;
);
