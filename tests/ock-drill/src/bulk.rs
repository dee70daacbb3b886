//! Many AES keys at once, for the side-by-side benchmark
//! (`benches/side_by_side.sh`): openCryptoki itself must write the store both
//! tools migrate, and afterwards every key must be shown to work.
//!
//! * `bulk-init`: initialise the token and set both PINs (as `setup` does);
//! * `bulk-keys --count N [--first I] [--public]`: generate N AES-256 token keys
//!   labelled `bench-priv-<i>` (or `bench-pub-<i>` with `CKA_PRIVATE = FALSE`),
//!   all `CKA_EXTRACTABLE = TRUE` (3.8.1's pkcscca only finds those), encrypt
//!   32 known bytes with each (`CKM_AES_CBC`) and append one line per key to the
//!   state file: label, `CKA_IBM_OPAQUE`, plaintext, ciphertext;
//! * `bulk-verify --mkvp HEX`: every recorded key exists once, its secure key
//!   token was re-enciphered (differs from the recorded one, same length) and
//!   carries the master key verification pattern HEX at bytes 8..16 (the
//!   64-byte AES DATA token), and it decrypts the recorded ciphertext to the
//!   recorded plaintext.
//!
//! `bulk-verify` finds all secret keys with one `C_FindObjects` and reads their
//! attributes by handle, so checking N keys costs N decryptions, not N searches
//! (a search walks every object in 3.8.1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;

use crate::{hex, need, pin, slot, unhex, Args, Context, Failure, CKA_IBM_OPAQUE, IV16, USER_PIN};

/// The label of key `i`.
fn label(public: bool, i: usize) -> String {
    format!("bench-{}-{i:06}", if public { "pub" } else { "priv" })
}

/// The 32 bytes encrypted with a key: its label, padded with dots.
fn plaintext(label: &str) -> Vec<u8> {
    let mut p = format!("{label:.<32}").into_bytes();
    p.truncate(32);
    p
}

/// `bulk-init --slot N --label L`.
pub fn init(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    crate::init_token(p11, args).map(|_| ())
}

/// `bulk-keys --slot N --state FILE --count N [--first I] [--public]`.
pub fn keys(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    let state_path = need(&args.state, "--state")?;
    let slot = slot(p11, args.slot)?;
    let s = p11.open_rw_session(slot).step("C_OpenSession")?;
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .step("C_Login(USER)")?;
    let mut state = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_path)
        .step(&format!("open {state_path}"))?;
    let start = Instant::now();
    let mech = Mechanism::AesCbc(IV16);
    let mut lines = String::new();
    for i in args.first..args.first.saturating_add(args.count) {
        let label = label(args.public, i);
        let t = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Private(!args.public),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Extractable(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::ValueLen(32.into()),
        ];
        let h = s
            .generate_key(&Mechanism::AesKeyGen, &t)
            .step(&format!("C_GenerateKey {label}"))?;
        let opaque = crate::opaque(&s, h)?;
        let pt = plaintext(&label);
        let ct = s
            .encrypt(&mech, h, &pt)
            .step(&format!("C_Encrypt with {label}"))?;
        let _ = writeln!(lines, "{label} {} {} {}", hex(&opaque), hex(&pt), hex(&ct));
    }
    state
        .write_all(lines.as_bytes())
        .step(&format!("write {state_path}"))?;
    s.logout().step("C_Logout(USER)")?;
    println!(
        "generated {} {} AES-256 keys from #{} in {:.1} s",
        args.count,
        if args.public { "public" } else { "private" },
        args.first,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One key as recorded by `bulk-keys`.
struct Recorded {
    opaque: Vec<u8>,
    pt: Vec<u8>,
    ct: Vec<u8>,
}

/// `bulk-verify --slot N --state FILE --mkvp HEX`.
pub fn verify(p11: &Pkcs11, args: &Args) -> Result<(), Failure> {
    let state_path = need(&args.state, "--state")?;
    let want_mkvp = unhex(need(&args.mkvp, "--mkvp")?)?;
    let text = std::fs::read_to_string(state_path).step(&format!("read {state_path}"))?;
    let mut recorded = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [label, opaque, pt, ct] = f.as_slice() else {
            return Err(Failure(format!("{state_path}: unreadable line {line:?}")));
        };
        let r = Recorded {
            opaque: unhex(opaque)?,
            pt: unhex(pt)?,
            ct: unhex(ct)?,
        };
        recorded.insert((*label).to_owned(), r);
    }
    let start = Instant::now();
    let slot = slot(p11, args.slot)?;
    let s = p11.open_ro_session(slot).step("C_OpenSession")?;
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .step("C_Login(USER)")?;
    let handles = s
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::SECRET_KEY),
        ])
        .step("C_FindObjects")?;
    let mut found = BTreeMap::new();
    let mut problems = Vec::new();
    for h in handles {
        let mut label = None;
        let mut opaque = None;
        let types = [
            AttributeType::Label,
            AttributeType::VendorDefined(CKA_IBM_OPAQUE),
        ];
        for a in s.get_attributes(h, &types).step("C_GetAttributeValue")? {
            match a {
                Attribute::Label(l) => label = Some(String::from_utf8_lossy(&l).into_owned()),
                Attribute::VendorDefined((_, v)) => opaque = Some(v),
                _ => {}
            }
        }
        let (Some(label), Some(opaque)) = (label, opaque) else {
            problems.push(format!("object {h}: no label or no CKA_IBM_OPAQUE"));
            continue;
        };
        if found.insert(label.clone(), (h, opaque)).is_some() {
            problems.push(format!("{label}: found twice"));
        }
    }
    let mech = Mechanism::AesCbc(IV16);
    let (mut under_mkvp, mut decrypt_ok) = (0usize, 0usize);
    for (label, r) in &recorded {
        let Some((h, now)) = found.get(label) else {
            problems.push(format!("{label}: not found"));
            continue;
        };
        if now.len() != r.opaque.len() {
            problems.push(format!("{label}: token length changed"));
        }
        if *now == r.opaque {
            problems.push(format!("{label}: token not re-enciphered"));
        }
        match now.get(8..16) {
            Some(vp) if vp == want_mkvp.as_slice() => under_mkvp += 1,
            vp => problems.push(format!(
                "{label}: MKVP {} is not {}",
                vp.map(hex).unwrap_or_default(),
                hex(&want_mkvp)
            )),
        }
        match s.decrypt(&mech, *h, &r.ct) {
            Ok(back) if back == r.pt => decrypt_ok += 1,
            Ok(_) => problems.push(format!("{label}: decrypts to other bytes")),
            Err(e) => problems.push(format!("{label}: C_Decrypt: {}", crate::Brief::brief(&e))),
        }
    }
    for label in found.keys().filter(|l| !recorded.contains_key(*l)) {
        problems.push(format!("{label}: a secret key that was not recorded"));
    }
    s.logout().step("C_Logout(USER)")?;
    println!(
        "bulk-verify: {} keys recorded, {} found; {under_mkvp} under MKVP {}, {decrypt_ok} \
         decrypt the data encrypted before the change ({:.1} s)",
        recorded.len(),
        found.len(),
        hex(&want_mkvp),
        start.elapsed().as_secs_f64()
    );
    if problems.is_empty() {
        return Ok(());
    }
    for p in problems.iter().take(10) {
        println!("BAD {p}");
    }
    Err(Failure(format!(
        "{} problem(s) in {} keys; first: {}",
        problems.len(),
        recorded.len(),
        problems.first().map_or("", String::as_str)
    )))
}
