//! The software card (`libcsulcca.so`, which reads tokens with its own
//! parser) as an oracle for our token classifier, `pkcscca::cca::token`,
//! end to end through the C ABI.
//!
//! For every key kind the card makes, what our classifier reads from the
//! token must be what the card knows: the kind it was asked to make, the
//! MKVP of the CURRENT register of the right master-key type (CSUACFQ), a
//! Key Token Change verb and algorithm keyword the card accepts for it, and
//! the card's verdict on a damaged TVV (8/29). A migration driven by our
//! classifier must leave every token under the new CURRENT key, as the card
//! confirms. Copies of the classifier with one realistic bug each fail these
//! checks, and a migration driven by them is refused or contradicted by the
//! card. The same comparison, parser against parser over damaged copies, is
//! in the emulator's own `tests/oracle.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

mod common;

use common::emu::EmuSession;
use pkcscca::cca::rules::{self, Keyword, RuleArray};
use pkcscca::cca::token::{self, MkType, TokenError, TokenInfo, TokenKind};
use pkcscca::cca::{CcaError, Csulcca, Verb};

fn kws(list: &[&str]) -> RuleArray {
    RuleArray::new(&list.iter().map(|k| Keyword::new(k)).collect::<Vec<_>>())
}

fn rsa_kvs(bits: u16) -> Vec<u8> {
    let mut k = vec![0u8; 21];
    k[0..2].copy_from_slice(&bits.to_be_bytes());
    k[4..6].copy_from_slice(&3u16.to_be_bytes());
    k[18..21].copy_from_slice(&[1, 0, 1]);
    k
}

/// Every kind the card makes, with the kind it was asked for.
fn make_all(cca: &Csulcca) -> Vec<(&'static str, TokenKind, Vec<u8>)> {
    let des = |len: &str| {
        let mut t = [0u8; 64];
        cca.csnbkgn(Keyword::new(len), Keyword::new("DATA"), &mut t)
            .unwrap();
        t.to_vec()
    };
    let aes_data = |len: &str| {
        let mut t = cca
            .csnbktb(
                Keyword::new("DATA"),
                &kws(&["INTERNAL", "AES", "NO-KEY", len]),
            )
            .unwrap();
        cca.csnbkgn(Keyword::new(""), Keyword::new("AESTOKEN"), &mut t)
            .unwrap();
        t.to_vec()
    };
    let var = |skel: &[&str], gen: &[&str], bits: u32| {
        let s = cca.csnbktb2(&kws(skel)).unwrap();
        cca.csnbkgn2(&kws(gen), bits, &s).unwrap()
    };
    let pka = |rule: &[&str], kvs: &[u8]| {
        let s = cca.csndpkb(&kws(rule), kvs).unwrap();
        cca.csndpkg(&s).unwrap()
    };
    let crt = pka(&["RSA-CRT", "KEY-MGMT"], &rsa_kvs(1024));
    let translated = cca
        .csndpkt(&RuleArray::new(&[rules::INTDWAKW]), &crt)
        .unwrap();
    vec![
        ("DES single", TokenKind::Des, des("KEYLN8")),
        ("DES double", TokenKind::Des, des("DOUBLE-O")),
        ("DES triple", TokenKind::Des, des("KEYLN24")),
        ("AES DATA 128", TokenKind::AesData, aes_data("KEYLN16")),
        ("AES DATA 256", TokenKind::AesData, aes_data("KEYLN32")),
        (
            "AES CIPHER V0",
            TokenKind::AesCipher,
            var(
                &["INTERNAL", "AES", "CIPHER", "NO-KEY"],
                &["AES", "OP"],
                128,
            ),
        ),
        (
            "AES CIPHER V1",
            TokenKind::AesCipher,
            var(
                &["INTERNAL", "AES", "CIPHER", "NO-KEY", "V1PYLD"],
                &["AES", "OP"],
                192,
            ),
        ),
        (
            "HMAC",
            TokenKind::Hmac,
            var(
                &["INTERNAL", "HMAC", "MAC", "GENERATE"],
                &["HMAC", "OP"],
                256,
            ),
        ),
        ("RSA-CRT", TokenKind::RsaCrt, crt),
        (
            "RSA-AESM",
            TokenKind::RsaAesm,
            pka(&["RSA-AESM", "KEY-MGMT"], &rsa_kvs(1024)),
        ),
        (
            "RSA-AESC",
            TokenKind::RsaAesc,
            pka(&["RSA-AESC", "KEY-MGMT"], &rsa_kvs(1024)),
        ),
        ("RSA-AESC from INTDWAKW", TokenKind::RsaAesc, translated),
        (
            "ECC P-256",
            TokenKind::Ecc,
            pka(&["ECC-PAIR", "KEY-MGMT"], &[0, 0, 1, 0, 0, 0, 0, 0]),
        ),
        (
            "ECC Ed25519",
            TokenKind::Ecc,
            pka(&["ECC-PAIR", "SIG-ONLY"], &[2, 0, 0, 255, 0, 0, 0, 0]),
        ),
        (
            "QSA ML-DSA",
            TokenKind::Qsa,
            pka(&["QSA-PAIR", "U-DIGSIG"], &[5, 0, 6, 5, 0, 0, 0, 0]),
        ),
    ]
}

/// A classifier under test: ours, or a copy with a bug.
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

/// The card's Key Token Change verb of `info`'s kind, with `method` and the
/// algorithm keyword of that kind, on `t` in place.
fn ktc(cca: &Csulcca, info: &TokenInfo, method: Keyword, t: &mut Vec<u8>) -> Result<(), CcaError> {
    let ra = RuleArray::new(&[method, info.kind.algorithm()]);
    match info.kind.ktc_verb() {
        Verb::Csnbktc => {
            let mut fixed: [u8; 64] = t[..].try_into().map_err(|_| CcaError {
                verb: Verb::Csnbktc,
                rc: 8,
                reason: 72,
            })?;
            cca.csnbktc(&ra, &mut fixed)?;
            *t = fixed.to_vec();
        }
        Verb::Csnbktc2 => {
            cca.csnbktc2(&ra, t)?;
        }
        _ => {
            cca.csndktc(&ra, t)?;
        }
    }
    Ok(())
}

/// The MKVP of a register of the card.
fn card_mkvp(cca: &Csulcca, t: MkType, old: bool) -> Vec<u8> {
    let st = cca.mk_status(t).unwrap();
    if old { st.old.mkvp } else { st.current.mkvp }.unwrap()
}

/// Where `c` and the card disagree about `made` (all under CURRENT), one
/// line each.
fn card_disagreements(
    cca: &Csulcca,
    c: &Classifier,
    made: &[(&str, TokenKind, Vec<u8>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, kind, t) in made {
        let info = match (c.classify)(t) {
            Ok(i) => i,
            Err(e) => {
                out.push(format!("{name}: {} refuses it: {e}", c.name));
                continue;
            }
        };
        if info.kind != *kind {
            out.push(format!(
                "{name}: {} reads a {:?} token, the card made a {kind:?} token",
                c.name, info.kind
            ));
        }
        let cur = card_mkvp(cca, info.mk_type(), false);
        if cur.get(..info.mkvp_len) != Some(info.mkvp(t)) {
            out.push(format!(
                "{name}: {} reads MKVP {:02X?}, the card's CURRENT {} MKVP is {cur:02X?}",
                c.name,
                info.mkvp(t),
                info.mk_type()
            ));
        }
        // The verb and keyword our reading chooses: the card takes them and,
        // the token being under CURRENT already, leaves it as it is.
        let mut same = t.clone();
        match ktc(cca, &info, rules::RTCMK, &mut same) {
            Ok(()) if same == *t => {}
            Ok(()) => out.push(format!("{name}: the card changed a CURRENT token")),
            Err(e) => out.push(format!(
                "{name}: the card refuses {} with the keyword {} that {} chose: {}/{}",
                e.verb,
                info.kind.algorithm(),
                c.name,
                e.rc,
                e.reason
            )),
        }
        if info.kind.has_tvv() {
            let mut bad = t.clone();
            bad[20] ^= 0x01;
            let card_says_bad = matches!(
                ktc(cca, &info, rules::RTCMK, &mut bad),
                Err(CcaError {
                    rc: 8,
                    reason: 29,
                    ..
                })
            );
            if !(c.tvv_valid)(t) || (c.tvv_valid)(&bad) == card_says_bad {
                out.push(format!(
                    "{name}: {} judges the TVV unlike the card (intact token: {}, damaged token: {}; the card answers 8/29 to the damaged one: {card_says_bad})",
                    c.name,
                    (c.tvv_valid)(t),
                    (c.tvv_valid)(&bad)
                ));
            }
        }
    }
    out
}

/// A migration of one token, reduced to what the classifier decides: the
/// token must be under OLD by its MKVP, the verb and keyword follow from
/// its kind, and the card's answer must be a token of the same kind under
/// CURRENT.
fn migrate(cca: &Csulcca, c: &Classifier, t: &mut Vec<u8>) -> Result<(), String> {
    let info = (c.classify)(t).map_err(|e| format!("not a key token: {e}"))?;
    let (old, cur) = (
        card_mkvp(cca, info.mk_type(), true),
        card_mkvp(cca, info.mk_type(), false),
    );
    if cur.get(..info.mkvp_len) == Some(info.mkvp(t)) {
        return Ok(());
    }
    if old.get(..info.mkvp_len) != Some(info.mkvp(t)) {
        return Err("skipped: not under the OLD master key".into());
    }
    ktc(cca, &info, rules::RTCMK, t)
        .map_err(|e| format!("the card refused {}: {}/{}", e.verb, e.rc, e.reason))?;
    let after = (c.classify)(t).map_err(|e| format!("the result is not a key token: {e}"))?;
    if after.kind != info.kind || cur.get(..after.mkvp_len) != Some(after.mkvp(t)) {
        return Err("the result is not under CURRENT".into());
    }
    Ok(())
}

/// True when the card says `t` is under its CURRENT master key: RTCMK,
/// with the verb the card's own reading of `kind` calls for, leaves it
/// unchanged.
fn card_says_current(cca: &Csulcca, kind: TokenKind, t: &[u8]) -> bool {
    let info = TokenInfo {
        kind,
        mkvp_offset: 0,
        mkvp_len: 0,
        len: t.len(),
    };
    let mut same = t.to_vec();
    ktc(cca, &info, rules::RTCMK, &mut same).is_ok() && same == t
}

fn change_every_mk(cca: &Csulcca) {
    for t in MkType::ALL {
        cca.csnbmkp(t, rules::RANDOM, &[]).unwrap();
        cca.csnbmkp(t, rules::SET, &[]).unwrap();
    }
}

#[test]
fn our_classifier_agrees_with_the_card() {
    let Some(s) = EmuSession::isolated("oracle") else {
        return;
    };
    let cca = s.open();
    let made = make_all(&cca);
    assert_eq!(card_disagreements(&cca, &OURS, &made), Vec::<String>::new());
    change_every_mk(&cca);
    for (name, kind, t) in &made {
        let mut m = t.clone();
        migrate(&cca, &OURS, &mut m).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(&m, t, "{name}: re-enciphered");
        assert!(card_says_current(&cca, *kind, &m), "{name}");
    }
}

/// RSA-AESC MKVP read where RSA-AESM keeps it (a copy-and-paste slip).
fn aesc_mkvp_at_aesm_offset(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if i.kind == TokenKind::RsaAesc {
        i.mkvp_offset = 8 + token::pka::RSA_AESM_MKVP;
    }
    Ok(i)
}

/// HMAC tokens taken for AES CIPHER tokens (the key-type check dropped).
fn hmac_as_aes_cipher(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if i.kind == TokenKind::Hmac {
        i.kind = TokenKind::AesCipher;
    }
    Ok(i)
}

/// The ECC MKVP's section offset taken as a token offset (the 8-byte PKA
/// header forgotten).
fn ecc_mkvp_without_header(t: &[u8]) -> Result<TokenInfo, TokenError> {
    let mut i = token::classify(t)?;
    if i.kind == TokenKind::Ecc {
        i.mkvp_offset = token::pka::ECC_MKVP;
    }
    Ok(i)
}

/// A TVV check that accepts any 64-byte token.
fn tvv_not_checked(t: &[u8]) -> bool {
    t.len() == 64
}

#[test]
fn a_classifier_with_a_bug_is_caught_by_the_card() {
    let Some(s) = EmuSession::isolated("oracle-mutants") else {
        return;
    };
    let cca = s.open();
    let made = make_all(&cca);
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
                name: "HMAC taken for AES CIPHER",
                classify: hmac_as_aes_cipher,
                tvv_valid: token::tvv_valid,
            },
            "HMAC",
        ),
        (
            Classifier {
                name: "ECC MKVP without the PKA header",
                classify: ecc_mkvp_without_header,
                tvv_valid: token::tvv_valid,
            },
            "ECC",
        ),
        (
            Classifier {
                name: "TVV not checked",
                classify: token::classify,
                tvv_valid: tvv_not_checked,
            },
            "TVV",
        ),
    ];
    for (mutant, hint) in &mutants {
        let found = card_disagreements(&cca, mutant, &made);
        assert!(
            found.iter().any(|d| d.contains(hint)),
            "{}: not caught ({found:#?})",
            mutant.name
        );
        eprintln!("{}: caught: {}", mutant.name, found.join("; "));
    }

    // End to end: a migration driven by a buggy classifier is refused by the
    // card, or skips the token, which the card then shows left under OLD.
    change_every_mk(&cca);
    for ((mutant, hint), outcome) in mutants.iter().zip(["skipped", "refused", "skipped"]) {
        let mut seen = 0;
        for (name, kind, t) in made.iter().filter(|(n, ..)| n.starts_with(hint)) {
            let mut m = t.clone();
            let verdict = migrate(&cca, mutant, &mut m);
            eprintln!("{} on {name}: {verdict:?}", mutant.name);
            assert!(
                verdict.as_ref().is_err_and(|e| e.contains(outcome)),
                "{} on {name}: {verdict:?}",
                mutant.name
            );
            assert_eq!(&m, t, "{name}: token unchanged");
            assert!(
                !card_says_current(&cca, *kind, &m),
                "{name}: left under OLD"
            );
            seen += 1;
        }
        assert!(seen > 0, "{hint}: no token of that kind");
    }
}
