//! `pkcscca -m oldrsakeys` on stores holding RSA-CRT keys made by the software CCA
//! library, with 3.8.1-style public key objects that carry the whole private token.
//! Afterwards every private key is RSA-AESC under the APKA master key and still signs
//! what verifies under its old public key; public objects hold only the public part.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

mod common;
mod migrate_util;

use std::path::Path;

use common::emu::EmuSession;
use migrate_util::{check_golden, key_template, pkcscca, pkcscca_env, temp, PINS};
use pkcscca::cca::rules::{Keyword, RuleArray};
use pkcscca::cca::token::{self, MkType, TokenKind};
use pkcscca::cca::Csulcca;
use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
use pkcscca::store::{CreateOptions, Format, StoredObject, TokenStore};

/// Labels and the original private token of each RSA pair.
struct Pair {
    label: &'static str,
    token: Vec<u8>,
}

/// An old-format store with two RSA-CRT pairs (private and public objects holding the
/// same full token), one RSA-AESC pair of today's form, and an AES key.
fn build(cca: &Csulcca, dir: &Path) -> Vec<Pair> {
    let mut opts = CreateOptions::new(Format::Old);
    opts.opencryptoki_3_8_1 = true;
    opts.legacy_cca_mk = true;
    let (mut store, mk) = TokenStore::create(dir, opts).unwrap();
    let order = store.byte_order();
    let mut pairs = Vec::new();
    for label in ["rsa-a", "rsa-b"] {
        let token = migrate_util::rsa_crt_token(cca, 1024);
        for (class, private) in [
            (ObjectClass::PRIVATE_KEY, true),
            (ObjectClass::PUBLIC_KEY, false),
        ] {
            let mut t = key_template(order, class, KeyType::RSA, label, private);
            t.set(AttrType::IBM_OPAQUE, token.clone());
            store.add_object(&mk, t).unwrap();
        }
        pairs.push(Pair { label, token });
    }
    let aesc = cca
        .csndpkt(
            &RuleArray::new(&[Keyword::new("INTDWAKW")]),
            &migrate_util::rsa_crt_token(cca, 1024),
        )
        .unwrap();
    let mut t = key_template(
        order,
        ObjectClass::PRIVATE_KEY,
        KeyType::RSA,
        "rsa-new",
        true,
    );
    t.set(AttrType::IBM_OPAQUE, aesc.clone());
    store.add_object(&mk, t).unwrap();
    let mut t = key_template(
        order,
        ObjectClass::PUBLIC_KEY,
        KeyType::RSA,
        "rsa-new",
        false,
    );
    t.set(AttrType::IBM_OPAQUE, cca.csndpkx(&aesc).unwrap());
    store.add_object(&mk, t).unwrap();
    let mut t = key_template(order, ObjectClass::SECRET_KEY, KeyType::AES, "aes", true);
    t.set(
        AttrType::IBM_OPAQUE,
        migrate_util::aes_token(cca, 256).to_vec(),
    );
    t.set(AttrType::VALUE, vec![0; 32]);
    store.add_object(&mk, t).unwrap();
    pairs
}

fn objects(dir: &Path) -> Vec<StoredObject> {
    let store = TokenStore::open(dir).unwrap();
    let mk = store.login_user(common::USER_PIN).unwrap();
    store.load_objects(&mk).unwrap()
}

fn find<'a>(objs: &'a [StoredObject], label: &str, class: ObjectClass) -> &'a [u8] {
    objs.iter()
        .find(|o| {
            o.template.get(AttrType::LABEL) == Some(label.as_bytes())
                && o.template.class() == Some(class)
        })
        .and_then(|o| o.template.get(AttrType::IBM_OPAQUE))
        .unwrap()
}

/// A SHA-256 DigestInfo, as PKCS#1 v1.5 signing pads it.
fn digest_info() -> Vec<u8> {
    let mut d = common::unhex("3031300d060960864801650304020105000420");
    d.extend_from_slice(&[0xA5; 32]);
    d
}

#[test]
fn rsa_crt_keys_become_rsa_aesc_and_public_objects_lose_their_private_part() {
    let Some(s) = EmuSession::isolated("migrate-oldrsa") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    let pairs = build(&cca, &dir);
    let before = objects(&dir);
    let d = dir.to_str().unwrap();

    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "oldrsakeys", "-s", "1", "-d", d],
        PINS,
    );
    assert_eq!(
        (run.rc, run.stdout.as_str()),
        (
            0,
            "Enter the SO PIN: \nEnter the USER PIN: \nSuccessfully migrated: 4\n",
        )
    );
    // The one stderr line names the backup, which holds the objects as they were.
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let backup = common::backup_named_in(&run.stderr, &dir);
    let flat = |objs: &[StoredObject]| -> Vec<Vec<u8>> {
        objs.iter().map(|o| o.flattened().to_vec()).collect()
    };
    assert_eq!(flat(&objects(&backup)), flat(&before));

    let after = objects(&dir);
    let apka = cca.mk_status(MkType::Apka).unwrap().current.mkvp.unwrap();
    let pkcs = RuleArray::new(&[Keyword::new("PKCS-1.1")]);
    for p in &pairs {
        let private = find(&after, p.label, ObjectClass::PRIVATE_KEY);
        let info = token::classify(private).unwrap();
        assert_eq!(info.kind, TokenKind::RsaAesc, "{}", p.label);
        assert_eq!(info.mkvp(private), &apka[..info.mkvp_len]);
        let public = find(&after, p.label, ObjectClass::PUBLIC_KEY);
        let old_public = cca.csndpkx(&p.token).unwrap();
        assert_eq!(
            public,
            &old_public[..],
            "external public token of the same key"
        );
        assert_eq!((public[0], public[8]), (0x1E, 0x04));
        // The converted key signs what the old public key verifies.
        let sig = cca.csnddsg(&pkcs, private, &digest_info()).unwrap();
        cca.csnddsv(&pkcs, &old_public, &digest_info(), &sig)
            .unwrap();
        cca.csnddsv(&pkcs, &p.token, &digest_info(), &sig).unwrap();
    }
    // Everything else is as it was.
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.name, a.name);
        let lbl = b.template.get(AttrType::LABEL).unwrap();
        if lbl.starts_with(b"rsa-") && lbl != b"rsa-new" {
            assert_eq!(b.template.len(), a.template.len());
        } else {
            assert_eq!(b.flattened().as_slice(), a.flattened().as_slice());
        }
    }

    // Already migrated: nothing to do, nothing written.
    let snap = common::snapshot(&dir);
    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "oldrsakeys", "-s", "1", "-d", d, "-v"],
        PINS,
    );
    check_golden("oldrsakeys/second-run-verbose", &run, &dir);
    assert_eq!(common::snapshot(&dir), snap);
}

#[test]
fn oldrsa_verbose_json_and_dry_run() {
    let Some(s) = EmuSession::isolated("migrate-oldrsa-v") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build(&cca, &dir);
    let d = dir.to_str().unwrap();
    let snap = common::snapshot(&dir);
    let run = pkcscca(
        &s,
        tmp.path(),
        &[
            "-m",
            "oldrsakeys",
            "-s",
            "1",
            "-d",
            d,
            "--dry-run",
            "--json",
        ],
        PINS,
    );
    check_golden("oldrsakeys/dry-run-json", &run, &dir);
    assert_eq!(common::snapshot(&dir), snap, "--dry-run writes nothing");
    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "oldrsakeys", "-s", "1", "-d", d, "-v"],
        PINS,
    );
    check_golden("oldrsakeys/verbose", &run, &dir);
}

#[test]
fn oldrsa_card_failure_keeps_the_key_and_exits_3() {
    let Some(s) = EmuSession::isolated("migrate-oldrsa-fail") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    let pairs = build(&cca, &dir);
    let d = dir.to_str().unwrap();
    let run = pkcscca_env(
        &s,
        tmp.path(),
        &["-m", "oldrsakeys", "-s", "1", "-d", d],
        PINS,
        &[("CSULCCA_EMU_FAIL", "CSNDPKT:1:8:48")],
    );
    check_golden("oldrsakeys/one-key-fails", &run, &dir);
    let after = objects(&dir);
    let kinds: Vec<TokenKind> = pairs
        .iter()
        .map(|p| {
            token::classify(find(&after, p.label, ObjectClass::PRIVATE_KEY))
                .unwrap()
                .kind
        })
        .collect();
    assert_eq!(
        kinds,
        [TokenKind::RsaAesc, TokenKind::RsaCrt],
        "keys are taken in reverse find order"
    );
}

#[test]
fn oldrsa_golden_errors() {
    let Some(s) = EmuSession::isolated("migrate-oldrsa-errors") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build(&cca, &dir);
    let d = dir.to_str().unwrap();
    let args = ["-m", "oldrsakeys", "-s", "1", "-d", d];
    let snap = common::snapshot(&dir);
    let run = pkcscca(&s, tmp.path(), &args, b"00000000\n11223344\n");
    check_golden("oldrsakeys/wrong-so-pin", &run, &dir);
    let run = pkcscca(&s, tmp.path(), &args, b"76543210\n00000000\n");
    check_golden("oldrsakeys/wrong-user-pin", &run, &dir);
    assert_eq!(common::snapshot(&dir), snap);
    let p = dir.join("MK_USER");
    let keep = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let run = pkcscca(&s, tmp.path(), &args, PINS);
    check_golden("oldrsakeys/missing-mk-user", &run, &dir);
    std::fs::write(&p, keep).unwrap();
    std::fs::remove_file(dir.join("TOK_OBJ/OBJ.IDX")).unwrap();
    let run = pkcscca(&s, tmp.path(), &args, PINS);
    check_golden("oldrsakeys/no-objects", &run, &dir);
}

/// An RSA-CRT token whose length field no longer matches its sections is reported and
/// never sent to the card; the object keeps its bytes, the other keys convert (exit 3).
#[test]
fn oldrsa_damaged_token_is_not_sent_to_the_card() {
    let Some(s) = EmuSession::isolated("migrate-oldrsa-damaged") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build(&cca, &dir);
    {
        let store = TokenStore::open(&dir).unwrap();
        let mk = store.login_user(common::USER_PIN).unwrap();
        let mut objs = store.load_objects(&mk).unwrap();
        let victim = objs
            .iter_mut()
            .find(|o| {
                o.template.get(AttrType::LABEL) == Some(&b"rsa-b"[..])
                    && o.template.class() == Some(ObjectClass::PRIVATE_KEY)
            })
            .unwrap();
        let mut token = victim.template.get(AttrType::IBM_OPAQUE).unwrap().to_vec();
        token[3] = token[3].wrapping_add(8);
        victim.template.set(AttrType::IBM_OPAQUE, token);
        store.commit(&mk, &[&*victim]).unwrap();
    }
    let before = objects(&dir);
    let d = dir.to_str().unwrap();
    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "oldrsakeys", "-s", "1", "-d", d],
        PINS,
    );
    assert_eq!(run.rc, 3, "{run:?}");
    let victim = |objs: &[StoredObject]| find(objs, "rsa-b", ObjectClass::PRIVATE_KEY).to_vec();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains(": the key token is damaged: ")),
        "{run:?}"
    );
    assert!(
        run.stdout
            .ends_with("Successfully migrated: 3\nFailed to migrate:   1\n"),
        "{run:?}"
    );
    let after = objects(&dir);
    assert_eq!(
        victim(&after),
        victim(&before),
        "the damaged key kept its bytes"
    );
    let converted = token::classify(find(&after, "rsa-a", ObjectClass::PRIVATE_KEY)).unwrap();
    assert_eq!(converted.kind, TokenKind::RsaAesc);
}
