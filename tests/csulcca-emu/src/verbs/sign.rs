//! Signatures and RSA encryption: CSNDDSG/CSNDDSV (`PKCS-1.1` RSA, `ECDSA`
//! on P-256, P-384 and P-521) and CSNDPKE/CSNDPKD (`PKCS-1.2`), so tests can show that a
//! re-enciphered private key still signs and decrypts. Private keys under
//! CURRENT or OLD work, anything else is 8/48; a bad signature is 4/429
//! (as openCryptoki 3.8.1 expects).

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::BigUint;
use zeroize::Zeroizing;

use super::{parse_rules, token_key};
use crate::codes::*;
use crate::crypto;
use crate::hash::{self, Alg, Part, Stream};
use crate::keyword::Keyword;
use crate::layout::Kind;
use crate::state::Store;
use crate::tokens::{self, PublicKey};
use crate::Fail;

fn one_keyword(rule_bytes: &[u8], count: i64) -> Result<String, Fail> {
    let kws = parse_rules(rule_bytes, count, 0, 2)?;
    Ok(kws
        .first()
        .map(|k| k.as_str().to_string())
        .unwrap_or_default())
}

/// m^(private) mod n for an RSA token under `mk` (CRT when the token holds
/// CRT components, the private exponent for RSA-AESM).
fn rsa_private_op(t: &[u8], store: &Store, m: &BigUint) -> Result<(BigUint, usize), Fail> {
    let state = store.read()?;
    let (info, mk) = token_key(&state, t)?;
    match info.kind {
        Kind::RsaCrt | Kind::RsaAesc => {
            let k = tokens::rsa_private(t, &info, &mk)?;
            let b = |v: &[u8]| BigUint::from_bytes_be(v);
            let (p, q, dp, dq, u) = (
                b(&k.crt[0]),
                b(&k.crt[1]),
                b(&k.crt[2]),
                b(&k.crt[3]),
                b(&k.crt[4]),
            );
            if p == BigUint::from(0u8) || q == BigUint::from(0u8) {
                return Err(UNUSABLE);
            }
            let m1 = m.modpow(&dp, &p);
            let m2 = m.modpow(&dq, &q);
            let h = (&u * ((&m1 + &p) - (&m2 % &p))) % &p;
            Ok((m2 + h * q, k.n.len()))
        }
        Kind::RsaAesm => {
            let (n, _) = tokens::rsa_public(t, &info)?;
            let d = tokens::rsa_aesm_d(t, &info, &mk)?;
            Ok((
                m.modpow(&BigUint::from_bytes_be(&d), &BigUint::from_bytes_be(&n)),
                n.len(),
            ))
        }
        _ => Err(UNUSABLE),
    }
}

fn to_len(v: &BigUint, k: usize) -> Result<Vec<u8>, Fail> {
    let b = v.to_bytes_be();
    let pad = k.checked_sub(b.len()).ok_or(UNUSABLE)?;
    Ok(std::iter::repeat_n(0u8, pad).chain(b).collect())
}

/// EMSA-PKCS1-v1_5 block type 1 over `data` as given (`PKCS-1.1`).
fn pad_type1(data: &[u8], k: usize) -> Result<Vec<u8>, Fail> {
    let ps = k
        .checked_sub(data.len() + 3)
        .filter(|&p| p >= 8)
        .ok_or(SHORT_BUFFER)?;
    let mut em = vec![0u8, 1];
    em.extend(std::iter::repeat_n(0xFFu8, ps));
    em.push(0);
    em.extend_from_slice(data);
    Ok(em)
}

/// ECDSA over a prehash with a NIST curve key.
macro_rules! ecdsa_sign {
    ($curve:ident, $d:expr, $hash:expr) => {{
        let sk = $curve::ecdsa::SigningKey::from_slice($d).map_err(|_| UNUSABLE)?;
        let sig: $curve::ecdsa::Signature = sk.sign_prehash($hash).map_err(|_| SHORT_BUFFER)?;
        Ok(sig.to_bytes().to_vec())
    }};
}

/// ECDSA verification over a prehash with a NIST curve point.
macro_rules! ecdsa_verify {
    ($curve:ident, $q:expr, $hash:expr, $sig:expr) => {{
        let vk = $curve::ecdsa::VerifyingKey::from_sec1_bytes($q).map_err(|_| UNUSABLE)?;
        let sig = $curve::ecdsa::Signature::from_slice($sig).map_err(|_| BAD_SIGNATURE)?;
        vk.verify_prehash($hash, &sig).map_err(|_| BAD_SIGNATURE)
    }};
}

/// CSNDDSG: the signature of `hash` (RSA `PKCS-1.1`: `hash` is the
/// DigestInfo or other data to pad; `ECDSA`: a hash, output r ‖ s).
pub fn sign(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    key: &[u8],
    hash: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kw = one_keyword(rule_bytes, count)?;
    let public = tokens::public_key(key)?;
    match (kw.as_str(), &public) {
        ("PKCS-1.1" | "", PublicKey::Rsa { n, .. }) => {
            let em = pad_type1(hash, n.len())?;
            let (s, k) = rsa_private_op(key, store, &BigUint::from_bytes_be(&em))?;
            to_len(&s, k)
        }
        ("ECDSA" | "", PublicKey::Ec { curve: 0, bits, .. }) => {
            let state = store.read()?;
            let (info, mk) = token_key(&state, key)?;
            let d = tokens::ecc_private(key, &info, &mk)?;
            match bits {
                256 => ecdsa_sign!(p256, &d, hash),
                384 => ecdsa_sign!(p384, &d, hash),
                521 => ecdsa_sign!(p521, &d, hash),
                _ => Err(COMPONENT),
            }
        }
        (_, PublicKey::Ec { .. }) => Err(COMPONENT),
        _ => Err(BAD_KEYWORD),
    }
}

/// CSNDDSV: verifies `sig` over `hash` with the token's public key.
pub fn verify(
    rule_bytes: &[u8],
    count: i64,
    key: &[u8],
    hash: &[u8],
    sig: &[u8],
) -> Result<(), Fail> {
    let kw = one_keyword(rule_bytes, count)?;
    let public = tokens::public_key(key)?;
    match (kw.as_str(), &public) {
        ("PKCS-1.1" | "", PublicKey::Rsa { n, e }) => {
            let nn = BigUint::from_bytes_be(n);
            let s = BigUint::from_bytes_be(sig);
            if s >= nn {
                return Err(BAD_SIGNATURE);
            }
            let em = to_len(&s.modpow(&BigUint::from_bytes_be(e), &nn), n.len())?;
            if em == pad_type1(hash, n.len())? {
                Ok(())
            } else {
                Err(BAD_SIGNATURE)
            }
        }
        ("ECDSA" | "", PublicKey::Ec { curve: 0, bits, q }) => match bits {
            256 => ecdsa_verify!(p256, q, hash, sig),
            384 => ecdsa_verify!(p384, q, hash, sig),
            521 => ecdsa_verify!(p521, q, hash, sig),
            _ => Err(COMPONENT),
        },
        (_, PublicKey::Ec { .. }) => Err(COMPONENT),
        _ => Err(BAD_KEYWORD),
    }
}

/// CSNDPKE `PKCS-1.2`: RSAES-PKCS1-v1_5 encryption with the public key.
pub fn encrypt(rule_bytes: &[u8], count: i64, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Fail> {
    let kw = one_keyword(rule_bytes, count)?;
    let PublicKey::Rsa { n, e } = tokens::public_key(key)? else {
        return Err(UNUSABLE);
    };
    if kw != "PKCS-1.2" {
        return Err(BAD_KEYWORD);
    }
    let k = n.len();
    let ps_len = k
        .checked_sub(data.len() + 3)
        .filter(|&p| p >= 8)
        .ok_or(SHORT_BUFFER)?;
    let mut em = Zeroizing::new(vec![0u8, 2]);
    while em.len() < 2 + ps_len {
        let r = crypto::random(ps_len)?;
        let want = 2 + ps_len - em.len();
        em.extend(r.iter().copied().filter(|&b| b != 0).take(want));
    }
    em.push(0);
    em.extend_from_slice(data);
    let c = BigUint::from_bytes_be(&em)
        .modpow(&BigUint::from_bytes_be(&e), &BigUint::from_bytes_be(&n));
    to_len(&c, k)
}

/// CSNDPKD `PKCS-1.2`: RSAES-PKCS1-v1_5 decryption with the private key.
pub fn decrypt(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    key: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Fail> {
    if one_keyword(rule_bytes, count)? != "PKCS-1.2" {
        return Err(BAD_KEYWORD);
    }
    let (m, k) = rsa_private_op(key, store, &BigUint::from_bytes_be(data))?;
    let em = Zeroizing::new(to_len(&m, k)?);
    let sep = em.iter().skip(2).position(|&b| b == 0).map(|p| p + 2);
    match (em.first(), em.get(1), sep) {
        (Some(0), Some(2), Some(i)) if i >= 10 => {
            Ok(Zeroizing::new(em.get(i + 1..).unwrap_or(&[]).to_vec()))
        }
        _ => Err(BAD_PKCS1_BLOCK),
    }
}

pub use crate::hash::PartOut;

fn alg_and_part(kws: &[Keyword], extra: &[&str]) -> Result<(Alg, Part), Fail> {
    let mut alg = None;
    let mut part = None;
    for k in kws {
        let s = k.as_str();
        if let Some(a) = Alg::from_keyword(s) {
            if alg.replace(a).is_some() {
                return Err(BAD_COMBINATION);
            }
        } else if let Some(p) = Part::from_keyword(s) {
            if part.replace(p).is_some() {
                return Err(BAD_COMBINATION);
            }
        } else if !extra.contains(&s) {
            return Err(BAD_KEYWORD);
        }
    }
    Ok((alg.unwrap_or(Alg::Sha256), part.unwrap_or(Part::Only)))
}

/// CSNBOWH: `SHA-1|SHA-224|SHA-256|SHA-384|SHA-512` + `ONLY|FIRST|MIDDLE|
/// LAST` (FIRST and MIDDLE take whole blocks).
pub fn one_way_hash(
    rule_bytes: &[u8],
    count: i64,
    chain: &[u8],
    data: &[u8],
) -> Result<PartOut, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 2)?;
    let (alg, part) = alg_and_part(&kws, &[])?;
    hash::step(alg, part, || Ok(Stream::new(alg)), chain, data)
}

/// HMAC with an HMAC token (`HMAC` + `SHA-*` + `ONLY|FIRST|MIDDLE|LAST`),
/// RFC 2104 over the emulator's multi-part hash so that the state between
/// parts fits the chaining vector.
pub fn hmac(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    key: &[u8],
    chain: &[u8],
    msg: &[u8],
) -> Result<PartOut, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 3)?;
    let (alg, part) = alg_and_part(&kws, &["HMAC"])?;
    let (kind, k) = super::keys::symmetric_key(store, key)?;
    if kind != Kind::Hmac {
        return Err(UNUSABLE);
    }
    let bl = alg.block_len();
    let mut k0 = Zeroizing::new(if k.len() > bl {
        Stream::new(alg).finish(&k)
    } else {
        k.to_vec()
    });
    k0.resize(bl, 0);
    let pad = |b: u8| -> Zeroizing<Vec<u8>> { Zeroizing::new(k0.iter().map(|x| x ^ b).collect()) };
    let inner_init = || {
        let mut s = Stream::new(alg);
        s.update_blocks(&pad(0x36))?;
        Ok(s)
    };
    let (inner, cv) = hash::step(alg, part, inner_init, chain, msg)?;
    match inner {
        Some(ih) => {
            let mut outer = Stream::new(alg);
            outer.update_blocks(&pad(0x5C))?;
            Ok((Some(outer.finish(&ih)), None))
        }
        None => Ok((None, cv)),
    }
}
