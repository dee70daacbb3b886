//! Which token objects `-m keys -k TYPE` examines, in which order, and how each is
//! named, counted and handled.
//!
//! Mirrors `pkcscca.c: migrate_wrapped_keys()` (the per-type searches and their
//! `Search for ...` announcements), `add_key()` (the type names of `Migratable key
//! found`) and `cca_migrate()` (the algorithm names, counters and handling per
//! `CKK_*`). Beyond upstream, the key types it forgets are included where their
//! secure key sits under the same master key: the `CKK_SHA*_HMAC` types (HMAC tokens,
//! like `CKK_GENERIC_SECRET`), `CKK_EC_EDWARDS` and `CKK_EC_MONTGOMERY` (ECC tokens),
//! and `CKK_ML_KEM` (QSA tokens). Their searches announce nothing and print their
//! `Found N keys to examine` line only when they find something, so a store without
//! such keys produces upstream's output byte for byte.

use crate::cca::MkType;
use crate::messages::KeyCounts;
use crate::pkcs11::KeyType;

/// How `cca_migrate()` treats a key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// DES and AES: CSNBKTC (or CSNBKTC2 for AES CIPHER tokens); AES XTS holds two
    /// tokens back to back (`cca_migrate_symmetric()`).
    Symmetric,
    /// HMAC tokens: CSNBKTC2 with `HMAC` (`cca_migrate_hmac()`).
    Hmac,
    /// PKA tokens: CSNDKTC (`cca_migrate_asymmetric()`); public tokens are skipped.
    Asymmetric,
}

/// Which RSA private sections a run accepts (`-k asym` vs `-k apka`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaFormat {
    /// `-k asym`: only RSA-CRT `X'08'` sections (ASYM master key).
    Old,
    /// `-k apka`: only RSA-AESM `X'30'` and RSA-AESC `X'31'` sections (APKA master key).
    New,
}

/// One key type searched for, with everything upstream prints about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyKind {
    /// The `CKK_*` value matched against `CKA_KEY_TYPE`.
    pub key_type: KeyType,
    /// `Search for <announce> keys` printed before the search (verbose), if any.
    pub announce: Option<&'static str>,
    /// Whether this search is one upstream does (then `Found N keys to examine` is
    /// printed even for zero matches).
    pub upstream: bool,
    /// The type name in `Migratable key found: type=...` (`pkcscca.h`).
    pub type_name: &'static str,
    /// How the key is re-enciphered.
    pub handling: Handling,
    /// The RSA format check of this run, for `CKK_RSA`.
    pub rsa: Option<RsaFormat>,
    /// The algorithm: the name in the per-key lines and the summary counter.
    pub algorithm: Algorithm,
}

/// The algorithm of a key as `cca_migrate()` names it in its per-key lines, each with
/// its summary counter of `key_migration_results()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `AES`.
    Aes,
    /// `DES` (every DES flavour, as upstream).
    Des,
    /// `ECC`.
    Ecc,
    /// `HMAC`.
    Hmac,
    /// `RSA`.
    Rsa,
    /// `IBM Dilithium`.
    IbmDilithium,
    /// `IBM ML-DSA`.
    IbmMlDsa,
    /// `IBM ML-KEM`.
    IbmMlKem,
    /// `ML-DSA`.
    MlDsa,
    /// `ML-KEM` (ours: upstream has no counter for `CKK_ML_KEM`).
    MlKem,
}

impl Algorithm {
    /// The name in `Successfully migrated <name> key.` and the other per-key lines
    /// (upstream spells two of them with an underscore).
    pub fn line_name(self) -> &'static str {
        match self {
            Algorithm::Aes => "AES",
            Algorithm::Des => "DES",
            Algorithm::Ecc => "ECC",
            Algorithm::Hmac => "HMAC",
            Algorithm::Rsa => "RSA",
            Algorithm::IbmDilithium => "IBM Dilithium",
            Algorithm::IbmMlDsa => "IBM ML_DSA",
            Algorithm::IbmMlKem => "IBM ML-KEM",
            Algorithm::MlDsa => "ML_DSA",
            Algorithm::MlKem => "ML-KEM",
        }
    }

    /// Adds one to this algorithm's counter in `c`.
    pub fn bump(self, c: &mut KeyCounts) {
        let n = match self {
            Algorithm::Aes => &mut c.aes,
            Algorithm::Des => &mut c.des,
            Algorithm::Ecc => &mut c.ecc,
            Algorithm::Hmac => &mut c.hmac,
            Algorithm::Rsa => &mut c.rsa,
            Algorithm::IbmDilithium => &mut c.ibm_dilithium,
            Algorithm::IbmMlDsa => &mut c.ibm_ml_dsa,
            Algorithm::IbmMlKem => &mut c.ibm_ml_kem,
            Algorithm::MlDsa => &mut c.ml_dsa,
            Algorithm::MlKem => &mut c.ml_kem,
        };
        *n = n.saturating_add(1);
    }
}

const fn kind(
    key_type: KeyType,
    announce: Option<&'static str>,
    upstream: bool,
    type_name: &'static str,
    handling: Handling,
    algorithm: Algorithm,
) -> KeyKind {
    KeyKind {
        key_type,
        announce,
        upstream,
        type_name,
        handling,
        rsa: None,
        algorithm,
    }
}

const fn hmac(key_type: KeyType) -> KeyKind {
    kind(
        key_type,
        None,
        false,
        "HMAC",
        Handling::Hmac,
        Algorithm::Hmac,
    )
}

const fn ecc(key_type: KeyType) -> KeyKind {
    kind(
        key_type,
        None,
        false,
        "ECC",
        Handling::Asymmetric,
        Algorithm::Ecc,
    )
}

/// The one search of `-m oldrsakeys` (`migrate_old_rsa_keys()`: `Search for RSA keys`,
/// `CKK_RSA`, type name `RSA`).
pub fn old_rsa_search() -> KeyKind {
    KeyKind {
        rsa: Some(RsaFormat::Old),
        ..kind(
            KeyType::RSA,
            Some("RSA"),
            true,
            "RSA",
            Handling::Asymmetric,
            Algorithm::Rsa,
        )
    }
}

/// The searches of one `-k` value, in upstream's order, followed by ours.
pub fn searches(mk: MkType) -> Vec<KeyKind> {
    use Handling::{Asymmetric as Asym, Symmetric as Sym};
    match mk {
        MkType::Aes => vec![
            kind(KeyType::AES, Some("AES"), true, "AES", Sym, Algorithm::Aes),
            kind(KeyType::AES_XTS, None, true, "AES XTS", Sym, Algorithm::Aes),
            kind(
                KeyType::GENERIC_SECRET,
                Some("HMAC"),
                true,
                "HMAC",
                Handling::Hmac,
                Algorithm::Hmac,
            ),
            hmac(KeyType::SHA_1_HMAC),
            hmac(KeyType::SHA224_HMAC),
            hmac(KeyType::SHA256_HMAC),
            hmac(KeyType::SHA384_HMAC),
            hmac(KeyType::SHA512_HMAC),
        ],
        MkType::Apka => vec![
            kind(KeyType::EC, Some("ECC"), true, "ECC", Asym, Algorithm::Ecc),
            KeyKind {
                rsa: Some(RsaFormat::New),
                ..kind(KeyType::RSA, Some("RSA"), true, "RSA", Asym, Algorithm::Rsa)
            },
            kind(
                KeyType::IBM_PQC_DILITHIUM,
                Some("IBM Dilithium"),
                true,
                "IBM Dilithium",
                Asym,
                Algorithm::IbmDilithium,
            ),
            kind(
                KeyType::IBM_ML_DSA,
                Some("IBM ML-DSA"),
                true,
                "IBM ML-DSA",
                Asym,
                Algorithm::IbmMlDsa,
            ),
            kind(
                KeyType::IBM_ML_KEM,
                Some("IBM ML-KEM"),
                true,
                "IBM ML-KEM",
                Asym,
                Algorithm::IbmMlKem,
            ),
            kind(
                KeyType::ML_DSA,
                Some("ML-DSA"),
                true,
                "ML-DSA",
                Asym,
                Algorithm::MlDsa,
            ),
            ecc(KeyType::EC_EDWARDS),
            ecc(KeyType::EC_MONTGOMERY),
            kind(
                KeyType::ML_KEM,
                None,
                false,
                "ML-KEM",
                Asym,
                Algorithm::MlKem,
            ),
        ],
        MkType::Asym => vec![KeyKind {
            rsa: Some(RsaFormat::Old),
            ..kind(
                KeyType::RSA,
                Some("old RSA"),
                true,
                "RSA",
                Asym,
                Algorithm::Rsa,
            )
        }],
        MkType::Sym => vec![
            kind(KeyType::DES, Some("DES"), true, "DES", Sym, Algorithm::Des),
            kind(
                KeyType::DES2,
                Some("DES2"),
                true,
                "2DES",
                Sym,
                Algorithm::Des,
            ),
            kind(
                KeyType::DES3,
                Some("DES3"),
                true,
                "3DES",
                Sym,
                Algorithm::Des,
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_searches_come_first_and_in_order() {
        let names = |mk| {
            searches(mk)
                .iter()
                .filter(|k| k.upstream)
                .map(|k| k.key_type)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(MkType::Aes),
            [KeyType::AES, KeyType::AES_XTS, KeyType::GENERIC_SECRET]
        );
        assert_eq!(
            names(MkType::Sym),
            [KeyType::DES, KeyType::DES2, KeyType::DES3]
        );
        assert_eq!(names(MkType::Asym), [KeyType::RSA]);
        assert_eq!(
            names(MkType::Apka),
            [
                KeyType::EC,
                KeyType::RSA,
                KeyType::IBM_PQC_DILITHIUM,
                KeyType::IBM_ML_DSA,
                KeyType::IBM_ML_KEM,
                KeyType::ML_DSA
            ]
        );
        for mk in [MkType::Aes, MkType::Apka, MkType::Asym, MkType::Sym] {
            let s = searches(mk);
            let first_ours = s.iter().position(|k| !k.upstream).unwrap_or(s.len());
            assert!(s
                .iter()
                .skip(first_ours)
                .all(|k| !k.upstream && k.announce.is_none()));
        }
    }

    #[test]
    fn each_key_type_is_searched_once_per_run() {
        for mk in [MkType::Aes, MkType::Apka, MkType::Asym, MkType::Sym] {
            let s = searches(mk);
            for (i, k) in s.iter().enumerate() {
                assert!(s.iter().skip(i + 1).all(|o| o.key_type != k.key_type));
            }
        }
    }
}
