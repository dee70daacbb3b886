//! PKA verbs: CSNDPKB (skeletons), CSNDPKG (key pairs), CSNDPKX (public
//! key extract) and CSNDPKT (`INTDWAKW`, RSA-CRT → RSA-AESC).
//!
//! RSA keys and EC keys on P-256/384/521 are real key pairs; other curves
//! and QSA carry random key material in the exact layouts: enough for
//! openCryptoki to read the point and for re-encipherment to be checked, not
//! for signatures. openCryptoki 3.8.1 on x86_64 fills the bit length and
//! exponent length of its CSNDPKB key-values structure in host byte order
//! (`usr/lib/pkcs11/cca_stdll/cca_specific.c` of 3.8.1); such requests are
//! accepted and answered in kind.

use zeroize::Zeroizing;

use super::{current, parse_rules, token_key};
use crate::codes::*;
use crate::crypto;
use crate::keyword::Keyword;
use crate::layout::{self, Kind, Reject};
use crate::state::{MkType, Store};
use crate::tokens::{self, RsaParts};
use crate::Fail;

/// Emulator skeleton private section: id, 0, len 12, usage, host-order flag,
/// curve type / QSA algorithm, p bits or QSA parameters (BE), modulus bits.
const SKEL_LEN: usize = 12;

fn u16_either(b: &[u8], off: usize, ok: impl Fn(u16) -> bool) -> Option<(u16, bool)> {
    let v = u16::try_from(layout::be16(b, off)?).ok()?;
    if ok(v) {
        Some((v, false))
    } else if ok(v.swap_bytes()) {
        Some((v.swap_bytes(), true))
    } else {
        None
    }
}

fn rsa_bits_ok(v: u16) -> bool {
    (512..=4096).contains(&v) && v.is_multiple_of(8)
}

fn ecc_bits_ok(v: u16) -> bool {
    matches!(v, 160 | 192 | 224 | 255 | 256 | 320 | 384 | 448 | 512 | 521)
}

/// CSNDPKB: a skeleton token for CSNDPKG (RSA-CRT / RSA-AESM / RSA-AESC /
/// ECC-PAIR / QSA-PAIR). Clear-key imports and public-only builds are not
/// emulated (16/336).
#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
pub fn token_build(rule_bytes: &[u8], count: i64, kvs: &[u8]) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 6)?;
    let mut kind = None;
    let mut usage = 0u8;
    for k in &kws {
        let sid = match k.as_str() {
            "RSA-CRT" => Some(0x08),
            "RSA-AESM" => Some(0x30),
            "RSA-AESC" => Some(0x31),
            "ECC-PAIR" => Some(0x20),
            "QSA-PAIR" => Some(0x50),
            "RSA-PUBL" | "ECC-PUBL" | "QSA-PUBL" => return Err(COMPONENT),
            "KEY-MGMT" | "KEY-PAIR" | "ECC-VER1" | "U-DATENC" | "XPRTCPAC" | "NOEXPORT" => None,
            "SIG-ONLY" | "U-DIGSIG" => {
                usage = 0x80;
                None
            }
            _ => return Err(BAD_KEYWORD),
        };
        if let Some(id) = sid {
            if kind.replace(id).is_some() {
                return Err(BAD_COMBINATION);
            }
        }
    }
    let sid = kind.ok_or(BAD_COMBINATION)?;
    let mut sec = [0u8; SKEL_LEN];
    sec[0] = sid;
    sec[2..4].copy_from_slice(&(SKEL_LEN as u16).to_be_bytes());
    sec[4] = usage;
    let mut public = Vec::new();
    match sid {
        0x08 | 0x30 | 0x31 => {
            let (bits, host) = u16_either(kvs, 0, rsa_bits_ok).ok_or(PKB_KEY_SIZE)?;
            let (elen, _) = u16_either(kvs, 4, |v| v <= 256).ok_or(PKB_KEY_SIZE)?;
            let e = kvs.get(18..18 + usize::from(elen)).ok_or(PKB_KEY_SIZE)?;
            sec[5] = u8::from(host);
            sec[10..12].copy_from_slice(&bits.to_be_bytes());
            public = tokens::rsa_public_section(e, &vec![0; usize::from(bits) / 8], false, false);
        }
        0x20 => {
            let ct = *kvs.first().ok_or(PKB_KEY_SIZE)?;
            let (bits, _) = u16_either(kvs, 2, ecc_bits_ok).ok_or(PKB_KEY_SIZE)?;
            sec[6] = ct;
            sec[8..10].copy_from_slice(&bits.to_be_bytes());
        }
        _ => {
            let alg = *kvs.first().ok_or(PKB_KEY_SIZE)?;
            let params = layout::be16(kvs, 2)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or(PKB_KEY_SIZE)?;
            qsa_sizes(alg, params).ok_or(PKB_KEY_SIZE)?;
            sec[6] = alg;
            sec[8..10].copy_from_slice(&params.to_be_bytes());
        }
    }
    Ok(tokens::pka_token(0x1F, &[&sec, &public]))
}

/// Public/private sizes of a QSA algorithm: (rho or pk length, t1 or seed
/// length, private length).
fn qsa_sizes(alg: u8, params: u16) -> Option<(usize, usize, usize)> {
    match (alg, params) {
        (0x01 | 0x03 | 0x05 | 0x07, 0x0404 | 0x0605 | 0x0807) => {
            let k = usize::from(params >> 8);
            Some((32, 320 * k, 32 + 32 + 64 + 96 * k + 416 * k))
        }
        (0x06, 0x0512 | 0x0768 | 0x1024) => {
            let k = match params {
                0x0512 => 2,
                0x0768 => 3,
                _ => 4,
            };
            Some((384 * k + 32, 0, 768 * k + 96))
        }
        _ => None,
    }
}

/// A real RSA key pair of `bits` with public exponent `e`: modulus, private
/// exponent and the CRT components p, q, dp, dq, U = q⁻¹ mod p.
fn rsa_pair(bits: usize, e: Vec<u8>) -> Result<RsaParts, Fail> {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let exp = rsa::BigUint::from_bytes_be(&e);
    let key = rsa::RsaPrivateKey::new_with_exp(&mut rand_core::OsRng, bits, &exp)
        .map_err(|_| KEY_SIZE)?;
    let (p, q) = match key.primes() {
        [p, q] => (p, q),
        _ => return Err(COMPONENT),
    };
    let z = |v: Vec<u8>| Zeroizing::new(v);
    let qinv = key.qinv().ok_or(COMPONENT)?.to_bytes_be().1;
    let crt = [
        z(p.to_bytes_be()),
        z(q.to_bytes_be()),
        z(key.dp().ok_or(COMPONENT)?.to_bytes_be()),
        z(key.dq().ok_or(COMPONENT)?.to_bytes_be()),
        z(qinv),
    ];
    Ok(RsaParts {
        n: key.n().to_bytes_be(),
        e,
        d: z(key.d().to_bytes_be()),
        crt,
    })
}

/// CSNDPKG (`MASTER`): a key pair from an emulator skeleton, wrapped under
/// the CURRENT ASYM (RSA-CRT) or APKA master key.
pub fn key_generate(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    skel: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 0, 2)?;
    for k in &kws {
        if !matches!(k.as_str(), "MASTER" | "XPRTCPAC") {
            return Err(BAD_KEYWORD);
        }
    }
    if skel.first() != Some(&0x1F) {
        return Err(UNUSABLE);
    }
    let sec: [u8; SKEL_LEN] = skel
        .get(8..8 + SKEL_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(UNUSABLE)?;
    let sid = sec[0];
    if u16::from_be_bytes([sec[2], sec[3]]) != SKEL_LEN as u16 {
        return Err(UNUSABLE);
    }
    let state = store.read()?;
    match sid {
        0x08 | 0x30 | 0x31 => {
            let bits = u16::from_be_bytes([sec[10], sec[11]]);
            if !rsa_bits_ok(bits) {
                return Err(UNUSABLE);
            }
            let bits = usize::from(bits);
            let host = sec[5] == 1;
            let pubsec = skel.get(8 + SKEL_LEN..).ok_or(UNUSABLE)?;
            let elen = layout::be16(pubsec, 6).ok_or(UNUSABLE)?;
            let mut e = pubsec.get(12..12 + elen).ok_or(UNUSABLE)?.to_vec();
            if e.iter().all(|&b| b == 0) {
                e = vec![0x01, 0x00, 0x01];
            }
            let parts = rsa_pair(bits, e)?;
            let (kind, t) = match sid {
                0x08 => (Kind::RsaCrt, MkType::Asym),
                0x30 => (Kind::RsaAesm, MkType::Apka),
                _ => (Kind::RsaAesc, MkType::Apka),
            };
            let (mk, vp) = current(&state, t)?;
            tokens::rsa_build(kind, &parts, &mk, &vp, host)
        }
        0x20 => {
            let (mk, vp) = current(&state, MkType::Apka)?;
            let ct = sec[6];
            let bits = u16::from_be_bytes([sec[8], sec[9]]);
            if !ecc_bits_ok(bits) {
                return Err(UNUSABLE);
            }
            let (d, q) = ec_pair(ct, bits)?;
            tokens::ecc_build(ct, bits, sec[4], &d, &q, &mk, &vp)
        }
        0x50 => {
            let (mk, vp) = current(&state, MkType::Apka)?;
            let params = u16::from_be_bytes([sec[8], sec[9]]);
            qsa_build(sec[6], params, &mk, &vp)
        }
        _ => Err(UNUSABLE),
    }
}

/// A real key pair on `$curve` (NIST P-256/384/521): a random scalar in
/// range and its uncompressed public point.
macro_rules! nist_pair {
    ($curve:ident, $len:expr, $top_mask:expr) => {{
        for _ in 0..16 {
            let mut d = crypto::random($len)?;
            if let Some(b) = d.first_mut() {
                *b &= $top_mask;
            }
            if let Ok(sk) = $curve::ecdsa::SigningKey::from_slice(&d) {
                let q = $curve::ecdsa::VerifyingKey::from(&sk)
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                return Ok((d, q));
            }
        }
        Err(COMPONENT)
    }};
}

/// An EC key pair: real on P-256, P-384 and P-521, random bytes of the right
/// sizes on other curves.
fn ec_pair(curve_type: u8, bits: u16) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Fail> {
    match (curve_type, bits) {
        (0, 256) => nist_pair!(p256, 32, 0xFF),
        (0, 384) => nist_pair!(p384, 48, 0xFF),
        (0, 521) => nist_pair!(p521, 66, 0x01),
        _ => {
            let n = usize::from(bits).div_ceil(8);
            let d = crypto::random(n)?;
            let q = if curve_type == 2 {
                crypto::random(n)?.to_vec()
            } else {
                let mut q = vec![0x04];
                q.extend_from_slice(&crypto::random(2 * n)?);
                q
            };
            Ok((d, q))
        }
    }
}

#[allow(
    clippy::indexing_slicing,
    reason = "builder: every index is into a buffer allocated above with room for all fields"
)]
fn qsa_build(alg: u8, params: u16, mk: &[u8], vp: &[u8]) -> Result<Vec<u8>, Fail> {
    let layout = layout::private_section(Kind::Qsa).ok_or(COMPONENT)?;
    let (l1, l2, lpriv) = qsa_sizes(alg, params).ok_or(UNUSABLE)?;
    let blob = crypto::random(48)?;
    let secret = crypto::random(lpriv)?;
    let payload = crypto::kwp_wrap(&blob[16..], &secret)?;
    let len = 128 + payload.len();
    let mut s = vec![0u8; len];
    s[0] = 0x50;
    s[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    s[6..8].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    s[9] = alg;
    s[10..12].copy_from_slice(&params.to_be_bytes());
    let sealed = tokens::opk_seal(&blob, mk, true)?;
    s.get_mut(layout.opk_at..layout.opk_at + layout.opk_len)
        .ok_or(COMPONENT)?
        .copy_from_slice(&sealed);
    s.get_mut(layout.mkvp_at..layout.mkvp_at + layout.mkvp_len)
        .ok_or(COMPONENT)?
        .copy_from_slice(vp.get(..layout.mkvp_len).ok_or(COMPONENT)?);
    s[128..].copy_from_slice(&payload);
    let plen = 24 + l1 + l2;
    let mut p = vec![0u8; plen];
    p[0] = 0x51;
    p[2..4].copy_from_slice(&(plen as u16).to_be_bytes());
    p[5] = alg;
    p[6..8].copy_from_slice(&params.to_be_bytes());
    p[10..12].copy_from_slice(&(l1 as u16).to_be_bytes());
    p[12..14].copy_from_slice(&(l2 as u16).to_be_bytes());
    p[24..].copy_from_slice(&crypto::random(l1 + l2)?);
    Ok(tokens::pka_token(0x1F, &[&s, &p]))
}

/// CSNDPKX: the external public token (`X'1E'` + public section, with the
/// modulus for RSA) of an internal or external PKA token.
pub fn public_key_extract(rule_bytes: &[u8], count: i64, src: &[u8]) -> Result<Vec<u8>, Fail> {
    parse_rules(rule_bytes, count, 0, 0)?;
    match layout::parse(src) {
        Ok(info) if matches!(info.kind, Kind::RsaCrt | Kind::RsaAesm | Kind::RsaAesc) => {
            let (n, e) = tokens::rsa_public(src, &info)?;
            let sec = tokens::rsa_public_section(&e, &n, true, false);
            Ok(tokens::pka_token(0x1E, &[&sec]))
        }
        Ok(_) | Err(Reject::NotInternal) => {
            let sec = tokens::public_section(src)?.to_vec();
            Ok(tokens::pka_token(0x1E, &[&sec]))
        }
        Err(_) => Err(UNUSABLE),
    }
}

/// CSNDPKT `INTDWAKW`: an internal RSA-CRT `X'08'` token (under CURRENT or
/// OLD ASYM) becomes an RSA-AESC `X'31'` token under CURRENT APKA.
pub fn key_translate(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    src: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 1)?;
    if kws.first() != Some(&Keyword::new("INTDWAKW")) {
        return Err(BAD_KEYWORD);
    }
    let state = store.read()?;
    let (info, mk) = token_key(&state, src)?;
    if info.kind != Kind::RsaCrt {
        return Err(UNUSABLE);
    }
    let parts = tokens::rsa_private(src, &info, &mk)?;
    let (amk, avp) = current(&state, MkType::Apka)?;
    tokens::rsa_build(Kind::RsaAesc, &parts, &amk, &avp, false)
}
