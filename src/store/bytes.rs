//! A panic-free cursor over bytes read from disk, and the byte order parameter.
//!
//! Every read is bounds-checked and returns a [`ParseError`] carrying the
//! offset; a failed read leaves the cursor at the end, so nothing after a
//! failure is mistaken for valid data. Lengths from disk are never used to
//! allocate before the bytes are known to exist.

use std::path::Path;

use super::error::StoreError;

/// Byte order of integers in a file or an object body.
///
/// openCryptoki writes old-format headers, NVTOK.DAT (old) and every
/// flattened object body in the writing host's order, and the new-format
/// headers and NVTOK.DAT in big-endian (`usr/lib/common/loadsave.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Little-endian (x86_64, ppc64le, aarch64).
    Little,
    /// Big-endian (s390x, AIX).
    Big,
}

impl ByteOrder {
    /// The order of the machine running this code.
    pub const fn native() -> ByteOrder {
        if cfg!(target_endian = "big") {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }

    /// The other byte order.
    #[cfg(feature = "testkit")]
    pub const fn swapped(self) -> ByteOrder {
        match self {
            ByteOrder::Little => ByteOrder::Big,
            ByteOrder::Big => ByteOrder::Little,
        }
    }

    /// Decodes a u32.
    pub fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        }
    }

    /// Decodes a u64.
    pub fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            ByteOrder::Little => u64::from_le_bytes(b),
            ByteOrder::Big => u64::from_be_bytes(b),
        }
    }

    /// Encodes a u32.
    pub fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    /// Encodes a u64.
    pub fn u64_bytes(self, v: u64) -> [u8; 8] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }
}

/// What went wrong while parsing a byte buffer, before we know its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not enough bytes for `what` at `offset`.
    Truncated {
        /// Offset where the field starts.
        offset: u64,
        /// The field.
        what: &'static str,
    },
    /// The bytes at `offset` are not valid.
    Malformed {
        /// Offset of the bad field.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A length field exceeds its limit.
    Oversized {
        /// Offset of the length field.
        offset: u64,
        /// The length.
        len: u64,
        /// Which length.
        what: &'static str,
    },
}

impl ParseError {
    /// Attaches the file name.
    pub(crate) fn at(self, file: &Path) -> StoreError {
        let file = file.to_path_buf();
        match self {
            ParseError::Truncated { offset, what } => StoreError::Truncated { file, offset, what },
            ParseError::Malformed { offset, what } => StoreError::Malformed { file, offset, what },
            ParseError::Oversized { offset, len, what } => StoreError::Oversized {
                file,
                offset,
                len,
                what,
            },
        }
    }

    /// Shifts the offset by `base` (for buffers embedded in a larger file).
    pub(crate) fn shifted(self, base: u64) -> ParseError {
        match self {
            ParseError::Truncated { offset, what } => ParseError::Truncated {
                offset: offset.saturating_add(base),
                what,
            },
            ParseError::Malformed { offset, what } => ParseError::Malformed {
                offset: offset.saturating_add(base),
                what,
            },
            ParseError::Oversized { offset, len, what } => ParseError::Oversized {
                offset: offset.saturating_add(base),
                len,
                what,
            },
        }
    }
}

/// A bounds-checked reader over a byte slice.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Starts at offset 0 of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Current offset.
    pub(crate) fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes, or fails and moves to the end.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        match start
            .checked_add(n)
            .and_then(|end| self.data.get(start..end))
        {
            Some(s) => {
                self.pos = start + n;
                Ok(s)
            }
            None => {
                self.pos = self.data.len();
                Err(ParseError::Truncated {
                    offset: start as u64,
                    what,
                })
            }
        }
    }

    /// Takes a fixed-size array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], ParseError> {
        let s = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads a u8.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a u32 in `order`.
    pub(crate) fn u32(&mut self, order: ByteOrder, what: &'static str) -> Result<u32, ParseError> {
        Ok(order.u32(self.array(what)?))
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.data.get(self.pos..).unwrap_or(&[]);
        self.pos = self.data.len();
        s
    }
}

/// Reads a u32 at a fixed offset of a buffer already checked to be long enough;
/// returns 0 if it is not (callers check sizes first).
pub(crate) fn u32_at(buf: &[u8], off: usize, order: ByteOrder) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = buf.get(off..off.saturating_add(4)) {
        a.copy_from_slice(s);
    }
    order.u32(a)
}

/// Reads a u64 at a fixed offset; see [`u32_at`].
pub(crate) fn u64_at(buf: &[u8], off: usize, order: ByteOrder) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = buf.get(off..off.saturating_add(8)) {
        a.copy_from_slice(s);
    }
    order.u64(a)
}

/// Copies `src` into `buf` at `off` if it fits (it always does for the fixed
/// layouts this is used on; out-of-range writes are dropped, never a panic).
#[cfg(feature = "testkit")]
pub(crate) fn put(buf: &mut [u8], off: usize, src: &[u8]) {
    if let Some(d) = buf.get_mut(off..off.saturating_add(src.len())) {
        d.copy_from_slice(src);
    }
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc |= x ^ y;
    }
    acc == 0
}

/// Parses hex with optional whitespace (unit-test helper).
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .filter_map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_fails_without_panicking_and_drains() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u8("a").unwrap(), 1);
        assert!(matches!(
            c.u32(ByteOrder::Little, "b"),
            Err(ParseError::Truncated { offset: 1, .. })
        ));
        assert_eq!(c.remaining(), 0);
        assert!(c.bytes(usize::MAX, "c").is_err());
    }

    #[test]
    fn orders() {
        assert_eq!(ByteOrder::Big.u32([0, 3, 0, 12]), 0x0003_000C);
        assert_eq!(ByteOrder::Little.u32_bytes(5), [5, 0, 0, 0]);
        assert_eq!(ByteOrder::Little.swapped(), ByteOrder::Big);
        assert!(ct_eq(b"ab", b"ab"));
        assert!(!ct_eq(b"ab", b"ac"));
        assert!(!ct_eq(b"ab", b"abc"));
    }
}
