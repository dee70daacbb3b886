//! `-m v2objectsv3`: convert an openCryptoki 2.x CCA data store to the 3.x form.
//!
//! Mirrors `pkcscca.c: migrate_version()`, `load_masterkey()`, `load_token_objects()`,
//! `reencrypt_private_token_object()` and `adjust_key_object_attributes()`.
//! openCryptoki 2.x had the card encipher private token objects (CSNBENC, CBC, IV
//! `10293847`) under a CCA DES key token that served as the store's 64-byte master
//! key; 3.x enciphers them in software (DES3-CBC under the first 24 bytes of the same
//! master key). 2.x also kept AES secure keys in `CKA_VALUE`, where 3.x expects them
//! in `CKA_IBM_OPAQUE` with an all-zero `CKA_VALUE` of the clear key's length.
//!
//! Differences from upstream: objects are not rewritten in place one by one but in one
//! atomic batch at the end (nothing is written with `--dry-run`), and an object that
//! already is in 3.x form (its payload opens in software) is recognised and left as it
//! is instead of being reported as "inconsistent", so a second run changes nothing.
//! Upstream's lines, counts and exit status are kept: per-object failures are
//! reported and counted, and the run still exits 0.

use std::path::Path;

use zeroize::Zeroizing;

use crate::cca::{CcaError, Csulcca, ModeVerbs};
use crate::exit::Exit;
use crate::messages::Output;
use crate::pin::{PinKind, Pins};
use crate::pkcs11::{AttrType, KeyType, ObjectClass};
use crate::store::{
    self, DecryptFailure, MasterKey, ObjectName, StoreError, StoredObject, TokenStore, MK_SO,
    MK_USER, OBJ_IDX, TOK_OBJ,
};

use super::pipeline::{self, Batch, Committed, Context, ModeStep};

/// The IV openCryptoki uses for private objects, with the card (2.x) and in software.
const OBJECT_IV: [u8; 8] = *b"10293847";
/// Length of a CCA AES DATA key token (`struct secaeskeytoken`).
const AES_TOKEN_LEN: usize = 64;

/// A path as upstream prints it: `<data store>/<rest>`, the store as given.
fn upstream_path(dir: &Path, rest: &str) -> String {
    format!("{}/{rest}", dir.display())
}

/// `-m v2objectsv3` in the [`pipeline`].
#[derive(Default)]
pub(super) struct V2Mode {
    /// The objects `OBJ.IDX` lists, read in [`ModeStep::begin`].
    names: Vec<ObjectName>,
    processed: u32,
    failed: u32,
}

impl ModeStep for V2Mode {
    fn verbs(&self) -> ModeVerbs {
        crate::cca::v2objectsv3_verbs()
    }

    /// Upstream looks up CSNBDEC alone for this mode and names it.
    fn missing_verb(&self, detail: &str, out: &mut Output<'_>) {
        out.missing_cca_symbol("CSNBDEC", Csulcca::LIBRARY, detail);
    }

    /// Upstream's `v2objectsv3` fails on an unusable store with -1 (255).
    fn open_failed(&self) -> Exit {
        Exit::Failed
    }

    /// A soft token's objects are enciphered in software and hold clear keys: there is
    /// nothing for the card to convert, and rewriting them would be wrong.
    fn check_store(&self, store: &TokenStore, out: &mut Output<'_>) -> Result<(), Exit> {
        if store.is_cca_token() {
            return Ok(());
        }
        out.error(format_args!(
            "{}: not a CCA token data store (NVTOK.DAT names the token model \"{}\"); \
             -m v2objectsv3 converts CCA token stores only, nothing was changed",
            store.dir().display(),
            store.model()
        ));
        Err(Exit::Failed)
    }

    fn login(
        &self,
        store: &TokenStore,
        pins: &Pins,
        out: &mut Output<'_>,
    ) -> Result<MasterKey, Exit> {
        login(store, store.dir(), pins, out)
    }

    /// Upstream's checks of `OBJ.IDX` and its lines before the first object.
    fn begin(&mut self, cx: &Context<'_>, out: &mut Output<'_>) -> Result<(), Exit> {
        let (store, dir) = (cx.store, cx.store.dir());
        let index = upstream_path(dir, &format!("{TOK_OBJ}/{OBJ_IDX}"));
        match store.read_index_bytes() {
            Err(StoreError::Missing { .. }) => {
                out.cannot_find(&index);
                return Err(Exit::Failed);
            }
            Err(e) => {
                out.error(e);
                return Err(Exit::Failed);
            }
            Ok(b) if b.is_empty() => {
                out.obj_idx_empty();
                return Err(Exit::Success);
            }
            Ok(_) => {}
        }
        out.store_complete(dir.display());
        out.pin_verified(PinKind::So);
        out.pin_verified(PinKind::User);
        if store.format() != store::Format::Old {
            out.notice(format_args!(
                "{} is a new-format data store (openCryptoki 3.12 or later): it holds no \
                 openCryptoki 2.x objects. Nothing to migrate.",
                dir.display()
            ));
            return Err(Exit::Success);
        }
        self.names = store.read_index().map_err(|e| {
            out.error(e);
            Exit::Failed
        })?;
        Ok(())
    }

    fn convert<'a>(
        &mut self,
        cx: &Context<'a>,
        out: &mut Output<'_>,
    ) -> Result<Batch<'a>, Exit> {
        let converter = Converter {
            store: cx.store,
            mk: cx.mk,
            lib: cx.lib,
        };
        let dir = cx.store.dir();
        let mut batch = Vec::new();
        for &name in &self.names {
            let path = upstream_path(dir, &format!("{TOK_OBJ}/{name}"));
            match converter.convert(name, &path, out) {
                Outcome::Unreadable => continue,
                Outcome::Tampered => return Err(Exit::Failed),
                Outcome::Failed => {
                    out.object_failed(&path);
                    self.failed = self.failed.saturating_add(1);
                }
                Outcome::Done(rewrite) => {
                    if let Some(obj) = rewrite {
                        batch.push(obj);
                    }
                    out.object_processed(&path);
                    self.processed = self.processed.saturating_add(1);
                }
            }
        }
        Ok(Batch::Objects(batch))
    }

    fn commit_failed(&self, e: StoreError, out: &mut Output<'_>) -> Exit {
        out.error(e);
        out.error("no object was converted; the store is as it was");
        Exit::Failed
    }

    fn report(&self, cx: &Context<'_>, done: &Committed, out: &mut Output<'_>) -> Exit {
        out.objects_summary(self.processed, self.failed);
        if cx.setup.dry_run {
            pipeline::dry_run_note(done.rewrite, out);
        }
        // Upstream exits 0 here whatever failed; an object left in the v2 form is
        // unreadable by openCryptoki 3.x, so ours says so (as -m keys does).
        if self.failed > 0 {
            Exit::KeysFailed
        } else {
            Exit::Success
        }
    }

    fn audit(&self, done: &Committed, record: &mut crate::audit::Record) {
        record.set_counts(&[
            ("migrated", self.processed as usize),
            ("failed", self.failed as usize),
            ("rewritten", done.written),
        ]);
    }
}

/// Opens MK_SO and MK_USER with the PINs (`load_masterkey()` for each, after
/// upstream's `verify_pins()`); returns the key of MK_USER.
fn login(
    store: &TokenStore,
    dir: &Path,
    pins: &Pins,
    out: &mut Output<'_>,
) -> Result<MasterKey, Exit> {
    let so = store.so_master_key(pins.so.as_bytes());
    master_key(so, PinKind::So, dir, MK_SO, out)?;
    let user = store.login_user(pins.user.as_bytes());
    master_key(user, PinKind::User, dir, MK_USER, out)
}

/// Upstream's lines for a master key file that could not be opened.
fn master_key(
    r: Result<MasterKey, StoreError>,
    kind: PinKind,
    dir: &Path,
    file: &str,
    out: &mut Output<'_>,
) -> Result<MasterKey, Exit> {
    let mk_path = dir.join(file);
    let shown = upstream_path(dir, file);
    match r {
        Ok(mk) => return Ok(mk),
        // The PIN does not match NVTOK.DAT (upstream: verify_pins(), silent).
        Err(StoreError::WrongSoPin { file } | StoreError::WrongUserPin { file })
            if file != mk_path =>
        {
            out.pin_incorrect(kind);
            return Err(Exit::PinRejected);
        }
        Err(StoreError::Missing { .. } | StoreError::MissingMkUser { .. }) => {
            out.cannot_find(&shown);
            return Err(Exit::Failed);
        }
        // The PIN matched NVTOK.DAT but does not open the MK file.
        Err(StoreError::WrongSoPin { .. } | StoreError::WrongUserPin { .. }) => {
            out.master_key_tampered(&shown);
        }
        Err(e) => out.error(e),
    }
    out.could_not_load_master_key(kind);
    Err(Exit::Failed)
}

/// What became of one object.
enum Outcome {
    /// Its file could not be opened: skipped and not counted, as upstream.
    Unreadable,
    /// Something else than a regular file is in its place: the run stops.
    Tampered,
    /// Reported and counted as failed; the file stays as it is.
    Failed,
    /// Processed; `Some` when its file must be rewritten.
    Done(Option<StoredObject>),
}

struct Converter<'a> {
    store: &'a TokenStore,
    mk: &'a MasterKey,
    lib: &'a Csulcca,
}

impl Converter<'_> {
    /// Reads, converts and checks one object; prints upstream's lines for failures.
    fn convert(&self, name: ObjectName, path: &str, out: &mut Output<'_>) -> Outcome {
        let file = match self.store.read_object_bytes(name) {
            Ok(f) => f,
            // A link, FIFO, device or directory in an object's place is tampering, not
            // a missing file: the run stops, nothing is written.
            Err(e) if e.is_wrong_file_type() => {
                out.error(e);
                return Outcome::Tampered;
            }
            Err(_) => return Outcome::Unreadable,
        };
        let private = file.get(4).is_some_and(|&b| b != 0);
        let mut obj = if private {
            // Already enciphered in software (3.x form)?
            match self
                .store
                .decode_object_bytes(name, file.clone(), Some(self.mk))
            {
                Ok(obj) => {
                    out.verbose_notice(format_args!("{path} is already in openCryptoki 3 form."));
                    return match adjust(obj, out) {
                        Adjusted::Unchanged(_) => Outcome::Done(None),
                        Adjusted::Changed(o) => Outcome::Done(Some(o)),
                        Adjusted::Failed => Outcome::Failed,
                    };
                }
                Err(_) => match self.decipher_with_card(name, file, out) {
                    Some(obj) => obj,
                    None => return Outcome::Failed,
                },
            }
        } else {
            match self.store.decode_object_bytes(name, file, None) {
                Ok(obj) => obj,
                Err(e) => {
                    out.error(e);
                    return Outcome::Failed;
                }
            }
        };
        obj = match adjust(obj, out) {
            Adjusted::Failed => return Outcome::Failed,
            // A card-enciphered object is rewritten even if unchanged: that is the point.
            Adjusted::Unchanged(o) if private => o,
            Adjusted::Unchanged(_) => return Outcome::Done(None),
            Adjusted::Changed(o) => o,
        };
        Outcome::Done(Some(obj))
    }

    /// Decodes a private object the card enciphered (CSNBDEC, CBC, IV `10293847`,
    /// the DES key token held as the master key).
    fn decipher_with_card(
        &self,
        name: ObjectName,
        file: Vec<u8>,
        out: &mut Output<'_>,
    ) -> Option<StoredObject> {
        let key = self.mk.cca_key_token();
        let mut card_error: Option<CcaError> = None;
        let r = self.store.decode_object_deciphered(name, file, &mut |ct| {
            let key = key?;
            match self.lib.csnbdec(key, &OBJECT_IV, ct) {
                Ok(plain) => Some(Zeroizing::new(plain)),
                Err(e) => {
                    card_error = Some(e);
                    None
                }
            }
        });
        match r {
            Ok(obj) => return Some(obj),
            Err(StoreError::Decrypt {
                what: DecryptFailure::Deciphering,
                ..
            }) => match card_error {
                Some(e) => out.csnbdec_failed(e.rc, e.reason),
                None => out.error(format_args!(
                    "{}: the store's master key is not a 64-byte CCA key token, so the card \
                     cannot decipher this object",
                    self.store.object_path(name).display()
                )),
            },
            Err(StoreError::Decrypt {
                what: DecryptFailure::PlainLength | DecryptFailure::PlainPadding,
                ..
            }) =>
            {
                out.decrypted_data_inconsistent()
            }
            Err(StoreError::Decrypt {
                what: DecryptFailure::PlainSha1,
                ..
            }) => {
                out.stored_hash_mismatch()
            }
            Err(e) => out.error(e),
        }
        None
    }
}

/// Result of [`adjust`].
enum Adjusted {
    Unchanged(StoredObject),
    Changed(StoredObject),
    Failed,
}

/// Moves a CCA AES secure key from `CKA_VALUE` to `CKA_IBM_OPAQUE` and puts an
/// all-zero `CKA_VALUE` of the clear key's length in its place. Mirrors
/// `pkcscca.c: adjust_key_object_attributes()` and `adjust_secret_key_attributes()`:
/// only AES secret keys without `CKA_IBM_OPAQUE` are touched; a `CKA_VALUE` that is
/// not an AES DATA token (type `X'01'`, version `X'04'`, 64 bytes) is reported and left.
fn adjust(mut obj: StoredObject, out: &mut Output<'_>) -> Adjusted {
    let Some(class) = obj.template.class() else {
        out.no_class_attribute();
        return Adjusted::Failed;
    };
    if class != ObjectClass::SECRET_KEY
        || obj.template.key_type() != Some(KeyType::AES)
        || obj.template.get(AttrType::IBM_OPAQUE).is_some()
    {
        return Adjusted::Unchanged(obj);
    }
    let Some(value) = obj.template.get(AttrType::VALUE) else {
        out.no_value_attribute();
        return Adjusted::Failed;
    };
    let is_token =
        value.len() == AES_TOKEN_LEN && value.first() == Some(&0x01) && value.get(4) == Some(&0x04);
    if !is_token {
        out.value_not_secure_key();
        return Adjusted::Unchanged(obj);
    }
    // An AES DATA token keeps the clear key length in bits at offset 56, big-endian.
    let bits = value
        .get(56..58)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_be_bytes);
    let token = value.to_vec();
    obj.template.set(AttrType::IBM_OPAQUE, token);
    obj.template
        .set(AttrType::VALUE, vec![0u8; usize::from(bits / 8)]);
    Adjusted::Changed(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths_keep_the_store_as_given() {
        assert_eq!(
            upstream_path(Path::new("store/"), "TOK_OBJ/OBJ.IDX"),
            "store//TOK_OBJ/OBJ.IDX"
        );
        assert_eq!(upstream_path(Path::new("/d"), "MK_SO"), "/d/MK_SO");
    }
}
