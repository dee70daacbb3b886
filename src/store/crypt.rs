//! Cryptography of the data store: PIN verifiers, master key files and the
//! encryption of private objects, for both formats.
//!
//! Old format (`usr/lib/common/loadsave.c`, the `*_old()` functions): SHA-1 PIN
//! verifiers, DES3 key = `MD5(PIN) ‖ MD5(PIN)[0..8]`, DES-EDE3-CBC with the
//! fixed IVs `12345678` (MK files) and `10293847` (objects), SHA-1 integrity
//! values and explicit padding. New format (same file, and `new_host.c:
//! SC_Login()`): PBKDF2-HMAC-SHA-512 verifiers and wrap keys, RFC 3394 AES key
//! wrap, AES-256-GCM.
//!
//! Every key, PIN-derived value and decrypted buffer is held in a
//! [`Zeroizing`] buffer; nothing here implements `Debug`.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use cipher::block_padding::NoPadding;
use cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest, Md5};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::bytes::ct_eq;

/// DES3 IV used for MK_SO / MK_USER (`usr/lib/cca_stdll/tok_struct.h`).
pub(crate) const PIN_IV: [u8; 8] = *b"12345678";
/// DES3 IV used for old-format private objects (same file).
pub(crate) const OBJ_IV: [u8; 8] = *b"10293847";
/// The default SO PIN of a new token.
pub const DEFAULT_SO_PIN: &[u8] = b"87654321";
/// The default USER PIN written into new-format verifiers before C_InitPIN.
#[cfg(feature = "testkit")]
pub const DEFAULT_USER_PIN: &[u8] = b"12345678";
/// Upper bound on PBKDF2 iterations we are willing to run (openCryptoki writes
/// 100000); guards against a damaged NVTOK.DAT making us spin for hours.
pub(crate) const MAX_PBKDF2_ITERATIONS: u64 = 10_000_000;

type Des3CbcEnc = cbc::Encryptor<des::TdesEde3>;
type Des3CbcDec = cbc::Decryptor<des::TdesEde3>;

/// The token's data-store master key: 24 bytes (old DES3), 64 bytes (legacy
/// CCA; only the first 24 are used) or 32 bytes (new format).
///
/// Deliberately without `Debug`, `Display` or `Clone`.
pub struct MasterKey(Zeroizing<Vec<u8>>);

impl MasterKey {
    pub(crate) fn from_vec(v: Zeroizing<Vec<u8>>) -> Self {
        MasterKey(v)
    }

    /// Key length in bytes (24, 32 or 64).
    #[cfg(feature = "testkit")]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; a master key has at least 24 bytes.
    #[cfg(feature = "testkit")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether both keys are the same (constant time).
    #[cfg(feature = "testkit")]
    pub fn same_as(&self, other: &MasterKey) -> bool {
        ct_eq(&self.0, &other.0)
    }

    /// The 64-byte legacy CCA master key as a CCA key identifier. In stores
    /// written by openCryptoki 2.x this is a DES key token (enciphered under
    /// the card's SYM master key) that the card used to encipher private
    /// objects (`usr/sbin/pkcscca/pkcscca.c`); `None` for other key sizes.
    pub fn cca_key_token(&self) -> Option<&[u8; 64]> {
        let s: &[u8] = &self.0;
        <&[u8; 64]>::try_from(s).ok()
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The 24-byte DES3 key used for old-format objects (`MK[0..24]`).
    pub(crate) fn des3_key(&self) -> Option<&[u8]> {
        self.0.get(..24)
    }

    /// The 32-byte AES key of the new format, by reference: no copy of the key is
    /// made outside this zeroizing buffer.
    pub(crate) fn aes_key(&self) -> Option<&[u8; 32]> {
        let s: &[u8] = &self.0;
        <&[u8; 32]>::try_from(s).ok()
    }
}

/// Bytes of stack [`scrub_stack`] overwrites: far more than the frames of the PIN
/// checks (SHA-1, MD5, DES3, PBKDF2-HMAC-SHA-512, AES key unwrap) take.
const STACK_SCRUB: usize = 64 << 10;

/// Overwrites the stack below the caller's frame with zeros.
///
/// The hash and cipher crates copy their input into blocks on the stack (the
/// PIN's last partial block in SHA-1's and MD5's buffers, the message schedule)
/// and leave those frames as they are when they return. Called right after
/// every PIN check, this wipes them, so no copy of a PIN or PIN-derived key
/// outlives the check on the stack (`tests/secret_residue.rs` looks for them).
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut area = [0u8; STACK_SCRUB];
    zeroize::Zeroize::zeroize(&mut area);
    std::hint::black_box(&area);
}

/// Fills a fresh zeroizing buffer with `n` random bytes.
pub(crate) fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, std::io::Error> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    getrandom::getrandom(&mut v).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(v)
}

/// SHA-1 of `data`.
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// The old-format PIN key: `MD5(PIN) ‖ MD5(PIN)[0..8]`.
pub(crate) fn old_pin_key(pin: &[u8]) -> Zeroizing<[u8; 24]> {
    let d: Zeroizing<[u8; 16]> = Zeroizing::new(Md5::digest(pin).into());
    let mut k = Zeroizing::new([0u8; 24]);
    for (i, b) in k.iter_mut().enumerate() {
        *b = d.get(i % 16).copied().unwrap_or(0);
    }
    k
}

/// DES-EDE3-CBC without cipher padding; `None` if sizes are wrong.
pub(crate) fn des3_cbc(
    key: &[u8],
    iv: &[u8; 8],
    data: &[u8],
    encrypt: bool,
) -> Option<Zeroizing<Vec<u8>>> {
    if !data.len().is_multiple_of(8) || key.len() != 24 {
        return None;
    }
    let mut buf = Zeroizing::new(data.to_vec());
    let len = buf.len();
    if encrypt {
        let c = Des3CbcEnc::new_from_slices(key, iv).ok()?;
        c.encrypt_padded_mut::<NoPadding>(&mut buf, len).ok()?;
    } else {
        let c = Des3CbcDec::new_from_slices(key, iv).ok()?;
        c.decrypt_padded_mut::<NoPadding>(&mut buf).ok()?;
    }
    Some(buf)
}

/// Appends openCryptoki's padding: `n` bytes of value `n`, `1 ≤ n ≤ 8`, always present.
pub(crate) fn pad8(buf: &mut Zeroizing<Vec<u8>>) {
    let n = 8 - (buf.len() % 8);
    buf.extend(std::iter::repeat_n(n as u8, n));
}

/// Decrypts an old-format MK file (48 or 88 bytes) with `pin`.
///
/// Mirrors `loadsave.c: load_masterkey_so_old()` / `load_masterkey_user_old()`:
/// L = 64 for an 88-byte file, 24 otherwise; accept iff `SHA-1(MK)` matches.
pub(crate) fn old_mk_open(file: &[u8], pin: &[u8]) -> Option<MasterKey> {
    let l = match file.len() {
        48 => 24,
        88 => 64,
        _ => return None,
    };
    let key = old_pin_key(pin);
    let plain = des3_cbc(&key[..], &PIN_IV, file, false)?;
    let mk = plain.get(..l)?;
    let check = plain.get(l..l + 20)?;
    if !ct_eq(&sha1(mk), check) {
        return None;
    }
    Some(MasterKey(Zeroizing::new(mk.to_vec())))
}

/// Encrypts a master key into an old-format MK file (48 bytes for a 24-byte
/// key, 88 for a 64-byte key). Mirrors `loadsave.c: save_masterkey_so_old()`.
#[cfg(feature = "testkit")]
pub(crate) fn old_mk_seal(mk: &MasterKey, pin: &[u8]) -> Option<Vec<u8>> {
    // Sized once for key, SHA-1 and padding: a reallocation would leave a copy of
    // the key in the freed block.
    let mut plain = Zeroizing::new(Vec::with_capacity(mk.len() + 20 + 8));
    plain.extend_from_slice(mk.bytes());
    plain.extend_from_slice(&sha1(mk.bytes()));
    pad8(&mut plain);
    let key = old_pin_key(pin);
    des3_cbc(&key[..], &PIN_IV, &plain, true).map(|z| z.to_vec())
}

/// PBKDF2-HMAC-SHA-512 with a 32-byte output.
pub(crate) fn pbkdf2_sha512(
    pin: &[u8],
    salt: &[u8],
    iterations: u64,
) -> Option<Zeroizing<[u8; 32]>> {
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return None;
    }
    let rounds = u32::try_from(iterations).ok()?;
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(pin, salt, rounds, &mut out[..]);
    Some(out)
}

/// RFC 3394 AES-256 key wrap of a 32-byte key into 40 bytes.
pub(crate) fn aes_wrap(kek: &[u8; 32], key: &[u8; 32]) -> Option<[u8; 40]> {
    // From a reference: `From<[u8; 32]>` would copy the key onto the stack.
    let kek = aes_kw::KekAes256::new(kek.into());
    let mut out = [0u8; 40];
    kek.wrap(key, &mut out).ok()?;
    Some(out)
}

/// RFC 3394 AES-256 key unwrap; `None` on an integrity failure.
pub(crate) fn aes_unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if wrapped.len() != 40 {
        return None;
    }
    let kek = aes_kw::KekAes256::new(kek.into());
    let mut out = Zeroizing::new([0u8; 32]);
    kek.unwrap(wrapped, &mut out[..]).ok()?;
    Some(out)
}

/// AES-256-GCM encryption in place; returns the 16-byte tag.
pub(crate) fn gcm_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Option<[u8; 16]> {
    let c = Aes256Gcm::new(key.into());
    let tag = c
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, buf)
        .ok()?;
    Some(tag.into())
}

/// AES-256-GCM decryption in place; `None` if the tag does not verify.
pub(crate) fn gcm_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> Option<()> {
    let c = Aes256Gcm::new(key.into());
    c.decrypt_in_place_detached(Nonce::from_slice(nonce), aad, buf, Tag::from_slice(tag))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::bytes::unhex as hex;

    /// Old MK_SO for SO PIN `87654321`, MK = 0x00..0x17; expected bytes computed
    /// independently with Python's hashlib and `cryptography`.
    #[test]
    fn old_mk_worked_example() {
        let mk = MasterKey(Zeroizing::new((0u8..24).collect()));
        let file = old_mk_seal(&mk, b"87654321").unwrap();
        assert_eq!(
            file,
            hex("7bd25948deac0b37aabb660e6affaa22b3b7c77b7c0edd425b808416773099376d7f35c5e5cf4d5a0eeba398bc83b74e")
        );
        assert!(old_mk_open(&file, b"87654321").unwrap().same_as(&mk));
        assert!(old_mk_open(&file, b"87654322").is_none());
    }

    /// New MK_SO: wrap key from PIN `87654321` and an all-zero random salt half,
    /// MK = 0x00..0x1f; expected bytes computed as above (one PBKDF2, to stay quick).
    #[test]
    fn new_wrap_worked_example() {
        let wrap_key: [u8; 32] =
            hex("8898a2c323b8adc8da9a06c56fdccd87ca7a63242eb5d4cff1ce668b43c2d5a0")
                .try_into()
                .unwrap();
        let mk: [u8; 32] = core::array::from_fn(|i| i as u8);
        let w = aes_wrap(&wrap_key, &mk).unwrap();
        assert_eq!(
            w.to_vec(),
            hex("0c3be241f627203fd76d85b489e8405d7a716c2cf5ac0bcaa19b6da23cd5c77bb5fc67549c7655ad")
        );
        assert_eq!(&aes_unwrap(&wrap_key, &w).unwrap()[..], &mk[..]);
        let mut salt = b"so_wrap_purpose_________________".to_vec();
        salt.extend_from_slice(&[0u8; 32]);
        assert_eq!(
            &pbkdf2_sha512(b"87654321", &salt, 100_000).unwrap()[..],
            &wrap_key[..]
        );
        assert!(pbkdf2_sha512(b"x", &salt, 0).is_none());
    }
}
