//! Key creation verbs: CSNBKGN, CSNBKTB, CSNBKTB2, CSNBKGN2, CSNBCKM,
//! CSNBKPI2, CSNBRNG, CSNBRNGL. Every key is wrapped
//! under the CURRENT master key of its type and carries its MKVP; with
//! CURRENT empty creation fails 12/764.

use zeroize::Zeroizing;

use super::{current, parse_rules, usable_mk};
use crate::codes::*;
use crate::crypto;
use crate::keyword::Keyword;
use crate::layout::{self, Kind};
use crate::state::{MkType, Store};
use crate::tokens::{self, VarParams};
use crate::Fail;

fn kw(raw: &[u8]) -> Keyword {
    Keyword::read(raw)
}

fn has(kws: &[Keyword], s: &str) -> bool {
    kws.contains(&Keyword::new(s))
}

/// CSNBKGN with key form `OP`: DES `DATA` keys (fresh 64-byte token) or
/// AES keys (`AESTOKEN`/`AESDATA`, filling the skeleton in `token`).
pub fn key_generate(
    store: &Store,
    form: &[u8],
    length: &[u8],
    key_type: &[u8],
    token: &mut [u8; 64],
) -> Result<(), Fail> {
    if form.get(..2) != Some(&b"OP"[..]) {
        return Err(BAD_KEYWORD);
    }
    let (len_kw, ty) = (kw(length), kw(key_type));
    let (len_kw, ty) = (len_kw.as_str(), ty.as_str());
    let state = store.read()?;
    match ty {
        "DATA" => {
            let n = match len_kw {
                "KEYLN8" | "SINGLE" | "" => 8,
                "KEYLN16" | "DOUBLE" | "DOUBLE-O" => 16,
                "KEYLN24" | "TRIPLE" | "TRIPLE-O" => 24,
                _ => return Err(BAD_KEY_LENGTH),
            };
            let (mk, vp) = current(&state, MkType::Sym)?;
            let key = crypto::random(n)?;
            *token = tokens::des_build(&mk, &vp, &key)?;
            Ok(())
        }
        "AESTOKEN" | "AESDATA" => {
            let n = match len_kw {
                "KEYLN16" => 16,
                "KEYLN24" => 24,
                "KEYLN32" => 32,
                "" => match layout::be16(token, 56) {
                    Some(b @ (128 | 192 | 256)) if token[0] == 1 && token[4] == 4 => b / 8,
                    _ => 32,
                },
                _ => return Err(BAD_KEY_LENGTH),
            };
            let (mk, vp) = current(&state, MkType::Aes)?;
            let key = crypto::random(n)?;
            *token = tokens::aes_data_build(&mk, &vp, &key)?;
            Ok(())
        }
        _ => Err(BAD_KEYWORD),
    }
}

/// CSNBKTB: AES DATA skeletons (`INTERNAL AES NO-KEY KEYLNnn`, key type
/// `DATA`).
pub fn key_token_build(key_type: &[u8], rule_bytes: &[u8], count: i64) -> Result<[u8; 64], Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 8)?;
    if kw(key_type).as_str() != "DATA" && kw(key_type).as_str() != "AESDATA" {
        return Err(BAD_KEYWORD);
    }
    let mut bits = 0u16;
    let mut aes = false;
    for k in &kws {
        match k.as_str() {
            "INTERNAL" | "NO-KEY" => {}
            "AES" => aes = true,
            "KEYLN16" => bits = 128,
            "KEYLN24" => bits = 192,
            "KEYLN32" => bits = 256,
            _ => return Err(BAD_KEYWORD),
        }
    }
    if !aes {
        return Err(COMPONENT);
    }
    Ok(tokens::aes_data_skeleton(if bits == 0 {
        256
    } else {
        bits
    }))
}

/// Parameters of a CSNBKTB2 skeleton from its keywords.
fn var_params(kws: &[Keyword]) -> Result<VarParams, Fail> {
    let hmac = has(kws, "HMAC");
    let mut kmf1: u16 = 0xE000;
    let mut v1 = false;
    for k in kws {
        match k.as_str() {
            "INTERNAL" | "NO-KEY" | "AES" | "HMAC" | "CIPHER" | "MAC" | "ANY-MODE" | "GENERATE"
            | "VERIFY" | "ENCRYPT" | "DECRYPT" | "CBC" | "ECB" => {}
            "NOEX-SYM" => kmf1 &= !0x8000,
            "NOEXUASY" => kmf1 &= !0x4000,
            "NOEXAASY" => kmf1 &= !0x2000,
            "NOEX-DES" => kmf1 |= 0x0080,
            "NOEX-AES" => kmf1 |= 0x0040,
            "NOEX-RSA" => kmf1 |= 0x0008,
            "XPRTCPAC" => kmf1 |= 0x0800,
            "V1PYLD" => v1 = true,
            _ => return Err(BAD_KEYWORD),
        }
    }
    Ok(if hmac {
        VarParams {
            alg: 3,
            key_type: 2,
            kuf: vec![0xC000, 0xF800],
            kmf: vec![kmf1, 0, 0],
            v1: false,
        }
    } else if has(kws, "AES") {
        VarParams {
            alg: 2,
            key_type: 1,
            kuf: vec![0xC000, 0xFF00],
            kmf: vec![kmf1, 0, 0],
            v1,
        }
    } else {
        return Err(BAD_COMBINATION);
    })
}

/// CSNBKTB2: a keyless AES CIPHER or HMAC MAC skeleton. Clear-key tokens
/// are not emulated (16/336).
pub fn key_token_build2(rule_bytes: &[u8], count: i64, clear_bits: i64) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 16)?;
    let p = var_params(&kws)?;
    if clear_bits > 0 && !has(&kws, "NO-KEY") {
        return Err(COMPONENT);
    }
    Ok(tokens::var_skeleton(&p))
}

/// CSNBKGN2 (`AES OP` / `HMAC OP`, key type `TOKEN`): generate a key of
/// `bits` into the skeleton `skel` (or a default skeleton when none).
pub fn key_generate2(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    bits: i64,
    skel: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 4)?;
    for k in &kws {
        if !matches!(k.as_str(), "AES" | "HMAC" | "OP") {
            return Err(BAD_KEYWORD);
        }
    }
    let hmac = has(&kws, "HMAC");
    let bits = usize::try_from(bits).map_err(|_| BAD_KEY_LENGTH)?;
    let ok = if hmac {
        (80..=2048).contains(&bits)
    } else {
        matches!(bits, 128 | 192 | 256)
    };
    if !ok {
        return Err(BAD_KEY_LENGTH);
    }
    let mut t = match skel.first() {
        Some(1) if skel.get(4) == Some(&5) => {
            let l = layout::be16(skel, 2).ok_or(UNUSABLE)?;
            skel.get(..l).ok_or(UNUSABLE)?.to_vec()
        }
        _ => tokens::var_skeleton(&var_params(&[Keyword::new(if hmac {
            "HMAC"
        } else {
            "AES"
        })])?),
    };
    if t.get(41) != Some(&if hmac { 3 } else { 2 }) {
        return Err(UNUSABLE);
    }
    let state = store.read()?;
    let (mk, vp) = current(&state, MkType::Aes)?;
    let key = crypto::random(bits.div_ceil(8))?;
    tokens::var_fill(&mut t, &mk, &vp, &key)?;
    Ok(t)
}

/// CSNBCKM: clear key (`AES` or `DES`) to an internal 64-byte token.
pub fn clear_key_import(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    clear: &[u8],
) -> Result<[u8; 64], Fail> {
    let kws = parse_rules(rule_bytes, count, 0, 1)?;
    let aes = match kws.first().map(Keyword::as_str) {
        None | Some("DES") => false,
        Some("AES") => true,
        Some(_) => return Err(BAD_KEYWORD),
    };
    let state = store.read()?;
    if aes {
        let (mk, vp) = current(&state, MkType::Aes)?;
        tokens::aes_data_build(&mk, &vp, clear)
    } else {
        let (mk, vp) = current(&state, MkType::Sym)?;
        tokens::des_build(&mk, &vp, clear)
    }
}

/// CSNBKPI2 (`HMAC|AES` + `FIRST|MIDDLE|LAST|COMPLETE` [+ `MINnPART`]):
/// FIRST puts the part (length in **bits**) into a skeleton; MIDDLE/LAST XOR
/// further parts in; COMPLETE checks the token. Returns the new token.
pub fn key_part_import2(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    part_bits: i64,
    part: &[u8],
    tok: &[u8],
) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 2, 3)?;
    let mut action = None;
    for k in &kws {
        match k.as_str() {
            "HMAC" | "AES" | "MIN1PART" | "MIN2PART" | "MIN3PART" => {}
            a @ ("FIRST" | "MIDDLE" | "LAST" | "COMPLETE") => action = Some(a.to_string()),
            _ => return Err(BAD_KEYWORD),
        }
    }
    let action = action.ok_or(BAD_COMBINATION)?;
    let len = layout::be16(tok, 2).ok_or(UNUSABLE)?;
    let mut t = tok.get(..len).ok_or(UNUSABLE)?.to_vec();
    let bytes = usize::try_from(part_bits)
        .map_err(|_| BAD_KEY_LENGTH)?
        .div_ceil(8);
    let part = part.get(..bytes).ok_or(BAD_KEY_LENGTH)?;
    let state = store.read()?;
    let (mk, vp) = current(&state, MkType::Aes)?;
    match action.as_str() {
        "FIRST" => {
            if t.get(8) != Some(&0) {
                return Err(UNUSABLE);
            }
            tokens::var_fill(&mut t, &mk, &vp, part)?;
        }
        "COMPLETE" => {
            let info = layout::parse(&t).map_err(|_| UNUSABLE)?;
            let mk = usable_mk(&state, MkType::Aes, info.mkvp(&t))?;
            tokens::var_unwrap(&t, &mk)?;
        }
        _ => {
            let info = layout::parse(&t).map_err(|_| UNUSABLE)?;
            let old = usable_mk(&state, MkType::Aes, info.mkvp(&t))?;
            let mut key = tokens::var_unwrap(&t, &old)?;
            if key.len() != part.len() {
                return Err(BAD_KEY_LENGTH);
            }
            key.iter_mut().zip(part).for_each(|(k, p)| *k ^= p);
            let ad_end = layout::VAR_AD + layout::be16(&t, 32).ok_or(UNUSABLE)?;
            t.truncate(ad_end);
            tokens::var_fill(&mut t, &mk, &vp, &key)?;
        }
    }
    Ok(t)
}

fn parity(v: &mut [u8], odd: bool) {
    for b in v {
        let ones = (*b & 0xFE).count_ones();
        let want_low = if odd { ones % 2 == 0 } else { ones % 2 == 1 };
        *b = (*b & 0xFE) | u8::from(want_low);
    }
}

/// CSNBRNG / CSNBRNGL: `RANDOM`, `ODD` or `EVEN` (parity-adjusted) bytes.
pub fn random_number(form: &[u8], n: usize) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut v = crypto::random(n)?;
    match kw(form).as_str() {
        "RANDOM" => {}
        "ODD" => parity(&mut v, true),
        "EVEN" => parity(&mut v, false),
        _ => return Err(BAD_KEYWORD),
    }
    Ok(v)
}

/// The clear key of any symmetric token under CURRENT or OLD (for usage
/// verbs and tests).
pub fn symmetric_key(store: &Store, t: &[u8]) -> Result<(Kind, Zeroizing<Vec<u8>>), Fail> {
    let state = store.read()?;
    let (info, mk) = super::token_key(&state, t)?;
    let key = match info.kind {
        Kind::Des => tokens::des_unwrap(t, &mk)?,
        Kind::AesData => tokens::aes_data_unwrap(t, &mk)?,
        Kind::AesCipher | Kind::Hmac => {
            tokens::var_unwrap(t.get(..info.len).ok_or(UNUSABLE)?, &mk)?
        }
        _ => return Err(UNUSABLE),
    };
    Ok((info.kind, key))
}
