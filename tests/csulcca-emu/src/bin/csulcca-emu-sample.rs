//! `csulcca-emu-sample`: sample openCryptoki CCA token stores over the emulator.
//!
//! * `create --dir DIR --format old|new [--byte-order little|big]
//!   [--openCryptoki-3.8.1-style] [--pbkdf2-iterations N] [--only-data] --checks FILE`
//!   builds a data store with [`pkcscca::store::TokenStore::create`] holding
//!   the objects openCryptoki's CCA token makes (secret keys of every CCA
//!   kind, RSA `X'08'` and `X'31'` and EC key pairs with their public objects
//!   in both styles, a QSA key, data objects; private and public objects,
//!   extractable and not), every secure key made by the emulator under its
//!   CURRENT master keys. FILE records, per object, data that proves the key
//!   material later: a ciphertext, MAC or signature made now.
//! * `check --dir DIR --checks FILE [--expect-mk current] [--mk-type T]`
//!   loads the store and, for every recorded object (of master key type T
//!   when given), checks that each of its key tokens is under the CURRENT
//!   master key of its type (MKVP equality) and still reproduces the
//!   recorded proof; prints `ok` or `FAILED` per object and exits 1 if any
//!   object failed.
//!
//! PINs never come from the command line: `CSULCCA_SAMPLE_SO_PIN` and
//! `CSULCCA_SAMPLE_USER_PIN`, else two lines on standard input (SO, USER).
//! The card is the emulator's state file (`CSULCCA_EMU_STATE`), used through
//! the emulator's Rust API.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use csulcca::keyword::{self, Keyword};
use csulcca::layout;
use csulcca::state::Store as Card;
use csulcca::verbs::{self, keys, pka, sign, usage};
use csulcca::MkType;
use csulcca::{tokens, Fail};
use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
use pkcscca::store::{ByteOrder, CreateOptions, Format, MasterKey, Template, TokenStore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const USAGE: &str = "usage: csulcca-emu-sample create --dir DIR --format old|new [--byte-order little|big]
           [--openCryptoki-3.8.1-style] [--pbkdf2-iterations N] [--only-data] --checks FILE
       csulcca-emu-sample check --dir DIR --checks FILE [--expect-mk current] [--mk-type sym|asym|aes|apka]
PINs: CSULCCA_SAMPLE_SO_PIN and CSULCCA_SAMPLE_USER_PIN, else two lines on stdin (SO, USER);
card: CSULCCA_EMU_STATE";

/// The plaintext every proof is made over (a multiple of 16 bytes).
const DATA: &[u8; 32] = b"pkcscca sample: key still works.";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    csulcca::state::unhex(s)
}

fn card_err(what: &str) -> impl Fn(Fail) -> String + '_ {
    move |f| format!("{what}: card returned {}/{}", f.rc, f.reason)
}

/// A rule array of `words` and its keyword count.
fn rule(words: &[&str]) -> (Vec<u8>, i64) {
    (keyword::rule_array(words), words.len() as i64)
}

/// How an object's proof is made and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proof {
    /// DES CBC ciphertext of [`DATA`] (zero IV).
    Des,
    /// AES CBC ciphertext of [`DATA`] (zero IV), AES DATA or CIPHER token.
    Aes,
    /// AES XTS pair: both halves' AES CBC ciphertexts.
    AesXts,
    /// HMAC-SHA-256 of [`DATA`].
    Hmac,
    /// RSA PKCS #1 v1.5 signature of SHA-256([`DATA`]) (deterministic).
    Rsa,
    /// ECDSA P-256 signature of SHA-256([`DATA`]) (RFC 6979, deterministic).
    Ecc,
    /// SHA-256 of the clear object-protection key (QSA: no signatures here).
    OpkHash,
    /// An external public token: SHA-256 of the token (no master key).
    PublicToken,
    /// A data object: SHA-256 of `CKA_VALUE`.
    Data,
}

impl Proof {
    fn name(self) -> &'static str {
        match self {
            Proof::Des => "des",
            Proof::Aes => "aes",
            Proof::AesXts => "aes-xts",
            Proof::Hmac => "hmac",
            Proof::Rsa => "rsa",
            Proof::Ecc => "ecc",
            Proof::OpkHash => "opk-hash",
            Proof::PublicToken => "public-token",
            Proof::Data => "data",
        }
    }

    fn parse(s: &str) -> Option<Proof> {
        [
            Proof::Des,
            Proof::Aes,
            Proof::AesXts,
            Proof::Hmac,
            Proof::Rsa,
            Proof::Ecc,
            Proof::OpkHash,
            Proof::PublicToken,
            Proof::Data,
        ]
        .into_iter()
        .find(|p| p.name() == s)
    }
}

/// The proof for one secure key token (one half of an XTS pair, or all of it).
fn token_proof(card: &Card, proof: Proof, tok: &[u8]) -> Result<Vec<u8>, String> {
    let digest = Sha256::digest(DATA);
    match proof {
        Proof::Des => usage::des_cipher(card, true, tok, b"CBC     ", 1, &[0; 8], DATA)
            .map_err(card_err("CSNBENC")),
        Proof::Aes | Proof::AesXts => {
            let (r, n) = rule(&["AES", "KEYIDENT", "INITIAL"]);
            usage::aes_cipher(card, true, tok, &r, n, &[0; 16], DATA).map_err(card_err("CSNBSAE"))
        }
        Proof::Hmac => {
            let (r, n) = rule(&["HMAC", "SHA-256", "ONLY"]);
            let (mac, _) = sign::hmac(card, &r, n, tok, &[], DATA).map_err(card_err("CSNBHMG"))?;
            mac.ok_or_else(|| "CSNBHMG ONLY returned no MAC".to_string())
        }
        Proof::Rsa => {
            let (r, n) = rule(&["PKCS-1.1"]);
            sign::sign(card, &r, n, tok, &digest).map_err(card_err("CSNDDSG"))
        }
        Proof::Ecc => {
            let (r, n) = rule(&["ECDSA"]);
            sign::sign(card, &r, n, tok, &digest).map_err(card_err("CSNDDSG"))
        }
        Proof::OpkHash => {
            let state = card.read().map_err(card_err("reading the card"))?;
            let (info, mk) = verbs::token_key(&state, tok).map_err(card_err("key token"))?;
            let opk = tokens::pka_opk(tok, &info, &mk).map_err(card_err("unwrapping"))?;
            Ok(Sha256::digest(&opk[..]).to_vec())
        }
        Proof::PublicToken | Proof::Data => Ok(Sha256::digest(tok).to_vec()),
    }
}

/// The secure key tokens inside a `CKA_IBM_OPAQUE` value.
fn split(proof: Proof, blob: &[u8]) -> Vec<&[u8]> {
    if proof == Proof::AesXts {
        let (a, b) = blob.split_at(blob.len() / 2);
        vec![a, b]
    } else {
        vec![blob]
    }
}

fn blob_proof(card: &Card, proof: Proof, blob: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for t in split(proof, blob) {
        out.extend(token_proof(card, proof, t)?);
    }
    Ok(out)
}

/// One object of the sample store, before it is written.
struct Sample {
    label: &'static str,
    class: ObjectClass,
    key_type: Option<KeyType>,
    private: bool,
    extractable: bool,
    proof: Proof,
    /// `CKA_IBM_OPAQUE`, or the value of a data object.
    blob: Vec<u8>,
    /// Extra attributes (value length, RSA/EC public parts, ...).
    extra: Vec<(AttrType, Vec<u8>)>,
}

fn gen_des(card: &Card, len: &str) -> Result<Vec<u8>, String> {
    let mut t = [0u8; 64];
    keys::key_generate(card, b"OP  ", &Keyword::new(len).0, b"DATA    ", &mut t)
        .map_err(card_err("CSNBKGN"))?;
    Ok(t.to_vec())
}

fn gen_aes_data(card: &Card, len: &str) -> Result<Vec<u8>, String> {
    let (r, n) = rule(&["INTERNAL", "AES", "NO-KEY", len]);
    let mut t = keys::key_token_build(b"DATA    ", &r, n).map_err(card_err("CSNBKTB"))?;
    keys::key_generate(card, b"OP  ", &Keyword::new(len).0, b"AESTOKEN", &mut t)
        .map_err(card_err("CSNBKGN"))?;
    Ok(t.to_vec())
}

fn gen_var(card: &Card, skel: &[&str], gen: &[&str], bits: i64) -> Result<Vec<u8>, String> {
    let (s, sn) = rule(skel);
    let sk = keys::key_token_build2(&s, sn, 0).map_err(card_err("CSNBKTB2"))?;
    let (g, gn) = rule(gen);
    keys::key_generate2(card, &g, gn, bits, &sk).map_err(card_err("CSNBKGN2"))
}

fn gen_pka(card: &Card, kws: &[&str], kvs: &[u8]) -> Result<Vec<u8>, String> {
    let (r, n) = rule(kws);
    let skel = pka::token_build(&r, n, kvs).map_err(card_err("CSNDPKB"))?;
    pka::key_generate(card, b"MASTER  ", 1, &skel).map_err(card_err("CSNDPKG"))
}

fn rsa_kvs(bits: u16) -> Vec<u8> {
    // Modulus bits, 0, exponent length 3, zeros up to the exponent 65537.
    let [b0, b1] = bits.to_be_bytes();
    let mut k = vec![b0, b1, 0, 0, 0, 3];
    k.resize(18, 0);
    k.extend_from_slice(&[1, 0, 1]);
    k
}

fn public_token(tok: &[u8]) -> Result<Vec<u8>, String> {
    pka::public_key_extract(b"", 0, tok).map_err(card_err("CSNDPKX"))
}

/// `CKA_MODULUS`/`CKA_PUBLIC_EXPONENT` or `CKA_EC_PARAMS`/`CKA_EC_POINT` of a PKA token.
fn public_attrs(tok: &[u8]) -> Result<Vec<(AttrType, Vec<u8>)>, String> {
    match tokens::public_key(tok).map_err(card_err("public key"))? {
        tokens::PublicKey::Rsa { n, e } => {
            Ok(vec![(AttrType::MODULUS, n), (AttrType::PUBLIC_EXPONENT, e)])
        }
        tokens::PublicKey::Ec { q, .. } => {
            let prime256v1 = vec![0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
            let mut point = vec![0x04, u8::try_from(q.len()).unwrap_or(0)];
            point.extend_from_slice(&q);
            Ok(vec![
                (AttrType::EC_PARAMS, prime256v1),
                (AttrType::EC_POINT, point),
            ])
        }
    }
}

/// A key object of the sample store.
#[allow(
    clippy::too_many_arguments,
    reason = "one line per object in the table below"
)]
fn key_obj(
    label: &'static str,
    class: ObjectClass,
    kt: KeyType,
    private: bool,
    extractable: bool,
    proof: Proof,
    blob: Vec<u8>,
    extra: Vec<(AttrType, Vec<u8>)>,
) -> Sample {
    Sample {
        label,
        class,
        key_type: Some(kt),
        private,
        extractable,
        proof,
        blob,
        extra,
    }
}

/// Every object of the sample store. Labels say what each one is.
fn samples(card: &Card, order: ByteOrder) -> Result<Vec<Sample>, String> {
    let ulong = |v: u64| order.u64_bytes(v).to_vec();
    let secret = |label, kt, private, extractable, proof, blob: Vec<u8>, value_len: usize| {
        let mut extra = vec![
            (AttrType::VALUE, vec![0u8; value_len]),
            (AttrType::VALUE_LEN, ulong(value_len as u64)),
        ];
        if proof == Proof::Hmac {
            // openCryptoki's CCA token keeps no clear value for HMAC keys.
            if let Some((_, v)) = extra.first_mut() {
                v.clear();
            }
        }
        key_obj(
            label,
            ObjectClass::SECRET_KEY,
            kt,
            private,
            extractable,
            proof,
            blob,
            extra,
        )
    };
    let pka_obj = key_obj;
    let cipher = |bits| {
        gen_var(
            card,
            &["INTERNAL", "AES", "CIPHER", "NO-KEY", "ANY-MODE"],
            &["AES", "OP"],
            bits,
        )
    };
    let hmac = |bits| {
        gen_var(
            card,
            &["INTERNAL", "HMAC", "MAC", "GENERATE"],
            &["HMAC", "OP"],
            bits,
        )
    };
    let rsa08 = gen_pka(card, &["RSA-CRT", "KEY-MGMT"], &rsa_kvs(1024))?;
    let rsa31 = gen_pka(card, &["RSA-AESC", "KEY-MGMT"], &rsa_kvs(1024))?;
    let ec = gen_pka(
        card,
        &["ECC-PAIR", "KEY-MGMT", "ECC-VER1"],
        &[0, 0, 1, 0, 0, 0, 0, 0],
    )?;
    let qsa = gen_pka(card, &["QSA-PAIR", "U-DIGSIG"], &[5, 0, 6, 5, 0, 0, 0, 0])?;
    let dilithium = gen_pka(card, &["QSA-PAIR", "U-DIGSIG"], &[3, 0, 6, 5, 0, 0, 0, 0])?;
    let mlkem = gen_pka(
        card,
        &["QSA-PAIR", "U-DATENC"],
        &[6, 0, 7, 0x68, 0, 0, 0, 0],
    )?;
    let rsa30 = gen_pka(card, &["RSA-AESM", "KEY-MGMT"], &rsa_kvs(1024))?;
    let mut xts = gen_aes_data(card, "KEYLN32")?;
    xts.extend(gen_aes_data(card, "KEYLN32")?);
    let mut xts_cipher = cipher(256)?;
    xts_cipher.extend(cipher(256)?);
    let (pk, prk) = (ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY);
    let data = |label, private, value: &[u8]| Sample {
        label,
        class: ObjectClass::DATA,
        key_type: None,
        private,
        extractable: false,
        proof: Proof::Data,
        blob: value.to_vec(),
        extra: Vec::new(),
    };
    Ok(vec![
        data("data-priv", true, b"private application data"),
        secret(
            "des-priv-ext",
            KeyType::DES,
            true,
            true,
            Proof::Des,
            gen_des(card, "KEYLN8")?,
            8,
        ),
        secret(
            "des2-pub-noext",
            KeyType::DES2,
            false,
            false,
            Proof::Des,
            gen_des(card, "KEYLN16")?,
            16,
        ),
        secret(
            "des3-priv-noext",
            KeyType::DES3,
            true,
            false,
            Proof::Des,
            gen_des(card, "KEYLN24")?,
            24,
        ),
        secret(
            "aes128-data-priv-ext",
            KeyType::AES,
            true,
            true,
            Proof::Aes,
            gen_aes_data(card, "KEYLN16")?,
            16,
        ),
        secret(
            "aes192-data-pub-noext",
            KeyType::AES,
            false,
            false,
            Proof::Aes,
            gen_aes_data(card, "KEYLN24")?,
            24,
        ),
        secret(
            "aes256-data-priv-noext",
            KeyType::AES,
            true,
            false,
            Proof::Aes,
            gen_aes_data(card, "KEYLN32")?,
            32,
        ),
        secret(
            "aes256-cipher-priv-ext",
            KeyType::AES,
            true,
            true,
            Proof::Aes,
            cipher(256)?,
            32,
        ),
        secret(
            "aes128-cipher-pub-noext",
            KeyType::AES,
            false,
            false,
            Proof::Aes,
            cipher(128)?,
            16,
        ),
        secret(
            "aes-xts-priv-ext",
            KeyType::AES_XTS,
            true,
            true,
            Proof::AesXts,
            xts,
            64,
        ),
        secret(
            "aes-xts-cipher-pub-noext",
            KeyType::AES_XTS,
            false,
            false,
            Proof::AesXts,
            xts_cipher,
            64,
        ),
        secret(
            "generic-hmac-priv-ext",
            KeyType::GENERIC_SECRET,
            true,
            true,
            Proof::Hmac,
            hmac(256)?,
            32,
        ),
        secret(
            "sha256-hmac-pub-noext",
            KeyType::SHA256_HMAC,
            false,
            false,
            Proof::Hmac,
            hmac(256)?,
            32,
        ),
        pka_obj(
            "rsa08-priv-noext",
            prk,
            KeyType::RSA,
            true,
            false,
            Proof::Rsa,
            rsa08.clone(),
            public_attrs(&rsa08)?,
        ),
        // openCryptoki 3.8.1 stored the whole private token in the public key object.
        pka_obj(
            "rsa08-pub-fulltoken",
            pk,
            KeyType::RSA,
            false,
            false,
            Proof::Rsa,
            rsa08.clone(),
            public_attrs(&rsa08)?,
        ),
        pka_obj(
            "rsa31-priv-ext",
            prk,
            KeyType::RSA,
            true,
            true,
            Proof::Rsa,
            rsa31.clone(),
            public_attrs(&rsa31)?,
        ),
        pka_obj(
            "rsa31-pub-external",
            pk,
            KeyType::RSA,
            false,
            false,
            Proof::PublicToken,
            public_token(&rsa31)?,
            public_attrs(&rsa31)?,
        ),
        pka_obj(
            "ec-priv-noext",
            prk,
            KeyType::EC,
            true,
            false,
            Proof::Ecc,
            ec.clone(),
            public_attrs(&ec)?,
        ),
        pka_obj(
            "ec-pub-external",
            pk,
            KeyType::EC,
            false,
            false,
            Proof::PublicToken,
            public_token(&ec)?,
            public_attrs(&ec)?,
        ),
        pka_obj(
            "mldsa-priv-ext",
            prk,
            KeyType::IBM_ML_DSA,
            true,
            true,
            Proof::OpkHash,
            qsa,
            Vec::new(),
        ),
        pka_obj(
            "rsa30-priv-noext",
            prk,
            KeyType::RSA,
            true,
            false,
            Proof::Rsa,
            rsa30.clone(),
            public_attrs(&rsa30)?,
        ),
        pka_obj(
            "dilithium-priv-noext",
            prk,
            KeyType::IBM_PQC_DILITHIUM,
            true,
            false,
            Proof::OpkHash,
            dilithium,
            Vec::new(),
        ),
        pka_obj(
            "mlkem-priv-ext",
            prk,
            KeyType::IBM_ML_KEM,
            true,
            true,
            Proof::OpkHash,
            mlkem,
            Vec::new(),
        ),
        data("data-pub", false, b"public application data"),
    ])
}

fn template(s: &Sample, order: ByteOrder) -> Template {
    let mut t = Template::new(order);
    t.set_ulong(AttrType::CLASS, s.class.value());
    if let Some(kt) = s.key_type {
        t.set_ulong(AttrType::KEY_TYPE, kt.value());
    }
    t.set_bool(AttrType::TOKEN, true);
    t.set_bool(AttrType::PRIVATE, s.private);
    t.set(AttrType::LABEL, s.label.as_bytes().to_vec());
    if s.class == ObjectClass::DATA {
        t.set(AttrType::VALUE, s.blob.clone());
        t.set(AttrType::APPLICATION, b"sample".to_vec());
    } else {
        t.set(AttrType::IBM_OPAQUE, s.blob.clone());
        if s.class != ObjectClass::PUBLIC_KEY {
            t.set_bool(AttrType::SENSITIVE, true);
            t.set_bool(AttrType::EXTRACTABLE, s.extractable);
            t.set_bool(AttrType::NEVER_EXTRACTABLE, !s.extractable);
            t.set_bool(AttrType::ALWAYS_SENSITIVE, true);
        }
        t.set_bool(AttrType::LOCAL, true);
        t.set(AttrType::ID, Vec::new());
        for (ty, v) in &s.extra {
            t.set(*ty, v.clone());
        }
    }
    t.set_bool(AttrType::MODIFIABLE, true);
    t.set_bool(AttrType::DESTROYABLE, true);
    t
}

/// One line of the checks file.
struct CheckLine {
    object: String,
    label: String,
    proof: Proof,
    proof_bytes: Vec<u8>,
}

fn write_checks(path: &Path, lines: &[CheckLine]) -> Result<(), String> {
    let mut text = String::from("# csulcca-emu-sample checks: object label proof-kind proof-hex\n");
    for l in lines {
        text.push_str(&format!(
            "{} {} {} {}\n",
            l.object,
            l.label,
            l.proof.name(),
            hex(&l.proof_bytes)
        ));
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_checks(path: &Path) -> Result<Vec<CheckLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let bad = || format!("{}: line {}: malformed", path.display(), n + 1);
        let [object, label, kind, proof_hex] = f.as_slice() else {
            return Err(bad());
        };
        out.push(CheckLine {
            object: (*object).to_string(),
            label: (*label).to_string(),
            proof: Proof::parse(kind).ok_or_else(bad)?,
            proof_bytes: unhex(proof_hex).ok_or_else(bad)?,
        });
    }
    Ok(out)
}

/// A PIN, wiped when dropped.
type Pin = Zeroizing<Vec<u8>>;

/// The two PINs: from the environment, else two lines of stdin.
fn pins() -> Result<(Pin, Pin), String> {
    let env = |k| std::env::var_os(k).map(|v| Zeroizing::new(v.into_encoded_bytes()));
    if let (Some(so), Some(user)) = (env("CSULCCA_SAMPLE_SO_PIN"), env("CSULCCA_SAMPLE_USER_PIN")) {
        return Ok((so, user));
    }
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut line = || -> Result<Pin, String> {
        let mut s = Zeroizing::new(String::new());
        match lock.read_line(&mut s) {
            Ok(0) | Err(_) => Err("expected the SO and USER PINs on stdin".into()),
            Ok(_) => Ok(Zeroizing::new(
                s.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
            )),
        }
    };
    let so = line()?;
    let user = line()?;
    Ok((so, user))
}

/// Parsed options.
#[derive(Default)]
struct Opts {
    dir: Option<PathBuf>,
    checks: Option<PathBuf>,
    format: Option<Format>,
    order: Option<ByteOrder>,
    v381: bool,
    iterations: Option<u64>,
    mk_type: Option<MkType>,
    only_data: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--dir" => o.dir = Some(val()?.into()),
            "--checks" => o.checks = Some(val()?.into()),
            "--format" => {
                o.format = Some(match val()?.as_str() {
                    "old" => Format::Old,
                    "new" => Format::New,
                    v => return Err(format!("unknown format {v}")),
                })
            }
            "--byte-order" => {
                o.order = Some(match val()?.as_str() {
                    "little" => ByteOrder::Little,
                    "big" => ByteOrder::Big,
                    v => return Err(format!("unknown byte order {v}")),
                })
            }
            "--openCryptoki-3.8.1-style" => o.v381 = true,
            "--only-data" => o.only_data = true,
            "--pbkdf2-iterations" => {
                o.iterations = Some(val()?.parse().map_err(|_| "bad iteration count")?)
            }
            "--expect-mk" => {
                if val()? != "current" {
                    return Err("only --expect-mk current is supported".into());
                }
            }
            "--mk-type" => {
                o.mk_type = Some(MkType::from_name(&val()?).ok_or("unknown master key type")?)
            }
            "--so-pin" | "--user-pin" => {
                return Err(
                    "PINs are read from stdin or the environment, never from arguments".into(),
                )
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn create(o: &Opts) -> Result<String, String> {
    let (dir, checks) = (o.dir.as_ref(), o.checks.as_ref());
    let (Some(dir), Some(checks), Some(format)) = (dir, checks, o.format) else {
        return Err(USAGE.into());
    };
    let (so, user) = pins()?;
    let order = o.order.unwrap_or_else(ByteOrder::native);
    let mut opts = CreateOptions::new(format)
        .with_so_pin(&so)
        .with_user_pin(Some(&user))
        .with_byte_order(order);
    opts.opencryptoki_3_8_1 = o.v381;
    // openCryptoki 3.8.1's CCA token kept a 64-byte master key (88-byte MK files).
    opts.legacy_cca_mk = o.v381;
    opts.label = "csulcca-emu-sample".into();
    if let Some(n) = o.iterations {
        opts.pbkdf2_iterations = n;
    }
    let (mut store, mk) =
        TokenStore::create(dir, opts).map_err(|e| format!("creating the store: {e}"))?;
    let card = Card::from_env();
    let mut lines = Vec::new();
    let mut out = String::new();
    let all = samples(&card, order)?;
    for s in all
        .iter()
        .filter(|s| !o.only_data || s.proof == Proof::Data)
    {
        let proof_bytes = match s.proof {
            Proof::Data => Sha256::digest(&s.blob).to_vec(),
            p => blob_proof(&card, p, &s.blob)?,
        };
        let obj = add(&mut store, &mk, s, order)?;
        out.push_str(&format!("{} {}\n", obj, s.label));
        lines.push(CheckLine {
            object: obj,
            label: s.label.to_string(),
            proof: s.proof,
            proof_bytes,
        });
    }
    write_checks(checks, &lines)?;
    Ok(out)
}

fn add(
    store: &mut TokenStore,
    mk: &MasterKey,
    s: &Sample,
    order: ByteOrder,
) -> Result<String, String> {
    let obj = store
        .add_object(mk, template(s, order))
        .map_err(|e| format!("adding {}: {e}", s.label))?;
    Ok(obj.name.as_str().to_string())
}

/// Checks one recorded object; `Ok(None)` when it is not of the selected type.
fn check_one(
    card: &Card,
    store: &TokenStore,
    mk: &MasterKey,
    line: &CheckLine,
    only: Option<MkType>,
) -> Result<Option<()>, String> {
    let name = pkcscca::store::ObjectName::parse(&line.object).ok_or("bad object name")?;
    let obj = store
        .load_object(name, Some(mk))
        .map_err(|e| e.to_string())?;
    let label = obj.template.get(AttrType::LABEL).unwrap_or(&[]);
    if label != line.label.as_bytes() {
        return Err("label differs".into());
    }
    if line.proof == Proof::Data {
        if only.is_some() {
            return Ok(None);
        }
        let v = obj.template.get(AttrType::VALUE).ok_or("no CKA_VALUE")?;
        return match Sha256::digest(v).as_slice() == line.proof_bytes.as_slice() {
            true => Ok(Some(())),
            false => Err("CKA_VALUE differs".into()),
        };
    }
    let blob = obj
        .template
        .get(AttrType::IBM_OPAQUE)
        .ok_or("no CKA_IBM_OPAQUE")?;
    if line.proof == Proof::PublicToken {
        if only.is_some() {
            return Ok(None);
        }
    } else {
        let state = card.read().map_err(card_err("reading the card"))?;
        let mut ty = None;
        for t in split(line.proof, blob) {
            let info = layout::parse(t).map_err(|e| format!("not an internal key token: {e}"))?;
            let t_mk = info.mk_type();
            ty = Some(t_mk);
            if only.is_some_and(|o| o != t_mk) {
                return Ok(None);
            }
            let cur = state
                .set(t_mk)
                .cur_vp(t_mk)
                .ok_or("no CURRENT master key")?;
            if cur.get(..info.mkvp_len) != Some(info.mkvp(t)) {
                return Err(format!(
                    "token under MKVP {}, not the CURRENT {} master key {}",
                    hex(info.mkvp(t)),
                    t_mk.name(),
                    hex(cur.get(..info.mkvp_len).unwrap_or(&[]))
                ));
            }
        }
        if ty.is_none() {
            return Err("empty CKA_IBM_OPAQUE".into());
        }
    }
    let now = blob_proof(card, line.proof, blob)?;
    if now != line.proof_bytes {
        return Err(format!(
            "{} proof differs: the key material changed",
            line.proof.name()
        ));
    }
    Ok(Some(()))
}

fn check(o: &Opts) -> Result<(String, bool), String> {
    let (Some(dir), Some(checks)) = (o.dir.as_ref(), o.checks.as_ref()) else {
        return Err(USAGE.into());
    };
    let lines = read_checks(checks)?;
    // Only the USER PIN opens the objects (the SO PIN is read but not checked).
    let (_so, user) = pins()?;
    let store = TokenStore::open(dir).map_err(|e| e.to_string())?;
    let mk = store.login_user(&user).map_err(|e| e.to_string())?;
    let card = Card::from_env();
    let mut out = String::new();
    let mut all_ok = true;
    for l in &lines {
        match check_one(&card, &store, &mk, l, o.mk_type) {
            Ok(Some(())) => out.push_str(&format!("ok {} {}\n", l.object, l.label)),
            Ok(None) => {}
            Err(e) => {
                all_ok = false;
                out.push_str(&format!("FAILED {} {}: {e}\n", l.object, l.label));
            }
        }
    }
    Ok((out, all_ok))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("create") => parse(args.get(1..).unwrap_or(&[]))
            .and_then(|o| create(&o))
            .map(|s| (s, true)),
        Some("check") => parse(args.get(1..).unwrap_or(&[])).and_then(|o| check(&o)),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok((out, ok)) => {
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("csulcca-emu-sample: {e}");
            ExitCode::from(2)
        }
    }
}
