//! Building, unwrapping and re-wrapping the emulator's key tokens.
//!
//! Layouts follow the token formats described in [`crate::layout`], whose
//! parser and offsets these builders share; how key material is protected
//! inside the fixed field sizes is described in [`crate::crypto`]. All
//! functions are deterministic for a given input token and master key, which
//! is what makes re-encipherment repeatable (the confounders chosen at key
//! creation stay in the token).

use crate::layout::{self, Kind, Token, PKA_HEADER};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codes::*;
use crate::crypto;
use crate::Fail;

fn put16(t: &mut [u8], off: usize, v: u16) {
    if let Some(d) = t.get_mut(off..off + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

fn put(t: &mut [u8], off: usize, src: &[u8]) -> Result<(), Fail> {
    t.get_mut(off..off + src.len())
        .ok_or(UNUSABLE)?
        .copy_from_slice(src);
    Ok(())
}

fn get(t: &[u8], off: usize, len: usize) -> Result<&[u8], Fail> {
    t.get(off..off + len).ok_or(UNUSABLE)
}

fn be16(t: &[u8], off: usize) -> Result<usize, Fail> {
    layout::be16(t, off).ok_or(UNUSABLE)
}

// ---------------------------------------------------------------- DES ----

const DES_PARTS: [usize; 3] = [16, 24, 48];

/// SYM MK XORed with the token's control vector (`cvL ‖ cvR ‖ cvL`); a zero
/// CV leaves the MK unchanged.
fn des_variant(mk: &[u8], t: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let cv_l = get(t, 32, 8)?;
    let cv_r = get(t, 40, 8)?;
    let pad = cv_l.iter().chain(cv_r).chain(cv_l);
    Ok(Zeroizing::new(
        mk.iter().zip(pad).map(|(a, b)| a ^ b).collect(),
    ))
}

/// A fresh internal DES DATA token for `clear` (8, 16 or 24 bytes): version
/// `X'00'` with a zero CV for single length, version `X'01'` (zero CV, length
/// mark at byte 59) for double and triple length.
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn des_build(mk: &[u8], vp: &[u8], clear: &[u8]) -> Result<[u8; 64], Fail> {
    let mut t = [0u8; 64];
    t[0] = 0x01;
    match clear.len() {
        8 => {}
        16 => {
            t[4] = 0x01;
            t[59] = 0x10;
        }
        24 => {
            t[4] = 0x01;
            t[59] = 0x20;
        }
        _ => return Err(BAD_KEY_LENGTH),
    }
    des_fill(&mut t, mk, vp, clear)?;
    Ok(t)
}

/// Wraps `clear` into an existing DES token (keeping its CV), sets the flag,
/// MKVP and TVV.
pub fn des_fill(t: &mut [u8], mk: &[u8], vp: &[u8], clear: &[u8]) -> Result<(), Fail> {
    let key = des_variant(mk, t)?;
    for (i, off) in DES_PARTS.iter().enumerate() {
        let mut part = [0u8; 8];
        if let Some(p) = clear.get(i * 8..i * 8 + 8) {
            part.copy_from_slice(p);
            crypto::tdes_ecb(&key, &mut part, true)?;
        }
        put(t, *off, &part)?;
    }
    if let Some(f) = t.get_mut(6) {
        *f |= 0x80;
    }
    put(t, 8, vp)?;
    layout::tvv_write(t);
    Ok(())
}

/// The clear key of a DES token under `mk`.
pub fn des_unwrap(t: &[u8], mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let len = layout::des_key_len(t).ok_or(UNUSABLE)?;
    let key = des_variant(mk, t)?;
    let mut out = Zeroizing::new(Vec::with_capacity(24));
    for off in DES_PARTS.iter().take(len / 8) {
        let mut part = [0u8; 8];
        part.copy_from_slice(get(t, *off, 8)?);
        crypto::tdes_ecb(&key, &mut part, false)?;
        out.extend_from_slice(&part);
    }
    Ok(out)
}

// ----------------------------------------------------------- AES DATA ----

/// A keyless AES DATA skeleton for a `bits`-bit key (CSNBKTB `NO-KEY`).
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn aes_data_skeleton(bits: u16) -> [u8; 64] {
    let mut t = [0u8; 64];
    t[0] = 0x01;
    t[4] = 0x04;
    t[6] = 0x20;
    put16(&mut t, 56, bits);
    layout::tvv_write(&mut t);
    t
}

/// Wraps `clear` into an AES DATA token: flag `X'C0'`, LRC at byte 7, MKVP,
/// AES-256-CBC(zero IV) of key ‖ pad, bit length, 32 at 58–59, TVV.
pub fn aes_data_fill(t: &mut [u8], mk: &[u8], vp: &[u8], clear: &[u8]) -> Result<(), Fail> {
    if !matches!(clear.len(), 16 | 24 | 32) {
        return Err(BAD_KEY_LENGTH);
    }
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.get_mut(..clear.len())
        .ok_or(BAD_KEY_LENGTH)?
        .copy_from_slice(clear);
    crypto::aes256_cbc0(mk, &mut buf[..], true)?;
    let lrc = clear.iter().fold(0u8, |a, b| a ^ b);
    put(t, 0, &[0x01, 0, 0, 0, 0x04, 0, 0xC0, lrc])?;
    put(t, 8, vp)?;
    put(t, 16, &buf[..])?;
    put(t, 48, &[0; 8])?;
    put16(t, 56, (clear.len() * 8) as u16);
    put16(t, 58, 32);
    layout::tvv_write(t);
    Ok(())
}

/// A new AES DATA token for `clear`.
pub fn aes_data_build(mk: &[u8], vp: &[u8], clear: &[u8]) -> Result<[u8; 64], Fail> {
    let mut t = aes_data_skeleton((clear.len() * 8) as u16);
    aes_data_fill(&mut t, mk, vp, clear)?;
    Ok(t)
}

/// The clear key of an AES DATA token under `mk`.
pub fn aes_data_unwrap(t: &[u8], mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let bits = be16(t, 56)?;
    if !matches!(bits, 128 | 192 | 256) || t.get(6).is_none_or(|f| f & 0x80 == 0) {
        return Err(UNUSABLE);
    }
    let mut buf = Zeroizing::new(get(t, 16, 32)?.to_vec());
    crypto::aes256_cbc0(mk, &mut buf, false)?;
    buf.truncate(bits / 8);
    Ok(buf)
}

// ------------------------------------------------- variable-length X'05' ----

/// Fields of a variable-length skeleton (CSNBKTB2).
#[derive(Clone, Debug)]
pub struct VarParams {
    /// Algorithm byte 41: 2 AES, 3 HMAC.
    pub alg: u8,
    /// Key type at 42–43: 1 CIPHER, 2 MAC.
    pub key_type: u16,
    /// Key-usage fields.
    pub kuf: Vec<u16>,
    /// Key-management fields.
    pub kmf: Vec<u16>,
    /// V1 payload (fixed size) instead of V0.
    pub v1: bool,
}

/// Keyless skeleton (state `X'00'`, no MKVP, no payload).
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn var_skeleton(p: &VarParams) -> Vec<u8> {
    let adl = 16 + 2 * p.kuf.len() + 2 * p.kmf.len();
    let total = 30 + adl;
    let mut t = vec![0u8; total];
    t[0] = 0x01;
    put16(&mut t, 2, total as u16);
    t[4] = 0x05;
    t[28] = u8::from(p.v1);
    t[30] = 0x01;
    put16(&mut t, 32, adl as u16);
    t[41] = p.alg;
    put16(&mut t, 42, p.key_type);
    t[44] = p.kuf.len() as u8;
    let mut off = 45;
    for k in &p.kuf {
        put16(&mut t, off, *k);
        off += 2;
    }
    t[off] = p.kmf.len() as u8;
    off += 1;
    for k in &p.kmf {
        put16(&mut t, off, *k);
        off += 2;
    }
    t
}

fn var_ad_range(t: &[u8]) -> Result<(usize, usize), Fail> {
    let adl = be16(t, 32)?;
    if adl < 16 || 30 + adl > t.len() {
        return Err(UNUSABLE);
    }
    Ok((30, 30 + adl))
}

/// Wraps `key` into a variable-length token under the AES MK: state `X'03'`,
/// MKVP type 1, AESKW/SHA-256. The payload is the 12-byte header (six
/// `X'A6'`, pad length in bits, hash length 32, four bytes of hash options),
/// the SHA-256 of the AD section, the key (V1 AES: in a 32-byte field) and
/// zeros to a multiple of 8 bytes.
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn var_fill(t: &mut Vec<u8>, mk: &[u8], vp: &[u8], key: &[u8]) -> Result<(), Fail> {
    let (ad0, ad1) = var_ad_range(t)?;
    let v1 = t.get(28) == Some(&1) && t.get(41) == Some(&2);
    let field = if v1 { 32 } else { key.len() };
    if key.is_empty() || key.len() > field || key.len() > 256 {
        return Err(BAD_KEY_LENGTH);
    }
    let total = (44 + field).div_ceil(8) * 8;
    let pad_bits = (total - 44 - key.len()) * 8;
    t.truncate(ad1);
    put16(t, 38, (total * 8) as u16);
    put16(t, 2, (ad1 + total) as u16);
    let ad_hash = Sha256::digest(get(t, ad0, ad1 - ad0)?);
    let mut payload = Zeroizing::new(vec![0u8; total]);
    payload[..6].copy_from_slice(&[0xA6; 6]);
    payload[6] = u8::try_from(pad_bits).map_err(|_| BAD_KEY_LENGTH)?;
    payload[7] = 0x20;
    payload[12..44].copy_from_slice(&ad_hash);
    payload[44..44 + key.len()].copy_from_slice(key);
    crypto::aeskw_wrap_inplace(mk, &mut payload)?;
    t.extend_from_slice(&payload);
    t[8] = 0x03;
    t[9] = 0x01;
    t[10..26].fill(0);
    put(t, 10, vp)?;
    t[26] = 0x02;
    t[27] = 0x02;
    Ok(())
}

/// The clear key of a variable-length token under `mk`; a payload that does
/// not unwrap to a valid header and AD hash is 8/47.
pub fn var_unwrap(t: &[u8], mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let (ad0, ad1) = var_ad_range(t)?;
    let total = be16(t, 38)?.div_ceil(8);
    let mut payload = Zeroizing::new(get(t, ad1, total)?.to_vec());
    crypto::aeskw_unwrap_inplace(mk, &mut payload)?;
    let ad_hash = Sha256::digest(get(t, ad0, ad1 - ad0)?);
    let pad = usize::from(*payload.get(6).ok_or(UNUSABLE)?) / 8;
    let ok = payload.get(..6) == Some(&[0xA6; 6][..])
        && payload.get(7) == Some(&0x20)
        && payload.get(12..44) == Some(&ad_hash[..])
        && total >= 44 + pad;
    if !ok {
        return Err(UNUSABLE);
    }
    Ok(Zeroizing::new(
        get(&payload, 44, total - 44 - pad)?.to_vec(),
    ))
}

// ---------------------------------------------------------------- PKA ----

/// Where a PKA private section keeps its OPK blob: section-relative offset
/// and length (48 for APKA kinds, 32 for RSA-CRT).
fn opk_loc(kind: Kind) -> Result<(usize, usize), Fail> {
    layout::private_section(kind)
        .map(|s| (s.opk_at, s.opk_len))
        .ok_or(UNUSABLE)
}

/// Wraps a confounder ‖ OPK blob under `mk` (APKA: AES-256-CBC zero IV;
/// ASYM: TDES-EDE3-CBC zero IV).
pub fn opk_seal(blob: &[u8], mk: &[u8], apka: bool) -> Result<Vec<u8>, Fail> {
    let mut b = blob.to_vec();
    if apka {
        crypto::aes256_cbc0(mk, &mut b, true)?;
    } else {
        crypto::tdes_cbc(mk, &[0; 8], &mut b, true)?;
    }
    Ok(b)
}

fn opk_open(blob: &[u8], mk: &[u8], apka: bool) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut b = Zeroizing::new(blob.to_vec());
    if apka {
        crypto::aes256_cbc0(mk, &mut b, false)?;
    } else {
        crypto::tdes_cbc(mk, &[0; 8], &mut b, false)?;
    }
    Ok(b)
}

/// The clear object-protection key of a PKA private token under `mk`
/// (32-byte AES key, or 24-byte TDES key for RSA-CRT).
pub fn pka_opk(t: &[u8], info: &Token, mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let (rel, len) = opk_loc(info.kind)?;
    let apka = len == 48;
    let blob = opk_open(get(t, PKA_HEADER + rel, len)?, mk, apka)?;
    let conf = if apka { 16 } else { 8 };
    Ok(Zeroizing::new(get(&blob, conf, len - conf)?.to_vec()))
}

/// Re-enciphers any internal token from `from` to `to` (MKVP `to_vp`) in
/// place: unwrap, wrap, write the MKVP, recompute the TVV. Lengths, AD and
/// confounders stay as they are, so the result is deterministic.
pub fn rewrap(
    t: &mut [u8],
    info: &Token,
    from: &[u8],
    to: &[u8],
    to_vp: &[u8],
) -> Result<(), Fail> {
    match info.kind {
        Kind::Des => {
            let clear = des_unwrap(t, from)?;
            des_fill(t, to, to_vp, &clear)
        }
        Kind::AesData => {
            let clear = aes_data_unwrap(t, from)?;
            aes_data_fill(t, to, to_vp, &clear)
        }
        Kind::AesCipher | Kind::Hmac => {
            let body = t.get_mut(..info.len).ok_or(UNUSABLE)?;
            let clear = var_unwrap(body, from)?;
            let mut v = body.to_vec();
            var_fill(&mut v, to, to_vp, &clear)?;
            if v.len() != body.len() {
                return Err(UNUSABLE);
            }
            body.copy_from_slice(&v);
            Ok(())
        }
        _ => {
            let sec = layout::private_section(info.kind).ok_or(UNUSABLE)?;
            let apka = sec.opk_len == 48;
            let off = PKA_HEADER + sec.opk_at;
            let clear = opk_open(get(t, off, sec.opk_len)?, from, apka)?;
            let sealed = opk_seal(&clear, to, apka)?;
            put(t, off, &sealed)?;
            // The whole MKVP field: the pattern, then zeros.
            let mut field = vec![0u8; sec.mkvp_field];
            put(&mut field, 0, to_vp)?;
            put(t, PKA_HEADER + sec.mkvp_at, &field)
        }
    }
}

/// Writes a PKA token header (`X'1F'` internal or `X'1E'` external) over
/// `sections`.
pub fn pka_token(id: u8, sections: &[&[u8]]) -> Vec<u8> {
    let body: usize = sections.iter().map(|s| s.len()).sum();
    let mut t = Vec::with_capacity(8 + body);
    t.extend_from_slice(&[id, 0]);
    t.extend_from_slice(&((8 + body) as u16).to_be_bytes());
    t.extend_from_slice(&[0; 4]);
    for s in sections {
        t.extend_from_slice(s);
    }
    t
}

/// ECC public section `X'21'` with point `q`.
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn ecc_public_section(curve_type: u8, pbits: u16, q: &[u8]) -> Vec<u8> {
    let len = 14 + q.len();
    let mut s = vec![0u8; len];
    s[0] = 0x21;
    put16(&mut s, 2, len as u16);
    s[8] = curve_type;
    put16(&mut s, 10, pbits);
    put16(&mut s, 12, q.len() as u16);
    s[14..].copy_from_slice(q);
    s
}

/// Internal ECC token: private `X'20'` (private scalar wrapped under a fresh
/// OPK, OPK under the APKA MK) + public `X'21'`.
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn ecc_build(
    curve_type: u8,
    pbits: u16,
    usage: u8,
    d: &[u8],
    q: &[u8],
    mk: &[u8],
    vp: &[u8],
) -> Result<Vec<u8>, Fail> {
    let blob = crypto::random(48)?;
    let payload = crypto::kwp_wrap(&blob[16..], d)?;
    let len = 76 + payload.len();
    let mut s = vec![0u8; len];
    s[0] = 0x20;
    put16(&mut s, 2, len as u16);
    s[4] = 0x01;
    s[5] = 0x02;
    s[8] = usage;
    s[9] = curve_type;
    s[10] = 0x08;
    s[11] = 0x24;
    put16(&mut s, 12, pbits);
    put(&mut s, 16, vp)?;
    put(&mut s, 24, &opk_seal(&blob, mk, true)?)?;
    put16(&mut s, 74, payload.len() as u16);
    put(&mut s, 76, &payload)?;
    Ok(pka_token(
        0x1F,
        &[&s, &ecc_public_section(curve_type, pbits, q)],
    ))
}

/// The private scalar of an internal ECC token under `mk`.
pub fn ecc_private(t: &[u8], info: &Token, mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let opk = pka_opk(t, info, mk)?;
    let s = PKA_HEADER;
    let plen = be16(t, s + 74)?;
    crypto::kwp_unwrap(&opk, get(t, s + 76, plen)?)
}

/// Clear RSA key material.
pub struct RsaParts {
    /// Modulus.
    pub n: Vec<u8>,
    /// Public exponent.
    pub e: Vec<u8>,
    /// Private exponent.
    pub d: Zeroizing<Vec<u8>>,
    /// CRT components p, q, dp, dq, qInv (U).
    pub crt: [Zeroizing<Vec<u8>>; 5],
}

/// RSA public section `X'04'`; `with_n` puts the modulus in (external token).
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn rsa_public_section(e: &[u8], n: &[u8], with_n: bool, host_order: bool) -> Vec<u8> {
    let nf = if with_n { n.len() } else { 0 };
    let len = 12 + e.len() + nf;
    let mut s = vec![0u8; len];
    s[0] = 0x04;
    put16(&mut s, 2, len as u16);
    let elen = e.len() as u16;
    s[6..8].copy_from_slice(&if host_order {
        elen.to_le_bytes()
    } else {
        elen.to_be_bytes()
    });
    put16(&mut s, 8, (n.len() * 8) as u16);
    put16(&mut s, 10, nf as u16);
    s[12..12 + e.len()].copy_from_slice(e);
    if with_n {
        s[12 + e.len()..].copy_from_slice(n);
    }
    s
}

fn crt_concat(k: &RsaParts) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(k.crt.iter().flat_map(|c| c.iter().copied()).collect())
}

/// Internal RSA token with a private section of `kind` (`X'08'`, `X'30'` or
/// `X'31'`) and the public section. `host_order` writes the three fields
/// openCryptoki 3.8.1 on x86_64 reads in host byte order (little-endian):
/// the private section's length, the modulus length and the exponent length.
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn rsa_build(
    kind: Kind,
    k: &RsaParts,
    mk: &[u8],
    vp: &[u8],
    host_order: bool,
) -> Result<Vec<u8>, Fail> {
    let n = &k.n;
    let nlen = n.len() as u16;
    let sec = match kind {
        Kind::RsaCrt => {
            let mut blob = crypto::random(32)?;
            blob[8..].copy_from_slice(&crypto::random(24)?);
            let mut comp = crt_concat(k);
            let pad = comp.len().div_ceil(8) * 8 - comp.len();
            let full = comp.len() + pad;
            comp.resize(full, 0);
            let sha = sha1::Sha1::digest(&comp[..]);
            crypto::tdes_cbc(&blob[8..], &[0; 8], &mut comp, true)?;
            let len = 124 + comp.len() + n.len();
            let mut s = vec![0u8; len];
            s[0] = 0x08;
            let l = len as u16;
            s[2..4].copy_from_slice(&if host_order {
                l.to_le_bytes()
            } else {
                l.to_be_bytes()
            });
            s[4..24].copy_from_slice(&sha);
            s[28] = 0x08;
            s[29] = 0x24;
            for (i, c) in k.crt.iter().enumerate() {
                put16(&mut s, 54 + 2 * i, c.len() as u16);
            }
            s[64..66].copy_from_slice(&if host_order {
                nlen.to_le_bytes()
            } else {
                nlen.to_be_bytes()
            });
            put16(&mut s, 70, pad as u16);
            put(&mut s, 76, vp)?;
            put(&mut s, 92, &opk_seal(&blob, mk, false)?)?;
            put(&mut s, 124, &comp)?;
            put(&mut s, 124 + comp.len(), n)?;
            s
        }
        Kind::RsaAesm | Kind::RsaAesc => {
            let blob = crypto::random(48)?;
            let aesc = kind == Kind::RsaAesc;
            let layout = layout::private_section(kind).ok_or(UNUSABLE)?;
            let secret = if aesc { crt_concat(k) } else { k.d.clone() };
            let payload = crypto::kwp_wrap(&blob[16..], &secret)?;
            let base = if aesc { 134 } else { 122 };
            let len = base + n.len() + payload.len();
            let mut s = vec![0u8; len];
            s[0] = if aesc { 0x31 } else { 0x30 };
            put16(&mut s, 2, len as u16);
            put16(&mut s, 6, payload.len() as u16);
            s[10] = 0x01;
            s[11] = 0x02;
            s[12] = 0x24;
            s[14] = 0x02;
            if aesc {
                for (i, c) in k.crt.iter().enumerate() {
                    put16(&mut s, 52 + 2 * i, c.len() as u16);
                }
                put16(&mut s, 62, nlen);
            } else {
                put16(&mut s, 52, nlen);
                put16(&mut s, 54, k.d.len() as u16);
            }
            put(&mut s, layout.opk_at, &opk_seal(&blob, mk, true)?)?;
            put(&mut s, layout.mkvp_at, vp)?;
            put(&mut s, base, n)?;
            put(&mut s, base + n.len(), &payload)?;
            s
        }
        _ => return Err(UNUSABLE),
    };
    Ok(pka_token(
        0x1F,
        &[&sec, &rsa_public_section(&k.e, n, false, host_order)],
    ))
}

/// Reads a 16-bit field that 3.8.1 may have written in host order: the
/// big-endian reading when it is at most `max`, else the swapped one.
fn either16(t: &[u8], off: usize, ok: impl Fn(usize) -> bool) -> Result<usize, Fail> {
    let v = be16(t, off)?;
    [v, (v & 0xFF) << 8 | v >> 8]
        .into_iter()
        .find(|&x| ok(x))
        .ok_or(UNUSABLE)
}

/// The public section following the private section of an internal token,
/// or the first section of an external one.
pub fn public_section(t: &[u8]) -> Result<&[u8], Fail> {
    let first = PKA_HEADER;
    let off = match t.first() {
        Some(0x1E) => first,
        Some(0x1F) => {
            let sid = *t.get(first).ok_or(UNUSABLE)?;
            if matches!(sid, 0x04 | 0x21 | 0x51) {
                first
            } else {
                let l = layout::section_len(t, first).ok_or(UNUSABLE)?;
                first + l
            }
        }
        _ => return Err(UNUSABLE),
    };
    let l = layout::section_len(t, off).ok_or(UNUSABLE)?;
    get(t, off, l)
}

/// Modulus and public exponent of an internal RSA token.
pub fn rsa_public(t: &[u8], info: &Token) -> Result<(Vec<u8>, Vec<u8>), Fail> {
    let s0 = PKA_HEADER;
    let slen = layout::section_len(t, s0).ok_or(UNUSABLE)?;
    let sec = get(t, s0, slen)?;
    let n = match info.kind {
        Kind::RsaCrt => {
            let room = slen.saturating_sub(124);
            let nlen = either16(sec, 64, |x| x >= 32 && x <= room && (room - x) % 8 == 0)?;
            get(sec, slen - nlen, nlen)?.to_vec()
        }
        Kind::RsaAesm => get(sec, 122, be16(sec, 52)?)?.to_vec(),
        Kind::RsaAesc => get(sec, 134, be16(sec, 62)?)?.to_vec(),
        _ => return Err(UNUSABLE),
    };
    let p = public_section(t)?;
    let room = p.len().saturating_sub(12);
    let elen = either16(p, 6, |x| x > 0 && x <= room)?;
    Ok((n, get(p, 12, elen)?.to_vec()))
}

/// Clear CRT components of an RSA-CRT `X'08'` or RSA-AESC `X'31'` token.
pub fn rsa_private(t: &[u8], info: &Token, mk: &[u8]) -> Result<RsaParts, Fail> {
    let (n, e) = rsa_public(t, info)?;
    let opk = pka_opk(t, info, mk)?;
    let s0 = PKA_HEADER;
    let slen = layout::section_len(t, s0).ok_or(UNUSABLE)?;
    let sec = get(t, s0, slen)?;
    let (lens_at, clear) = match info.kind {
        Kind::RsaCrt => {
            let enc_len = slen.checked_sub(124 + n.len()).ok_or(UNUSABLE)?;
            let mut c = Zeroizing::new(get(sec, 124, enc_len)?.to_vec());
            crypto::tdes_cbc(&opk, &[0; 8], &mut c, false)?;
            (54, c)
        }
        Kind::RsaAesc => {
            let plen = be16(sec, 6)?;
            (
                52,
                crypto::kwp_unwrap(&opk, get(sec, 134 + n.len(), plen)?)?,
            )
        }
        _ => return Err(UNUSABLE),
    };
    let mut off = 0;
    let mut crt: [Zeroizing<Vec<u8>>; 5] = Default::default();
    for (i, c) in crt.iter_mut().enumerate() {
        let l = be16(sec, lens_at + 2 * i)?;
        *c = Zeroizing::new(get(&clear, off, l)?.to_vec());
        off += l;
    }
    Ok(RsaParts {
        n,
        e,
        d: Zeroizing::new(Vec::new()),
        crt,
    })
}

/// The private exponent of an RSA-AESM `X'30'` token under `mk`.
pub fn rsa_aesm_d(t: &[u8], info: &Token, mk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    if info.kind != Kind::RsaAesm {
        return Err(UNUSABLE);
    }
    let opk = pka_opk(t, info, mk)?;
    let s0 = PKA_HEADER;
    let slen = layout::section_len(t, s0).ok_or(UNUSABLE)?;
    let sec = get(t, s0, slen)?;
    let nlen = be16(sec, 52)?;
    let plen = be16(sec, 6)?;
    crypto::kwp_unwrap(&opk, get(sec, 122 + nlen, plen)?)
}

/// Public key of a PKA token (internal private or external public).
pub enum PublicKey {
    /// RSA modulus and exponent.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// EC curve type, prime bits and point.
    Ec {
        /// Curve type (0 prime, 1 Brainpool, 2 Edwards).
        curve: u8,
        /// Prime length in bits.
        bits: u16,
        /// The point (uncompressed `04 ‖ x ‖ y` for prime curves).
        q: Vec<u8>,
    },
}

/// The public key of an internal or external PKA token.
pub fn public_key(t: &[u8]) -> Result<PublicKey, Fail> {
    if let Ok(info) = layout::parse(t) {
        if matches!(info.kind, Kind::RsaCrt | Kind::RsaAesm | Kind::RsaAesc) {
            let (n, e) = rsa_public(t, &info)?;
            return Ok(PublicKey::Rsa { n, e });
        }
    }
    let p = public_section(t)?;
    match p.first() {
        Some(0x04) => {
            let elen = be16(p, 6)?;
            let nlen = be16(p, 10)?;
            let e = get(p, 12, elen)?.to_vec();
            let n = get(p, 12 + elen, nlen)?.to_vec();
            if n.is_empty() {
                return Err(UNUSABLE);
            }
            Ok(PublicKey::Rsa { n, e })
        }
        Some(0x21) => {
            let qlen = be16(p, 12)?;
            Ok(PublicKey::Ec {
                curve: *p.get(8).ok_or(UNUSABLE)?,
                bits: u16::try_from(be16(p, 10)?).map_err(|_| UNUSABLE)?,
                q: get(p, 14, qlen)?.to_vec(),
            })
        }
        _ => Err(UNUSABLE),
    }
}
