//! The flattened object: a 16-byte header and a list of `CK_ATTRIBUTE_32`
//! records, in the writing host's byte order in both store formats.
//!
//! Mirrors `object.c: object_flatten()` / `object_restore_withSize()` and
//! `template.c: template_flatten()` / `template_unflatten_withSize()`.
//! Every record is kept, in disk order, including unknown types and
//! duplicates, so that an unchanged object re-encodes to identical bytes.
//! Nested templates (`CKA_WRAP_TEMPLATE` …) are kept as opaque value bytes.

#[cfg(feature = "testkit")]
use std::fmt::Write as _;

use zeroize::Zeroizing;

use super::bytes::{ByteOrder, Cursor, ParseError};
use super::ObjectName;
use crate::pkcs11::{AttrType, KeyType, ObjectClass};

/// Size of the flattened object header (class, count, name).
const OBJ_HEADER_LEN: usize = 16;
/// Size of one attribute record header (type, pValue, ulValueLen).
const ATTR_HEADER_LEN: usize = 12;

/// How a value is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// Value bytes stored as they are.
    Raw,
    /// A narrowed `CK_ULONG` (`AttrType::NARROWED`): 4 bytes on disk, 8 in memory.
    Narrowed,
}

/// One attribute record.
///
/// The value is what PKCS#11 `C_GetAttributeValue` returns on the writing
/// host: narrowed `CK_ULONG`s are widened to 8 bytes in the template's byte
/// order. Values may be secret, so they live in zeroizing buffers.
#[derive(Clone)]
pub struct Attribute {
    ty: AttrType,
    value: Zeroizing<Vec<u8>>,
    encoding: Encoding,
    /// The `pValue` word as read (always 0 in practice); written back unchanged.
    pvalue: u32,
}

impl Attribute {
    /// The attribute type.
    #[cfg(feature = "testkit")]
    pub fn ty(&self) -> AttrType {
        self.ty
    }

    /// The value bytes (PKCS#11 view).
    #[cfg(feature = "testkit")]
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// The attribute list of one object, in disk order.
#[derive(Clone)]
pub struct Template {
    order: ByteOrder,
    attrs: Vec<Attribute>,
}

impl Template {
    /// An empty template whose `CK_ULONG`s use `order`.
    #[cfg(feature = "testkit")]
    pub fn new(order: ByteOrder) -> Self {
        Template {
            order,
            attrs: Vec::new(),
        }
    }

    /// The byte order of `CK_ULONG` values in this template.
    pub fn byte_order(&self) -> ByteOrder {
        self.order
    }

    /// Number of records (duplicates counted).
    #[cfg(feature = "testkit")]
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// Whether there are no records.
    #[cfg(feature = "testkit")]
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// All records in disk order.
    #[cfg(feature = "testkit")]
    pub fn iter(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter()
    }

    /// The value of `ty`; the last record wins if the type repeats (as in
    /// openCryptoki's loader, `template.c: template_update_attribute()`).
    pub fn get(&self, ty: AttrType) -> Option<&[u8]> {
        self.attrs
            .iter()
            .rev()
            .find(|a| a.ty == ty)
            .map(|a| a.value.as_slice())
    }

    /// A `CK_ULONG` value (8 bytes, or a 4-byte value as stored).
    pub fn get_ulong(&self, ty: AttrType) -> Option<u64> {
        let v = self.get(ty)?;
        match v.len() {
            8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(v);
                Some(self.order.u64(a))
            }
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(v);
                Some(u64::from(self.order.u32(a)))
            }
            _ => None,
        }
    }

    /// A `CK_BBOOL` value.
    pub fn get_bool(&self, ty: AttrType) -> Option<bool> {
        match self.get(ty)? {
            [b] => Some(*b != 0),
            _ => None,
        }
    }

    /// `CKA_CLASS`.
    pub fn class(&self) -> Option<ObjectClass> {
        self.get_ulong(AttrType::CLASS).map(ObjectClass)
    }

    /// `CKA_KEY_TYPE`.
    pub fn key_type(&self) -> Option<KeyType> {
        self.get_ulong(AttrType::KEY_TYPE).map(KeyType)
    }

    /// Sets `ty` to `value`, replacing the record that [`get`](Self::get)
    /// returns in place, or appending a new record. A narrowed type given an
    /// 8-byte value is stored narrowed (truncated to 32 bits, as openCryptoki does).
    pub fn set(&mut self, ty: AttrType, value: Vec<u8>) {
        let encoding = if ty.is_narrowed() && value.len() == 8 {
            Encoding::Narrowed
        } else {
            Encoding::Raw
        };
        let value = Zeroizing::new(value);
        match self.attrs.iter_mut().rev().find(|a| a.ty == ty) {
            Some(a) => {
                a.value = value;
                a.encoding = encoding;
            }
            None => self.attrs.push(Attribute {
                ty,
                value,
                encoding,
                pvalue: 0,
            }),
        }
    }

    /// Sets a `CK_ULONG` attribute (8 bytes in the template's order).
    #[cfg(feature = "testkit")]
    pub fn set_ulong(&mut self, ty: AttrType, v: u64) {
        self.set(ty, self.order.u64_bytes(v).to_vec());
    }

    /// Sets a `CK_BBOOL` attribute.
    #[cfg(feature = "testkit")]
    pub fn set_bool(&mut self, ty: AttrType, v: bool) {
        self.set(ty, vec![u8::from(v)]);
    }

    /// Removes every record of `ty`; returns how many were removed.
    #[cfg(feature = "testkit")]
    pub fn remove(&mut self, ty: AttrType) -> usize {
        let before = self.attrs.len();
        self.attrs.retain(|a| a.ty != ty);
        before - self.attrs.len()
    }

    /// A text dump: one line per record, `NAME (0xTYPE) [len] hex`. Values of
    /// secret types ([`AttrType::is_secret`]) show only their length unless
    /// `show_secrets` is set. Stable, for golden tests (feature `testkit`).
    #[cfg(feature = "testkit")]
    pub fn dump(&self, show_secrets: bool) -> String {
        let mut out = String::new();
        for a in &self.attrs {
            let _ = write!(out, "  {} [{}]", a.ty, a.value.len());
            if a.ty.is_secret() && !show_secrets && !a.value.is_empty() {
                out.push_str(" <secret>");
            } else if !a.value.is_empty() {
                out.push(' ');
                for b in a.value.iter() {
                    let _ = write!(out, "{b:02x}");
                }
            }
            if a.encoding == Encoding::Narrowed {
                out.push_str(" (u32 on disk)");
            }
            let name = match a.ty {
                AttrType::CLASS => self.get_ulong(a.ty).and_then(|v| ObjectClass(v).name()),
                AttrType::KEY_TYPE => self.get_ulong(a.ty).and_then(|v| KeyType(v).name()),
                _ => None,
            };
            if let Some(n) = name {
                let _ = write!(out, " {n}");
            }
            out.push('\n');
        }
        out
    }
}

/// Types and lengths only: values may be secret.
impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.attrs
                    .iter()
                    .map(|a| format!("{}[{}]", a.ty, a.value.len())),
            )
            .finish()
    }
}

/// A decoded flattened object.
#[derive(Clone)]
pub(crate) struct FlatObject {
    /// The header's `class` word (meaningless, usually 0; kept for round trip).
    pub(crate) class_word: u32,
    /// The name stored inside the object.
    pub(crate) name: ObjectName,
    /// The attributes.
    pub(crate) template: Template,
    /// Bytes after the last record (ignored by openCryptoki; kept for round trip).
    pub(crate) trailer: Zeroizing<Vec<u8>>,
}

/// Parses a flattened object in byte order `order`.
///
/// Mirrors `object.c: object_restore_withSize()`.
pub(crate) fn decode_flat(buf: &[u8], order: ByteOrder) -> Result<FlatObject, ParseError> {
    let mut c = Cursor::new(buf);
    let class_word = c.u32(order, "object header class")?;
    let count_off = c.offset();
    let count = c.u32(order, "attribute count")?;
    let name = ObjectName::from_bytes(c.array("object name")?).ok_or(ParseError::Malformed {
        offset: 8,
        what: "invalid object name inside object",
    })?;
    // Each record needs at least its 12-byte header: bound the count before looping.
    if (count as usize) > c.remaining() / ATTR_HEADER_LEN {
        return Err(ParseError::Oversized {
            offset: count_off,
            len: u64::from(count),
            what: "attribute count",
        });
    }
    let mut attrs = Vec::new();
    for _ in 0..count {
        let ty = AttrType(c.u32(order, "attribute type")?);
        let pvalue = c.u32(order, "attribute pValue")?;
        let len_off = c.offset();
        let len = c.u32(order, "attribute length")?;
        let raw = c
            .bytes(len as usize, "attribute value")
            .map_err(|_| ParseError::Oversized {
                offset: len_off,
                len: u64::from(len),
                what: "attribute length",
            })?;
        let (value, encoding) = if ty.is_narrowed() && raw.len() == 4 {
            let mut a = [0u8; 4];
            a.copy_from_slice(raw);
            let wide = order.u64_bytes(u64::from(order.u32(a)));
            (Zeroizing::new(wide.to_vec()), Encoding::Narrowed)
        } else {
            (Zeroizing::new(raw.to_vec()), Encoding::Raw)
        };
        attrs.push(Attribute {
            ty,
            value,
            encoding,
            pvalue,
        });
    }
    let trailer = Zeroizing::new(c.rest().to_vec());
    Ok(FlatObject {
        class_word,
        name,
        template: Template { order, attrs },
        trailer,
    })
}

/// Encodes a flattened object. Mirrors `object.c: object_flatten()`.
pub(crate) fn encode_flat(obj: &FlatObject) -> Zeroizing<Vec<u8>> {
    let order = obj.template.order;
    let mut out = Zeroizing::new(Vec::with_capacity(
        OBJ_HEADER_LEN
            + obj
                .template
                .attrs
                .iter()
                .map(|a| ATTR_HEADER_LEN + a.value.len())
                .sum::<usize>()
            + obj.trailer.len(),
    ));
    out.extend_from_slice(&order.u32_bytes(obj.class_word));
    out.extend_from_slice(&order.u32_bytes(obj.template.attrs.len() as u32));
    out.extend_from_slice(obj.name.as_bytes());
    for a in &obj.template.attrs {
        out.extend_from_slice(&order.u32_bytes(a.ty.0));
        out.extend_from_slice(&order.u32_bytes(a.pvalue));
        match a.encoding {
            Encoding::Narrowed => {
                let mut w = [0u8; 8];
                if let Some(s) = a.value.get(..8) {
                    w.copy_from_slice(s);
                }
                // openCryptoki casts CK_ULONG to CK_ULONG_32.
                let narrow = order.u64(w) as u32;
                out.extend_from_slice(&order.u32_bytes(4));
                out.extend_from_slice(&order.u32_bytes(narrow));
            }
            Encoding::Raw => {
                out.extend_from_slice(&order.u32_bytes(a.value.len() as u32));
                out.extend_from_slice(&a.value);
            }
        }
    }
    out.extend_from_slice(&obj.trailer);
    out
}

/// Whether `buf` parses as a flattened object in `order` with every byte used.
/// Used to guess the writer's byte order.
pub(crate) fn plausible_in(buf: &[u8], order: ByteOrder) -> bool {
    matches!(decode_flat(buf, order), Ok(f) if f.trailer.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::bytes::unhex as hex;

    #[test]
    fn worked_example_round_trips() {
        // CLASS (narrowed), TOKEN and LABEL as `template_flatten()` lays them out.
        let mut t = Template::new(ByteOrder::Little);
        t.set_ulong(AttrType::CLASS, 4);
        t.set_bool(AttrType::TOKEN, true);
        t.set(AttrType::LABEL, b"k1".to_vec());
        let obj = FlatObject {
            class_word: 0,
            name: ObjectName::from_bytes(*b"OBx1Y2z3").unwrap(),
            template: t,
            trailer: Zeroizing::new(vec![]),
        };
        let enc = encode_flat(&obj);
        assert_eq!(
            enc.as_slice(),
            hex(
                "00000000 03000000 4f42783159327a33 00000000 00000000 04000000 04000000 \
                 01000000 00000000 01000000 01 03000000 00000000 02000000 6b31"
            )
        );
        assert_eq!(enc.len(), 59);
        let back = decode_flat(&enc, ByteOrder::Little).unwrap();
        assert_eq!(back.template.get_ulong(AttrType::CLASS), Some(4));
        assert_eq!(back.template.get(AttrType::CLASS).unwrap().len(), 8);
        assert_eq!(encode_flat(&back).as_slice(), enc.as_slice());
        assert!(plausible_in(&enc, ByteOrder::Little));
        assert!(!plausible_in(&enc, ByteOrder::Big));

        let mut be = obj.clone();
        be.template.order = ByteOrder::Big;
        be.template.set_ulong(AttrType::CLASS, 4);
        let enc_be = encode_flat(&be);
        assert_eq!(
            &enc_be[..32],
            &hex("00000000 00000003 4f42783159327a33 00000000 00000000 00000004 00000004")[..]
        );
    }

    #[test]
    fn huge_count_and_length_are_errors() {
        let mut b = hex("00000000 ffffffff 4f42783159327a33");
        assert!(matches!(
            decode_flat(&b, ByteOrder::Little),
            Err(ParseError::Oversized { .. })
        ));
        b = hex("00000000 01000000 4f42783159327a33 03000000 00000000 ffffff7f");
        assert!(matches!(
            decode_flat(&b, ByteOrder::Little),
            Err(ParseError::Oversized { .. })
        ));
    }

    #[test]
    fn duplicates_kept_last_wins_and_set_keeps_position() {
        let mut t = Template::new(ByteOrder::Little);
        t.set(AttrType::LABEL, b"a".to_vec());
        t.attrs.push(Attribute {
            ty: AttrType::ID,
            value: Zeroizing::new(vec![1]),
            encoding: Encoding::Raw,
            pvalue: 0,
        });
        t.attrs.push(Attribute {
            ty: AttrType::LABEL,
            value: Zeroizing::new(b"b".to_vec()),
            encoding: Encoding::Raw,
            pvalue: 0,
        });
        assert_eq!(t.get(AttrType::LABEL), Some(&b"b"[..]));
        t.set(AttrType::ID, vec![2]);
        let tys: Vec<_> = t.iter().map(|a| a.ty()).collect();
        assert_eq!(tys, [AttrType::LABEL, AttrType::ID, AttrType::LABEL]);
        assert_eq!(t.get(AttrType::ID), Some(&[2u8][..]));
    }
}
