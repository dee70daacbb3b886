//! The emulator's token parser as an oracle for pkcscca's classifier
//! (`pkcscca::cca::token`, the code the migration trusts): over every key
//! kind the emulator makes, before and after re-encipherment, and over
//! damaged copies, both must agree on the kind, the master-key type, the
//! MKVP bytes, the token length and the TVV's validity; and the MKVP must be
//! the card's CURRENT one. Copies of the classifier with one realistic bug
//! each must fail the same check.
//!
//! This is the one place in the emulator's crate that uses pkcscca's
//! classifier: the emulator itself reads tokens with `csulcca::layout` only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

use csulcca::keyword;
use csulcca::layout::{self, Kind};
use csulcca::state::Store;
use csulcca::verbs;
use csulcca::MkType;
use pkcscca::cca::token::{self, TokenError, TokenInfo, TokenKind};

mod kinds;
use kinds::*;

/// What a parser says about one token.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    kind: &'static str,
    mk: &'static str,
    mkvp: Vec<u8>,
    len: usize,
    /// TVV valid, for the 64-byte kinds.
    tvv: Option<bool>,
}

fn emu_kind(k: Kind) -> &'static str {
    match k {
        Kind::Des => "DES",
        Kind::AesData => "AES DATA",
        Kind::AesCipher => "AES CIPHER",
        Kind::Hmac => "HMAC",
        Kind::RsaCrt => "RSA-CRT",
        Kind::RsaAesm => "RSA-AESM",
        Kind::RsaAesc => "RSA-AESC",
        Kind::Ecc => "ECC",
        Kind::Qsa => "QSA",
    }
}

fn our_kind(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Des => "DES",
        TokenKind::AesData => "AES DATA",
        TokenKind::AesCipher => "AES CIPHER",
        TokenKind::Hmac => "HMAC",
        TokenKind::RsaCrt => "RSA-CRT",
        TokenKind::RsaAesm => "RSA-AESM",
        TokenKind::RsaAesc => "RSA-AESC",
        TokenKind::Ecc => "ECC",
        TokenKind::Qsa => "QSA",
    }
}

/// The emulator's reading, or `None` when it refuses the token.
fn emulator_view(t: &[u8]) -> Option<View> {
    let p = layout::parse(t).ok()?;
    Some(View {
        kind: emu_kind(p.kind),
        mk: p.mk_type().name(),
        mkvp: p.mkvp(t).to_vec(),
        len: p.len,
        tvv: p.kind.has_tvv().then(|| layout::tvv_ok(t)),
    })
}

/// A classifier under test: pkcscca's, or a copy with a bug.
struct Classifier {
    name: &'static str,
    classify: fn(&[u8]) -> Result<TokenInfo, TokenError>,
    tvv_valid: fn(&[u8]) -> bool,
}

const OURS: Classifier = Classifier {
    name: "pkcscca::cca::token",
    classify: token::classify,
    tvv_valid: token::tvv_valid,
};

fn our_view(c: &Classifier, t: &[u8]) -> Option<View> {
    let i = (c.classify)(t).ok()?;
    Some(View {
        kind: our_kind(i.kind),
        mk: i.mk_type().name(),
        mkvp: i.mkvp(t).to_vec(),
        len: i.len,
        tvv: i.kind.has_tvv().then(|| (c.tvv_valid)(t)),
    })
}

/// A token and the damaged copies both parsers must judge alike: TVV
/// broken (a key byte changed), MKVP changed, one byte cut, one byte added.
fn variants(t: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("as made", t.to_vec())];
    let mut v = t.to_vec();
    v[20] ^= 0x01;
    out.push(("byte 20 changed", v));
    if let Ok(p) = layout::parse(t) {
        let mut v = t.to_vec();
        v[p.mkvp_at] ^= 0xFF;
        out.push(("MKVP changed", v));
    }
    out.push(("one byte cut", t[..t.len() - 1].to_vec()));
    let mut v = t.to_vec();
    v.push(0);
    out.push(("one byte added", v));
    out
}

/// A token, its name, and the register of the card it is under.
struct Sample {
    name: String,
    token: Vec<u8>,
    under_old: bool,
}

/// Every disagreement between `c` and the emulator over `samples`, one line
/// each.
fn disagreements(c: &Classifier, card: &Store, samples: &[Sample]) -> Vec<String> {
    let state = card.read().unwrap();
    let mut out = Vec::new();
    for Sample {
        name,
        token: t,
        under_old,
    } in samples
    {
        for (how, v) in variants(t) {
            let (emu, ours) = (emulator_view(&v), our_view(c, &v));
            if emu != ours {
                out.push(format!(
                    "{name}, {how}: emulator {emu:?}, {} {ours:?}",
                    c.name
                ));
            }
        }
        match our_view(c, t) {
            Some(view) => {
                let t_mk = MkType::from_name(view.mk).unwrap();
                let set = state.set(t_mk);
                let (reg, vp) = if *under_old {
                    ("OLD", set.old_vp(t_mk).unwrap())
                } else {
                    ("CURRENT", set.cur_vp(t_mk).unwrap())
                };
                if vp.get(..view.mkvp.len()) != Some(&view.mkvp[..]) || view.mkvp.is_empty() {
                    out.push(format!(
                        "{name}: {} reads MKVP {:02X?}, the card's {reg} {} MKVP is {vp:02X?}",
                        c.name, view.mkvp, view.mk
                    ));
                }
                if view.tvv == Some(false) {
                    out.push(format!("{name}: {} finds the TVV invalid", c.name));
                }
            }
            None => out.push(format!("{name}: {} refuses the token", c.name)),
        }
    }
    out
}

/// Every kind the emulator makes, now under the OLD keys of `card`, and the
/// same tokens re-enciphered (RTCMK) under the CURRENT keys after a change of
/// every master key.
fn corpus(card: &Store) -> Vec<Sample> {
    let made: Vec<(String, Vec<u8>)> = all_kinds()
        .into_iter()
        .map(|(name, make)| (name.to_string(), make(card)))
        .collect();
    for t in MkType::ALL {
        change_mk(card, t);
    }
    let mut out = Vec::new();
    for (name, t) in made {
        let p = layout::parse(&t).unwrap();
        let ra = keyword::rule_array(&["RTCMK", p.kind.algorithm().as_str()]);
        let mut m = t.clone();
        verbs::key_token_change(card, p.kind.ktc_verb(), &ra, 2, &mut m).unwrap();
        out.push(Sample {
            name: format!("{name} re-enciphered"),
            token: m,
            under_old: false,
        });
        out.push(Sample {
            name,
            token: t,
            under_old: true,
        });
    }
    out
}

#[test]
fn our_classifier_agrees_with_the_emulator_on_every_kind() {
    let (_d, card) = store();
    let samples = corpus(&card);
    let kinds: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| emulator_view(&s.token).map(|v| v.kind))
        .collect();
    assert_eq!(
        kinds.len(),
        Kind::ALL.len(),
        "the corpus covers every kind: {kinds:?}"
    );
    assert_eq!(disagreements(&OURS, &card, &samples), Vec::<String>::new());
}

/// RSA-AESC MKVP read where RSA-AESM keeps it (a copy-and-paste slip).
fn aesc_mkvp_at_aesm_offset(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if i.kind == TokenKind::RsaAesc {
        i.mkvp_offset = 8 + token::pka::RSA_AESM_MKVP;
    }
    Ok(i)
}

/// Variable-length tokens told apart by the algorithm byte only, reading the
/// wrong one (41 is right; 40 is reserved and zero).
fn var_kind_from_wrong_byte(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if matches!(i.kind, TokenKind::AesCipher | TokenKind::Hmac) {
        i.kind = if t.get(40) == Some(&3) {
            TokenKind::Hmac
        } else {
            TokenKind::AesCipher
        };
    }
    Ok(i)
}

/// DES MKVP read at the variable-length tokens' offset.
fn des_mkvp_at_offset_10(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if i.kind == TokenKind::Des {
        i.mkvp_offset = 10;
    }
    Ok(i)
}

/// A TVV that leaves out the last word before it (bytes 56–59).
fn tvv_of_56_bytes(t: &[u8]) -> bool {
    let Some(body) = t.get(..56) else {
        return false;
    };
    let sum = body.chunks_exact(4).fold(0u32, |a, w| {
        a.wrapping_add(u32::from_be_bytes(w.try_into().unwrap()))
    });
    t.get(60..64) == Some(&sum.to_be_bytes()[..])
}

/// A TVV check that accepts any token (the check forgotten).
fn tvv_not_checked(t: &[u8]) -> bool {
    t.len() >= 64
}

#[test]
fn a_classifier_with_a_bug_is_caught() {
    let (_d, card) = store();
    let all = corpus(&card);
    let mutants = [
        (
            Classifier {
                name: "RSA-AESC MKVP at the RSA-AESM offset",
                classify: aesc_mkvp_at_aesm_offset,
                tvv_valid: token::tvv_valid,
            },
            "RSA-AESC",
        ),
        (
            Classifier {
                name: "variable-length kind from byte 40",
                classify: var_kind_from_wrong_byte,
                tvv_valid: token::tvv_valid,
            },
            "HMAC",
        ),
        (
            Classifier {
                name: "DES MKVP at offset 10",
                classify: des_mkvp_at_offset_10,
                tvv_valid: token::tvv_valid,
            },
            "DES",
        ),
        (
            Classifier {
                name: "TVV over 56 bytes",
                classify: token::classify,
                tvv_valid: tvv_of_56_bytes,
            },
            "AES DATA",
        ),
        (
            Classifier {
                name: "TVV not checked",
                classify: token::classify,
                tvv_valid: tvv_not_checked,
            },
            "byte 20 changed",
        ),
    ];
    for (mutant, hint) in mutants {
        let found = disagreements(&mutant, &card, &all);
        assert!(
            found.iter().any(|d| d.contains(hint)),
            "{}: not caught ({found:#?})",
            mutant.name
        );
        eprintln!(
            "{}: caught, {} disagreements, e.g. {}",
            mutant.name,
            found.len(),
            found[0]
        );
    }
}
