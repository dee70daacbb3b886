//! Attribute snapshots of a token's objects, taken two ways, and their
//! comparison, for the interop suite (`tests/interop/run.sh`).
//!
//! * [`from_pkcs11`]: what real openCryptoki reports. Every object a USER
//!   session finds with `CKA_TOKEN = TRUE` is probed with
//!   `C_GetAttributeValue` for every attribute type in [`probe_types`].
//! * [`from_store`]: what our store layer (`pkcscca::store`) reads from the
//!   data store directory, offline.
//!
//! Both render a value the same way: the record is handed to the `cryptoki`
//! crate as a `CK_ATTRIBUTE` and its typed [`Attribute`] is printed with
//! `Debug`, so a `CK_ULONG`, a `CK_BBOOL`, a date or a byte string compare by
//! meaning, whichever side it came from. A value PKCS#11 refuses to reveal
//! (sensitive, or unavailable) is written as `sensitive` and matches any value
//! the other side has. A type the crate cannot name is written as its length.
//!
//! Objects are keyed by `CKA_LABEL` (the drill gives every object its own).
//! A snapshot file has one `object <label hex>` line per object, followed by
//! its `attr <type hex> <value>` lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType};
use cryptoki::session::Session;
use cryptoki_sys::{CK_ATTRIBUTE, CK_ULONG};
use pkcscca::pkcs11::AttrType;
use pkcscca::store::{MasterKey, OpenOptions, StoredObject, TokenStore};
use std::path::Path;

use crate::{Brief, Context, Failure};

/// `CKA_IBM_OPAQUE`.
pub const IBM_OPAQUE: u32 = 0x8000_0001;
/// `CKA_EXTRACTABLE`.
const EXTRACTABLE: u32 = 0x162;
/// `CKA_LABEL`.
const LABEL: u32 = 0x3;
/// The text of a value PKCS#11 would not reveal.
const SENSITIVE: &str = "sensitive";

/// Every attribute type [`from_pkcs11`] asks for: all standard types up to
/// the PKCS#11 3.0 range, the array attributes (`CKA_WRAP_TEMPLATE`,
/// `CKA_UNWRAP_TEMPLATE`, `CKA_DERIVE_TEMPLATE`, `CKA_ALLOWED_MECHANISMS`),
/// and openCryptoki's vendor-defined ones (`CKA_IBM_*` from 0x80000000,
/// `CKA_HIDDEN` and friends from 0x81000000).
pub fn probe_types() -> Vec<u32> {
    (0..=0x0700u32)
        .chain(0x4000_0211..=0x4000_0213)
        .chain(std::iter::once(0x4000_0600))
        .chain(0x8000_0000..=0x8000_0020)
        .chain(0x8100_0000..=0x8100_0010)
        .collect()
}

/// Attribute values of one object, by type.
pub type Attrs = BTreeMap<u32, String>;

/// Objects by label.
#[derive(Default)]
pub struct Snapshot {
    /// Label bytes → attributes.
    pub objects: BTreeMap<Vec<u8>, Attrs>,
}

/// A label for messages: text, shortened, with its length when shortened.
pub fn show_label(label: &[u8]) -> String {
    let text = String::from_utf8_lossy(label);
    if text.chars().count() > 40 {
        let head: String = text.chars().take(32).collect();
        format!("{head:?}... ({} bytes)", label.len())
    } else {
        format!("{text:?}")
    }
}

/// An attribute type for messages: `CKA_NAME (0x...)`.
pub fn show_type(ty: u32) -> String {
    AttrType(ty).to_string()
}

fn show_value(v: &str) -> String {
    if v.len() > 160 {
        let cut = v.char_indices().nth(150).map_or(v.len(), |(i, _)| i);
        format!("{}... ({} chars)", &v[..cut], v.len())
    } else {
        v.to_owned()
    }
}

/// Renders one record the way [`from_pkcs11`] renders what PKCS#11 returns.
fn render(ty: u32, value: &[u8]) -> String {
    let raw = CK_ATTRIBUTE {
        type_: CK_ULONG::from(ty),
        pValue: if value.is_empty() {
            std::ptr::null_mut()
        } else {
            value.as_ptr().cast_mut().cast()
        },
        ulValueLen: value.len() as CK_ULONG,
    };
    match Attribute::try_from(raw) {
        Ok(a) => format!("{a:?}"),
        Err(_) => format!("? len {}", value.len()),
    }
}

/// The snapshot real openCryptoki gives through a USER session.
pub fn from_pkcs11(s: &Session) -> Result<Snapshot, Failure> {
    let mut snap = Snapshot::default();
    let handles = s
        .find_objects(&[Attribute::Token(true)])
        .step("C_FindObjects(CKA_TOKEN=TRUE)")?;
    let types = probe_types();
    for h in handles {
        let mut attrs = Attrs::new();
        for &ty in &types {
            let probe = AttributeType::VendorDefined(CK_ULONG::from(ty));
            let info = s
                .get_attribute_info(h, &[probe])
                .step(&format!("C_GetAttributeValue({}) length", show_type(ty)))?;
            let text = match info.first() {
                Some(AttributeInfo::Available(n)) => {
                    match AttributeType::try_from(CK_ULONG::from(ty)) {
                        Ok(t) => match s.get_attributes(h, &[t]) {
                            Ok(v) => v
                                .first()
                                .map_or_else(|| format!("? len {n}"), |a| format!("{a:?}")),
                            Err(_) => format!("? len {n}"),
                        },
                        Err(_) => format!("? len {n}"),
                    }
                }
                Some(AttributeInfo::Sensitive | AttributeInfo::Unavailable) => SENSITIVE.into(),
                Some(AttributeInfo::TypeInvalid) | None => continue,
            };
            attrs.insert(ty, text);
        }
        let label = match s.get_attributes(h, &[AttributeType::Label]) {
            Ok(v) => match v.first() {
                Some(Attribute::Label(l)) => l.clone(),
                _ => Vec::new(),
            },
            Err(e) => return Err(Failure(format!("read CKA_LABEL: {}", e.brief()))),
        };
        insert(&mut snap, label, attrs)?;
    }
    Ok(snap)
}

fn insert(snap: &mut Snapshot, label: Vec<u8>, attrs: Attrs) -> Result<(), Failure> {
    if snap.objects.contains_key(&label) {
        return Err(Failure(format!(
            "two objects labelled {}; the suite needs unique labels",
            show_label(&label)
        )));
    }
    snap.objects.insert(label, attrs);
    Ok(())
}

/// The snapshot our store layer reads from the data store `dir` with the USER
/// PIN, offline.
pub fn from_store(dir: &str, user_pin: &str) -> Result<Snapshot, Failure> {
    let (_, _, objects) = load_store(Path::new(dir), OpenOptions::default(), user_pin)?;
    let mut snap = Snapshot::default();
    for o in objects {
        let mut attrs = Attrs::new();
        for a in o.template.iter() {
            let ty = a.ty().value();
            if attrs.insert(ty, render(ty, a.value())).is_some() {
                return Err(Failure(format!(
                    "{dir}/TOK_OBJ/{}: attribute {} recorded twice",
                    o.name,
                    show_type(ty)
                )));
            }
        }
        let label = o
            .template
            .get(AttrType(LABEL))
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        insert(&mut snap, label, attrs)?;
    }
    Ok(snap)
}

/// Opens the store in `dir`, logs in as USER and loads every object, with
/// errors naming the directory.
pub fn load_store(
    dir: &Path,
    opts: OpenOptions,
    user_pin: &str,
) -> Result<(TokenStore, MasterKey, Vec<StoredObject>), Failure> {
    let shown = dir.display();
    let store =
        TokenStore::open_with(dir, opts).map_err(|e| Failure(format!("open {shown}: {e}")))?;
    let mk = store
        .login_user(user_pin.as_bytes())
        .map_err(|e| Failure(format!("login to {shown}: {e}")))?;
    let objects = store
        .load_objects(&mk)
        .map_err(|e| Failure(format!("load objects of {shown}: {e}")))?;
    Ok((store, mk, objects))
}

impl Snapshot {
    /// The file form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (label, attrs) in &self.objects {
            let _ = writeln!(out, "object {}", crate::hex(label));
            for (ty, v) in attrs {
                let _ = writeln!(out, "attr {ty:08x} {v}");
            }
        }
        out
    }

    /// Reads the file form.
    pub fn parse(path: &str) -> Result<Snapshot, Failure> {
        let text = std::fs::read_to_string(path).step(&format!("read {path}"))?;
        let mut snap = Snapshot::default();
        let mut current: Option<Vec<u8>> = None;
        for line in text.lines() {
            if let Some(l) = line.strip_prefix("object ") {
                let label = crate::unhex(l)?;
                snap.objects.insert(label.clone(), Attrs::new());
                current = Some(label);
            } else if let Some(rest) = line.strip_prefix("attr ") {
                let (ty, v) = rest
                    .split_once(' ')
                    .ok_or_else(|| Failure(format!("{path}: bad line {line:?}")))?;
                let ty = u32::from_str_radix(ty, 16).step(path)?;
                let obj = current
                    .as_ref()
                    .and_then(|l| snap.objects.get_mut(l))
                    .ok_or_else(|| Failure(format!("{path}: attribute before any object")))?;
                obj.insert(ty, v.to_owned());
            } else {
                return Err(Failure(format!("{path}: bad line {line:?}")));
            }
        }
        Ok(snap)
    }
}

/// Which objects' `CKA_IBM_OPAQUE` must have changed between two snapshots.
pub enum OpaqueRule {
    /// None: every attribute of every object is the same.
    Unchanged,
    /// These labels (or, with `None`, every object that has one).
    Changed(Option<BTreeSet<Vec<u8>>>),
}

fn same(a: &str, b: &str) -> bool {
    a == b || a == SENSITIVE || b == SENSITIVE
}

/// Compares snapshot `a` (named `an` in messages) with `b`: the same objects,
/// the same attribute types, the same values, except as `rule` says for
/// `CKA_IBM_OPAQUE`. Returns one line per difference, naming the object and
/// the attribute.
pub fn compare(a: &Snapshot, an: &str, b: &Snapshot, bn: &str, rule: &OpaqueRule) -> Vec<String> {
    let mut out = Vec::new();
    for label in a.objects.keys().filter(|l| !b.objects.contains_key(*l)) {
        out.push(format!(
            "object {}: in {an}, missing in {bn}",
            show_label(label)
        ));
    }
    for label in b.objects.keys().filter(|l| !a.objects.contains_key(*l)) {
        out.push(format!(
            "object {}: in {bn}, missing in {an}",
            show_label(label)
        ));
    }
    for (label, x) in &a.objects {
        let Some(y) = b.objects.get(label) else {
            continue;
        };
        let must_change = match rule {
            OpaqueRule::Unchanged => false,
            OpaqueRule::Changed(None) => x.contains_key(&IBM_OPAQUE),
            OpaqueRule::Changed(Some(set)) => set.contains(label),
        };
        let types: BTreeSet<u32> = x.keys().chain(y.keys()).copied().collect();
        for ty in types {
            let what = format!("object {}: attribute {}", show_label(label), show_type(ty));
            match (x.get(&ty), y.get(&ty)) {
                (Some(_), None) => out.push(format!("{what}: in {an}, missing in {bn}")),
                (None, Some(_)) => out.push(format!("{what}: in {bn}, missing in {an}")),
                (Some(v), Some(w)) if ty == IBM_OPAQUE && must_change => out.extend(
                    (v == w).then(|| {
                        format!(
                            "{what}: expected a re-enciphered key token, {an} and {bn} hold the same"
                        )
                    }),
                ),
                (Some(v), Some(w)) if !same(v, w) => out.push(format!(
                    "{what} differs: {an} {}, {bn} {}",
                    show_value(v),
                    show_value(w)
                )),
                _ => {}
            }
        }
    }
    out
}

/// The differential check of two migrations of the same store: `theirs`
/// (Debian's pkcscca 3.8.1, online) and `ours` (offline), both from `orig`.
///
/// Expected: the same objects with the same attributes; every key token that
/// 3.8.1 handles (it finds only objects with `CKA_EXTRACTABLE = TRUE`, so only
/// secret and private keys that are extractable) is re-enciphered by both to
/// the same bytes; every other key token (non-extractable keys, public-key
/// objects, which in 3.8.1's CCA token hold the whole secure key token) is
/// left as it was by 3.8.1 and re-enciphered by ours. Any other difference is
/// reported. Returns the differences and, separately, the deliberate ones
/// found (for the log).
pub fn differential(
    orig: &Snapshot,
    theirs: &Snapshot,
    ours: &Snapshot,
) -> (Vec<String>, Vec<String>) {
    let mut bad = compare(
        theirs,
        "3.8.1's result",
        ours,
        "our result",
        &OpaqueRule::Unchanged,
    )
    .into_iter()
    .filter(|l| !l.contains(&show_type(IBM_OPAQUE)))
    .collect::<Vec<_>>();
    let mut deliberate = Vec::new();
    for (label, o) in &orig.objects {
        let Some(before) = o.get(&IBM_OPAQUE) else {
            continue;
        };
        let what = format!(
            "object {}: attribute {}",
            show_label(label),
            show_type(IBM_OPAQUE)
        );
        let (Some(t), Some(u)) = (
            theirs.objects.get(label).and_then(|x| x.get(&IBM_OPAQUE)),
            ours.objects.get(label).and_then(|x| x.get(&IBM_OPAQUE)),
        ) else {
            bad.push(format!("{what}: missing after a migration"));
            continue;
        };
        let handled_by_381 = o.get(&EXTRACTABLE).map(String::as_str) == Some("Extractable(true)");
        if u == before {
            bad.push(format!("{what}: our pkcscca left it unchanged"));
        }
        if handled_by_381 {
            if t == before {
                bad.push(format!(
                    "{what}: extractable, yet pkcscca 3.8.1 left it unchanged"
                ));
            } else if t != u {
                bad.push(format!(
                    "{what}: the two tools re-enciphered it differently: 3.8.1 {}, ours {}",
                    show_value(t),
                    show_value(u)
                ));
            }
        } else if t != before {
            bad.push(format!(
                "{what}: pkcscca 3.8.1 changed a key it should not find (CKA_EXTRACTABLE is not TRUE)"
            ));
        } else {
            deliberate.push(format!(
                "object {}: CKA_EXTRACTABLE {}: 3.8.1 left its token alone, ours re-enciphered it",
                show_label(label),
                o.get(&EXTRACTABLE).map_or("absent", String::as_str)
            ));
        }
    }
    (bad, deliberate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(objects: &[(&str, &[(u32, &str)])]) -> Snapshot {
        let mut s = Snapshot::default();
        for (label, attrs) in objects {
            s.objects.insert(
                label.as_bytes().to_vec(),
                attrs.iter().map(|(t, v)| (*t, (*v).to_owned())).collect(),
            );
        }
        s
    }

    #[test]
    fn render_matches_what_cryptoki_makes_of_pkcs11_values() {
        assert_eq!(render(0x1, &[1]), "Token(true)");
        assert_eq!(
            render(0x161, &16u64.to_ne_bytes()),
            "ValueLen(Ulong { val: 16 })"
        );
        assert_eq!(render(0x3, b"k"), "Label([107])");
        // A boolean of the wrong length cannot be parsed: its length is shown.
        assert_eq!(render(0x1, &[1, 0]), "? len 2");
    }

    #[test]
    fn compare_names_object_and_attribute() {
        let a = snap(&[("k1", &[(0x104, "Encrypt(true)"), (0x11, SENSITIVE)])]);
        let b = snap(&[("k1", &[(0x104, "Encrypt(false)"), (0x11, "Value([1])")])]);
        let d = compare(&a, "p11", &b, "store", &OpaqueRule::Unchanged);
        assert_eq!(
            d,
            ["object \"k1\": attribute CKA_ENCRYPT (0x104) differs: p11 Encrypt(true), store Encrypt(false)"]
        );
        let c = snap(&[("k1", &[(0x104, "Encrypt(true)")]), ("k2", &[])]);
        let d = compare(&a, "p11", &c, "store", &OpaqueRule::Unchanged);
        assert_eq!(
            d,
            [
                "object \"k2\": in store, missing in p11",
                "object \"k1\": attribute CKA_VALUE (0x11): in p11, missing in store"
            ]
        );
    }

    #[test]
    fn changed_opaque_rule_requires_a_new_token() {
        let a = snap(&[("k", &[(IBM_OPAQUE, "A")]), ("d", &[(0x11, "V")])]);
        let same = compare(&a, "a", &a, "b", &OpaqueRule::Changed(None));
        assert_eq!(same.len(), 1, "{same:?}");
        assert!(same[0].contains("expected a re-enciphered key token"));
        let b = snap(&[("k", &[(IBM_OPAQUE, "B")]), ("d", &[(0x11, "V")])]);
        assert!(compare(&a, "a", &b, "b", &OpaqueRule::Changed(None)).is_empty());
        assert_eq!(compare(&a, "a", &b, "b", &OpaqueRule::Unchanged).len(), 1);
    }

    #[test]
    fn differential_accepts_only_the_documented_differences() {
        let orig = snap(&[
            (
                "x",
                &[(IBM_OPAQUE, "old-x"), (EXTRACTABLE, "Extractable(true)")],
            ),
            (
                "n",
                &[(IBM_OPAQUE, "old-n"), (EXTRACTABLE, "Extractable(false)")],
            ),
            ("pub", &[(IBM_OPAQUE, "old-p")]),
        ]);
        let theirs = snap(&[
            (
                "x",
                &[(IBM_OPAQUE, "new-x"), (EXTRACTABLE, "Extractable(true)")],
            ),
            (
                "n",
                &[(IBM_OPAQUE, "old-n"), (EXTRACTABLE, "Extractable(false)")],
            ),
            ("pub", &[(IBM_OPAQUE, "old-p")]),
        ]);
        let ours = snap(&[
            (
                "x",
                &[(IBM_OPAQUE, "new-x"), (EXTRACTABLE, "Extractable(true)")],
            ),
            (
                "n",
                &[(IBM_OPAQUE, "new-n"), (EXTRACTABLE, "Extractable(false)")],
            ),
            ("pub", &[(IBM_OPAQUE, "new-p")]),
        ]);
        let (bad, deliberate) = differential(&orig, &theirs, &ours);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(deliberate.len(), 2);

        // Ours re-enciphered an extractable key to other bytes than 3.8.1.
        let mut wrong = snap(&[]);
        wrong.objects.clone_from(&ours.objects);
        if let Some(x) = wrong.objects.get_mut(b"x".as_slice()) {
            x.insert(IBM_OPAQUE, "other".into());
        }
        let (bad, _) = differential(&orig, &theirs, &wrong);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("object \"x\": attribute CKA_IBM_OPAQUE"));

        // Ours left a non-extractable key alone.
        let (bad, _) = differential(&orig, &theirs, &theirs);
        assert_eq!(bad.len(), 2, "{bad:?}");
    }
}
