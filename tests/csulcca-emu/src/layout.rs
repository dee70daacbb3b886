//! CCA key-token formats as the emulated card reads them: which kind of
//! internal token a byte string is, which master key wraps it, where its
//! master-key verification pattern (MKVP) lies, and the token validation
//! value (TVV) of the 64-byte tokens.
//!
//! This is the emulator's own reading of the formats, written from the
//! internal key-token tables of IBM's "CCA Basic Services Reference and
//! Guide" and, where IBM is silent, from what openCryptoki writes and reads
//! (`usr/lib/cca_stdll/cca_specific.c`). It shares no code with pkcscca's
//! classifier on purpose: the emulator is the oracle that pkcscca's parsing
//! is tested against, so a mistake there must not be mirrored here.
//!
//! The formats, all integers big-endian:
//!
//! * **Symmetric tokens** start with `X'01'` (internal; `X'02'` external,
//!   `X'00'` null); byte 4 is the version.
//!   - Versions `X'00'` and `X'01'`: DES/TDES, 64 bytes, wrapped by the SYM
//!     master key. Flag byte 6 (`X'80'`: key present), MKVP at 8–15, key
//!     parts at 16, 24 and 48, control vector at 32–47, length mark of
//!     version `X'01'` at 59 (`X'10'` double, `X'20'` triple), TVV at 60–63.
//!     The key length of version `X'00'` is the key-form field of the
//!     control vector (bits 40–42).
//!   - Version `X'04'`: AES DATA, 64 bytes, wrapped by the AES master key.
//!     Flag byte 6, LRC of the clear key at 7, MKVP at 8–15, wrapped key at
//!     16–47, control vector 48–55 (zero), key length in bits at 56–57,
//!     wrapped-key length in bytes at 58–59, TVV at 60–63.
//!   - Version `X'05'`: variable length (AES CIPHER, HMAC MAC), wrapped by
//!     the AES master key. Total length at 2–3, key-material state at 8
//!     (`X'03'`: wrapped by the master key), verification-pattern type at 9
//!     (`X'01'`: AES MKVP), a 16-byte pattern field at 10 of which the MKVP
//!     is the first 8 bytes, wrapping method at 26 (`X'02'` AESKW), hash at
//!     27 (`X'02'` SHA-256), payload version at 28; the associated data (AD)
//!     start at 30 with their length at 32–33, the payload length in bits is
//!     at 38–39, the algorithm at 41 (`X'02'` AES, `X'03'` HMAC) and the key
//!     type at 42–43 (`X'0001'` CIPHER, `X'0002'` MAC); the payload follows
//!     the AD, so the token is `30 + AD length + payload bytes` long.
//! * The **TVV** of a 64-byte token is the sum, modulo 2^32, of the fifteen
//!   32-bit words in bytes 0–59.
//! * **PKA tokens**: an 8-byte header (`X'1F'` internal, `X'1E'` external;
//!   length at 2–3), then sections of `id(1) version(1) length(2) ...`,
//!   the private section first. The private sections with a master-key
//!   wrapped key, and where they keep the MKVP (offsets within the section):
//!   RSA-CRT `X'08'` under ASYM at 76 (16 bytes); RSA-AESM `X'30'` under APKA
//!   at 104 and RSA-AESC `X'31'` at 116 (8 significant bytes of a 16-byte
//!   field); ECC `X'20'` at 16 and QSA `X'50'` at 118 (8 bytes), both APKA.
//!   A first section that is a public one (`X'04'` RSA, `X'21'` ECC, `X'51'`
//!   QSA) means there is no private key. openCryptoki 3.8.1 on x86_64 leaves
//!   some RSA length fields in host byte order, section lengths included;
//!   a section length is read big-endian when that fits the token, else
//!   byte-swapped.

use pkcscca::cca::Verb;

use crate::keyword::{self, Keyword};
use crate::state::MkType;

/// Length of DES and AES DATA tokens.
pub const FIXED_LEN: usize = 64;
/// Smallest variable-length token: the keyless skeleton of an AES CIPHER or
/// HMAC key (30-byte header, 26 bytes of AD).
pub const VAR_MIN_LEN: usize = 56;
/// Smallest AD section: its fixed fields, without key-usage or
/// key-management fields.
pub const VAR_MIN_AD: usize = 16;
/// Where a variable-length token's AD section starts.
pub const VAR_AD: usize = 30;
/// Largest PKA token a card accepts.
pub const PKA_MAX_LEN: usize = 8000;
/// Where the first section of a PKA token starts.
pub const PKA_HEADER: usize = 8;

/// The internal token kinds the card re-enciphers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// DES/TDES, 64 bytes.
    Des,
    /// AES DATA, 64 bytes.
    AesData,
    /// Variable-length AES CIPHER.
    AesCipher,
    /// Variable-length HMAC MAC.
    Hmac,
    /// PKA with an RSA-CRT `X'08'` private section.
    RsaCrt,
    /// PKA with an RSA-AESM `X'30'` private section.
    RsaAesm,
    /// PKA with an RSA-AESC `X'31'` private section.
    RsaAesc,
    /// PKA with an ECC `X'20'` private section.
    Ecc,
    /// PKA with a QSA `X'50'` private section.
    Qsa,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Des,
        Kind::AesData,
        Kind::AesCipher,
        Kind::Hmac,
        Kind::RsaCrt,
        Kind::RsaAesm,
        Kind::RsaAesc,
        Kind::Ecc,
        Kind::Qsa,
    ];

    /// The master key wrapping tokens of this kind.
    pub fn mk_type(self) -> MkType {
        match self {
            Kind::Des => MkType::Sym,
            Kind::RsaCrt => MkType::Asym,
            Kind::AesData | Kind::AesCipher | Kind::Hmac => MkType::Aes,
            Kind::RsaAesm | Kind::RsaAesc | Kind::Ecc | Kind::Qsa => MkType::Apka,
        }
    }

    /// True for the 64-byte kinds, which carry a TVV.
    pub fn has_tvv(self) -> bool {
        matches!(self, Kind::Des | Kind::AesData)
    }

    /// The Key Token Change verb for this kind: CSNBKTC for the 64-byte
    /// tokens, CSNBKTC2 for variable-length ones, CSNDKTC for PKA tokens.
    pub fn ktc_verb(self) -> Verb {
        match self {
            Kind::Des | Kind::AesData => Verb::Csnbktc,
            Kind::AesCipher | Kind::Hmac => Verb::Csnbktc2,
            _ => Verb::Csndktc,
        }
    }

    /// The algorithm keyword naming this kind in that verb's rule array.
    pub fn algorithm(self) -> Keyword {
        match self {
            Kind::Des => keyword::DES,
            Kind::AesData | Kind::AesCipher => keyword::AES,
            Kind::Hmac => keyword::HMAC,
            Kind::RsaCrt | Kind::RsaAesm | Kind::RsaAesc => keyword::RSA,
            Kind::Ecc => keyword::ECC,
            Kind::Qsa => keyword::QSA,
        }
    }
}

/// Where a PKA private section keeps its MKVP and its object-protection key
/// (OPK) blob, relative to the section start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateSection {
    /// Section identifier.
    pub id: u8,
    /// Token kind it makes.
    pub kind: Kind,
    /// Offset of the MKVP field.
    pub mkvp_at: usize,
    /// Bytes of the MKVP field (16 for RSA, 8 for ECC and QSA).
    pub mkvp_field: usize,
    /// Significant MKVP bytes: the ASYM pattern is 16 bytes, APKA's 8.
    pub mkvp_len: usize,
    /// Offset of the OPK blob: 92 for RSA-CRT (IBM), 56 for RSA-AESM
    /// (IBM), 24 for ECC (IBM); 68 for RSA-AESC (the 48 bytes before the
    /// MKVP, as in RSA-AESM) and 70 for QSA are *emulator choices*.
    pub opk_at: usize,
    /// Bytes of the OPK blob: 32 under the ASYM key (8-byte confounder and
    /// a TDES key), 48 under the APKA key (16-byte confounder, AES-256 key).
    pub opk_len: usize,
}

/// The private sections the card re-enciphers.
pub const PRIVATE_SECTIONS: [PrivateSection; 5] = [
    PrivateSection {
        id: 0x08,
        kind: Kind::RsaCrt,
        mkvp_at: 76,
        mkvp_field: 16,
        mkvp_len: 16,
        opk_at: 92,
        opk_len: 32,
    },
    PrivateSection {
        id: 0x30,
        kind: Kind::RsaAesm,
        mkvp_at: 104,
        mkvp_field: 16,
        mkvp_len: 8,
        opk_at: 56,
        opk_len: 48,
    },
    PrivateSection {
        id: 0x31,
        kind: Kind::RsaAesc,
        mkvp_at: 116,
        mkvp_field: 16,
        mkvp_len: 8,
        opk_at: 68,
        opk_len: 48,
    },
    PrivateSection {
        id: 0x20,
        kind: Kind::Ecc,
        mkvp_at: 16,
        mkvp_field: 8,
        mkvp_len: 8,
        opk_at: 24,
        opk_len: 48,
    },
    PrivateSection {
        id: 0x50,
        kind: Kind::Qsa,
        mkvp_at: 118,
        mkvp_field: 8,
        mkvp_len: 8,
        opk_at: 70,
        opk_len: 48,
    },
];

/// The private-section layout of a PKA kind.
pub fn private_section(kind: Kind) -> Option<&'static PrivateSection> {
    PRIVATE_SECTIONS.iter().find(|s| s.kind == kind)
}

/// Public sections: a PKA token starting with one holds no private key.
const PUBLIC_SECTIONS: [u8; 3] = [0x04, 0x21, 0x51];

/// An internal key token the card can re-encipher, as parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// Its kind.
    pub kind: Kind,
    /// Its length: 64, the variable-length token's own length field, or the
    /// PKA buffer given.
    pub len: usize,
    /// Offset of the MKVP in the token.
    pub mkvp_at: usize,
    /// Significant MKVP bytes.
    pub mkvp_len: usize,
}

impl Token {
    /// The master key wrapping it.
    pub fn mk_type(&self) -> MkType {
        self.kind.mk_type()
    }

    /// Its MKVP bytes in `t` (the bytes it was parsed from).
    pub fn mkvp<'a>(&self, t: &'a [u8]) -> &'a [u8] {
        t.get(self.mkvp_at..self.mkvp_at + self.mkvp_len)
            .unwrap_or(&[])
    }
}

/// Why bytes are not an internal token the card re-enciphers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Fewer bytes than the token's layout or its own length field says.
    Short,
    /// A length field or the buffer length disagrees with the layout.
    Length,
    /// A null token.
    Null,
    /// An external token (not wrapped by a master key) or a PKA token with
    /// no private section.
    NotInternal,
    /// A token identifier, version, section or key type the card does not
    /// re-encipher.
    Unsupported,
    /// A variable-length token whose key is not wrapped by the master key.
    NotWrapped,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reject::Short => "shorter than its layout or length field",
            Reject::Length => "a length field disagrees with the layout",
            Reject::Null => "a null token",
            Reject::NotInternal => "not an internal token with a private key",
            Reject::Unsupported => "a token type the card does not re-encipher",
            Reject::NotWrapped => "key not wrapped by the master key",
        })
    }
}

/// Big-endian 16-bit field at `off`.
pub fn be16(t: &[u8], off: usize) -> Option<usize> {
    match t.get(off..off.checked_add(2)?)? {
        [hi, lo] => Some(usize::from(*hi) << 8 | usize::from(*lo)),
        _ => None,
    }
}

/// Length of the PKA section at `off` when it fits the token: the length
/// field read big-endian, or byte-swapped (openCryptoki 3.8.1's host order)
/// when only that reading fits. A section is at least its 4-byte head.
pub fn section_len(t: &[u8], off: usize) -> Option<usize> {
    let room = t.len().checked_sub(off)?;
    let field = t.get(off.checked_add(2)?..off.checked_add(4)?)?;
    let (a, b) = (usize::from(*field.first()?), usize::from(*field.get(1)?));
    [a << 8 | b, b << 8 | a]
        .into_iter()
        .find(|l| (4..=room).contains(l))
}

/// Parses an internal key token.
pub fn parse(t: &[u8]) -> Result<Token, Reject> {
    match t.first() {
        None => Err(Reject::Short),
        Some(0x00) => Err(Reject::Null),
        Some(0x01) => parse_symmetric(t),
        Some(0x02 | 0x1E) => Err(Reject::NotInternal),
        Some(0x1F) => parse_pka(t),
        Some(_) => Err(Reject::Unsupported),
    }
}

fn parse_symmetric(t: &[u8]) -> Result<Token, Reject> {
    let version = *t.get(4).ok_or(Reject::Short)?;
    let fixed = |kind| match t.len() {
        FIXED_LEN => Ok(Token {
            kind,
            len: FIXED_LEN,
            mkvp_at: 8,
            mkvp_len: 8,
        }),
        n if n < FIXED_LEN => Err(Reject::Short),
        _ => Err(Reject::Length),
    };
    match version {
        0x00 | 0x01 => fixed(Kind::Des),
        0x04 => fixed(Kind::AesData),
        0x05 => parse_variable(t),
        _ => Err(Reject::Unsupported),
    }
}

fn parse_variable(t: &[u8]) -> Result<Token, Reject> {
    let len = be16(t, 2).ok_or(Reject::Short)?;
    if len < VAR_MIN_LEN {
        return Err(Reject::Length);
    }
    let t = t.get(..len).ok_or(Reject::Short)?;
    let ad_len = be16(t, 32).ok_or(Reject::Short)?;
    let payload_bits = be16(t, 38).ok_or(Reject::Short)?;
    if ad_len < VAR_MIN_AD || VAR_AD + ad_len + payload_bits.div_ceil(8) != len {
        return Err(Reject::Length);
    }
    let field = |off| t.get(off).copied().ok_or(Reject::Short);
    let kind = match (field(41)?, be16(t, 42)) {
        (0x02, Some(0x0001)) => Kind::AesCipher,
        (0x03, Some(0x0002)) => Kind::Hmac,
        _ => return Err(Reject::Unsupported),
    };
    // State X'03' (wrapped by the master key), pattern type X'01' (AES
    // MKVP), wrapping method X'02' (AESKW): the only combination a card
    // re-enciphers.
    if (field(8)?, field(9)?, field(26)?) != (0x03, 0x01, 0x02) {
        return Err(Reject::NotWrapped);
    }
    Ok(Token {
        kind,
        len,
        mkvp_at: 10,
        mkvp_len: 8,
    })
}

fn parse_pka(t: &[u8]) -> Result<Token, Reject> {
    if t.len() > PKA_MAX_LEN {
        return Err(Reject::Length);
    }
    let id = *t.get(PKA_HEADER).ok_or(Reject::Short)?;
    if PUBLIC_SECTIONS.contains(&id) {
        return Err(Reject::NotInternal);
    }
    let layout = PRIVATE_SECTIONS
        .iter()
        .find(|s| s.id == id)
        .ok_or(Reject::Unsupported)?;
    let section = section_len(t, PKA_HEADER).ok_or(Reject::Length)?;
    if layout.mkvp_at + layout.mkvp_field > section {
        return Err(Reject::Length);
    }
    Ok(Token {
        kind: layout.kind,
        len: t.len(),
        mkvp_at: PKA_HEADER + layout.mkvp_at,
        mkvp_len: layout.mkvp_len,
    })
}

/// The TVV of a 64-byte token (of its first 60 bytes).
pub fn tvv(t: &[u8]) -> Option<u32> {
    let mut sum = 0u32;
    for w in t.get(..60)?.chunks_exact(4) {
        let word = w.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
        sum = sum.wrapping_add(word);
    }
    Some(sum)
}

/// True when bytes 60–63 hold the TVV of bytes 0–59.
pub fn tvv_ok(t: &[u8]) -> bool {
    tvv(t).is_some_and(|v| t.get(60..64) == Some(&v.to_be_bytes()[..]))
}

/// Writes the TVV of bytes 0–59 into bytes 60–63 (nothing for a shorter
/// token).
pub fn tvv_write(t: &mut [u8]) {
    if let Some(v) = tvv(t) {
        if let Some(dst) = t.get_mut(60..64) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Key length in bytes of a DES token: the length mark of version `X'01'`,
/// the control vector's key form for version `X'00'` (single; double or
/// double with unique halves; triple or triple with unique parts). `None`
/// for any other value.
pub fn des_key_len(t: &[u8]) -> Option<usize> {
    match *t.get(4)? {
        0x00 => {
            // Bits 40–42 of the control vector (bytes 32–39): bits 0–2 of
            // byte 37, counting bit 0 as the most significant.
            let form = t.get(37)? >> 5;
            match form {
                0b000 => Some(8),
                0b010 | 0b110 => Some(16),
                0b011 | 0b111 => Some(24),
                _ => None,
            }
        }
        0x01 => match t.get(59)? {
            0x10 => Some(16),
            0x20 => Some(24),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var_token(alg: u8, key_type: u16, payload: usize) -> Vec<u8> {
        let len = VAR_MIN_LEN + payload;
        let mut t = vec![0u8; len];
        t[0] = 1;
        t[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        t[4] = 5;
        t[8] = 3;
        t[9] = 1;
        t[10..18].copy_from_slice(&[7; 8]);
        t[26] = 2;
        t[27] = 2;
        t[30] = 1;
        t[32..34].copy_from_slice(&26u16.to_be_bytes());
        t[38..40].copy_from_slice(&((payload * 8) as u16).to_be_bytes());
        t[41] = alg;
        t[42..44].copy_from_slice(&key_type.to_be_bytes());
        t
    }

    #[test]
    fn tvv_is_the_word_sum() {
        let mut t = [0u8; 64];
        t[0] = 1;
        t[3] = 2;
        t[59] = 0xFF;
        tvv_write(&mut t);
        assert_eq!(&t[60..], &(0x0100_0002u32 + 0xFF).to_be_bytes());
        assert!(tvv_ok(&t));
        t[10] ^= 1;
        assert!(!tvv_ok(&t));
        assert!(!tvv_ok(&t[..63]));
        let mut w = [0xFFu8; 64];
        tvv_write(&mut w);
        assert_eq!(
            &w[60..],
            &15u32.wrapping_neg().to_be_bytes(),
            "wraps mod 2^32"
        );
    }

    #[test]
    fn des_key_length_from_control_vector_or_mark() {
        let mut t = [0u8; 64];
        assert_eq!(des_key_len(&t), Some(8));
        t[37] = 0b0100_0000;
        assert_eq!(des_key_len(&t), Some(16));
        t[37] = 0b1110_0000;
        assert_eq!(des_key_len(&t), Some(24));
        t[37] = 0b0010_0000;
        assert_eq!(des_key_len(&t), None);
        t[4] = 1;
        t[59] = 0x20;
        assert_eq!(des_key_len(&t), Some(24));
    }

    #[test]
    fn symmetric_kinds() {
        let mut d = [0u8; 64];
        d[0] = 1;
        d[8..16].copy_from_slice(&[9; 8]);
        let p = parse(&d).unwrap();
        assert_eq!((p.kind, p.mkvp(&d)), (Kind::Des, &[9u8; 8][..]));
        d[4] = 4;
        assert_eq!(parse(&d).unwrap().kind, Kind::AesData);
        assert_eq!(parse(&d[..63]), Err(Reject::Short));
        assert_eq!(parse(&[d.to_vec(), vec![0]].concat()), Err(Reject::Length));
        d[4] = 3;
        assert_eq!(parse(&d), Err(Reject::Unsupported));

        let v = var_token(2, 1, 80);
        let p = parse(&v).unwrap();
        assert_eq!(
            (p.kind, p.len, p.mkvp(&v)),
            (Kind::AesCipher, 136, &[7u8; 8][..])
        );
        let mut longer = v.clone();
        longer.extend_from_slice(&[0xEE; 9]);
        assert_eq!(
            parse(&longer).unwrap().len,
            136,
            "caller's buffer may be larger"
        );
        assert_eq!(parse(&v[..135]), Err(Reject::Short));
        assert_eq!(parse(&var_token(3, 2, 64)).unwrap().kind, Kind::Hmac);
        assert_eq!(parse(&var_token(3, 1, 64)), Err(Reject::Unsupported));
        let mut bad = var_token(2, 1, 80);
        bad[39] = 0x48;
        assert_eq!(parse(&bad), Err(Reject::Length), "payload length disagrees");
        let mut skel = var_token(2, 1, 0);
        skel[8] = 0;
        assert_eq!(parse(&skel), Err(Reject::NotWrapped));
    }

    #[test]
    fn pka_kinds() {
        let mut p = vec![0u8; 300];
        p[0] = 0x1F;
        for s in PRIVATE_SECTIONS {
            p[8] = s.id;
            p[10..12].copy_from_slice(&200u16.to_be_bytes());
            let t = parse(&p).unwrap();
            assert_eq!((t.kind, t.mkvp_at), (s.kind, 8 + s.mkvp_at));
            // Host-order section length (openCryptoki 3.8.1).
            p[10..12].copy_from_slice(&200u16.to_le_bytes());
            assert_eq!(parse(&p).unwrap().kind, s.kind);
            // A section too short for its MKVP.
            p[10..12].copy_from_slice(&(s.mkvp_at as u16 + 4).to_be_bytes());
            assert_eq!(parse(&p), Err(Reject::Length));
        }
        for id in PUBLIC_SECTIONS {
            p[8] = id;
            assert_eq!(parse(&p), Err(Reject::NotInternal));
        }
        p[8] = 0x06;
        assert_eq!(parse(&p), Err(Reject::Unsupported));
        assert_eq!(parse(&p[..8]), Err(Reject::Short));
        assert_eq!(parse(&[0x1E, 0, 0, 8]), Err(Reject::NotInternal));
        assert_eq!(parse(&vec![0x1F; 8001]), Err(Reject::Length));
        assert_eq!(parse(&[]), Err(Reject::Short));
        assert_eq!(parse(&[0]), Err(Reject::Null));
    }

    #[test]
    fn never_panics_on_prefixes_and_corruptions() {
        let mut inputs = vec![var_token(2, 1, 80), var_token(3, 2, 64)];
        let mut p = vec![0u8; 300];
        p[0] = 0x1F;
        p[8] = 0x31;
        p[10..12].copy_from_slice(&300u16.to_be_bytes());
        inputs.push(p);
        for base in inputs {
            for n in 0..=base.len() {
                let cut = &base[..n];
                if let Ok(t) = parse(cut) {
                    assert_eq!(t.mkvp(cut).len(), t.mkvp_len);
                }
                for at in [2, 3, 10, 11, 32, 33, 38, 39] {
                    let mut c = cut.to_vec();
                    if let Some(b) = c.get_mut(at) {
                        *b = 0xFF;
                    }
                    let _ = parse(&c);
                    let _ = des_key_len(&c);
                    let _ = tvv_ok(&c);
                }
            }
        }
    }
}
