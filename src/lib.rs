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
//! * [`config`]: `opencryptoki.conf` parsing and slot → data store resolution.
//! * [`store`]: the on-disk data store (NVTOK.DAT, MK_SO/MK_USER, OBJ.IDX, objects).
//! * [`host`]: the machine around it (pkcsslotd, openCryptoki processes, groups).
//! * [`pkcs11`]: PKCS#11 numbers as open newtypes.
//! * [`cca`]: CCA key tokens, verb ABI, and the dynamically loaded host library.
//! * [`cli`], [`usage`], [`messages`], [`exit`], [`pin`]: the command line contract.
//! * [`app`]: the program as a function (`run`), with the seam for the migration modes.
#![deny(unsafe_code)]

pub mod app;
pub mod cca;
pub mod cli;
pub mod config;
pub mod exit;
pub mod host;
pub mod messages;
pub mod migrate;
pub mod pin;
pub mod pkcs11;
pub mod store;
pub mod usage;
