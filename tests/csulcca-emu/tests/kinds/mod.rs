//! Shared by the emulator's integration tests: a fresh card, master-key
//! changes, and every key kind the emulator makes, through its verb logic.

#![allow(dead_code, reason = "each test binary uses the helpers it needs")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

use csulcca::keyword::{self, Keyword};
use csulcca::state::{MkAction, Store};
use csulcca::verbs::{keys, pka};
use csulcca::MkType;
use tempfile::TempDir;

/// A rule array of `keywords`.
pub struct RuleArray(Vec<u8>);

impl RuleArray {
    pub fn new(keywords: &[Keyword]) -> RuleArray {
        RuleArray(keywords.iter().flat_map(|k| k.0).collect())
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn count(&self) -> usize {
        self.0.len() / 8
    }
}

pub fn store() -> (TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::new(&d.path().join("state"), "kinds");
    (d, s)
}

pub fn change_mk(s: &Store, t: MkType) {
    s.update(|st| st.mkp(t, MkAction::Random, &[])).unwrap();
    s.update(|st| st.mkp(t, MkAction::Set, &[])).unwrap();
}

pub fn cur_vp(s: &Store, t: MkType) -> Vec<u8> {
    s.read().unwrap().set(t).cur_vp(t).unwrap()
}

pub fn gen_des(s: &Store, len: &str) -> Vec<u8> {
    let mut t = [0u8; 64];
    keys::key_generate(s, b"OP  ", &Keyword::new(len).0, b"DATA    ", &mut t).unwrap();
    t.to_vec()
}

pub fn gen_aes_data(s: &Store, len: &str) -> Vec<u8> {
    let ra = RuleArray::new(&[
        Keyword::new("INTERNAL"),
        keyword::AES,
        Keyword::new("NO-KEY"),
        Keyword::new(len),
    ]);
    let mut t = keys::key_token_build(b"DATA    ", ra.as_bytes(), 4).unwrap();
    let kl = if len == "KEYLN32" { "" } else { len };
    keys::key_generate(s, b"OP  ", &Keyword::new(kl).0, b"AESTOKEN", &mut t).unwrap();
    t.to_vec()
}

pub fn gen_var(s: &Store, skel_kws: &[&str], gen_kws: &[&str], bits: i64) -> Vec<u8> {
    let ra = RuleArray::new(&skel_kws.iter().map(|k| Keyword::new(k)).collect::<Vec<_>>());
    let skel = keys::key_token_build2(ra.as_bytes(), ra.count() as i64, 0).unwrap();
    assert_eq!(skel.len(), 56);
    let ga = RuleArray::new(&gen_kws.iter().map(|k| Keyword::new(k)).collect::<Vec<_>>());
    keys::key_generate2(s, ga.as_bytes(), ga.count() as i64, bits, &skel).unwrap()
}

pub fn gen_pka(s: &Store, kws: &[&str], kvs: &[u8]) -> Vec<u8> {
    let ra = RuleArray::new(&kws.iter().map(|k| Keyword::new(k)).collect::<Vec<_>>());
    let skel = pka::token_build(ra.as_bytes(), ra.count() as i64, kvs).unwrap();
    pka::key_generate(s, b"MASTER  ", 1, &skel).unwrap()
}

pub fn rsa_kvs(bits: u16, host: bool) -> Vec<u8> {
    let mut k = vec![0u8; 21];
    let b = if host {
        bits.to_le_bytes()
    } else {
        bits.to_be_bytes()
    };
    k[0..2].copy_from_slice(&b);
    let el = if host {
        3u16.to_le_bytes()
    } else {
        3u16.to_be_bytes()
    };
    k[4..6].copy_from_slice(&el);
    k[18..21].copy_from_slice(&[1, 0, 1]);
    k
}

pub type Maker = Box<dyn Fn(&Store) -> Vec<u8>>;

/// Every key kind, as a name and a function creating one under CURRENT.
pub fn all_kinds() -> Vec<(&'static str, Maker)> {
    macro_rules! k {
        ($name:expr, |$s:ident| $e:expr) => {
            ($name, Box::new(move |$s: &Store| $e) as Maker)
        };
    }
    vec![
        k!("DES single", |s| gen_des(s, "KEYLN8")),
        k!("DES double", |s| gen_des(s, "DOUBLE-O")),
        k!("DES triple", |s| gen_des(s, "KEYLN24")),
        k!("AES DATA 128", |s| gen_aes_data(s, "KEYLN16")),
        k!("AES DATA 192", |s| gen_aes_data(s, "KEYLN24")),
        k!("AES DATA 256", |s| gen_aes_data(s, "KEYLN32")),
        k!("AES CIPHER V0 128", |s| gen_var(
            s,
            &["INTERNAL", "AES", "CIPHER", "NO-KEY", "ANY-MODE"],
            &["AES", "OP"],
            128
        )),
        k!("AES CIPHER V0 256", |s| gen_var(
            s,
            &["INTERNAL", "AES", "CIPHER", "NO-KEY", "ANY-MODE", "NOEX-SYM"],
            &["AES", "OP"],
            256
        )),
        k!("AES CIPHER V1 192", |s| gen_var(
            s,
            &["INTERNAL", "AES", "CIPHER", "NO-KEY", "V1PYLD"],
            &["AES", "OP"],
            192
        )),
        k!("HMAC 256", |s| gen_var(
            s,
            &["INTERNAL", "HMAC", "MAC", "GENERATE"],
            &["HMAC", "OP"],
            256
        )),
        k!("HMAC 80", |s| gen_var(
            s,
            &["INTERNAL", "HMAC", "MAC", "GENERATE"],
            &["HMAC", "OP"],
            80
        )),
        k!("RSA-CRT 08", |s| gen_pka(
            s,
            &["RSA-CRT", "KEY-MGMT"],
            &rsa_kvs(1024, false)
        )),
        k!("RSA-CRT 08 host order", |s| gen_pka(
            s,
            &["RSA-CRT", "KEY-MGMT"],
            &rsa_kvs(2048, true)
        )),
        k!("RSA-AESM 30", |s| gen_pka(
            s,
            &["RSA-AESM", "KEY-MGMT"],
            &rsa_kvs(2048, false)
        )),
        k!("RSA-AESC 31", |s| gen_pka(
            s,
            &["RSA-AESC", "KEY-MGMT"],
            &rsa_kvs(2048, false)
        )),
        k!("ECC P-256", |s| gen_pka(
            s,
            &["ECC-PAIR", "KEY-MGMT", "ECC-VER1"],
            &[0, 0, 1, 0, 0, 0, 0, 0]
        )),
        k!("ECC P-521 (3.8.1 host order)", |s| gen_pka(
            s,
            &["ECC-PAIR"],
            &[0, 0, 0x09, 0x02, 0, 0, 0, 0]
        )),
        k!("ECC Ed25519", |s| gen_pka(
            s,
            &["ECC-PAIR", "SIG-ONLY"],
            &[2, 0, 0, 255, 0, 0, 0, 0]
        )),
        k!("QSA ML-DSA 65", |s| gen_pka(
            s,
            &["QSA-PAIR", "U-DIGSIG"],
            &[5, 0, 6, 5, 0, 0, 0, 0]
        )),
    ]
}
