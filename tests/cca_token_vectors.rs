//! `pkcscca::cca::token` against tokens openCryptoki 3.27 stored (over a
//! stand-in CCA library): classification, MKVP location, TVV, DES key
//! length, section walking. See `tests/data/cca-tokens/README.md`.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test: a panic is a failure"
)]

use pkcscca::cca::token::{self, MkType, TokenError, TokenKind};

struct Vector {
    label: String,
    ckk: u32,
    bytes: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/cca-tokens/ock-3.27-sample.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = f[3];
            Vector {
                label: f[1].to_string(),
                ckk: u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap(),
                bytes: (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn every_stored_token_classifies_as_its_key_type() {
    let vs = vectors();
    assert_eq!(vs.len(), 29);
    let mut mkvps: std::collections::HashMap<MkType, Vec<u8>> = Default::default();
    let mut external = 0;
    for v in &vs {
        let t = &v.bytes;
        match token::classify(t) {
            Ok(info) => {
                assert_eq!(token::check_structure(t), Ok(info), "{}", v.label);
                let expect: &[TokenKind] = match v.ckk {
                    0x13 | 0x15 => &[TokenKind::Des],
                    0x1f => &[TokenKind::AesData, TokenKind::AesCipher],
                    0x10 => &[TokenKind::Hmac],
                    0x00 => &[TokenKind::RsaAesc, TokenKind::RsaAesm, TokenKind::RsaCrt],
                    0x03 => &[TokenKind::Ecc],
                    other => panic!("{}: unexpected CKK {other:#x}", v.label),
                };
                assert!(expect.contains(&info.kind), "{}: {:?}", v.label, info.kind);
                assert_eq!(info.len, t.len(), "{}", v.label);
                let vp = info.mkvp(t).to_vec();
                assert_eq!(vp.len(), info.mkvp_len);
                let seen = mkvps.entry(info.mk_type()).or_insert_with(|| vp.clone());
                assert_eq!(seen, &vp, "{}: one MKVP per master-key type", v.label);
                if info.kind == TokenKind::Des {
                    let want = if v.ckk == 0x13 { 8 } else { 24 };
                    assert_eq!(token::des_key_len(t), Some(want), "{}", v.label);
                }
                if info.kind.has_tvv() {
                    assert!(token::tvv_valid(t), "{}: TVV", v.label);
                }
                if matches!(info.kind, TokenKind::RsaAesc | TokenKind::Ecc) {
                    let l = token::section_len(t, 8).unwrap();
                    let next = t[8 + l];
                    assert!(
                        next == 0x04 || next == 0x21,
                        "{}: public section follows",
                        v.label
                    );
                }
                if info.kind.ktc_verb() == pkcscca::cca::Verb::Csnbktc2 {
                    assert_eq!(usize::from(token::be16(t, 2).unwrap()), t.len());
                }
            }
            Err(TokenError::External) => {
                assert_eq!(t[0], 0x1E, "{}", v.label);
                external += 1;
            }
            Err(e) => panic!("{}: {e}", v.label),
        }
    }
    assert_eq!(external, 7, "public objects hold external tokens");
    assert_eq!(mkvps[&MkType::Sym], vec![0x11; 8]);
    assert_eq!(mkvps[&MkType::Aes], vec![0x22; 8]);
    assert_eq!(
        mkvps.len(),
        3,
        "SYM, AES and APKA; no ASYM token in a 3.27 store"
    );
}

#[test]
fn stored_tokens_never_panic_when_cut_or_flipped() {
    for v in vectors() {
        for n in 0..v.bytes.len() {
            let _ = token::classify(&v.bytes[..n]);
            let _ = token::section_len(&v.bytes[..n], 8);
            let _ = token::tvv_valid(&v.bytes[..n]);
        }
        for i in 0..v.bytes.len().min(64) {
            let mut t = v.bytes.clone();
            t[i] ^= 0xFF;
            let _ = token::check_structure(&t);
            if let Ok(info) = token::classify(&t) {
                let _ = info.mkvp(&t);
                let _ = token::des_key_len(&t);
            }
        }
    }
}
