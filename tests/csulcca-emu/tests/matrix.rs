//! Key-kind matrix over the emulator's verb logic: create,
//! use, change the master key, re-encipher with RTCMK, use again, and the
//! error paths. Each test has its own state file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

use csulcca::codes::*;
use csulcca::keyword::{self, Keyword};
use csulcca::layout::{self, Kind};
use csulcca::state::{mkvp, MkAction, Store};
use csulcca::verbs::{self, keys, pka, query, usage};
use csulcca::MkType;
use csulcca::{tokens, Fail};
use pkcscca::cca::Verb;

mod kinds;
use kinds::*;

fn ktc(s: &Store, method: Keyword, tok: &mut [u8]) -> Result<usize, Fail> {
    let info = layout::parse(tok).unwrap();
    let verb = info.kind.ktc_verb();
    let ra = RuleArray::new(&[method, info.kind.algorithm()]);
    verbs::key_token_change(s, verb, ra.as_bytes(), ra.count() as i64, tok)
}

fn rtcmk(s: &Store, tok: &mut [u8]) -> Result<usize, Fail> {
    ktc(s, keyword::RTCMK, tok)
}

const DATA: &[u8] = b"The quick brown fox jumps over the lazy dog, twice!";

fn padded() -> Vec<u8> {
    let mut d = DATA.to_vec();
    d.resize(64, 0);
    d
}

/// A usage probe: DES/AES encrypt or the clear key for other kinds.
fn use_key(s: &Store, tok: &[u8], enc: Option<&[u8]>) -> Result<Vec<u8>, Fail> {
    let kind = layout::parse(tok).map(|i| i.kind).unwrap();
    let aes_rule = RuleArray::new(&[
        keyword::AES,
        Keyword::new("KEYIDENT"),
        Keyword::new("INITIAL"),
    ]);
    match (kind, enc) {
        (Kind::Des, None) => usage::des_cipher(s, true, tok, b"CBC     ", 1, &[1; 8], &padded()),
        (Kind::Des, Some(c)) => usage::des_cipher(s, false, tok, b"CBC     ", 1, &[1; 8], c),
        (Kind::AesData | Kind::AesCipher, e) => usage::aes_cipher(
            s,
            e.is_none(),
            tok,
            aes_rule.as_bytes(),
            3,
            &[2; 16],
            e.unwrap_or(&padded()),
        ),
        (Kind::Hmac, _) => keys::symmetric_key(s, tok).map(|(_, k)| k.to_vec()),
        (Kind::Ecc, _) => {
            let st = s.read()?;
            let (info, mk) = verbs::token_key(&st, tok)?;
            tokens::ecc_private(tok, &info, &mk).map(|d| d.to_vec())
        }
        (Kind::RsaCrt | Kind::RsaAesc, _) => {
            let st = s.read()?;
            let (info, mk) = verbs::token_key(&st, tok)?;
            tokens::rsa_private(tok, &info, &mk)
                .map(|p| p.crt.iter().flat_map(|c| c.to_vec()).collect())
        }
        _ => {
            let st = s.read()?;
            let (info, mk) = verbs::token_key(&st, tok)?;
            tokens::pka_opk(tok, &info, &mk).map(|k| k.to_vec())
        }
    }
}

fn ad(t: &[u8]) -> Vec<u8> {
    let adl = usize::from(u16::from_be_bytes([t[32], t[33]]));
    t[30..30 + adl].to_vec()
}

#[test]
fn every_kind_survives_mk_change_and_rtcmk() {
    let (_d, s) = store();
    for (name, make) in all_kinds() {
        let orig = make(&s);
        let info = layout::parse(&orig).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = info.mk_type();
        assert_eq!(
            info.mkvp(&orig),
            &cur_vp(&s, t)[..info.mkvp_len],
            "{name}: created under CURRENT"
        );
        if info.kind.has_tvv() {
            assert!(layout::tvv_ok(&orig), "{name}: TVV");
        }
        let probe = use_key(&s, &orig, None).unwrap();
        let before = (use_key(&s, &orig, Some(&probe)).unwrap(), probe.clone());

        change_mk(&s, t);
        // Still usable under OLD before migration.
        assert_eq!(
            use_key(&s, &orig, Some(&probe)).unwrap(),
            before.0,
            "{name}: usable under OLD"
        );

        let mut tok = orig.clone();
        let len = rtcmk(&s, &mut tok).unwrap_or_else(|f| panic!("{name}: RTCMK {f:?}"));
        assert_eq!(len, orig.len(), "{name}: length");
        assert_eq!(tok.len(), orig.len());
        assert_ne!(tok, orig, "{name}: re-enciphered bytes differ");
        let ni = layout::parse(&tok).unwrap();
        assert_eq!(
            ni.mkvp(&tok),
            &cur_vp(&s, t)[..ni.mkvp_len],
            "{name}: MKVP is new CURRENT"
        );
        if ni.kind.has_tvv() {
            assert!(layout::tvv_ok(&tok), "{name}: TVV after");
        }
        if matches!(ni.kind, Kind::AesCipher | Kind::Hmac) {
            assert_eq!(ad(&tok), ad(&orig), "{name}: AD unchanged");
        }
        assert_eq!(
            use_key(&s, &tok, Some(&probe)).unwrap(),
            before.0,
            "{name}: same plaintext / key"
        );

        // Deterministic: the same input and registers give the same bytes.
        let mut again = orig.clone();
        rtcmk(&s, &mut again).unwrap();
        assert_eq!(again, tok, "{name}: deterministic rewrap");

        // Already CURRENT: unchanged, rc 0.
        let mut same = tok.clone();
        assert_eq!(rtcmk(&s, &mut same), Ok(orig.len()));
        assert_eq!(same, tok, "{name}: RTCMK on CURRENT token is a no-op");

        // Second change: the migrated token works, the unmigrated one is lost.
        change_mk(&s, t);
        assert_eq!(
            use_key(&s, &tok, Some(&probe)).unwrap(),
            before.0,
            "{name}: migrated token usable under OLD"
        );
        let mut lost = orig.clone();
        assert_eq!(rtcmk(&s, &mut lost), Err(UNKNOWN_MK), "{name}: lost token");
        assert_eq!(lost, orig, "{name}: failed call leaves the token alone");
        assert_eq!(
            use_key(&s, &orig, Some(&probe)).map(|_| ()),
            Err(UNKNOWN_MK),
            "{name}: lost token unusable"
        );
    }
}

#[test]
fn rtnmk_flow() {
    let (_d, s) = store();
    for (name, make) in all_kinds() {
        let orig = make(&s);
        let t = layout::parse(&orig).unwrap().mk_type();
        let mut tok = orig.clone();
        assert_eq!(
            ktc(&s, keyword::RTNMK, &mut tok),
            Err(MK_NOT_LOADED),
            "{name}: no NEW"
        );
        s.update(|st| st.mkp(t, MkAction::Random, &[])).unwrap();
        let nvp = s.read().unwrap().set(t).new_vp(t).unwrap();
        ktc(&s, keyword::RTNMK, &mut tok).unwrap();
        let info = layout::parse(&tok).unwrap();
        assert_eq!(info.mkvp(&tok), &nvp[..info.mkvp_len], "{name}");
        let mut twice = tok.clone();
        assert_eq!(ktc(&s, keyword::RTNMK, &mut twice), Ok(tok.len()));
        assert_eq!(twice, tok, "{name}: RTNMK on a NEW token is a no-op");
        assert_eq!(
            use_key(&s, &tok, None).map(|_| ()),
            Err(UNKNOWN_MK),
            "{name}: NEW token unusable before SET"
        );
        s.update(|st| st.mkp(t, MkAction::Set, &[])).unwrap();
        let mut cur = tok.clone();
        assert_eq!(rtcmk(&s, &mut cur), Ok(tok.len()));
        assert_eq!(cur, tok);
        let probe = use_key(&s, &orig, None).unwrap();
        assert_eq!(
            use_key(&s, &tok, Some(&probe)).unwrap(),
            use_key(&s, &orig, Some(&probe)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn error_paths() {
    let (_d, s) = store();
    let d2 = tempfile::tempdir().unwrap();
    let foreign = Store::new(&d2.path().join("state"), "another card");
    // Unknown MK: a token made on another card.
    let mut t = gen_des(&foreign, "KEYLN8");
    assert_eq!(rtcmk(&s, &mut t), Err(UNKNOWN_MK));
    let mut t = gen_pka(&foreign, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(rtcmk(&s, &mut t), Err(UNKNOWN_MK));
    // Bad TVV.
    let mut t = gen_aes_data(&s, "KEYLN16");
    t[20] ^= 1;
    assert_eq!(rtcmk(&s, &mut t), Err(BAD_TVV));
    // Bad keyword, bad count, conflicting methods, algorithm mismatch.
    let mut t = gen_des(&s, "KEYLN8");
    let bad = RuleArray::new(&[keyword::RTCMK, Keyword::new("BOGUS")]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc, bad.as_bytes(), 2, &mut t),
        Err(BAD_KEYWORD)
    );
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc, b"RTCMK   ", 0, &mut t),
        Err(BAD_COUNT)
    );
    let both = RuleArray::new(&[keyword::RTCMK, keyword::RTNMK]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc, both.as_bytes(), 2, &mut t),
        Err(BAD_COMBINATION)
    );
    let aes = RuleArray::new(&[keyword::RTCMK, keyword::AES]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc, aes.as_bytes(), 2, &mut t),
        Err(UNUSABLE)
    );
    // DES is the default algorithm of CSNBKTC.
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc, b"RTCMK   ", 1, &mut t),
        Ok(64)
    );
    // Too short a length for a variable-length token.
    let v = gen_var(
        &s,
        &["INTERNAL", "AES", "CIPHER", "NO-KEY"],
        &["AES", "OP"],
        128,
    );
    let mut short = v[..100].to_vec();
    let ra = RuleArray::new(&[keyword::RTCMK, keyword::AES]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csnbktc2, ra.as_bytes(), 2, &mut short),
        Err(SHORT_BUFFER)
    );
    // PKA token longer than the caller's length.
    let ec = gen_pka(&s, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0]);
    let mut cut = ec[..ec.len() - 1].to_vec();
    let ecc_ra = RuleArray::new(&[keyword::RTCMK, keyword::ECC]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csndktc, ecc_ra.as_bytes(), 2, &mut cut),
        Err(SHORT_BUFFER)
    );
    // External token.
    let ext = pka::public_key_extract(
        b"",
        0,
        &gen_pka(&s, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0]),
    )
    .unwrap();
    let mut e = ext.clone();
    let ecc = RuleArray::new(&[keyword::RTCMK, keyword::ECC]);
    assert_eq!(
        verbs::key_token_change(&s, Verb::Csndktc, ecc.as_bytes(), 2, &mut e),
        Err(UNUSABLE)
    );
    // CURRENT empty: 12/764 for change and creation.
    s.update(|st| {
        st.set_mut(MkType::Sym).cur = csulcca::state::Register::empty();
        Ok(())
    })
    .unwrap();
    assert_eq!(rtcmk(&s, &mut t), Err(MK_NOT_LOADED));
    let mut out = [0u8; 64];
    assert_eq!(
        keys::key_generate(&s, b"OP  ", b"KEYLN8  ", b"DATA    ", &mut out),
        Err(MK_NOT_LOADED)
    );
}

#[test]
fn pkt_pkx_and_host_order_rsa() {
    let (_d, s) = store();
    let crt = gen_pka(&s, &["RSA-CRT", "KEY-MGMT"], &rsa_kvs(2048, true));
    // 3.8.1 host order: private section length, n length, e length in LE.
    let slen = u16::from_le_bytes([crt[10], crt[11]]) as usize;
    assert_eq!(crt[8 + slen], 0x04, "public section follows");
    assert_eq!(u16::from_le_bytes([crt[8 + 64], crt[8 + 65]]), 256);
    let info = layout::parse(&crt).unwrap();
    let (n, e) = tokens::rsa_public(&crt, &info).unwrap();
    assert_eq!((n.len(), e), (256, vec![1, 0, 1]));
    // A real key pair: n = p·q and the CRT values are consistent.
    let st = s.read().unwrap();
    let (_, mk) = verbs::token_key(&st, &crt).unwrap();
    let parts = tokens::rsa_private(&crt, &info, &mk).unwrap();
    let big = |v: &[u8]| rsa::BigUint::from_bytes_be(v);
    let (p, q) = (big(&parts.crt[0]), big(&parts.crt[1]));
    assert_eq!(&p * &q, big(&n));
    let one = rsa::BigUint::from(1u8);
    assert_eq!((big(&parts.crt[4]) * &q) % &p, one, "U = q^-1 mod p");
    let e_big = big(&[1, 0, 1]);
    assert_eq!((big(&parts.crt[2]) * &e_big) % (&p - &one), one, "dp");
    // CSNDPKT INTDWAKW: same key under APKA as RSA-AESC.
    let ra = RuleArray::new(&[Keyword::new("INTDWAKW")]);
    let aesc = pka::key_translate(&s, ra.as_bytes(), 1, &crt).unwrap();
    let ai = layout::parse(&aesc).unwrap();
    assert_eq!(ai.kind, Kind::RsaAesc);
    assert_eq!(ai.mkvp(&aesc), &cur_vp(&s, MkType::Apka)[..]);
    assert_eq!(
        tokens::rsa_public(&aesc, &ai).unwrap(),
        (n.clone(), vec![1, 0, 1])
    );
    assert_eq!(
        use_key(&s, &aesc, None).unwrap(),
        use_key(&s, &crt, None).unwrap()
    );
    // CSNDPKX: external public token with modulus.
    let pubtok = pka::public_key_extract(b"", 0, &aesc).unwrap();
    assert_eq!(pubtok[0], 0x1E);
    assert_eq!(pubtok[8], 0x04);
    assert!(pubtok.ends_with(&n));
    // EC: the public point belongs to the private scalar.
    let ec = gen_pka(&s, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0]);
    let d = use_key(&s, &ec, None).unwrap();
    let sk = p256::SecretKey::from_slice(&d).unwrap();
    let q = tokens::public_section(&ec).unwrap();
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    assert_eq!(&q[14..], sk.public_key().to_encoded_point(false).as_bytes());
    assert_eq!(u16::from_be_bytes([q[12], q[13]]), 65);
}

#[test]
fn facility_query_and_mkp_verb() {
    let (_d, s) = store();
    let q = query::facility_query(&s, b"STATCCAE", 1, 0).unwrap();
    let ra = q.rule_array.unwrap();
    assert_eq!(ra.len(), 9);
    assert_eq!(&ra[1].0, b"2       ", "SYM CMK valid");
    assert_eq!(&ra[7].0, b"2       ", "ASYM CMK valid");
    let part1 = [0x11u8; 32];
    let part2 = [0x22u8; 32];
    verbs::master_key_process(&s, b"AES-MK  FIRST   ", 2, &part1).unwrap();
    let q = query::facility_query(&s, b"STATAES ", 1, 0).unwrap();
    assert_eq!(&q.rule_array.unwrap()[0].0, b"2       ", "NEW partial");
    verbs::master_key_process(&s, b"ADAPTER AES-MK  LAST    ", 3, &part2).unwrap();
    let old = cur_vp(&s, MkType::Aes);
    verbs::master_key_process(&s, b"AES-MK  SET     ", 2, &[]).unwrap();
    assert_eq!(cur_vp(&s, MkType::Aes), mkvp(MkType::Aes, &[0x33; 32]));
    let q = query::facility_query(&s, b"STATICSB", 1, 256).unwrap();
    assert_eq!(&q.verb_data[184..192], &mkvp(MkType::Aes, &[0x33; 32])[..]);
    assert_eq!(&q.verb_data[172..180], &old[..]);
    // Loading the CURRENT key again is refused.
    verbs::master_key_process(&s, b"AES-MK  FIRST   ", 2, &[0x33; 32]).unwrap();
    verbs::master_key_process(&s, b"AES-MK  LAST    ", 2, &[0; 32]).unwrap();
    assert_eq!(
        verbs::master_key_process(&s, b"AES-MK  SET     ", 2, &[]).map_err(|f| f.rc),
        Err(8)
    );
    assert_eq!(
        verbs::master_key_process(&s, b"AES-MK  BOGUS   ", 2, &[]),
        Err(BAD_KEYWORD)
    );
    assert_eq!(
        query::facility_query(&s, b"STATBOGU", 1, 0).map(|_| ()),
        Err(BAD_KEYWORD)
    );
    assert_eq!(
        query::facility_query(&s, b"STATICSB", 1, 100).map(|_| ()),
        Err(SHORT_BUFFER)
    );
}

#[test]
fn hmac_import_as_381_does() {
    let (_d, s) = store();
    let skel = keys::key_token_build2(b"INTERNALNO-KEY  HMAC    MAC     GENERATE ", 5, 0).unwrap();
    let key = b"0123456789abcdef0123";
    let t = keys::key_part_import2(&s, b"HMAC    FIRST   MIN1PART", 3, 160, key, &skel).unwrap();
    let t = keys::key_part_import2(&s, b"HMAC    COMPLETE", 2, 0, &[], &t).unwrap();
    assert_eq!(&keys::symmetric_key(&s, &t).unwrap().1[..], key);
    assert_eq!(
        t.len(),
        56 + 64,
        "HMAC 160-bit: 12+32+20 -> 64-byte payload"
    );
}

#[test]
fn clear_key_import_roundtrip() {
    let (_d, s) = store();
    let t = keys::clear_key_import(&s, b"AES     ", 1, &[7; 24]).unwrap();
    assert_eq!(&keys::symmetric_key(&s, &t).unwrap().1[..], &[7; 24]);
    assert_eq!(t[7], [7u8; 24].iter().fold(0, |a, b| a ^ b), "LRC");
    let t = keys::clear_key_import(&s, b"DES     ", 1, &[9; 16]).unwrap();
    assert_eq!(layout::des_key_len(&t), Some(16));
    assert_eq!(&keys::symmetric_key(&s, &t).unwrap().1[..], &[9; 16]);
}

#[test]
fn migrated_pka_keys_still_sign_and_decrypt() {
    use csulcca::verbs::sign;
    let (_d, s) = store();
    let hash = [0x42u8; 32];
    let kinds: Vec<(&str, Maker)> = vec![
        (
            "RSA-CRT",
            Box::new(|s: &Store| gen_pka(s, &["RSA-CRT", "KEY-MGMT"], &rsa_kvs(1024, true))),
        ),
        (
            "RSA-AESM",
            Box::new(|s: &Store| gen_pka(s, &["RSA-AESM", "KEY-MGMT"], &rsa_kvs(1024, false))),
        ),
        (
            "RSA-AESC",
            Box::new(|s: &Store| gen_pka(s, &["RSA-AESC", "KEY-MGMT"], &rsa_kvs(1024, false))),
        ),
        (
            "ECC P-256",
            Box::new(|s: &Store| gen_pka(s, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0])),
        ),
    ];
    for (name, make) in kinds {
        let key = make(&s);
        let rsa = !name.starts_with("ECC");
        let rule: &[u8] = if rsa { b"PKCS-1.1" } else { b"ECDSA   " };
        let public = pka::public_key_extract(b"", 0, &key).unwrap();
        let sig = sign::sign(&s, rule, 1, &key, &hash).unwrap();
        assert_eq!(
            sign::verify(rule, 1, &public, &hash, &sig),
            Ok(()),
            "{name}"
        );
        let mut bad = sig.clone();
        bad[5] ^= 1;
        assert_eq!(
            sign::verify(rule, 1, &public, &hash, &bad),
            Err(BAD_SIGNATURE),
            "{name}"
        );
        let ct = rsa.then(|| sign::encrypt(b"PKCS-1.2", 1, &public, b"secret").unwrap());

        let t = layout::parse(&key).unwrap().mk_type();
        change_mk(&s, t);
        let mut migrated = key.clone();
        rtcmk(&s, &mut migrated).unwrap();
        let sig2 = sign::sign(&s, rule, 1, &migrated, &hash).unwrap();
        assert_eq!(
            sign::verify(rule, 1, &public, &hash, &sig2),
            Ok(()),
            "{name}: migrated key signs"
        );
        if let Some(ct) = ct {
            assert_eq!(
                sig2, sig,
                "{name}: PKCS#1 v1.5 signatures are deterministic"
            );
            let pt = sign::decrypt(&s, b"PKCS-1.2", 1, &migrated, &ct).unwrap();
            assert_eq!(&pt[..], b"secret", "{name}: migrated key decrypts");
        }
        change_mk(&s, t);
        assert_eq!(
            sign::sign(&s, rule, 1, &key, &hash),
            Err(UNKNOWN_MK),
            "{name}: lost key"
        );
    }
}

#[test]
fn garbage_tokens_get_error_codes_not_panics() {
    use sha2::Digest;
    let (_d, s) = store();
    let good = [
        gen_des(&s, "KEYLN8"),
        gen_var(&s, &["INTERNAL", "HMAC", "MAC"], &["HMAC", "OP"], 128),
        gen_pka(&s, &["RSA-AESC", "KEY-MGMT"], &rsa_kvs(1024, false)),
        gen_pka(&s, &["ECC-PAIR"], &[0, 0, 1, 0, 0, 0, 0, 0]),
    ];
    for (i, base) in good.iter().enumerate() {
        for round in 0u32..200 {
            let seed = sha2::Sha256::digest([i as u8, (round >> 8) as u8, round as u8]);
            let mut t = base.clone();
            // Corrupt a few bytes and sometimes cut the token.
            for c in seed.chunks(4).take(3) {
                let at = usize::from(u16::from_be_bytes([c[0], c[1]])) % t.len();
                t[at] = c[2];
            }
            if seed[31] % 3 == 0 {
                t.truncate(usize::from(seed[30]) % t.len());
            }
            for verb in [Verb::Csnbktc, Verb::Csnbktc2, Verb::Csndktc] {
                for rule in [&b"RTCMK   "[..], b"RTNMK   ", b"RTCMK   AES     "] {
                    let mut x = t.clone();
                    let _ =
                        verbs::key_token_change(&s, verb, rule, (rule.len() / 8) as i64, &mut x);
                }
            }
            let _ = keys::symmetric_key(&s, &t);
            let _ = pka::public_key_extract(b"", 0, &t);
            let _ = pka::key_translate(&s, b"INTDWAKW", 1, &t);
            let _ = csulcca::verbs::sign::sign(&s, b"PKCS-1.1", 1, &t, &[1; 32]);
            let _ = csulcca::verbs::sign::encrypt(b"PKCS-1.2", 1, &t, b"x");
            let _ = pka::key_generate(&s, b"MASTER  ", 1, &t);
            let _ = keys::key_generate2(&s, b"HMAC    OP      ", 2, 128, &t);
            let _ = keys::key_part_import2(&s, b"HMAC    MIDDLE  ", 2, 128, &[1; 16], &t);
        }
    }
}
