//! Signatures and RSA encryption: CSNDDSG/CSNDDSV (`PKCS-1.1` RSA, `ECDSA`
//! on P-256) and CSNDPKE/CSNDPKD (`PKCS-1.2`), so tests can show that a
//! re-enciphered private key still signs and decrypts. Private keys under
//! CURRENT or OLD work, anything else is 8/48; a bad signature is 4/429
//! (as openCryptoki 3.8.1 expects).

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use pkcscca::cca::rules::Keyword;
use pkcscca::cca::token::TokenKind;
use rsa::BigUint;
use zeroize::Zeroizing;

use super::{parse_rules, token_key};
use crate::codes::*;
use crate::crypto;
use crate::state::Store;
use crate::tokens::{self, PublicKey};
use crate::Fail;

/// CSNDDSV's "signature did not verify".
pub const BAD_SIGNATURE: Fail = Fail::new(4, 429);

fn one_keyword(rule_bytes: &[u8], count: i64) -> Result<String, Fail> {
    let kws = parse_rules(rule_bytes, count, 0, 2)?;
    Ok(kws.first().map(Keyword::as_str).unwrap_or_default())
}

/// m^(private) mod n for an RSA token under `mk` (CRT when the token holds
/// CRT components, the private exponent for RSA-AESM).
fn rsa_private_op(t: &[u8], store: &Store, m: &BigUint) -> Result<(BigUint, usize), Fail> {
    let state = store.read()?;
    let (info, mk) = token_key(&state, t)?;
    match info.kind {
        TokenKind::RsaCrt | TokenKind::RsaAesc => {
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
        TokenKind::RsaAesm => {
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

fn ec_p256(public: &PublicKey) -> bool {
    matches!(
        public,
        PublicKey::Ec {
            curve: 0,
            bits: 256,
            ..
        }
    )
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
        ("ECDSA" | "", PublicKey::Ec { .. }) if ec_p256(&public) => {
            let state = store.read()?;
            let (info, mk) = token_key(&state, key)?;
            let d = tokens::ecc_private(key, &info, &mk)?;
            let sk = p256::ecdsa::SigningKey::from_slice(&d).map_err(|_| UNUSABLE)?;
            let sig: p256::ecdsa::Signature = sk.sign_prehash(hash).map_err(|_| SHORT_BUFFER)?;
            Ok(sig.to_bytes().to_vec())
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
        ("ECDSA" | "", PublicKey::Ec { q, .. }) if ec_p256(&public) => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(q).map_err(|_| UNUSABLE)?;
            let sig = p256::ecdsa::Signature::from_slice(sig).map_err(|_| BAD_SIGNATURE)?;
            vk.verify_prehash(hash, &sig).map_err(|_| BAD_SIGNATURE)
        }
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
        _ => Err(Fail::new(8, 66)),
    }
}

/// The HMAC of `msg` with an HMAC token (`HMAC` + `SHA-1|SHA-224|SHA-256|
/// SHA-384|SHA-512` + `ONLY`; multi-part `FIRST/MIDDLE/LAST` is not
/// emulated, 16/336).
pub fn hmac(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    key: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, Fail> {
    use hmac::{Hmac, Mac};
    let kws = parse_rules(rule_bytes, count, 1, 3)?;
    let mut alg = None;
    for k in &kws {
        match k.as_str().as_str() {
            "HMAC" | "ONLY" => {}
            "FIRST" | "MIDDLE" | "LAST" => return Err(COMPONENT),
            a @ ("SHA-1" | "SHA-224" | "SHA-256" | "SHA-384" | "SHA-512") => {
                alg = Some(a.to_string())
            }
            _ => return Err(BAD_KEYWORD),
        }
    }
    let (kind, k) = super::keys::symmetric_key(store, key)?;
    if kind != TokenKind::Hmac {
        return Err(UNUSABLE);
    }
    macro_rules! mac {
        ($h:ty) => {{
            let mut m = <Hmac<$h>>::new_from_slice(&k).map_err(|_| UNUSABLE)?;
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    Ok(match alg.as_deref() {
        Some("SHA-1") => mac!(sha1::Sha1),
        Some("SHA-224") => mac!(sha2::Sha224),
        Some("SHA-256") | None => mac!(sha2::Sha256),
        Some("SHA-384") => mac!(sha2::Sha384),
        _ => mac!(sha2::Sha512),
    })
}
