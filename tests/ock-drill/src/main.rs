//! `ock-drill`: a small PKCS#11 client that drives a real openCryptoki CCA
//! token through its public API, for the `tests/ock381/run.sh` harness.
//!
//! The harness needs three things from a PKCS#11 application, and this binary
//! does each as one subcommand so that every step is a separate process (the
//! CCA STDLL is loaded inside the application, so each process loads the
//! software CCA library afresh and sees the master key registers as they are
//! on disk at that moment):
//!
//! * `setup`: initialise the token, change the SO PIN, set the user PIN,
//!   generate one key of every kind the migration tool handles as token
//!   objects, encrypt known data, and record each key's `CKA_IBM_OPAQUE` and
//!   each ciphertext in a state file;
//! * `verify`: after the master key change and the migration, find the same
//!   keys by label, check which secure key tokens were re-enciphered and which
//!   were left alone, and decrypt the recorded ciphertexts;
//! * `info`: list slots and tokens (diagnostics for the harness log).
//!
//! For the interop suite (`tests/interop/run.sh`) it also takes attribute
//! snapshots and compares them (see [`snapshot`]):
//!
//! * `snapshot`: every attribute of every token object, through PKCS#11;
//! * `store-snapshot`: the same, read offline by our store layer;
//! * `compare`, `differential`: differences, one line per object and attribute;
//! * `store-rewrite`: our store layer rewrites every object of a slot's store
//!   unchanged (`TokenStore::commit`), under the token lock.
//!
//! For the side-by-side benchmark (`benches/side_by_side.sh`) it fills a token
//! with many AES keys and checks them after a migration (see [`bulk`]):
//! `bulk-init`, `bulk-keys`, `bulk-verify`.
//!
//! `setup --profile sw` fills a soft token instead (no secure key tokens, RSA
//! with exponent 65537, a sensitive key); `--extras` adds, in both profiles,
//! data objects and an imported AES key with a 220-byte label.
//! It is a test tool: errors end the process with a one-line message naming
//! the PKCS#11 call that failed; PINs are the fixed test PINs of the harness.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

mod bulk;
mod snapshot;

/// openCryptoki's vendor attribute holding the CCA secure key token
/// (`CKA_VENDOR_DEFINED + 1`).
const CKA_IBM_OPAQUE: u64 = 0x8000_0001;

/// The SO PIN openCryptoki gives a fresh token.
const DEFAULT_SO_PIN: &str = "87654321";
/// The SO PIN the drill sets (the vectors' convention).
const SO_PIN: &str = "76543210";
/// The user PIN the drill sets.
const USER_PIN: &str = "11223344";

/// DER encoding of the OID of NIST P-256 (prime256v1), for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// What went wrong, as one line for the harness log.
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Adds context to a PKCS#11 error: which step of the drill failed.
trait Context<T> {
    fn step(self, what: &str) -> Result<T, Failure>;
}

impl<T, E: Brief> Context<T> for Result<T, E> {
    fn step(self, what: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure(format!("{what}: {}", e.brief())))
    }
}

/// One-line text of an error. For a PKCS#11 error that is the function and
/// the `CKR_` name, not `cryptoki`'s paragraph from the specification.
trait Brief {
    fn brief(&self) -> String;
}

impl Brief for cryptoki::error::Error {
    fn brief(&self) -> String {
        match self {
            cryptoki::error::Error::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
            other => other.to_string(),
        }
    }
}

impl Brief for std::io::Error {
    fn brief(&self) -> String {
        self.to_string()
    }
}

impl Brief for Failure {
    fn brief(&self) -> String {
        self.0.clone()
    }
}

impl Brief for std::num::ParseIntError {
    fn brief(&self) -> String {
        self.to_string()
    }
}

/// One key the drill creates, by label.
struct KeySpec {
    label: &'static str,
    kind: KeyKind,
    /// `CKA_EXTRACTABLE` of the (private or secret) key.
    extractable: bool,
}

/// The kinds of key the drill generates.
#[derive(Clone, Copy)]
enum KeyKind {
    Des,
    Des3,
    Aes(u64),
    Generic(u64),
    EcP256,
    /// RSA with this many modulus bits. The public exponent attribute is a
    /// single 0x00 byte ("let the card choose"): 3.8.1 on a little-endian
    /// host compares the exponent bytes right-aligned into a native
    /// CK_ULONG, so 3 or 65537 never match and anything else but 0 is
    /// CKR_TEMPLATE_INCONSISTENT (cca_specific.c
    /// token_specific_rsa_generate_keypair).
    Rsa(u64),
    /// RSA with this many modulus bits and public exponent 65537 (the soft
    /// token's usual choice; 3.8.1's CCA token refuses it, see above).
    Rsa65537(u64),
    /// AES of this many bytes with `CKA_SENSITIVE = TRUE`.
    AesSensitive(u64),
    /// AES of this many bytes imported with `C_CreateObject` (`CKA_VALUE`).
    AesImported(u64),
    /// A DES3 key imported with `C_CreateObject` (fixed odd-parity bytes).
    Des3Imported,
    /// A generic secret of this many bytes imported with `C_CreateObject`.
    GenericImported(u64),
}

/// The keys `setup` generates. The non-extractable AES key is there on
/// purpose: `pkcscca` 3.8.1 searches with `CKA_EXTRACTABLE = TRUE`, so that
/// key must come out of a migration untouched.
const KEYS: &[KeySpec] = &[
    KeySpec {
        label: "des-gen",
        kind: KeyKind::Des,
        extractable: true,
    },
    KeySpec {
        label: "des3-gen",
        kind: KeyKind::Des3,
        extractable: true,
    },
    KeySpec {
        label: "aes128-gen",
        kind: KeyKind::Aes(16),
        extractable: true,
    },
    KeySpec {
        label: "aes256-gen",
        kind: KeyKind::Aes(32),
        extractable: true,
    },
    KeySpec {
        label: "aes128-noextract",
        kind: KeyKind::Aes(16),
        extractable: false,
    },
    KeySpec {
        label: "hmac-gen",
        kind: KeyKind::Generic(32),
        extractable: true,
    },
    KeySpec {
        label: "ec-p256",
        kind: KeyKind::EcP256,
        extractable: true,
    },
    KeySpec {
        label: "rsa2048",
        kind: KeyKind::Rsa(2048),
        extractable: true,
    },
];

/// One encryption `setup` performs and `verify` undoes.
struct CipherSpec {
    label: &'static str,
    mech: &'static str,
    plaintext: &'static [u8],
}

/// A 220-byte label (the store keeps labels of any length; upstream's
/// tools print them whole).
const LONG_LABEL: &str = "imported-aes-with-a-long-label-0123456789-abcdefghijklmnopqrstuvwxyz-\
ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789-abcdefghijklmnopqrstuvwxyz-\
ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789-abcdefghijklmnopqrstuvwxyz-end";

/// Keys added in both profiles after the generated ones.
const EXTRA_KEYS: &[KeySpec] = &[
    KeySpec {
        label: LONG_LABEL,
        kind: KeyKind::AesImported(16),
        extractable: true,
    },
    KeySpec {
        label: "des3-imported",
        kind: KeyKind::Des3Imported,
        extractable: true,
    },
    KeySpec {
        label: "generic-imported",
        kind: KeyKind::GenericImported(32),
        extractable: true,
    },
];

/// 24 bytes with odd parity, for the imported DES3 key.
const DES3_VALUE: [u8; 24] = [
    0x01, 0x02, 0x04, 0x07, 0x08, 0x0b, 0x0d, 0x0e, 0x10, 0x13, 0x15, 0x16, 0x19, 0x1a, 0x1c, 0x1f,
    0x20, 0x23, 0x25, 0x26, 0x29, 0x2a, 0x2c, 0x2f,
];

/// The soft token's keys (`setup --profile sw`). No EC: Debian's 3.8.1 soft
/// token answers `CKM_EC_KEY_PAIR_GEN` with `CKR_MECHANISM_INVALID`.
const SW_KEYS: &[KeySpec] = &[
    KeySpec {
        label: "sw-des",
        kind: KeyKind::Des,
        extractable: true,
    },
    KeySpec {
        label: "sw-des3",
        kind: KeyKind::Des3,
        extractable: true,
    },
    KeySpec {
        label: "sw-aes128",
        kind: KeyKind::Aes(16),
        extractable: true,
    },
    KeySpec {
        label: "sw-aes192",
        kind: KeyKind::Aes(24),
        extractable: true,
    },
    KeySpec {
        label: "sw-aes256-noextract",
        kind: KeyKind::Aes(32),
        extractable: false,
    },
    KeySpec {
        label: "sw-aes256-sensitive",
        kind: KeyKind::AesSensitive(32),
        extractable: true,
    },
    KeySpec {
        label: "sw-generic",
        kind: KeyKind::Generic(32),
        extractable: true,
    },
    KeySpec {
        label: "sw-rsa1024",
        kind: KeyKind::Rsa65537(1024),
        extractable: true,
    },
];

/// Data objects both profiles create: (label, private, value).
const DATA_OBJECTS: &[(&str, bool, &[u8])] = &[
    (
        "data-public",
        false,
        b"public data object of the interop suite",
    ),
    (
        "data-private",
        true,
        b"private data object of the interop suite",
    ),
];

/// The uncompressed generator point of P-256 as a DER OCTET STRING (a valid
/// public point for the imported EC public key).
const P256_G: [u8; 67] = [
    0x04, 0x41, 0x04, 0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8, 0xBC, 0xE6, 0xE5, 0x63,
    0xA4, 0x40, 0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4, 0xA1, 0x39, 0x45, 0xD8,
    0x98, 0xC2, 0x96, 0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A, 0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C,
    0x0F, 0x9E, 0x16, 0x2B, 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37,
    0xBF, 0x51, 0xF5,
];

/// Objects `--extras` creates besides keys and data objects: an X.509
/// certificate object (its `CKA_CERTIFICATE_TYPE` is one of the `CK_ULONG`s
/// the store narrows to 4 bytes) and, on the soft token, an imported EC
/// public key (3.8.1's CCA token answers that `C_CreateObject` with
/// `CKR_KEY_FUNCTION_NOT_PERMITTED`).
fn other_objects(cca: bool) -> Vec<(&'static str, Vec<Attribute>)> {
    let mut all = vec![
        (
            "cert-x509",
            vec![
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(b"cert-x509".to_vec()),
                Attribute::Subject(b"0\x0f1\r0\x0b\x06\x03U\x04\x03\x0c\x04test".to_vec()),
                Attribute::Id(vec![0x01, 0x02]),
                Attribute::Value(b"not a real certificate: openCryptoki stores the bytes".to_vec()),
            ],
        ),
        (
            "ec-p256-imported-pub",
            vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(cryptoki::object::KeyType::EC),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(b"ec-p256-imported-pub".to_vec()),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::EcPoint(P256_G.to_vec()),
                Attribute::Verify(true),
            ],
        ),
    ];
    if cca {
        all.retain(|(label, _)| *label != "ec-p256-imported-pub");
    }
    all
}

/// The keys of a profile: `cca` (default) or `sw`, then, with `--extras`,
/// [`EXTRA_KEYS`].
fn keys_of(profile: &str, extras: bool) -> Result<Vec<&'static KeySpec>, Failure> {
    let base = match profile {
        "cca" => KEYS,
        "sw" => SW_KEYS,
        other => return Err(Failure(format!("unknown profile {other:?} (cca, sw)"))),
    };
    let extra: &[KeySpec] = if extras { EXTRA_KEYS } else { &[] };
    Ok(base.iter().chain(extra).collect())
}

/// Known data, encrypted with the AES and DES3 keys and MACed with the
/// generic secret. The AES-256 case (`CKM_AES_CBC_PAD`, 39 bytes) is padded
/// by 3.8.1's common code, which then still calls CSNBSAE with
/// `KEYIDENT INITIAL` on 48 bytes; DES3 goes through CSNBENC `CBC`, HMAC
/// through CSNBHMG/CSNBHMV `HMAC SHA-256 ONLY`.
const CIPHERS: &[CipherSpec] = &[
    CipherSpec {
        label: "aes128-gen",
        mech: "aes-cbc",
        plaintext: b"ock381 drill: AES-128 CBC data!!",
    },
    CipherSpec {
        label: "aes256-gen",
        mech: "aes-cbc-pad",
        plaintext: b"ock381 drill: AES-256 with PKCS padding",
    },
    CipherSpec {
        label: "aes128-noextract",
        mech: "aes-cbc",
        plaintext: b"never migrated by pkcscca 3.8.1.",
    },
    CipherSpec {
        label: "des3-gen",
        mech: "des3-cbc",
        plaintext: b"ock381 drill: DES3 CBC data (32)",
    },
    CipherSpec {
        label: "hmac-gen",
        mech: "sha256-hmac",
        plaintext: b"ock381 drill: data under an HMAC-SHA-256",
    },
    CipherSpec {
        label: "ec-p256",
        mech: "ecdsa",
        plaintext: b"ock381 drill: a 32-byte digest..",
    },
    CipherSpec {
        label: "rsa2048",
        mech: "rsa-pkcs",
        plaintext: b"ock381 drill: signed with RSA PKCS #1 v1.5",
    },
    CipherSpec {
        label: LONG_LABEL,
        mech: "aes-cbc",
        plaintext: b"imported AES key, 220-byte label",
    },
    CipherSpec {
        label: "des3-imported",
        mech: "des3-cbc",
        plaintext: b"imported DES3 key: CBC data (32)",
    },
    CipherSpec {
        label: "generic-imported",
        mech: "sha256-hmac",
        plaintext: b"imported generic secret: HMAC-SHA-256 data",
    },
    CipherSpec {
        label: "sw-aes128",
        mech: "aes-cbc",
        plaintext: b"soft token: AES-128 CBC data!!!!",
    },
    CipherSpec {
        label: "sw-rsa1024",
        mech: "rsa-pkcs",
        plaintext: b"soft token: signed with RSA PKCS #1 v1.5",
    },
];

/// Fixed IVs: the point is decrypting after migration, not IV hygiene.
const IV16: [u8; 16] = *b"0123456789abcdef";
const IV8: [u8; 8] = *b"01234567";

fn mechanism(name: &str) -> Result<Mechanism<'static>, Failure> {
    match name {
        "aes-cbc" => Ok(Mechanism::AesCbc(IV16)),
        "aes-cbc-pad" => Ok(Mechanism::AesCbcPad(IV16)),
        "des3-cbc" => Ok(Mechanism::Des3Cbc(IV8)),
        "sha256-hmac" => Ok(Mechanism::Sha256Hmac),
        "ecdsa" => Ok(Mechanism::Ecdsa),
        "rsa-pkcs" => Ok(Mechanism::RsaPkcs),
        other => Err(Failure(format!(
            "unknown mechanism {other:?} in the state file"
        ))),
    }
}

/// How a mechanism is used: encrypt/decrypt with one secret key, MAC with
/// one secret key, or sign with a private key and verify with its public
/// half (the object labelled `<label>-pub`).
#[derive(Clone, Copy, PartialEq)]
enum Use {
    Cipher,
    Mac,
    Signature,
}

fn use_of(mech: &str) -> Use {
    match mech {
        "sha256-hmac" => Use::Mac,
        "ecdsa" | "rsa-pkcs" => Use::Signature,
        _ => Use::Cipher,
    }
}

/// The key (secret or private) and, for signatures, the public key object.
#[derive(Clone, Copy)]
struct KeyPair {
    key: ObjectHandle,
    public: Option<ObjectHandle>,
}

/// Encrypts, MACs or signs `data`: the output the drill records.
fn protect(s: &Session, mech: &str, k: KeyPair, data: &[u8]) -> Result<Vec<u8>, Failure> {
    let m = mechanism(mech)?;
    match use_of(mech) {
        Use::Cipher => s
            .encrypt(&m, k.key, data)
            .step(&format!("C_Encrypt {mech}")),
        Use::Mac | Use::Signature => s.sign(&m, k.key, data).step(&format!("C_Sign {mech}")),
    }
}

/// `C_Verify`, with a bad signature as `Ok(false)`.
fn verifies(
    s: &Session,
    m: &Mechanism,
    key: ObjectHandle,
    data: &[u8],
    sig: &[u8],
) -> Result<bool, Failure> {
    match s.verify(m, key, data, sig) {
        Ok(()) => Ok(true),
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::SignatureInvalid, _)) => {
            Ok(false)
        }
        Err(e) => Err(Failure(format!("C_Verify: {}", e.brief()))),
    }
}

/// Checks a recorded output against `data`: it decrypts to `data`, or
/// verifies as its MAC, or (signatures) verifies with the public key AND the
/// private key makes a new signature that verifies too. `Ok(false)` when the
/// keys work but the result does not match.
fn check(
    s: &Session,
    mech: &str,
    k: KeyPair,
    data: &[u8],
    recorded: &[u8],
) -> Result<bool, Failure> {
    let m = mechanism(mech)?;
    match use_of(mech) {
        Use::Cipher => {
            let back = s
                .decrypt(&m, k.key, recorded)
                .step(&format!("C_Decrypt {mech}"))?;
            Ok(back == data)
        }
        Use::Mac => verifies(s, &m, k.key, data, recorded),
        Use::Signature => {
            let public = k
                .public
                .ok_or_else(|| Failure(format!("{mech} needs a public key")))?;
            let fresh = s.sign(&m, k.key, data).step(&format!("C_Sign {mech}"))?;
            Ok(verifies(s, &m, public, data, recorded)? && verifies(s, &m, public, data, &fresh)?)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("ock-drill: FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command line: `ock-drill --lib PATH CMD [--slot N] [--state FILE]
/// [--label L] [--migrated a,b] [--untouched c,d] [--lost e]`.
///
/// `--migrated`: keys whose secure token must differ from the recorded one;
/// `--untouched`: keys whose token must be byte-identical; `--lost`: keys
/// whose recorded ciphertext must no longer decrypt. All other recorded
/// ciphertexts must decrypt to their plaintext.
struct Args {
    lib: String,
    cmd: String,
    slot: u64,
    state: Option<String>,
    label: String,
    migrated: Vec<String>,
    untouched: Vec<String>,
    lost: Vec<String>,
    profile: String,
    out: Option<String>,
    store: Option<String>,
    a: Option<String>,
    b: Option<String>,
    c: Option<String>,
    changed_opaque: Option<String>,
    extras: bool,
    /// `bulk-keys`: how many keys, the number of the first, public or private.
    count: usize,
    first: usize,
    public: bool,
    /// `bulk-verify`: the MKVP every key must carry (hex).
    mkvp: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, Failure> {
    let mut out = Args {
        lib: "/usr/lib/x86_64-linux-gnu/pkcs11/PKCS11_API.so".to_owned(),
        cmd: String::new(),
        slot: 1,
        state: None,
        label: "ock381 drill".to_owned(),
        migrated: Vec::new(),
        untouched: Vec::new(),
        lost: Vec::new(),
        profile: "cca".to_owned(),
        out: None,
        store: None,
        a: None,
        b: None,
        c: None,
        changed_opaque: None,
        extras: false,
        count: 0,
        first: 0,
        public: false,
        mkvp: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Failure(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--lib" => out.lib = value("--lib")?,
            "--slot" => out.slot = value("--slot")?.parse().step("--slot")?,
            "--state" => out.state = Some(value("--state")?),
            "--label" => out.label = value("--label")?,
            "--migrated" => out.migrated = list(&value("--migrated")?),
            "--untouched" => out.untouched = list(&value("--untouched")?),
            "--lost" => out.lost = list(&value("--lost")?),
            "--profile" => out.profile = value("--profile")?,
            "--extras" => out.extras = true,
            "--count" => out.count = value("--count")?.parse().step("--count")?,
            "--first" => out.first = value("--first")?.parse().step("--first")?,
            "--public" => out.public = true,
            "--mkvp" => out.mkvp = Some(value("--mkvp")?),
            "--out" => out.out = Some(value("--out")?),
            "--store" => out.store = Some(value("--store")?),
            "--a" => out.a = Some(value("--a")?),
            "--b" => out.b = Some(value("--b")?),
            "--c" => out.c = Some(value("--c")?),
            "--changed-opaque" => out.changed_opaque = Some(value("--changed-opaque")?),
            cmd if !cmd.starts_with('-') && out.cmd.is_empty() => out.cmd = cmd.to_owned(),
            other => return Err(Failure(format!("unexpected argument {other:?}"))),
        }
    }
    Ok(out)
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn run(args: &[String]) -> Result<(), Failure> {
    let args = parse(args)?;
    match args.cmd.as_str() {
        "store-snapshot" => return store_snapshot(&args),
        "compare" => return compare(&args),
        "differential" => return differential(&args),
        "store-rewrite" => return store_rewrite(&args),
        _ => {}
    }
    let p11 = Pkcs11::new(&args.lib).step(&format!("load {}", args.lib))?;
    p11.initialize(CInitializeArgs::OsThreads)
        .step("C_Initialize")?;
    match args.cmd.as_str() {
        "info" => info(&p11),
        "setup" => setup(&p11, &args),
        "verify" => verify(&p11, &args),
        "snapshot" => pkcs11_snapshot(&p11, &args),
        "bulk-init" => bulk::init(&p11, &args),
        "bulk-keys" => bulk::keys(&p11, &args),
        "bulk-verify" => bulk::verify(&p11, &args),
        other => Err(Failure(format!(
            "unknown command {other:?} (info, setup, verify, snapshot, store-snapshot, \
             compare, differential, store-rewrite, bulk-init, bulk-keys, bulk-verify)"
        ))),
    }
}

fn need<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, Failure> {
    v.as_deref()
        .ok_or_else(|| Failure(format!("this command needs {what}")))
}

/// `snapshot --slot N --out FILE`: every attribute PKCS#11 reports.
fn pkcs11_snapshot(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    let out = need(&args.out, "--out")?;
    let slot = slot(p11, args.slot)?;
    let s = p11.open_ro_session(slot).step("C_OpenSession")?;
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .step("C_Login(USER)")?;
    let snap = snapshot::from_pkcs11(&s)?;
    s.logout().step("C_Logout(USER)")?;
    std::fs::write(out, snap.to_text()).step(&format!("write {out}"))?;
    println!(
        "slot {}: {} objects, {} attributes through PKCS#11",
        args.slot,
        snap.objects.len(),
        snap.objects.values().map(|a| a.len()).sum::<usize>()
    );
    Ok(())
}

/// `store-snapshot --store DIR --out FILE`: every attribute our store layer reads.
fn store_snapshot(args: &Args) -> Result<(), Failure> {
    let dir = need(&args.store, "--store")?;
    let out = need(&args.out, "--out")?;
    let snap = snapshot::from_store(dir, USER_PIN)?;
    std::fs::write(out, snap.to_text()).step(&format!("write {out}"))?;
    println!(
        "{dir}: {} objects, {} attributes through pkcscca::store",
        snap.objects.len(),
        snap.objects.values().map(|a| a.len()).sum::<usize>()
    );
    Ok(())
}

fn report(problems: Vec<String>, what: &str) -> Result<(), Failure> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        println!("DIFF {p}");
    }
    Err(Failure(format!(
        "{what}: {} difference(s); first: {}",
        problems.len(),
        problems.first().map_or("", String::as_str)
    )))
}

fn file_name(p: &str) -> String {
    std::path::Path::new(p)
        .file_name()
        .map_or_else(|| p.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// `compare --a FILE --b FILE [--changed-opaque all|LABEL,...]`.
fn compare(args: &Args) -> Result<(), Failure> {
    let a = need(&args.a, "--a")?;
    let b = need(&args.b, "--b")?;
    let rule = match args.changed_opaque.as_deref() {
        None => snapshot::OpaqueRule::Unchanged,
        Some("all") => snapshot::OpaqueRule::Changed(None),
        Some(l) => snapshot::OpaqueRule::Changed(Some(
            list(l).into_iter().map(String::into_bytes).collect(),
        )),
    };
    let (sa, sb) = (snapshot::Snapshot::parse(a)?, snapshot::Snapshot::parse(b)?);
    let (an, bn) = (file_name(a), file_name(b));
    let problems = snapshot::compare(&sa, &an, &sb, &bn, &rule);
    report(problems, &format!("{an} vs {bn}"))?;
    println!(
        "{an} and {bn} agree: {} objects, {} attributes",
        sa.objects.len(),
        sa.objects.values().map(|x| x.len()).sum::<usize>()
    );
    Ok(())
}

/// `differential --a ORIG --b THEIRS --c OURS` (store snapshots).
fn differential(args: &Args) -> Result<(), Failure> {
    let orig = snapshot::Snapshot::parse(need(&args.a, "--a (original)")?)?;
    let theirs = snapshot::Snapshot::parse(need(&args.b, "--b (3.8.1's result)")?)?;
    let ours = snapshot::Snapshot::parse(need(&args.c, "--c (our result)")?)?;
    let (bad, deliberate) = snapshot::differential(&orig, &theirs, &ours);
    for d in &deliberate {
        println!("deliberate: {d}");
    }
    report(bad, "pkcscca 3.8.1 vs ours")?;
    let same = orig
        .objects
        .values()
        .filter(|o| o.contains_key(&snapshot::IBM_OPAQUE))
        .count()
        - deliberate.len();
    println!(
        "{same} key tokens re-enciphered identically by both tools; {} deliberate differences",
        deliberate.len()
    );
    Ok(())
}

/// `store-rewrite --slot N`: rewrites every object of the slot's store
/// unchanged through our store layer, under openCryptoki's token lock, then
/// removes the token's shared memory as our pkcscca does after a commit.
fn store_rewrite(args: &Args) -> Result<(), Failure> {
    use pkcscca::config::{locate_token, SystemPaths};
    use pkcscca::store::StoredObject;
    let paths = SystemPaths::from_env();
    let slot = u32::try_from(args.slot).map_err(|_| Failure("slot out of range".into()))?;
    let loc = locate_token(&paths, slot).map_err(|e| Failure(format!("slot {slot}: {e}")))?;
    let _lock = pkcscca::host::lock_token(&loc).map_err(|e| Failure(format!("token lock: {e}")))?;
    let dir = loc.dir.display().to_string();
    let (store, mk, objects) = snapshot::load_store(&loc.dir, loc.open_options(), USER_PIN)?;
    let all: Vec<&StoredObject> = objects.iter().collect();
    let done = store
        .commit(&mk, &all)
        .map_err(|e| Failure(format!("commit {dir}: {e}")))?;
    match std::fs::remove_file(loc.shm_file(&paths)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure(format!("remove the token's shared memory: {e}"))),
    }
    println!("{dir}: rewrote {} objects unchanged", done.written.len());
    Ok(())
}

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.to_owned())
}

/// Finds the slot with the given number among the slots that have a token.
fn slot(p11: &Pkcs11, id: u64) -> Result<Slot, Failure> {
    p11.get_slots_with_token()
        .step("C_GetSlotList")?
        .into_iter()
        .find(|s| s.id() == id)
        .ok_or_else(|| Failure(format!("slot {id} has no token (is its STDLL loading?)")))
}

fn info(p11: &Pkcs11) -> Result<(), Failure> {
    for s in p11.get_all_slots().step("C_GetSlotList")? {
        let si = p11.get_slot_info(s).step("C_GetSlotInfo")?;
        let desc = si
            .slot_description()
            .trim_matches(|c: char| c == ' ' || c == '\0');
        print!("slot {}: {desc:?}", s.id());
        match p11.get_token_info(s) {
            Ok(ti) => println!(
                " token {:?} model {:?} initialized={} user_pin={}",
                ti.label().trim(),
                ti.model().trim(),
                ti.token_initialized(),
                ti.user_pin_initialized()
            ),
            Err(e) => println!(" (C_GetTokenInfo unreadable: {})", e.brief()),
        }
    }
    Ok(())
}

/// Initialise the token, set both PINs, then generate and use the keys.
fn setup(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    let state_path = args
        .state
        .as_deref()
        .ok_or_else(|| Failure("setup needs --state".into()))?;
    let slot = init_token(p11, args)?;
    let s = p11.open_rw_session(slot).step("C_OpenSession")?;
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .step("C_Login(USER)")?;

    let mut state = String::new();
    let mut handles = BTreeMap::new();
    let cca = args.profile == "cca";
    for k in keys_of(&args.profile, args.extras)? {
        for (label, h) in generate(&s, k).step(&format!("generate {}", k.label))? {
            if cca {
                let opaque = opaque(&s, h).step(&format!("read CKA_IBM_OPAQUE of {label}"))?;
                println!(
                    "generated {:<17} opaque {} bytes{}",
                    label,
                    opaque.len(),
                    mkvp_note(&opaque)
                );
                let _ = writeln!(state, "key {label} {}", hex(&opaque));
            } else {
                println!("generated {label}");
            }
            handles.insert(label, h);
        }
    }
    let data_objects: &[(&str, bool, &[u8])] = if args.extras { DATA_OBJECTS } else { &[] };
    for &(label, private, value) in data_objects {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Application(b"pkcscca interop".to_vec()),
            Attribute::Value(value.to_vec()),
        ])
        .step(&format!("C_CreateObject data object {label}"))?;
        println!("created data object {label}");
    }
    if args.extras {
        for (label, t) in other_objects(cca) {
            s.create_object(&t)
                .step(&format!("C_CreateObject {label}"))?;
            println!("created {label}");
        }
    }
    for c in CIPHERS {
        let Some(&h) = handles.get(c.label) else {
            continue;
        };
        let public = handles.get(format!("{}-pub", c.label).as_str()).copied();
        let h = KeyPair { key: h, public };
        let ct = protect(&s, c.mech, h, c.plaintext)
            .map_err(|Failure(e)| Failure(format!("{} with {}", e, c.label)))?;
        if !check(&s, c.mech, h, c.plaintext, &ct)
            .map_err(|Failure(e)| Failure(format!("{e} with {} (before the change)", c.label)))?
        {
            return Err(Failure(format!(
                "{} does not undo its own {}",
                c.label, c.mech
            )));
        }
        println!(
            "protected {} bytes with {} ({})",
            c.plaintext.len(),
            c.label,
            c.mech
        );
        let _ = writeln!(
            state,
            "ct {} {} {} {}",
            c.label,
            c.mech,
            hex(c.plaintext),
            hex(&ct)
        );
    }
    s.logout().step("C_Logout(USER)")?;
    std::fs::write(state_path, state).step(&format!("write {state_path}"))?;
    Ok(())
}

/// Initialises the token of `--slot` with the default SO PIN and label
/// `--label`, changes the SO PIN and sets the user PIN; returns the slot.
fn init_token(p11: &Pkcs11, args: &Args) -> Result<Slot, Failure> {
    let slot = slot(p11, args.slot)?;
    p11.init_token(slot, &pin(DEFAULT_SO_PIN), &args.label)
        .step("C_InitToken with the default SO PIN")?;
    println!("initialised token {:?} in slot {}", args.label, args.slot);
    let s = p11.open_rw_session(slot).step("C_OpenSession")?;
    s.login(UserType::So, Some(&pin(DEFAULT_SO_PIN)))
        .step("C_Login(SO, default PIN)")?;
    s.set_pin(&pin(DEFAULT_SO_PIN), &pin(SO_PIN))
        .step("C_SetPIN(SO)")?;
    s.init_pin(&pin(USER_PIN)).step("C_InitPIN")?;
    s.logout().step("C_Logout(SO)")?;
    println!("SO PIN changed, user PIN set");
    Ok(slot)
}

/// Generates one key (or key pair) and returns its objects by label: the
/// public half of a pair is labelled `<label>-pub`. In 3.8.1 both halves of a
/// CCA key pair carry the whole secure key token in `CKA_IBM_OPAQUE`.
fn generate(s: &Session, k: &KeySpec) -> cryptoki::error::Result<Vec<(String, ObjectHandle)>> {
    let common = |class: ObjectClass, private: bool, label: &str| {
        vec![
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let one = |h| vec![(k.label.to_owned(), h)];
    let mut t = common(ObjectClass::SECRET_KEY, true, k.label);
    t.push(Attribute::Extractable(k.extractable));
    match k.kind {
        KeyKind::Des
        | KeyKind::Des3
        | KeyKind::Aes(_)
        | KeyKind::AesSensitive(_)
        | KeyKind::AesImported(_)
        | KeyKind::Des3Imported => {
            t.push(Attribute::Encrypt(true));
            t.push(Attribute::Decrypt(true));
        }
        KeyKind::Generic(_) | KeyKind::GenericImported(_) => {
            t.push(Attribute::Sign(true));
            t.push(Attribute::Verify(true));
        }
        KeyKind::EcP256 | KeyKind::Rsa(_) | KeyKind::Rsa65537(_) => {}
    }
    match k.kind {
        KeyKind::Des => s.generate_key(&Mechanism::DesKeyGen, &t).map(one),
        KeyKind::Des3 => s.generate_key(&Mechanism::Des3KeyGen, &t).map(one),
        KeyKind::Aes(n) => {
            t.push(Attribute::ValueLen(n.into()));
            s.generate_key(&Mechanism::AesKeyGen, &t).map(one)
        }
        KeyKind::AesSensitive(n) => {
            t.push(Attribute::ValueLen(n.into()));
            t.push(Attribute::Sensitive(true));
            s.generate_key(&Mechanism::AesKeyGen, &t).map(one)
        }
        KeyKind::AesImported(n) => {
            t.push(Attribute::KeyType(cryptoki::object::KeyType::AES));
            // Fixed, recognisable key bytes: 0x40, 0x41, ...
            t.push(Attribute::Value((0..n).map(|i| 0x40 + i as u8).collect()));
            s.create_object(&t).map(one)
        }
        KeyKind::Des3Imported => {
            t.push(Attribute::KeyType(cryptoki::object::KeyType::DES3));
            t.push(Attribute::Value(DES3_VALUE.to_vec()));
            s.create_object(&t).map(one)
        }
        KeyKind::GenericImported(n) => {
            t.push(Attribute::KeyType(
                cryptoki::object::KeyType::GENERIC_SECRET,
            ));
            t.push(Attribute::Value((0..n).map(|i| 0x60 + i as u8).collect()));
            s.create_object(&t).map(one)
        }
        KeyKind::Generic(n) => {
            t.push(Attribute::ValueLen(n.into()));
            s.generate_key(&Mechanism::GenericSecretKeyGen, &t).map(one)
        }
        KeyKind::EcP256 => {
            let public_label = format!("{}-pub", k.label);
            let mut public = common(ObjectClass::PUBLIC_KEY, false, &public_label);
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            public.push(Attribute::Verify(true));
            let mut private = common(ObjectClass::PRIVATE_KEY, true, k.label);
            private.push(Attribute::Sign(true));
            private.push(Attribute::Extractable(k.extractable));
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map(|(pu, pr)| vec![(k.label.to_owned(), pr), (public_label, pu)])
        }
        KeyKind::Rsa(bits) | KeyKind::Rsa65537(bits) => {
            let public_label = format!("{}-pub", k.label);
            let mut public = common(ObjectClass::PUBLIC_KEY, false, &public_label);
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(match k.kind {
                KeyKind::Rsa65537(_) => vec![0x01, 0x00, 0x01],
                _ => vec![0x00],
            }));
            public.push(Attribute::Verify(true));
            let mut private = common(ObjectClass::PRIVATE_KEY, true, k.label);
            private.push(Attribute::Sign(true));
            private.push(Attribute::Extractable(k.extractable));
            s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .map(|(pu, pr)| vec![(k.label.to_owned(), pr), (public_label, pu)])
        }
    }
}

/// Reads `CKA_IBM_OPAQUE` (the CCA secure key token) of an object.
fn opaque(s: &Session, h: ObjectHandle) -> Result<Vec<u8>, Failure> {
    let t = AttributeType::VendorDefined(CKA_IBM_OPAQUE);
    for a in s.get_attributes(h, &[t]).step("C_GetAttributeValue")? {
        if let Attribute::VendorDefined((_, v)) = a {
            return Ok(v);
        }
    }
    Err(Failure("object has no CKA_IBM_OPAQUE".into()))
}

/// For the 64-byte fixed-length internal tokens (DES, AES DATA) the MKVP sits
/// at bytes 8..16 (`cca_specific.c: analyse_cca_key_token()`); show it so the
/// log tells which master key wraps each key.
fn mkvp_note(tok: &[u8]) -> String {
    match (tok.len(), tok.first(), tok.get(8..16)) {
        (64, Some(0x01), Some(mkvp)) => format!(", MKVP {}", hex(mkvp)),
        _ => String::new(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn unhex(s: &str) -> Result<Vec<u8>, Failure> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(Failure("odd-length hex in the state file".into()));
    }
    bytes
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| Failure("bad hex in the state file".into()))
        })
        .collect()
}

/// Finds exactly one token object with the given label (the drill gives every
/// object its own label).
fn find(s: &Session, label: &str) -> Result<ObjectHandle, Failure> {
    let t = [
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let found = s.find_objects(&t).step(&format!("C_FindObjects {label}"))?;
    match found.as_slice() {
        [h] => Ok(*h),
        other => Err(Failure(format!(
            "expected one key labelled {label}, found {}",
            other.len()
        ))),
    }
}

/// After the master key change and the migration: compare secure key tokens
/// with the recorded ones and decrypt the recorded ciphertexts.
fn verify(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    let state_path = args
        .state
        .as_deref()
        .ok_or_else(|| Failure("verify needs --state".into()))?;
    let text = std::fs::read_to_string(state_path).step(&format!("read {state_path}"))?;
    let slot = slot(p11, args.slot)?;
    let s = p11.open_rw_session(slot).step("C_OpenSession")?;
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .step("C_Login(USER)")?;

    let mut problems = Vec::new();
    let mut recorded: Vec<String> = Vec::new();
    let mut seen_cts = 0usize;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["key", label, before] => {
                recorded.push((*label).to_owned());
                let h = find(&s, label)?;
                let now = opaque(&s, h)?;
                let before = unhex(before)?;
                let changed = now != before;
                println!(
                    "{label:<17} opaque {} -> {} bytes, {}{}",
                    before.len(),
                    now.len(),
                    if changed {
                        "re-enciphered"
                    } else {
                        "unchanged"
                    },
                    mkvp_note(&now)
                );
                let want_migrated = args.migrated.iter().any(|m| m == label);
                let want_untouched = args.untouched.iter().any(|m| m == label);
                if want_migrated && !changed {
                    problems.push(format!(
                        "{label}: expected a re-enciphered token, it is unchanged"
                    ));
                }
                if want_migrated && now.len() != before.len() {
                    problems.push(format!("{label}: token length changed"));
                }
                if want_untouched && changed {
                    problems.push(format!("{label}: expected an untouched token, it changed"));
                }
            }
            ["ct", label, mech, pt, ct] => {
                seen_cts += 1;
                let public = match use_of(mech) {
                    Use::Signature => Some(find(&s, &format!("{label}-pub"))?),
                    _ => None,
                };
                let h = KeyPair {
                    key: find(&s, label)?,
                    public,
                };
                let result = check(&s, mech, h, &unhex(pt)?, &unhex(ct)?);
                if args.lost.iter().any(|m| m == label) {
                    // Its secure key is wrapped by a master key the card no
                    // longer holds: the library must refuse to use it.
                    match result {
                        Err(Failure(e)) => println!("{label:<17} is unusable, as expected ({e})"),
                        Ok(_) => {
                            problems.push(format!("{label}: expected to be lost, it still works"))
                        }
                    }
                    continue;
                }
                let what = match use_of(mech) {
                    Use::Cipher => "decrypts the data encrypted",
                    Use::Mac => "verifies the MAC made",
                    Use::Signature => "signs, and its public key verifies the signature made",
                };
                match result {
                    Ok(true) => println!("{label:<17} {what} before the change"),
                    Ok(false) => {
                        problems.push(format!("{label}: no longer {what} before the change"))
                    }
                    Err(Failure(e)) => problems.push(format!("{label}: {e}")),
                }
            }
            _ => return Err(Failure(format!("{state_path}: unreadable line {line:?}"))),
        }
    }
    let profile_keys = keys_of(&args.profile, args.extras)?;
    let want_cts = CIPHERS
        .iter()
        .filter(|c| profile_keys.iter().any(|k| k.label == c.label))
        .count();
    if recorded.len() < profile_keys.len() || seen_cts != want_cts {
        return Err(Failure(format!(
            "{state_path}: incomplete ({} keys, {seen_cts} ciphertexts)",
            recorded.len()
        )));
    }
    for m in args
        .migrated
        .iter()
        .chain(&args.untouched)
        .chain(&args.lost)
    {
        if !recorded.contains(m) {
            return Err(Failure(format!("no key labelled {m} in {state_path}")));
        }
    }
    s.logout().step("C_Logout(USER)")?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure(problems.join("; ")))
    }
}
