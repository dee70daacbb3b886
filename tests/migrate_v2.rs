//! `pkcscca -m v2objectsv3` on openCryptoki 2.x-style CCA stores built through the
//! software CCA library: the store's master key is a DES key token made by the card
//! (kept as the legacy 64-byte key in 88-byte MK files), private objects are
//! enciphered by the card (CSNBENC, IV `10293847`), AES secure keys sit in
//! `CKA_VALUE`, DES keys already in `CKA_IBM_OPAQUE`. After the run the store must open
//! in software and hold exactly what upstream's conversion defines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

mod common;
mod migrate_util;

use std::fs;
use std::path::Path;

use common::emu::EmuSession;
use migrate_util::{check_golden, pkcscca, temp, PINS};
use pkcscca::cca::Csulcca;
use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
use pkcscca::store::{CreateOptions, Format, StoredObject, Template, TokenStore};
use zeroize::Zeroizing;

const IV: [u8; 8] = *b"10293847";

/// What the test store holds, by label, before the migration.
struct Built {
    des_mk: [u8; 64],
    aes_priv: [u8; 64],
    aes_pub: [u8; 64],
    des_key: [u8; 64],
    templates: Vec<(String, Template, bool)>,
}

fn add(
    store: &mut TokenStore,
    mk: &pkcscca::store::MasterKey,
    cca: &Csulcca,
    des_mk: &[u8; 64],
    t: Template,
) -> StoredObject {
    let obj = store.add_object(mk, t).unwrap();
    if obj.private {
        let file = store
            .encode_object_enciphered(&obj, &mut |plain| cca.csnbenc(des_mk, &IV, plain).ok())
            .unwrap();
        fs::write(store.object_path(obj.name), file).unwrap();
    }
    obj
}

/// A v2 store in `dir`: five objects, three of them private.
fn build_v2_store(cca: &Csulcca, dir: &Path) -> Built {
    let des_mk = migrate_util::des_token(cca);
    let mut opts = CreateOptions::new(Format::Old);
    opts.opencryptoki_3_8_1 = true;
    opts.master_key = Some(Zeroizing::new(des_mk.to_vec()));
    let (mut store, mk) = TokenStore::create(dir, opts).unwrap();
    let order = store.byte_order();
    let aes_priv = migrate_util::aes_token(cca, 256);
    let aes_pub = migrate_util::aes_token(cca, 128);
    let des_key = des_mk_like(cca);

    let mut templates = Vec::new();
    let mut t = migrate_util::key_template(
        order,
        ObjectClass::SECRET_KEY,
        KeyType::AES,
        "aes-priv",
        true,
    );
    t.set(AttrType::VALUE, aes_priv.to_vec());
    t.set_ulong(AttrType::VALUE_LEN, 32);
    templates.push(("aes-priv".to_string(), t, true));
    let mut t = migrate_util::key_template(
        order,
        ObjectClass::SECRET_KEY,
        KeyType::AES,
        "aes-pub",
        false,
    );
    t.set(AttrType::VALUE, aes_pub.to_vec());
    templates.push(("aes-pub".to_string(), t, false));
    let mut t =
        migrate_util::key_template(order, ObjectClass::SECRET_KEY, KeyType::DES3, "des3", true);
    t.set(AttrType::VALUE, vec![0u8; 24]);
    t.set(AttrType::IBM_OPAQUE, des_key.to_vec());
    templates.push(("des3".to_string(), t, true));
    let mut t = Template::new(order);
    t.set_ulong(AttrType::CLASS, ObjectClass::DATA.value());
    t.set_bool(AttrType::TOKEN, true);
    t.set_bool(AttrType::PRIVATE, true);
    t.set(AttrType::LABEL, b"secret-data".to_vec());
    t.set(AttrType::VALUE, b"what only the user may read".to_vec());
    templates.push(("secret-data".to_string(), t, true));
    let mut t = Template::new(order);
    t.set_ulong(AttrType::CLASS, ObjectClass::DATA.value());
    t.set_bool(AttrType::TOKEN, true);
    t.set_bool(AttrType::PRIVATE, false);
    t.set(AttrType::LABEL, b"public-data".to_vec());
    t.set(AttrType::VALUE, b"anyone may read this".to_vec());
    templates.push(("public-data".to_string(), t, false));

    for (_, t, _) in &templates {
        add(&mut store, &mk, cca, &des_mk, t.clone());
    }
    Built {
        des_mk,
        aes_priv,
        aes_pub,
        des_key,
        templates,
    }
}

/// A DES key of the kind 2.x kept in `CKA_IBM_OPAQUE`.
fn des_mk_like(cca: &Csulcca) -> [u8; 64] {
    migrate_util::des_token(cca)
}

fn label(o: &StoredObject) -> String {
    String::from_utf8(o.template.get(AttrType::LABEL).unwrap().to_vec()).unwrap()
}

/// Every attribute of `got` equals `want`'s, except those listed, in the same order.
fn same_except(got: &Template, want: &Template, except: &[AttrType]) {
    let g: Vec<_> = got
        .iter()
        .filter(|a| !except.contains(&a.ty()))
        .map(|a| (a.ty(), a.value().to_vec()))
        .collect();
    let w: Vec<_> = want
        .iter()
        .filter(|a| !except.contains(&a.ty()))
        .map(|a| (a.ty(), a.value().to_vec()))
        .collect();
    assert_eq!(g, w);
}

#[test]
fn v2_store_becomes_a_3x_store_and_a_second_run_changes_nothing() {
    let Some(s) = EmuSession::isolated("migrate-v2") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    let built = build_v2_store(&cca, &dir);

    // Before: the private objects do not open in software (the card enciphered them).
    let store = TokenStore::open(&dir).unwrap();
    let mk = store.login_user(common::USER_PIN).unwrap();
    assert_eq!(mk.cca_key_token(), Some(&built.des_mk));
    assert!(store.load_objects(&mk).is_err());
    let names = store.read_index().unwrap();
    let before = common::snapshot(&dir);

    let d = dir.to_str().unwrap();
    let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d], PINS);
    assert_eq!(
        (run.rc, run.stdout.as_str()),
        (
            0,
            "Enter the SO PIN: \nEnter the USER PIN: \nSuccessfully migrated 5 object(s).\n",
        )
    );
    // The one stderr line names the backup: the 2.x store as it was.
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let backup = common::backup_named_in(&run.stderr, &dir);
    let in_backup = common::snapshot(&backup);
    for (path, entry) in &before {
        assert_eq!(in_backup[path].content, entry.content, "{}", path.display());
    }

    // After: everything opens with the software key MK[0..24].
    let store = TokenStore::open(&dir).unwrap();
    let mk = store.login_user(common::USER_PIN).unwrap();
    let objects = store.load_objects(&mk).unwrap();
    assert_eq!(objects.len(), 5);
    for o in &objects {
        let (_, want, private) = built
            .templates
            .iter()
            .find(|(l, ..)| *l == label(o))
            .unwrap();
        assert_eq!(o.private, *private, "{}", label(o));
        match label(o).as_str() {
            "aes-priv" | "aes-pub" => {
                let (token, len) = if label(o) == "aes-priv" {
                    (&built.aes_priv, 32)
                } else {
                    (&built.aes_pub, 16)
                };
                assert_eq!(o.template.get(AttrType::IBM_OPAQUE), Some(&token[..]));
                assert_eq!(o.template.get(AttrType::VALUE), Some(&vec![0u8; len][..]));
                same_except(&o.template, want, &[AttrType::VALUE, AttrType::IBM_OPAQUE]);
                // The moved token is still the card's key: it enciphers and deciphers.
                let iv = [7u8; 16];
                let ct = cca.csnbsae(token, &iv, &[0x42; 32]).unwrap();
                assert_eq!(
                    cca.csnbsad(o.template.get(AttrType::IBM_OPAQUE).unwrap(), &iv, &ct)
                        .unwrap(),
                    [0x42; 32]
                );
            }
            "des3" => {
                assert_eq!(
                    o.template.get(AttrType::IBM_OPAQUE),
                    Some(&built.des_key[..])
                );
                same_except(&o.template, want, &[]);
            }
            _ => same_except(&o.template, want, &[]),
        }
    }
    // Private objects were rewritten, the unchanged public object was not.
    let after = common::snapshot(&dir);
    for name in &names {
        let rel = Path::new("TOK_OBJ").join(name.as_str());
        let o = objects.iter().find(|o| o.name == *name).unwrap();
        let rewritten = before[&rel].content != after[&rel].content;
        assert_eq!(
            rewritten,
            o.private || label(o) == "aes-pub",
            "{}",
            label(o)
        );
        assert_eq!(after[&rel].mode & 0o777, 0o660);
    }
    for f in ["NVTOK.DAT", "MK_SO", "MK_USER", "TOK_OBJ/OBJ.IDX"] {
        assert_eq!(before[Path::new(f)], after[Path::new(f)], "{f} untouched");
    }

    // A second run recognises the 3.x objects and changes nothing.
    let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d, "-v"], PINS);
    assert_eq!(run.rc, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(common::snapshot(&dir), after);
    check_golden("v2objectsv3/second-run-verbose", &run, &dir);
}

#[test]
fn v2_verbose_run_and_dry_run() {
    let Some(s) = EmuSession::isolated("migrate-v2-verbose") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build_v2_store(&cca, &dir);
    let d = dir.to_str().unwrap();
    let before = common::snapshot(&dir);
    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "v2objectsv3", "-d", d, "--dry-run"],
        PINS,
    );
    assert_eq!(run.rc, 0, "{run:?}");
    assert!(run.stdout.ends_with("Successfully migrated 5 object(s).\nDry run: 4 object(s) would be rewritten; nothing was written.\n"), "{run:?}");
    assert_eq!(common::snapshot(&dir), before, "--dry-run writes nothing");
    let run = pkcscca(
        &s,
        tmp.path(),
        &["-m", "v2objectsv3", "-d", d, "-v", "info"],
        PINS,
    );
    check_golden("v2objectsv3/verbose", &run, &dir);
}

#[test]
fn v2_object_the_card_cannot_decipher_is_reported_and_left() {
    let Some(s) = EmuSession::isolated("migrate-v2-fail") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build_v2_store(&cca, &dir);
    // Damage one private object's ciphertext: its hash no longer matches.
    let store = TokenStore::open(&dir).unwrap();
    let names = store.read_index().unwrap();
    let victim = store.object_path(names[3]);
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();
    let d = dir.to_str().unwrap();
    let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d, "-v"], PINS);
    check_golden("v2objectsv3/damaged-object", &run, &dir);
    assert_eq!(fs::read(&victim).unwrap(), bytes, "left as it was");
    // The others were converted.
    let mk = store.login_user(common::USER_PIN).unwrap();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(store.load_object(*name, Some(&mk)).is_ok(), i != 3);
    }
}

/// A symbolic link in the place of one object is tampering: the run stops with one
/// line naming it, and nothing is written (also not the other objects).
#[test]
fn v2_a_link_in_an_objects_place_stops_the_run() {
    let Some(s) = EmuSession::isolated("migrate-v2-link") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build_v2_store(&cca, &dir);
    let store = TokenStore::open(&dir).unwrap();
    let names = store.read_index().unwrap();
    let victim = store.object_path(names[2]);
    let elsewhere = tmp.path().join("elsewhere");
    fs::rename(&victim, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &victim).unwrap();
    let before = common::snapshot(&dir);
    let d = dir.to_str().unwrap();
    let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d], PINS);
    assert_eq!(run.rc, 255, "{run:?}");
    assert!(
        run.stderr.contains(&format!("{}: ", victim.display()))
            && run.stderr.contains("symbolic link"),
        "{run:?}"
    );
    assert_eq!(common::snapshot(&dir), before, "nothing written");
}

#[test]
fn v2_refuses_a_soft_token_store() {
    let Some(s) = EmuSession::isolated("migrate-v2-soft") else {
        return;
    };
    for vector in ["ock-3.8.1/swtok-sample", "ock-3.27/swtok-old-sample"] {
        let (tmp, dir) = temp();
        common::copy_tree(&common::data_dir().join(vector), &dir);
        let before = common::snapshot(&dir);
        let d = dir.to_str().unwrap();
        let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d], PINS);
        check_golden(
            &format!("v2objectsv3/soft-token-{}", vector.replace('/', "-")),
            &run,
            &dir,
        );
        assert_eq!(run.rc, 255, "{vector}");
        assert!(
            run.stderr.contains("not a CCA token data store"),
            "{vector}"
        );
        assert_eq!(common::snapshot(&dir), before, "{vector}: nothing written");
    }
}

/// A 3.12+ store (openCryptoki 3.27's sample CCA token) holds no openCryptoki 2
/// objects: nothing to migrate, exit 0, nothing written. Upstream fails reading MK_SO.
#[test]
fn v2_new_format_store_has_nothing_to_migrate() {
    let Some(s) = EmuSession::isolated("migrate-v2-new-format") else {
        return;
    };
    let (tmp, dir) = temp();
    common::copy_tree(&common::data_dir().join("ock-3.27/ccatok-new-sample"), &dir);
    let before = common::snapshot(&dir);
    let d = dir.to_str().unwrap();
    let run = pkcscca(&s, tmp.path(), &["-m", "v2objectsv3", "-d", d], PINS);
    check_golden("v2objectsv3/new-format-store", &run, &dir);
    assert_eq!(run.rc, 0, "{run:?}");
    assert_eq!(common::snapshot(&dir), before, "nothing written");
}

#[test]
fn v2_golden_errors() {
    let Some(s) = EmuSession::isolated("migrate-v2-errors") else {
        return;
    };
    let cca = s.open();
    let (tmp, dir) = temp();
    build_v2_store(&cca, &dir);
    let d = dir.to_str().unwrap();
    let args = ["-m", "v2objectsv3", "-d", d];
    let before = common::snapshot(&dir);

    let run = pkcscca(&s, tmp.path(), &args, b"00000000\n11223344\n");
    check_golden("v2objectsv3/wrong-so-pin", &run, &dir);
    let run = pkcscca(&s, tmp.path(), &args, b"76543210\n00000000\n");
    check_golden("v2objectsv3/wrong-user-pin", &run, &dir);
    assert_eq!(common::snapshot(&dir), before);

    for (file, name) in [
        ("MK_SO", "v2objectsv3/missing-mk-so"),
        ("MK_USER", "v2objectsv3/missing-mk-user"),
        ("TOK_OBJ/OBJ.IDX", "v2objectsv3/missing-obj-idx"),
    ] {
        let p = dir.join(file);
        let keep = fs::read(&p).unwrap();
        fs::remove_file(&p).unwrap();
        let run = pkcscca(&s, tmp.path(), &args, PINS);
        check_golden(name, &run, &dir);
        fs::write(&p, keep).unwrap();
    }

    // A damaged MK_USER that the right PIN no longer opens.
    let p = dir.join("MK_USER");
    let keep = fs::read(&p).unwrap();
    let mut bad = keep.clone();
    bad[10] ^= 0xFF;
    fs::write(&p, &bad).unwrap();
    let run = pkcscca(&s, tmp.path(), &args, PINS);
    check_golden("v2objectsv3/tampered-mk-user", &run, &dir);
    fs::write(&p, keep).unwrap();

    fs::write(dir.join("TOK_OBJ/OBJ.IDX"), b"").unwrap();
    let run = pkcscca(&s, tmp.path(), &args, PINS);
    check_golden("v2objectsv3/empty-obj-idx", &run, &dir);
}
