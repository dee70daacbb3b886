//! Verb logic over safe Rust slices.
//!
//! Each function here is what one exported C verb does once its pointers
//! have been turned into slices by [`crate::exports`]: it reads and (for
//! key creation and master-key processing) changes the registers through a
//! [`Store`], and returns outputs or a [`Fail`]. Inputs are never modified
//! on failure because callers copy results back only on success.

pub mod keys;
pub mod pka;
pub mod query;
pub mod sign;
pub mod usage;

use pkcscca::cca::Verb;
use zeroize::Zeroizing;

use crate::codes::*;
use crate::keyword::{self, Keyword};
use crate::layout::{self, Kind, Reject, Token};
use crate::state::{MkAction, MkType, State, Store};
use crate::tokens;
use crate::Fail;

/// Splits a rule array, mapping a bad count to 8/35.
pub fn parse_rules(bytes: &[u8], count: i64, min: usize, max: usize) -> Result<Vec<Keyword>, Fail> {
    let n = usize::try_from(count).map_err(|_| BAD_COUNT)?;
    if n < min || n > max {
        return Err(BAD_COUNT);
    }
    keyword::split(bytes, n).ok_or(BAD_COUNT)
}

/// CURRENT key and MKVP of `t`, or 12/764 when CURRENT is empty.
pub fn current(s: &State, t: MkType) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Fail> {
    let set = s.set(t);
    let vp = set.cur_vp(t).ok_or(MK_NOT_LOADED)?;
    Ok((set.cur.value.clone(), vp))
}

/// The master key a usage verb must use for a token carrying `tok_vp`:
/// CURRENT or OLD (a card accepts keys under OLD until the next SET); neither is 8/48 (12/764 when CURRENT is
/// empty and OLD does not match either).
pub fn usable_mk(s: &State, t: MkType, tok_vp: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let set = s.set(t);
    let matches = |vp: Option<Vec<u8>>| vp.is_some_and(|v| v.get(..tok_vp.len()) == Some(tok_vp));
    if matches(set.cur_vp(t)) {
        Ok(set.cur.value.clone())
    } else if matches(set.old_vp(t)) {
        Ok(set.old.value.clone())
    } else if set.cur_vp(t).is_none() {
        Err(MK_NOT_LOADED)
    } else {
        Err(UNKNOWN_MK)
    }
}

/// Parses a token for use, checks its TVV, and returns the key that
/// unwraps it.
pub fn token_key(s: &State, t: &[u8]) -> Result<(Token, Zeroizing<Vec<u8>>), Fail> {
    let info = layout::parse(t).map_err(|_| UNUSABLE)?;
    if info.kind.has_tvv() && !layout::tvv_ok(t) {
        return Err(BAD_TVV);
    }
    let mk = usable_mk(s, info.mk_type(), info.mkvp(t))?;
    Ok((info, mk))
}

fn algorithm_matches(verb: Verb, alg: Option<Keyword>, kind: Kind) -> Result<bool, Fail> {
    use Kind::*;
    Ok(match verb {
        Verb::Csnbktc => match alg.unwrap_or(keyword::DES) {
            a if a == keyword::DES => kind == Des,
            a if a == keyword::AES => kind == AesData,
            _ => return Err(BAD_KEYWORD),
        },
        Verb::Csnbktc2 => match alg {
            Some(a) if a == keyword::AES => kind == AesCipher,
            Some(a) if a == keyword::HMAC => kind == Hmac,
            Some(_) => return Err(BAD_KEYWORD),
            None => return Err(BAD_COMBINATION),
        },
        _ => match alg.unwrap_or(keyword::RSA) {
            a if a == keyword::RSA => matches!(kind, RsaCrt | RsaAesm | RsaAesc),
            a if a == keyword::ECC => kind == Ecc,
            a if a == keyword::QSA => kind == Qsa,
            _ => return Err(BAD_KEYWORD),
        },
    })
}

/// CSNBKTC / CSNBKTC2 / CSNDKTC: re-encipher `token` in place with `RTCMK`
/// or `RTNMK`. `len_in` is the caller's
/// `key_identifier_length` (CSNBKTC has none: 64). Returns the token length.
pub fn key_token_change(
    store: &Store,
    verb: Verb,
    rule_bytes: &[u8],
    rule_count: i64,
    token: &mut [u8],
) -> Result<usize, Fail> {
    let (min, max) = match verb {
        Verb::Csnbktc => (1, 4),
        Verb::Csnbktc2 => (2, 2),
        _ => (1, 2),
    };
    let kws = parse_rules(rule_bytes, rule_count, min, max)?;
    let mut method = None;
    let mut alg = None;
    let algs: &[Keyword] = match verb {
        Verb::Csnbktc => &[keyword::DES, keyword::AES],
        Verb::Csnbktc2 => &[keyword::AES, keyword::HMAC],
        _ => &[keyword::RSA, keyword::ECC, keyword::QSA],
    };
    for k in kws {
        let slot = if k == keyword::RTCMK || k == keyword::RTNMK {
            &mut method
        } else if algs.contains(&k) {
            &mut alg
        } else {
            return Err(BAD_KEYWORD);
        };
        if slot.replace(k).is_some() {
            return Err(BAD_COMBINATION);
        }
    }
    let method = method.ok_or(BAD_COMBINATION)?;
    let tlen = pka_len(token)?;
    let token = token.get_mut(..tlen).ok_or(UNUSABLE)?;
    let info = match layout::parse(token) {
        Ok(i) => i,
        Err(Reject::Short) if verb != Verb::Csnbktc => return Err(SHORT_BUFFER),
        Err(_) => return Err(UNUSABLE),
    };
    if info.kind.ktc_verb() != verb || !algorithm_matches(verb, alg, info.kind)? {
        return Err(UNUSABLE);
    }
    if info.kind.has_tvv() && !layout::tvv_ok(token) {
        return Err(BAD_TVV);
    }
    let t = info.mk_type();
    let state = store.read()?;
    let set = state.set(t);
    let tok_vp = info.mkvp(token).to_vec();
    let is =
        |vp: &Option<Vec<u8>>| vp.as_ref().and_then(|v| v.get(..tok_vp.len())) == Some(&tok_vp[..]);
    let (cur_vp, old_vp, new_vp) = (set.cur_vp(t), set.old_vp(t), set.new_vp(t));
    if cur_vp.is_none() {
        return Err(MK_NOT_LOADED);
    }
    if method == keyword::RTCMK {
        if is(&cur_vp) {
            return Ok(info.len);
        }
        if !is(&old_vp) {
            return Err(UNKNOWN_MK);
        }
        let to_vp = cur_vp.unwrap_or_default();
        tokens::rewrap(token, &info, &set.old.value, &set.cur.value, &to_vp)?;
    } else {
        if new_vp.is_none() {
            return Err(MK_NOT_LOADED);
        }
        if is(&new_vp) {
            return Ok(info.len);
        }
        if !is(&cur_vp) {
            return Err(UNKNOWN_MK);
        }
        let to_vp = new_vp.unwrap_or_default();
        tokens::rewrap(token, &info, &set.cur.value, &set.new.value, &to_vp)?;
    }
    Ok(info.len)
}

/// Length of a PKA token in a caller's buffer: the header length (bytes
/// 2–3) when it covers the first section and fits the buffer, else the
/// buffer length. A header length beyond the buffer is 8/72 (the caller's
/// length is too small). Other tokens: the buffer length.
fn pka_len(t: &[u8]) -> Result<usize, Fail> {
    if matches!(t.first(), Some(0x1E | 0x1F)) {
        let hl = layout::be16(t, 2).unwrap_or(0);
        if hl > t.len() {
            return Err(SHORT_BUFFER);
        }
        if let Some(first) = layout::section_len(t, layout::PKA_HEADER) {
            if hl >= layout::PKA_HEADER + first {
                return Ok(hl);
            }
        }
    }
    Ok(t.len())
}

/// CSNBMKP: optional `ADAPTER`, one class keyword, one action.
pub fn master_key_process(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    part: &[u8],
) -> Result<(), Fail> {
    let kws = parse_rules(rule_bytes, count, 2, 3)?;
    let mut class = None;
    let mut action = None;
    for k in kws {
        if k == keyword::ADAPTER {
            continue;
        }
        let c = MkType::ALL.into_iter().find(|t| t.keyword() == k);
        let a = [
            (keyword::CLEAR, MkAction::Clear),
            (keyword::FIRST, MkAction::First),
            (keyword::MIDDLE, MkAction::Middle),
            (keyword::LAST, MkAction::Last),
            (keyword::SET, MkAction::Set),
            (keyword::RANDOM, MkAction::Random),
        ]
        .into_iter()
        .find(|(kw, _)| *kw == k)
        .map(|(_, a)| a);
        match (c, a) {
            (Some(c), _) if class.replace(c).is_some() => return Err(BAD_COMBINATION),
            (_, Some(a)) if action.replace(a).is_some() => return Err(BAD_COMBINATION),
            (None, None) => return Err(BAD_KEYWORD),
            _ => {}
        }
    }
    let (t, a) = (
        class.ok_or(BAD_COMBINATION)?,
        action.ok_or(BAD_COMBINATION)?,
    );
    store.update(|s| s.mkp(t, a, part))
}
