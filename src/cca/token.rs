//! CCA key token layouts: classification, MKVP location, TVV.
//!
//! Pure, panic-free functions over token bytes: where each kind of internal token
//! keeps its master-key verification pattern, and how the token validation value
//! of the 64-byte tokens is computed. The layouts are IBM CCA's internal key token
//! formats as openCryptoki's CCA token reads them (`usr/lib/cca_stdll/cca_stdll.h`,
//! `usr/lib/cca_stdll/cca_specific.c: analyse_cca_key_token()`):
//!
//! * 64-byte fixed-length tokens: byte 0 `X'01'` (internal), byte 4 the version
//!   (`X'00'`/`X'01'` DES, `X'04'` AES DATA), the 8-byte MKVP at offset 8, and the
//!   TVV in bytes 60..64;
//! * variable-length symmetric tokens (version `X'05'`, AES CIPHER and HMAC): a
//!   header, then the wrapping information with the 8-byte MKVP at offset 10 when
//!   the key is wrapped under a master key;
//! * PKA tokens: an 8-byte header (`X'1F'` internal, `X'1E'` external, the token
//!   length at bytes 2..4) followed by sections (ID, version, 2-byte length); the
//!   MKVP sits in the first private section at the offsets of [`pka`].
//!
//! Every read is bounds-checked; a token that does not fit its own layout is an
//! error, never a panic.

use std::fmt;

#[cfg(feature = "testkit")]
use super::rules::{self, Keyword};
#[cfg(feature = "testkit")]
use super::Verb;

/// The four CCA master-key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MkType {
    /// DES/TDES master key (24 bytes): DES tokens.
    Sym,
    /// RSA/PKA master key (24 bytes): RSA `X'06'`/`X'08'` sections.
    Asym,
    /// AES master key (32 bytes): AES DATA, AES CIPHER and HMAC tokens.
    Aes,
    /// APKA master key (32 bytes): ECC, RSA `X'30'`/`X'31'`, QSA sections.
    Apka,
}

impl MkType {
    /// All four types in register order.
    pub const ALL: [MkType; 4] = [MkType::Sym, MkType::Asym, MkType::Aes, MkType::Apka];

    /// Register size in bytes.
    pub fn key_len(self) -> usize {
        match self {
            MkType::Sym | MkType::Asym => 24,
            MkType::Aes | MkType::Apka => 32,
        }
    }

    /// Length of the verification pattern compared in tokens.
    pub fn mkvp_len(self) -> usize {
        match self {
            MkType::Asym => 16,
            _ => 8,
        }
    }

    /// Name as openCryptoki and pkcscca `-k` spell it, upper case.
    pub fn name(self) -> &'static str {
        match self {
            MkType::Sym => "SYM",
            MkType::Asym => "ASYM",
            MkType::Aes => "AES",
            MkType::Apka => "APKA",
        }
    }

    /// The `-k` word of this type (lower case).
    pub fn arg_name(self) -> &'static str {
        match self {
            MkType::Sym => "sym",
            MkType::Asym => "asym",
            MkType::Aes => "aes",
            MkType::Apka => "apka",
        }
    }

    /// Exact lookup of a `-k` word, as upstream's `strcmp` (lower case only).
    pub fn from_arg(word: &[u8]) -> Option<MkType> {
        MkType::ALL
            .into_iter()
            .find(|t| t.arg_name().as_bytes() == word)
    }

    /// Parses a type name (case-insensitive).
    pub fn from_name(s: &str) -> Option<MkType> {
        MkType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The CSNBMKP class keyword.
    #[cfg(feature = "testkit")]
    pub fn mkp_keyword(self) -> Keyword {
        match self {
            MkType::Sym => rules::SYM_MK,
            MkType::Asym => rules::ASYM_MK,
            MkType::Aes => rules::AES_MK,
            MkType::Apka => rules::APKA_MK,
        }
    }
}

impl fmt::Display for MkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of internal secure-key token a byte string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// 64-byte DES/TDES internal token (version `X'00'` or `X'01'`).
    Des,
    /// 64-byte AES DATA internal token (version `X'04'`).
    AesData,
    /// Variable-length AES CIPHER token (version `X'05'`, algorithm AES).
    AesCipher,
    /// Variable-length HMAC MAC token (version `X'05'`, algorithm HMAC).
    Hmac,
    /// PKA internal token with an RSA-CRT `X'08'` private section.
    RsaCrt,
    /// PKA internal token with an RSA-AESM `X'30'` private section.
    RsaAesm,
    /// PKA internal token with an RSA-AESC `X'31'` private section.
    RsaAesc,
    /// PKA internal token with an ECC `X'20'` private section.
    Ecc,
    /// PKA internal token with a QSA `X'50'` private section.
    Qsa,
}

impl TokenKind {
    /// The Key Token Change verb that re-enciphers this kind.
    #[cfg(feature = "testkit")]
    pub fn ktc_verb(self) -> Verb {
        match self {
            TokenKind::Des | TokenKind::AesData => Verb::Csnbktc,
            TokenKind::AesCipher | TokenKind::Hmac => Verb::Csnbktc2,
            _ => Verb::Csndktc,
        }
    }

    /// The algorithm keyword for that verb's rule array.
    #[cfg(feature = "testkit")]
    pub fn algorithm(self) -> Keyword {
        match self {
            TokenKind::Des => rules::DES,
            TokenKind::AesData | TokenKind::AesCipher => rules::AES,
            TokenKind::Hmac => rules::HMAC,
            TokenKind::RsaCrt | TokenKind::RsaAesm | TokenKind::RsaAesc => rules::RSA,
            TokenKind::Ecc => rules::ECC,
            TokenKind::Qsa => rules::QSA,
        }
    }

    /// The master key that wraps this kind.
    pub fn mk_type(self) -> MkType {
        match self {
            TokenKind::Des => MkType::Sym,
            TokenKind::AesData | TokenKind::AesCipher | TokenKind::Hmac => MkType::Aes,
            TokenKind::RsaCrt => MkType::Asym,
            TokenKind::RsaAesm | TokenKind::RsaAesc | TokenKind::Ecc | TokenKind::Qsa => {
                MkType::Apka
            }
        }
    }

    /// True for the 64-byte kinds that carry a TVV.
    pub fn has_tvv(self) -> bool {
        matches!(self, TokenKind::Des | TokenKind::AesData)
    }
}

/// Where an internal token keeps its MKVP, and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token kind.
    pub kind: TokenKind,
    /// Offset of the MKVP field in the token.
    pub mkvp_offset: usize,
    /// Number of significant MKVP bytes (16 for ASYM, else 8).
    pub mkvp_len: usize,
    /// Token length: 64 for fixed-length tokens, bytes 2–3 for `X'05'`
    /// tokens, the buffer length for PKA tokens.
    pub len: usize,
}

impl TokenInfo {
    /// The master-key type wrapping the token.
    pub fn mk_type(&self) -> MkType {
        self.kind.mk_type()
    }

    /// The MKVP bytes of `token` (empty if the token is shorter than classified).
    pub fn mkvp<'a>(&self, token: &'a [u8]) -> &'a [u8] {
        token
            .get(self.mkvp_offset..self.mkvp_offset + self.mkvp_len)
            .unwrap_or(&[])
    }
}

/// Why bytes are not a re-encipherable internal token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Shorter than its layout needs.
    Truncated {
        /// Bytes the layout needs.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A null token (`X'00'`).
    Null,
    /// An external token (`X'02'` or `X'1E'`): wrapped by a KEK or public only.
    External,
    /// Internal PKA token without a private section.
    PublicOnly,
    /// Unknown token identifier (byte 0).
    UnknownIdentifier(u8),
    /// Known identifier, unsupported version byte.
    UnsupportedVersion(u8),
    /// PKA private section id we do not re-encipher.
    UnsupportedSection(u8),
    /// Variable-length token whose key is not wrapped by the master key.
    NotMkWrapped(u8),
    /// A length field disagrees with the bytes present.
    BadLength,
    /// The token validation value (bytes 60–63 of a 64-byte token) does not match.
    BadTvv,
    /// A field holds a value the token format does not allow.
    Malformed {
        /// Offset of the field in the token.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Truncated { need, got } => {
                write!(f, "token truncated: {got} bytes, layout needs {need}")
            }
            TokenError::Null => f.write_str("null token"),
            TokenError::External => f.write_str("external token (not wrapped by a master key)"),
            TokenError::PublicOnly => f.write_str("token holds no private key"),
            TokenError::UnknownIdentifier(b) => write!(f, "unknown token identifier X'{b:02X}'"),
            TokenError::UnsupportedVersion(b) => write!(f, "unsupported token version X'{b:02X}'"),
            TokenError::UnsupportedSection(b) => {
                write!(f, "unsupported private key section X'{b:02X}'")
            }
            TokenError::NotMkWrapped(b) => {
                write!(f, "key material state X'{b:02X}' is not master-key wrapped")
            }
            TokenError::BadLength => f.write_str("token length field inconsistent"),
            TokenError::BadTvv => {
                f.write_str("token validation value does not match the token (damaged token)")
            }
            TokenError::Malformed { offset, what } => {
                write!(f, "token offset {offset}: {what}")
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// Length of the fixed-length DES and AES DATA tokens.
pub const FIXED_LEN: usize = 64;
/// Minimum length of a variable-length (`X'05'`) token: the skeleton.
pub const VAR_MIN_LEN: usize = 56;
/// Largest PKA token.
pub const PKA_MAX_LEN: usize = 8000;

/// Section-relative MKVP offsets of the PKA private sections (the QSA one is
/// `CCA_QSA_INTTOK_MKVP_OFFSET` of `usr/lib/cca_stdll/cca_stdll.h`).
pub mod pka {
    /// RSA-CRT `X'08'`: 16-byte ASYM MKVP.
    pub const RSA_CRT_MKVP: usize = 76;
    /// RSA-CRT `X'08'`: 32-byte OPK data.
    #[cfg(feature = "testkit")]
    pub const RSA_CRT_OPK: usize = 92;
    /// RSA-AESM `X'30'`: APKA MKVP (16-byte field, 8 significant).
    pub const RSA_AESM_MKVP: usize = 104;
    /// RSA-AESM `X'30'`: 48-byte OPK blob.
    #[cfg(feature = "testkit")]
    pub const RSA_AESM_OPK: usize = 56;
    /// RSA-AESC `X'31'`: APKA MKVP (16-byte field, 8 significant).
    pub const RSA_AESC_MKVP: usize = 116;
    /// RSA-AESC `X'31'`: 48-byte OPK blob (UNCONFIRMED offset).
    #[cfg(feature = "testkit")]
    pub const RSA_AESC_OPK: usize = 68;
    /// ECC `X'20'`: 8-byte APKA MKVP.
    pub const ECC_MKVP: usize = 16;
    /// ECC `X'20'`: 48-byte OPK blob.
    #[cfg(feature = "testkit")]
    pub const ECC_OPK: usize = 24;
    /// QSA `X'50'`: 8-byte APKA MKVP.
    pub const QSA_MKVP: usize = 118;
    /// QSA `X'50'`: 48-byte OPK blob (emulator choice).
    #[cfg(feature = "testkit")]
    pub const QSA_OPK: usize = 70;
    /// Offset of the first section in a PKA token.
    pub const FIRST_SECTION: usize = 8;
}

fn byte(t: &[u8], off: usize) -> Result<u8, TokenError> {
    t.get(off).copied().ok_or(TokenError::Truncated {
        need: off + 1,
        got: t.len(),
    })
}

/// Big-endian u16 at `off`, if present.
pub fn be16(t: &[u8], off: usize) -> Option<u16> {
    let b = t.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Length of the PKA section starting at `off`, tolerating the host-order
/// (little-endian) length fields openCryptoki 3.8.1 leaves in RSA tokens on
/// x86_64 (seen in stores it wrote): big-endian is preferred when it fits; otherwise the
/// swapped reading is used when that fits. `None` when neither reading fits.
pub fn section_len(t: &[u8], off: usize) -> Option<usize> {
    let raw = be16(t, off.checked_add(2)?)?;
    let room = t.len().checked_sub(off)?;
    [raw, raw.swap_bytes()]
        .into_iter()
        .map(usize::from)
        .find(|&l| l >= 4 && l <= room)
}

/// Classifies an internal token and locates its MKVP.
///
/// Mirrors `cca_specific.c: analyse_cca_key_token()` in openCryptoki, with
/// the HMAC checks relaxed to the fields that decide the kind.
pub fn classify(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let id = byte(t, 0)?;
    match id {
        0x00 => Err(TokenError::Null),
        0x02 | 0x1E => Err(TokenError::External),
        0x01 => classify_symmetric(t),
        0x1F => classify_pka(t),
        other => Err(TokenError::UnknownIdentifier(other)),
    }
}

fn classify_symmetric(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let version = byte(t, 4)?;
    let fixed = |kind| {
        if t.len() < FIXED_LEN {
            Err(TokenError::Truncated {
                need: FIXED_LEN,
                got: t.len(),
            })
        } else if t.len() > FIXED_LEN {
            Err(TokenError::BadLength)
        } else {
            Ok(TokenInfo {
                kind,
                mkvp_offset: 8,
                mkvp_len: 8,
                len: FIXED_LEN,
            })
        }
    };
    match version {
        0x00 | 0x01 => fixed(TokenKind::Des),
        0x04 => fixed(TokenKind::AesData),
        0x05 => {
            if t.len() < VAR_MIN_LEN {
                return Err(TokenError::Truncated {
                    need: VAR_MIN_LEN,
                    got: t.len(),
                });
            }
            let len = usize::from(be16(t, 2).ok_or(TokenError::BadLength)?);
            if len < VAR_MIN_LEN {
                return Err(TokenError::BadLength);
            }
            if len > t.len() {
                return Err(TokenError::Truncated {
                    need: len,
                    got: t.len(),
                });
            }
            let kind = match (byte(t, 41)?, be16(t, 42)) {
                (0x02, Some(0x0001)) => TokenKind::AesCipher,
                (0x03, Some(0x0002)) => TokenKind::Hmac,
                _ => return Err(TokenError::UnsupportedVersion(version)),
            };
            let state = byte(t, 8)?;
            if state != 0x03 {
                return Err(TokenError::NotMkWrapped(state));
            }
            Ok(TokenInfo {
                kind,
                mkvp_offset: 10,
                mkvp_len: 8,
                len,
            })
        }
        other => Err(TokenError::UnsupportedVersion(other)),
    }
}

fn classify_pka(t: &[u8]) -> Result<TokenInfo, TokenError> {
    use pka::*;
    if t.len() > PKA_MAX_LEN {
        return Err(TokenError::BadLength);
    }
    let sid = byte(t, FIRST_SECTION)?;
    let (kind, rel, mkvp_len) = match sid {
        0x08 => (TokenKind::RsaCrt, RSA_CRT_MKVP, 16),
        0x30 => (TokenKind::RsaAesm, RSA_AESM_MKVP, 8),
        0x31 => (TokenKind::RsaAesc, RSA_AESC_MKVP, 8),
        0x20 => (TokenKind::Ecc, ECC_MKVP, 8),
        0x50 => (TokenKind::Qsa, QSA_MKVP, 8),
        0x04 | 0x21 | 0x51 => return Err(TokenError::PublicOnly),
        other => return Err(TokenError::UnsupportedSection(other)),
    };
    let slen = section_len(t, FIRST_SECTION).ok_or(TokenError::BadLength)?;
    let mkvp_offset = FIRST_SECTION + rel;
    if rel + mkvp_len > slen {
        return Err(TokenError::BadLength);
    }
    Ok(TokenInfo {
        kind,
        mkvp_offset,
        mkvp_len,
        len: t.len(),
    })
}

/// Checks an internal key token's structure as far as the CCA token format defines
/// it, before the token goes to the card: [`classify`], then
///
/// * 64-byte DES and AES DATA tokens: the token validation value ([`tvv_compute`]), the
///   DES key form ([`des_key_len`]), the AES key length (128, 192 or 256 bits);
/// * variable-length (`X'05'`) tokens: the total length field equals the token's
///   size; associated-data version `X'01'`; MKVP type `X'01'`, AESKW wrapping with
///   SHA-256; the AD length equals the sum of its parts (key-usage and key-management
///   fields, label, IBM and user AD); the AD and the payload (its length in bits)
///   add up to the total length (Linux `drivers/s390/crypto/zcrypt_ccamisc.h`);
/// * PKA (`X'1F'`) tokens: header version `X'00'` and reserved bytes zero; the
///   sections tile the token exactly up to the header's token length (bytes after
///   it, the internal-information section some RSA tokens carry, are allowed); the
///   private section is followed by its public section (`X'04'` RSA, `X'21'` ECC,
///   `X'51'` QSA); an ECC private section is AESKW-wrapped and of the encrypted
///   internal key format, which openCryptoki requires too (`analyse_cca_key_token()`).
///
/// Section lengths are read as [`section_len`] reads them (3.8.1's host-order
/// lengths are accepted). Fields the card alone can check (the wrapped payloads and
/// their hashes) are not checked.
pub fn check_structure(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let info = classify(t)?;
    match info.kind {
        TokenKind::Des | TokenKind::AesData => check_fixed(t, info.kind)?,
        TokenKind::AesCipher | TokenKind::Hmac => check_variable(t)?,
        TokenKind::RsaCrt
        | TokenKind::RsaAesm
        | TokenKind::RsaAesc
        | TokenKind::Ecc
        | TokenKind::Qsa => check_pka(t, info.kind)?,
    }
    Ok(info)
}

fn malformed(offset: usize, what: &'static str) -> TokenError {
    TokenError::Malformed { offset, what }
}

fn need16(t: &[u8], off: usize) -> Result<usize, TokenError> {
    be16(t, off).map(usize::from).ok_or(TokenError::Truncated {
        need: off + 2,
        got: t.len(),
    })
}

fn check_fixed(t: &[u8], kind: TokenKind) -> Result<(), TokenError> {
    if !tvv_valid(t) {
        return Err(TokenError::BadTvv);
    }
    match kind {
        TokenKind::Des if des_key_len(t).is_none() => Err(if byte(t, 4)? == 0x01 {
            malformed(59, "key length mark is neither X'10' nor X'20'")
        } else {
            malformed(32, "control vector key form is not one CCA defines")
        }),
        TokenKind::AesData if !matches!(need16(t, 56)?, 128 | 192 | 256) => {
            Err(malformed(56, "AES key length is not 128, 192 or 256 bits"))
        }
        _ => Ok(()),
    }
}

fn check_variable(t: &[u8]) -> Result<(), TokenError> {
    let total = need16(t, 2)?;
    if total != t.len() {
        return Err(malformed(
            2,
            "token length field differs from the token's size",
        ));
    }
    if byte(t, 9)? != 0x01 {
        return Err(malformed(
            9,
            "verification pattern type is not the AES MKVP",
        ));
    }
    if byte(t, 26)? != 0x02 || byte(t, 27)? != 0x02 {
        return Err(malformed(26, "key wrapping is not AESKW with SHA-256"));
    }
    if byte(t, 30)? != 0x01 {
        return Err(malformed(
            30,
            "associated data section version is not X'01'",
        ));
    }
    let adl = need16(t, 32)?;
    let (kl, iead, uad) = (
        usize::from(byte(t, 34)?),
        usize::from(byte(t, 35)?),
        usize::from(byte(t, 36)?),
    );
    let kuf = usize::from(byte(t, 44)?);
    let kmf = usize::from(byte(t, 45 + 2 * kuf)?);
    if adl != 16 + 2 * kuf + 2 * kmf + kl + iead + uad {
        return Err(malformed(
            32,
            "associated data length differs from its parts",
        ));
    }
    let payload_bits = need16(t, 38)?;
    if payload_bits == 0 || 30 + adl + payload_bits.div_ceil(8) != total {
        return Err(malformed(
            38,
            "associated data and payload lengths do not add up to the token length",
        ));
    }
    Ok(())
}

/// The length of the section at `off`, which must end by `end`: big-endian when
/// that fits, else the host-order (swapped) reading when that fits.
fn section_len_within(t: &[u8], off: usize, end: usize) -> Option<usize> {
    let raw = be16(t, off.checked_add(2)?)?;
    let room = end.checked_sub(off)?;
    [raw, raw.swap_bytes()]
        .into_iter()
        .map(usize::from)
        .find(|&l| l >= 4 && l <= room)
}

fn check_pka(t: &[u8], kind: TokenKind) -> Result<(), TokenError> {
    if byte(t, 1)? != 0x00 {
        return Err(malformed(1, "PKA token version is not X'00'"));
    }
    if t.get(4..8).is_none_or(|r| r.iter().any(|b| *b != 0)) {
        return Err(malformed(
            4,
            "reserved bytes of the PKA token header are not zero",
        ));
    }
    let declared = be16(t, 2).ok_or(TokenError::Truncated {
        need: 4,
        got: t.len(),
    })?;
    let end = [declared, declared.swap_bytes()]
        .into_iter()
        .map(usize::from)
        .find(|&l| l > pka::FIRST_SECTION && l <= t.len())
        .ok_or(malformed(2, "token length field exceeds the token"))?;
    let public = match kind {
        TokenKind::Ecc => 0x21,
        TokenKind::Qsa => 0x51,
        _ => 0x04,
    };
    let mut off = pka::FIRST_SECTION;
    let mut index = 0;
    while off < end {
        let len = section_len_within(t, off, end)
            .ok_or(malformed(off, "section length runs past the token length"))?;
        if index == 1 && byte(t, off)? != public {
            return Err(malformed(
                off,
                "the private key section is not followed by its public key section",
            ));
        }
        off += len;
        index += 1;
    }
    if index < 2 {
        return Err(malformed(
            pka::FIRST_SECTION,
            "the private key section is not followed by its public key section",
        ));
    }
    if kind == TokenKind::Ecc {
        let s = pka::FIRST_SECTION;
        if byte(t, s + 4)? != 0x01 {
            return Err(malformed(s + 4, "ECC private key is not AESKW-wrapped"));
        }
        if byte(t, s + 10)? != 0x08 {
            return Err(malformed(
                s + 10,
                "ECC private key format is not encrypted internal",
            ));
        }
    }
    Ok(())
}

/// Token validation value of a 64-byte token: the sum of the fifteen
/// big-endian 32-bit words in bytes 0–59, modulo 2^32.
pub fn tvv_compute(t: &[u8]) -> Option<u32> {
    let body = t.get(..60)?;
    Some(body.chunks_exact(4).fold(0u32, |acc, w| {
        acc.wrapping_add(u32::from_be_bytes(w.try_into().unwrap_or_default()))
    }))
}

/// True when bytes 60–63 hold the TVV of bytes 0–59.
pub fn tvv_valid(t: &[u8]) -> bool {
    match (tvv_compute(t), t.get(60..64)) {
        (Some(v), Some(stored)) => stored == v.to_be_bytes(),
        _ => false,
    }
}

/// Writes the TVV into bytes 60–63; false if the token is shorter than 64 bytes.
#[cfg(feature = "testkit")]
pub fn tvv_set(t: &mut [u8]) -> bool {
    let Some(v) = tvv_compute(t) else {
        return false;
    };
    match t.get_mut(60..64) {
        Some(dst) => {
            dst.copy_from_slice(&v.to_be_bytes());
            true
        }
        None => false,
    }
}

/// Key length in bytes of a 64-byte DES token, or `None` for a
/// key-form value CCA rejects.
pub fn des_key_len(t: &[u8]) -> Option<usize> {
    match *t.get(4)? {
        0x01 => match *t.get(59)? {
            0x10 => Some(16),
            0x20 => Some(24),
            _ => None,
        },
        0x00 => {
            let cv = t.get(32..40)?;
            let cv = u64::from_be_bytes(cv.try_into().ok()?);
            match (cv >> 21) & 7 {
                0 => Some(8),
                2 | 6 => Some(16),
                3 | 7 => Some(24),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn des_token() -> Vec<u8> {
        let mut t = vec![0u8; 64];
        t[0] = 1;
        t[6] = 0x80;
        t[8..16].copy_from_slice(&[9; 8]);
        assert!(tvv_set(&mut t));
        t
    }

    #[test]
    fn tvv_roundtrip_and_detects_change() {
        let mut t = des_token();
        assert!(tvv_valid(&t));
        t[20] ^= 1;
        assert!(!tvv_valid(&t));
        assert!(!tvv_valid(&t[..40]));
    }

    #[test]
    fn classify_fixed_and_pka() {
        let t = des_token();
        let info = classify(&t).unwrap();
        assert_eq!(info.kind, TokenKind::Des);
        assert_eq!(info.mkvp(&t), &[9; 8]);
        assert_eq!(des_key_len(&t), Some(8));
        assert_eq!(
            classify(&t[..63]),
            Err(TokenError::Truncated { need: 64, got: 63 })
        );
        let mut p = vec![0u8; 200];
        p[0] = 0x1F;
        p[8] = 0x20;
        p[10..12].copy_from_slice(&100u16.to_le_bytes());
        let info = classify(&p).unwrap();
        assert_eq!((info.kind, info.mkvp_offset), (TokenKind::Ecc, 24));
        p[8] = 0x04;
        assert_eq!(classify(&p), Err(TokenError::PublicOnly));
        assert_eq!(classify(&[0x1E]), Err(TokenError::External));
        assert_eq!(
            classify(&[]),
            Err(TokenError::Truncated { need: 1, got: 0 })
        );
    }

    #[test]
    fn classify_never_panics_on_prefixes() {
        let mut v = vec![0u8; 136];
        v[0] = 1;
        v[2..4].copy_from_slice(&136u16.to_be_bytes());
        v[4] = 5;
        v[8] = 3;
        v[41] = 2;
        v[43] = 1;
        assert_eq!(classify(&v).unwrap().kind, TokenKind::AesCipher);
        for n in 0..v.len() {
            assert!(classify(&v[..n]).is_err());
        }
    }

    fn aes_cipher_token() -> Vec<u8> {
        // kuf 2, kmf 3, no label or extra AD: AD 26 bytes; a 640-bit payload.
        let mut v = vec![0u8; 136];
        v[0] = 1;
        v[2..4].copy_from_slice(&136u16.to_be_bytes());
        v[4] = 5;
        v[8] = 3;
        v[9] = 1;
        v[26] = 2;
        v[27] = 2;
        v[30] = 1;
        v[32..34].copy_from_slice(&26u16.to_be_bytes());
        v[38..40].copy_from_slice(&640u16.to_be_bytes());
        v[41] = 2;
        v[43] = 1;
        v[44] = 2;
        v[49] = 3;
        v
    }

    fn ecc_token() -> Vec<u8> {
        let mut p = vec![0u8; 8 + 100 + 20 + 12];
        p[0] = 0x1F;
        p[2..4].copy_from_slice(&128u16.to_be_bytes());
        p[8] = 0x20;
        p[10..12].copy_from_slice(&100u16.to_be_bytes());
        p[12] = 1;
        p[18] = 8;
        p[108] = 0x21;
        p[110..112].copy_from_slice(&20u16.to_be_bytes());
        p
    }

    #[test]
    fn check_structure_accepts_well_formed_tokens() {
        assert_eq!(check_structure(&des_token()).unwrap().kind, TokenKind::Des);
        let aes = aes_cipher_token();
        assert_eq!(check_structure(&aes).unwrap().kind, TokenKind::AesCipher);
        let ecc = ecc_token();
        assert_eq!(check_structure(&ecc).unwrap().kind, TokenKind::Ecc);
        // Bytes after the header's token length (an internal-information section).
        let mut longer = ecc.clone();
        longer[2..4].copy_from_slice(&120u16.to_be_bytes());
        longer.truncate(128);
        longer[110..112].copy_from_slice(&12u16.to_be_bytes());
        assert!(check_structure(&longer).is_ok());
        // 3.8.1's host-order section length.
        let mut le = ecc.clone();
        le[10..12].copy_from_slice(&100u16.to_le_bytes());
        assert!(check_structure(&le).is_ok());
    }

    #[test]
    fn check_structure_refuses_damage_classify_lets_through() {
        let mut t = des_token();
        t[20] ^= 1;
        assert!(classify(&t).is_ok());
        assert_eq!(check_structure(&t), Err(TokenError::BadTvv));
        let mut t = des_token();
        t[37] = 0x80; // key form 100
        assert!(tvv_set(&mut t));
        assert!(matches!(
            check_structure(&t),
            Err(TokenError::Malformed { offset: 32, .. })
        ));

        let flip = |at: usize, v: u8| {
            let mut t = aes_cipher_token();
            t[at] = v;
            check_structure(&t)
        };
        for (at, v, off) in [
            (9, 2, 9),
            (26, 3, 26),
            (30, 2, 30),
            (33, 27, 32),
            (35, 1, 32),
            (39, 8, 38),
            (44, 3, 32),
        ] {
            assert!(
                matches!(flip(at, v), Err(TokenError::Malformed { offset, .. }) if offset == off),
                "byte {at}: {:?}",
                flip(at, v)
            );
        }
        let mut short = aes_cipher_token();
        short.pop();
        assert!(check_structure(&short).is_err());

        let pka = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut t = ecc_token();
            f(&mut t);
            check_structure(&t)
        };
        assert!(pka(&|t| t[1] = 1).is_err());
        assert!(pka(&|t| t[5] = 1).is_err());
        assert!(
            pka(&|t| t[108] = 0x04).is_err(),
            "RSA public section after ECC"
        );
        assert!(pka(&|t| t[110..112].copy_from_slice(&21u16.to_be_bytes())).is_err());
        assert!(pka(&|t| t[2..4].copy_from_slice(&200u16.to_be_bytes())).is_err());
        assert!(pka(&|t| t[12] = 0).is_err(), "ECC not AESKW-wrapped");
        assert!(pka(&|t| {
            t.truncate(108);
            t[2..4].copy_from_slice(&108u16.to_be_bytes());
        })
        .is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(head in proptest::sample::select(vec![0u8, 1, 2, 0x1E, 0x1F]),
                                       v in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            let mut t = v;
            t.insert(0, head);
            if let Ok(info) = classify(&t) {
                proptest::prop_assert!(info.mkvp_offset + info.mkvp_len <= t.len());
                proptest::prop_assert_eq!(info.mkvp(&t).len(), info.mkvp_len);
            }
            let _ = section_len(&t, 8);
            let _ = des_key_len(&t);
            if let Ok(info) = check_structure(&t) {
                proptest::prop_assert_eq!(Ok(info), classify(&t));
            }
            let _ = tvv_valid(&t);
        }
    }
}
