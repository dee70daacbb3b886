//! Creating stores and adding objects the way openCryptoki does, for tests
//! and the demo: big-endian stores, stores holding emulator-made keys.
//!
//! Mirrors the effect of pkcsslotd's first load plus `C_InitToken`,
//! `C_InitPIN` and `C_SetPIN` (`loadsave.c: save_token_data()`,
//! `save_masterkey_so[_old]()`, `save_masterkey_user[_old]()`), and of
//! `obj_mgr.c: object_mgr_save_token_object()` naming (base-36 counter
//! before 3.18, `OB` + 6 random characters since).

use std::fs::{self, OpenOptions as FsOpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::atomic::{self, Replacement, FILE_MODE};
use super::attrs::FlatObject;
use super::bytes::{put, ByteOrder};
use super::crypt::{self, MasterKey, DEFAULT_SO_PIN, DEFAULT_USER_PIN};
use super::fsio::StoreDir;
use super::nvtok::{self, flags, off, TokenData};
use super::object_file::{Envelope, TOKVERSION_3_12};
use super::{
    ByteOrderSource, Format, ObjectName, StoreError, StoredObject, Template, TokenStore, MK_SO,
    MK_USER, NVTOK_DAT, OBJ_IDX, TOK_OBJ,
};
use crate::pkcs11::AttrType;

/// What [`TokenStore::create`] should build.
pub struct CreateOptions {
    /// Old (3.8.1-style) or new (3.12+) format.
    pub format: Format,
    /// Host order of the simulated writer (NVTOK.DAT old, object bodies).
    pub byte_order: ByteOrder,
    /// SO PIN ([`DEFAULT_SO_PIN`] = never changed).
    pub so_pin: Zeroizing<Vec<u8>>,
    /// USER PIN; `None` = C_InitPIN never ran (flag clear, no MK_USER).
    pub user_pin: Option<Zeroizing<Vec<u8>>>,
    /// Old format only: write a 64-byte master key (24 random bytes + 40 zero
    /// bytes) in 88-byte MK files, as the 3.8.1–3.14 CCA token did.
    pub legacy_cca_mk: bool,
    /// Old format only: this master key (24 or 64 bytes) instead of a random
    /// one, e.g. the 64-byte CCA DES key token an openCryptoki 2.x CCA store
    /// used (`usr/sbin/pkcscca/pkcscca.c`); a 64-byte key is written in 88-byte MK files.
    pub master_key: Option<Zeroizing<Vec<u8>>>,
    /// Old format only: write NVTOK.DAT as openCryptoki 3.8.1 did (its
    /// defaults and the base-36 object name counter, so that
    /// [`TokenStore::add_object`] names objects `00000000`, `10000000`, …).
    /// Otherwise the store looks like one written by 3.27 (counter unused,
    /// objects named `OB` + 6 random characters).
    pub opencryptoki_3_8_1: bool,
    /// Token label (blank-padded to 32 bytes).
    pub label: String,
    /// New format: PBKDF2 iterations stored in NVTOK.DAT (openCryptoki
    /// writes 100000; tests may use fewer to stay fast).
    pub pbkdf2_iterations: u64,
}

impl CreateOptions {
    /// A store with SO PIN `76543210` and USER PIN `11223344` (the vectors' PINs).
    pub fn new(format: Format) -> Self {
        CreateOptions {
            format,
            byte_order: ByteOrder::native(),
            so_pin: Zeroizing::new(b"76543210".to_vec()),
            user_pin: Some(Zeroizing::new(b"11223344".to_vec())),
            legacy_cca_mk: false,
            master_key: None,
            opencryptoki_3_8_1: false,
            label: "pkcscca".to_string(),
            pbkdf2_iterations: 100_000,
        }
    }
}

impl CreateOptions {
    /// Sets the SO PIN.
    pub fn with_so_pin(mut self, pin: &[u8]) -> Self {
        self.so_pin = Zeroizing::new(pin.to_vec());
        self
    }

    /// Sets the USER PIN (`None`: C_InitPIN never ran).
    pub fn with_user_pin(mut self, pin: Option<&[u8]>) -> Self {
        self.user_pin = pin.map(|p| Zeroizing::new(p.to_vec()));
        self
    }

    /// Sets the simulated writer's byte order.
    pub fn with_byte_order(mut self, order: ByteOrder) -> Self {
        self.byte_order = order;
        self
    }
}

fn invalid(file: &Path, what: &'static str) -> StoreError {
    StoreError::Invalid {
        file: file.into(),
        what,
    }
}

/// Sets `mode` exactly (the process umask does not apply to chmod).
fn chmod(path: &Path, mode: u32) -> Result<(), StoreError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| StoreError::io(path, "cannot set mode", e))
}

/// Creates a directory with exactly `mode` (if missing).
fn make_dir(path: &Path, mode: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => chmod(path, mode),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(path, "cannot create directory", e)),
    }
}

/// Creates a new file exclusively with mode 0660 regardless of the umask,
/// in the group of its directory (the token group), as `set_perm()` does.
fn create_exclusive(path: &Path) -> std::io::Result<fs::File> {
    let f = FsOpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    set_token_perm(&f, path)?;
    Ok(f)
}

/// Mode 0660 and the directory's group. Mirrors `loadsave.c: set_perm()`.
fn set_token_perm(f: &fs::File, path: &Path) -> std::io::Result<()> {
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    let dir_gid = path
        .parent()
        .map(fs::metadata)
        .transpose()?
        .map(|m| m.gid());
    if let Some(g) = dir_gid.filter(|g| f.metadata().is_ok_and(|m| m.gid() != *g)) {
        std::os::unix::fs::fchown(f, None, Some(g))?;
    }
    Ok(())
}

/// Writes a brand-new file with mode 0660.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = create_exclusive(path).map_err(|e| StoreError::io(path, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(path, "cannot write", e))
}

/// The next value of the base-36 name counter: digits `0-9A-Z`, first
/// character least significant (3.8.1's `utility.c: compute_next_token_obj_name()`).
/// `None` on a foreign character.
pub(crate) fn next_counter(name: &[u8; 8]) -> Option<[u8; 8]> {
    let mut n = *name;
    for c in n.iter_mut() {
        match *c {
            b'Z' => *c = b'0',
            b'9' => {
                *c = b'A';
                return Some(n);
            }
            b'0'..=b'8' | b'A'..=b'Y' => {
                *c += 1;
                return Some(n);
            }
            _ => return None,
        }
    }
    Some(n)
}

impl TokenStore {
    /// Creates a store in `dir` (created if missing; must hold no NVTOK.DAT)
    /// and returns it with its master key.
    pub fn create(
        dir: impl AsRef<Path>,
        opts: CreateOptions,
    ) -> Result<(TokenStore, MasterKey), StoreError> {
        let dir = dir.as_ref();
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| StoreError::io(parent, "cannot create directory", e))?;
        }
        make_dir(dir, 0o770)?;
        let nv_path = dir.join(NVTOK_DAT);
        if fs::symlink_metadata(&nv_path).is_ok() {
            return Err(invalid(&nv_path, "a store already exists here"));
        }
        let rnd = |n| crypt::random(n).map_err(|e| StoreError::io(dir, "no random bytes", e));
        let legacy = opts.legacy_cca_mk && opts.format == Format::Old;
        let v381 = opts.opencryptoki_3_8_1 && opts.format == Format::Old;
        let mk = match (opts.format, &opts.master_key) {
            (Format::Old, Some(k)) if k.len() == 24 || k.len() == 64 => k.clone(),
            (_, Some(_)) => {
                return Err(invalid(
                    dir,
                    "a given master key must be 24 or 64 bytes, old format",
                ))
            }
            (Format::Old, None) if legacy => {
                let mut k = rnd(24)?;
                k.resize(64, 0);
                k
            }
            (Format::Old, None) => rnd(24)?,
            (Format::New, None) => rnd(32)?,
        };
        let mk = MasterKey::from_vec(mk);
        let order = opts.byte_order;
        let mut raw = nvtok::template_bytes(opts.format, order, opts.label.as_bytes(), v381);
        let mut fl = flags::RNG | flags::LOGIN_REQUIRED | flags::CLOCK_ON_TOKEN;
        if !v381 {
            fl |= flags::DUAL_CRYPTO;
        }
        let so_default = opts.so_pin.as_slice() == DEFAULT_SO_PIN;
        if so_default {
            fl |= flags::SO_PIN_TO_BE_CHANGED;
        }
        match &opts.user_pin {
            Some(_) => fl |= flags::USER_PIN_INITIALIZED | flags::TOKEN_INITIALIZED,
            None => {
                fl |= flags::USER_PIN_TO_BE_CHANGED;
                if !so_default {
                    fl |= flags::TOKEN_INITIALIZED;
                }
            }
        }
        nvtok::set_flags(&mut raw, opts.format, order, fl);

        let (mk_so, mk_user) = match opts.format {
            Format::Old => {
                let mut so_sha = [0u8; 24];
                so_sha[..20].copy_from_slice(&crypt::sha1(&opts.so_pin));
                put(&mut raw, off::SO_PIN_SHA, &so_sha);
                if let Some(u) = &opts.user_pin {
                    let mut u_sha = [0u8; 24];
                    u_sha[..20].copy_from_slice(&crypt::sha1(u));
                    put(&mut raw, off::USER_PIN_SHA, &u_sha);
                }
                let seal = |pin: &[u8]| {
                    crypt::old_mk_seal(&mk, pin)
                        .ok_or_else(|| invalid(dir, "cannot encrypt master key"))
                };
                let so = seal(&opts.so_pin)?;
                let user = opts.user_pin.as_ref().map(|u| seal(u)).transpose()?;
                (so, user)
            }
            Format::New => {
                let it = opts.pbkdf2_iterations;
                let kdf = |pin: &[u8], salt: &[u8]| {
                    crypt::pbkdf2_sha512(pin, salt, it)
                        .ok_or_else(|| invalid(dir, "bad PBKDF2 iteration count"))
                };
                let mut salts: Vec<Vec<u8>> = Vec::new();
                for (purpose, it_off, salt_off) in [
                    (
                        nvtok::SO_LOGIN_PURPOSE,
                        off::SO_LOGIN_IT,
                        off::SO_LOGIN_SALT,
                    ),
                    (
                        nvtok::USER_LOGIN_PURPOSE,
                        off::USER_LOGIN_IT,
                        off::USER_LOGIN_SALT,
                    ),
                    (nvtok::SO_WRAP_PURPOSE, off::SO_WRAP_IT, off::SO_WRAP_SALT),
                    (
                        nvtok::USER_WRAP_PURPOSE,
                        off::USER_WRAP_IT,
                        off::USER_WRAP_SALT,
                    ),
                ] {
                    let mut salt = purpose.to_vec();
                    salt.extend_from_slice(&rnd(32)?);
                    put(&mut raw, it_off, &ByteOrder::Big.u64_bytes(it));
                    put(&mut raw, salt_off, &salt);
                    salts.push(salt);
                }
                let (so_login, user_login, so_wrap, user_wrap) = match salts.as_slice() {
                    [a, b, c, d] => (a, b, c, d),
                    _ => return Err(invalid(dir, "internal: salts")),
                };
                let user_pin: &[u8] = opts.user_pin.as_deref().map_or(DEFAULT_USER_PIN, |v| v);
                put(
                    &mut raw,
                    off::SO_LOGIN_KEY,
                    &kdf(&opts.so_pin, so_login)?[..],
                );
                put(
                    &mut raw,
                    off::USER_LOGIN_KEY,
                    &kdf(user_pin, user_login)?[..],
                );
                let aes = mk
                    .aes_key()
                    .ok_or_else(|| invalid(dir, "internal: key size"))?;
                let wrap = |pin: &[u8], salt: &[u8]| -> Result<Vec<u8>, StoreError> {
                    let k = kdf(pin, salt)?;
                    crypt::aes_wrap(&k, aes)
                        .map(|w| w.to_vec())
                        .ok_or_else(|| invalid(dir, "cannot wrap master key"))
                };
                let so = wrap(&opts.so_pin, so_wrap)?;
                let user = opts
                    .user_pin
                    .as_ref()
                    .map(|u| wrap(u, user_wrap))
                    .transpose()?;
                (so, user)
            }
        };
        write_new(&nv_path, &raw)?;
        write_new(&dir.join(MK_SO), &mk_so)?;
        if let Some(u) = mk_user {
            write_new(&dir.join(MK_USER), &u)?;
        }
        let tok = dir.join(TOK_OBJ);
        make_dir(&tok, 0o770)?;
        let nvtok = TokenData::from_raw(raw, opts.format, order)
            .ok_or_else(|| invalid(&nv_path, "internal: size"))?;
        let store = TokenStore {
            dir: dir.to_path_buf(),
            root: StoreDir::open_root(dir)?,
            tok_obj: Default::default(),
            format: opts.format,
            order,
            order_source: ByteOrderSource::Explicit,
            nvtok,
        };
        Ok((store, mk))
    }

    /// Adds an object built from `template` (which must use the store's byte
    /// order), named as the store's format would name it, and appends it to
    /// OBJ.IDX. Private iff `CKA_PRIVATE` is true or absent (`object.c: object_is_private()`).
    pub fn add_object(
        &mut self,
        mk: &MasterKey,
        template: Template,
    ) -> Result<StoredObject, StoreError> {
        let tok = self.tok_obj_dir();
        let tok_dir = super::tok_obj_of(&self.root, &self.tok_obj)?;
        if template.byte_order() != self.order {
            return Err(invalid(
                &tok,
                "template byte order differs from the store's",
            ));
        }
        let private = template.get_bool(AttrType::PRIVATE).unwrap_or(true);
        // Name as the writing version would: a 3.8.1–3.17 store keeps the
        // base-36 counter in NVTOK.DAT (ASCII digits); 3.18+ leaves it zero
        // (new stores) and uses `OB` + 6 random characters (`obj_mgr.c`: mkstemp).
        let cur = self.nvtok.next_name();
        let uses_counter = self.format == Format::Old
            && cur
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
        let name = if uses_counter {
            let nv_path = self.dir.join(NVTOK_DAT);
            let name =
                ObjectName::from_bytes(cur).ok_or_else(|| invalid(&nv_path, "bad name counter"))?;
            let next = next_counter(&cur).ok_or_else(|| invalid(&nv_path, "bad name counter"))?;
            if tok_dir.stat_if_present(name.as_str())?.is_some() {
                return Err(invalid(
                    &tok.join(name.as_str()),
                    "counter names an existing file",
                ));
            }
            let mut nv = self.nvtok.clone();
            nv.set_next_name(&next);
            atomic::replace_all(
                &self.root,
                &[Replacement {
                    name: NVTOK_DAT.to_string(),
                    bytes: nv.raw().to_vec(),
                    may_be_new: false,
                    expect: None,
                }],
            )?;
            self.nvtok = nv;
            name
        } else {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            loop {
                let r = crypt::random(6).map_err(|e| StoreError::io(&tok, "no random bytes", e))?;
                let mut n = *b"OB000000";
                for (d, b) in n.iter_mut().skip(2).zip(r.iter()) {
                    *d = CHARS
                        .get(usize::from(*b) % CHARS.len())
                        .copied()
                        .unwrap_or(b'0');
                }
                let Some(name) = ObjectName::from_bytes(n) else {
                    continue;
                };
                // Reserve the name like mkstemp does.
                match create_exclusive(&tok.join(name.as_str())) {
                    Ok(_) => break name,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(StoreError::io(&tok, "cannot create object file", e)),
                }
            }
        };
        let envelope = match self.format {
            Format::Old => Envelope::Old,
            Format::New => Envelope::New {
                tokversion: self.nvtok.version().unwrap_or(TOKVERSION_3_12),
                host_order_header: false,
            },
        };
        let flat = FlatObject {
            class_word: 0,
            name,
            template,
            trailer: Zeroizing::new(Vec::new()),
        };
        let bytes = super::object_file::encode(&flat, private, &envelope, Some(mk))
            .map_err(|what| invalid(&tok.join(name.as_str()), what))?;
        atomic::replace_all(
            tok_dir,
            &[Replacement {
                name: name.as_str().to_string(),
                bytes: bytes.clone(),
                may_be_new: true,
                expect: None,
            }],
        )?;
        let idx = tok.join(OBJ_IDX);
        if fs::symlink_metadata(&idx).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::Symlink { file: idx });
        }
        // Never glue our line onto a last line that lacks its LF.
        let mut line = match fs::read(&idx) {
            Ok(d) if d.last().is_some_and(|b| *b != b'\n') => b"\n".to_vec(),
            _ => Vec::new(),
        };
        line.extend_from_slice(name.as_bytes());
        line.push(b'\n');
        let mut f = FsOpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&idx)
            .map_err(|e| StoreError::io(&idx, "cannot open", e))?;
        if line.len() == 9 && f.metadata().is_ok_and(|m| m.len() == 0) {
            set_token_perm(&f, &idx).map_err(|e| StoreError::io(&idx, "cannot set mode", e))?;
        }
        f.write_all(&line)
            .and_then(|_| f.sync_all())
            .map_err(|e| StoreError::io(&idx, "cannot append", e))?;
        let original = self.read_object_bytes(name)?;
        Ok(StoredObject {
            name,
            private,
            template: flat.template,
            class_word: 0,
            trailer: Zeroizing::new(Vec::new()),
            envelope,
            identity: None,
            original,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sequence() {
        let mut n = *b"00000000";
        let mut seen = vec![];
        for _ in 0..37 {
            seen.push(String::from_utf8(n.to_vec()).unwrap());
            n = next_counter(&n).unwrap();
        }
        assert_eq!(seen[1], "10000000");
        assert_eq!(seen[10], "A0000000");
        assert_eq!(seen[35], "Z0000000");
        assert_eq!(seen[36], "01000000");
        assert_eq!(next_counter(b"ZZZZZZZZ"), Some(*b"00000000"));
        assert_eq!(next_counter(b"a0000000"), None);
    }
}
