//! Usage verbs: CSNBENC/CSNBDEC (DES/TDES CBC) and CSNBSAE/CSNBSAD (AES,
//! as openCryptoki 3.8.1 uses them in `usr/lib/pkcs11/cca_stdll/cca_specific.c`). Keys under CURRENT or OLD
//! work; anything else is 8/48. Plain CBC without padding, CBC with PKCS
//! padding (`PKCS-PAD`) and ECB are supported.

use super::keys::symmetric_key;
use super::parse_rules;
use crate::codes::*;
use crate::crypto;
use crate::keyword::Keyword;
use crate::layout::Kind;
use crate::state::Store;
use crate::Fail;

/// CSNBENC (`encrypt`) / CSNBDEC with rule `CBC` (default) and an 8-byte IV.
pub fn des_cipher(
    store: &Store,
    encrypt: bool,
    key_tok: &[u8],
    rule_bytes: &[u8],
    count: i64,
    iv: &[u8; 8],
    data: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 0, 2)?;
    for k in &kws {
        if k.as_str() != "CBC" {
            return Err(BAD_KEYWORD);
        }
    }
    let (kind, key) = symmetric_key(store, key_tok)?;
    if kind != Kind::Des {
        return Err(UNUSABLE);
    }
    let k3: Vec<u8> = match key.len() {
        8 => key
            .iter()
            .chain(key.iter())
            .chain(key.iter())
            .copied()
            .collect(),
        16 => key
            .iter()
            .chain(key.get(..8).unwrap_or(&[]))
            .copied()
            .collect(),
        _ => key.to_vec(),
    };
    let k3 = zeroize::Zeroizing::new(k3);
    let mut out = data.to_vec();
    crypto::tdes_cbc(&k3, iv, &mut out, encrypt)?;
    Ok(out)
}

/// CSNBSAE / CSNBSAD: `AES` + `CBC` (default) | `ECB` | `PKCS-PAD` +
/// `KEYIDENT` + `INITIAL`/`CONTINUE`.
pub fn aes_cipher(
    store: &Store,
    encrypt: bool,
    key_tok: &[u8],
    rule_bytes: &[u8],
    count: i64,
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 5)?;
    let mut ecb = false;
    let mut pad = false;
    for k in &kws {
        match k.as_str() {
            "AES" | "KEYIDENT" | "INITIAL" | "CONTINUE" | "CBC" | "ONLY" => {}
            "ECB" => ecb = true,
            "PKCS-PAD" => pad = true,
            _ => return Err(BAD_KEYWORD),
        }
    }
    if !kws.contains(&Keyword::new("AES")) {
        return Err(BAD_COMBINATION);
    }
    let (kind, key) = symmetric_key(store, key_tok)?;
    if !matches!(kind, Kind::AesData | Kind::AesCipher) {
        return Err(UNUSABLE);
    }
    let mut buf = data.to_vec();
    if pad && encrypt {
        let p = 16 - buf.len() % 16;
        buf.extend(std::iter::repeat_n(p as u8, p));
    }
    if ecb {
        crypto::aes_ecb(&key, &mut buf, encrypt)?;
    } else {
        let iv: [u8; 16] = iv
            .get(..16)
            .and_then(|s| s.try_into().ok())
            .ok_or(SHORT_BUFFER)?;
        crypto::aes_cbc(&key, &iv, &mut buf, encrypt)?;
    }
    if pad && !encrypt {
        let p = usize::from(*buf.last().ok_or(UNUSABLE)?);
        if p == 0 || p > 16 || p > buf.len() {
            return Err(BAD_PADDING);
        }
        buf.truncate(buf.len() - p);
    }
    Ok(buf)
}
