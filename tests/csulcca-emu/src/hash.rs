//! Multi-part hashing with its state in the caller's chaining vector, as
//! CSNBOWH (One-Way Hash) and CSNBHMG/CSNBHMV FIRST/MIDDLE/LAST need.
//!
//! CCA requires FIRST and MIDDLE parts to be whole hash blocks (openCryptoki
//! buffers the rest), so the state between calls is only the hash's chaining
//! words and the byte count. *Emulator choice* for the 128-byte chaining
//! vector: byte 0 algorithm (1 SHA-1, 2 SHA-224, 3 SHA-256, 4 SHA-384,
//! 5 SHA-512), bytes 8–15 bytes hashed so far (big-endian), bytes 16–79 the
//! eight state words (big-endian, 64-bit slots).

use sha2::digest::generic_array::GenericArray;

use crate::codes::*;
use crate::Fail;

/// Size of the chaining vector callers pass.
pub const CHAIN_LEN: usize = 128;

/// A SHA algorithm CCA names by keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// SHA-1.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Alg {
    /// The algorithm for a rule-array keyword.
    pub fn from_keyword(k: &str) -> Option<Alg> {
        Some(match k {
            "SHA-1" => Alg::Sha1,
            "SHA-224" => Alg::Sha224,
            "SHA-256" => Alg::Sha256,
            "SHA-384" => Alg::Sha384,
            "SHA-512" => Alg::Sha512,
            _ => return None,
        })
    }

    fn id(self) -> u8 {
        match self {
            Alg::Sha1 => 1,
            Alg::Sha224 => 2,
            Alg::Sha256 => 3,
            Alg::Sha384 => 4,
            Alg::Sha512 => 5,
        }
    }

    /// Block length in bytes.
    pub fn block_len(self) -> usize {
        match self {
            Alg::Sha384 | Alg::Sha512 => 128,
            _ => 64,
        }
    }

    /// Digest length in bytes.
    pub fn out_len(self) -> usize {
        match self {
            Alg::Sha1 => 20,
            Alg::Sha224 => 28,
            Alg::Sha256 => 32,
            Alg::Sha384 => 48,
            Alg::Sha512 => 64,
        }
    }

    fn iv(self) -> [u64; 8] {
        match self {
            Alg::Sha1 => [
                0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0, 0, 0, 0,
            ],
            Alg::Sha224 => [
                0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7,
                0xbefa4fa4,
            ],
            Alg::Sha256 => [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            Alg::Sha384 => [
                0xcbbb9d5dc1059ed8,
                0x629a292a367cd507,
                0x9159015a3070dd17,
                0x152fecd8f70e5939,
                0x67332667ffc00b31,
                0x8eb44a8768581511,
                0xdb0c2e0d64f98fa7,
                0x47b5481dbefa4fa4,
            ],
            Alg::Sha512 => [
                0x6a09e667f3bcc908,
                0xbb67ae8584caa73b,
                0x3c6ef372fe94f82b,
                0xa54ff53a5f1d36f1,
                0x510e527fade682d1,
                0x9b05688c2b3e6c1f,
                0x1f83d9abfb41bd6b,
                0x5be0cd19137e2179,
            ],
        }
    }
}

/// A hash in progress.
#[derive(Clone, Debug)]
pub struct Stream {
    alg: Alg,
    state: [u64; 8],
    total: u64,
}

impl Stream {
    /// A fresh hash.
    pub fn new(alg: Alg) -> Stream {
        Stream {
            alg,
            state: alg.iv(),
            total: 0,
        }
    }

    /// Restores a hash of `alg` from a chaining vector (8/47-style 8/72 when
    /// it does not hold one).
    pub fn load(alg: Alg, cv: &[u8]) -> Result<Stream, Fail> {
        if cv.first() != Some(&alg.id()) {
            return Err(UNUSABLE);
        }
        let word = |i: usize| -> Result<u64, Fail> {
            let b = cv.get(i..i + 8).ok_or(SHORT_BUFFER)?;
            Ok(u64::from_be_bytes(b.try_into().map_err(|_| SHORT_BUFFER)?))
        };
        let mut state = [0u64; 8];
        for (i, s) in state.iter_mut().enumerate() {
            *s = word(16 + 8 * i)?;
        }
        Ok(Stream {
            alg,
            state,
            total: word(8)?,
        })
    }

    /// The chaining vector for this state.
    pub fn save(&self) -> [u8; CHAIN_LEN] {
        let mut cv = [0u8; CHAIN_LEN];
        cv[0] = self.alg.id();
        cv[8..16].copy_from_slice(&self.total.to_be_bytes());
        for (dst, s) in cv[16..80].chunks_exact_mut(8).zip(&self.state) {
            dst.copy_from_slice(&s.to_be_bytes());
        }
        cv
    }

    fn compress(&mut self, blocks: &[u8]) {
        match self.alg {
            Alg::Sha1 => {
                let mut st = [0u32; 5];
                st.iter_mut()
                    .zip(&self.state)
                    .for_each(|(d, s)| *d = *s as u32);
                let b: Vec<_> = blocks
                    .chunks_exact(64)
                    .map(|c| *GenericArray::from_slice(c))
                    .collect();
                sha1::compress(&mut st, &b);
                self.state
                    .iter_mut()
                    .zip(st)
                    .for_each(|(d, s)| *d = u64::from(s));
            }
            Alg::Sha224 | Alg::Sha256 => {
                let mut st = [0u32; 8];
                st.iter_mut()
                    .zip(&self.state)
                    .for_each(|(d, s)| *d = *s as u32);
                let b: Vec<_> = blocks
                    .chunks_exact(64)
                    .map(|c| *GenericArray::from_slice(c))
                    .collect();
                sha2::compress256(&mut st, &b);
                self.state
                    .iter_mut()
                    .zip(st)
                    .for_each(|(d, s)| *d = u64::from(s));
            }
            Alg::Sha384 | Alg::Sha512 => {
                let b: Vec<_> = blocks
                    .chunks_exact(128)
                    .map(|c| *GenericArray::from_slice(c))
                    .collect();
                sha2::compress512(&mut self.state, &b);
            }
        }
    }

    /// Hashes whole blocks (a FIRST or MIDDLE part); other lengths are 8/72.
    pub fn update_blocks(&mut self, data: &[u8]) -> Result<(), Fail> {
        if !data.len().is_multiple_of(self.alg.block_len()) {
            return Err(SHORT_BUFFER);
        }
        self.compress(data);
        self.total = self.total.wrapping_add(data.len() as u64);
        Ok(())
    }

    /// Hashes the last part (any length) and returns the digest.
    pub fn finish(mut self, tail: &[u8]) -> Vec<u8> {
        let bl = self.alg.block_len();
        let whole = tail.len() / bl * bl;
        let (body, rest) = tail.split_at(whole);
        self.compress(body);
        let bits = u128::from(self.total.wrapping_add(tail.len() as u64)) * 8;
        let len_field = if bl == 128 { 16 } else { 8 };
        let mut last = rest.to_vec();
        last.push(0x80);
        while (last.len() + len_field) % bl != 0 {
            last.push(0);
        }
        if bl == 128 {
            last.extend_from_slice(&bits.to_be_bytes());
        } else {
            last.extend_from_slice(&(bits as u64).to_be_bytes());
        }
        self.compress(&last);
        let out: Vec<u8> = match self.alg {
            Alg::Sha1 | Alg::Sha224 | Alg::Sha256 => self
                .state
                .iter()
                .flat_map(|w| (*w as u32).to_be_bytes())
                .collect(),
            _ => self.state.iter().flat_map(|w| w.to_be_bytes()).collect(),
        };
        out.into_iter().take(self.alg.out_len()).collect()
    }
}

/// Result of one part of a multi-part hash or HMAC: the output (ONLY and
/// LAST) or the next chaining vector (FIRST and MIDDLE).
pub type PartOut = (Option<Vec<u8>>, Option<[u8; CHAIN_LEN]>);

/// Which part of a multi-part operation a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole message.
    Only,
    /// First part (whole blocks).
    First,
    /// Middle part (whole blocks).
    Middle,
    /// Last part.
    Last,
}

impl Part {
    /// The part for a rule-array keyword.
    pub fn from_keyword(k: &str) -> Option<Part> {
        Some(match k {
            "ONLY" => Part::Only,
            "FIRST" => Part::First,
            "MIDDLE" => Part::Middle,
            "LAST" => Part::Last,
            _ => return None,
        })
    }
}

/// One call of a multi-part hash whose fresh state is `init` (plain hash:
/// the IV; HMAC: after the inner key block). Returns the digest for ONLY and
/// LAST, and the new chaining vector for FIRST and MIDDLE.
pub fn step(
    alg: Alg,
    part: Part,
    init: impl FnOnce() -> Result<Stream, Fail>,
    chain: &[u8],
    data: &[u8],
) -> Result<PartOut, Fail> {
    let mut s = match part {
        Part::Only | Part::First => init()?,
        Part::Middle | Part::Last => Stream::load(alg, chain)?,
    };
    match part {
        Part::Only | Part::Last => Ok((Some(s.finish(data)), None)),
        Part::First | Part::Middle => {
            s.update_blocks(data)?;
            Ok((None, Some(s.save())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn reference(alg: Alg, data: &[u8]) -> Vec<u8> {
        match alg {
            Alg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Alg::Sha224 => sha2::Sha224::digest(data).to_vec(),
            Alg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Alg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Alg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    #[test]
    fn matches_the_reference_in_one_and_many_parts() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for alg in [
            Alg::Sha1,
            Alg::Sha224,
            Alg::Sha256,
            Alg::Sha384,
            Alg::Sha512,
        ] {
            for len in [0, 1, 55, 56, 63, 64, 111, 112, 127, 128, 129, 300, 1000] {
                let d = &data[..len];
                assert_eq!(
                    Stream::new(alg).finish(d),
                    reference(alg, d),
                    "{alg:?} {len}"
                );
                // FIRST + MIDDLE on whole blocks, LAST with the rest, via the vector.
                let bl = alg.block_len();
                let whole = len / bl * bl;
                if whole >= 2 * bl {
                    let (o, cv) =
                        step(alg, Part::First, || Ok(Stream::new(alg)), &[], &d[..bl]).unwrap();
                    assert!(o.is_none());
                    let (_, cv) = step(
                        alg,
                        Part::Middle,
                        || unreachable!(),
                        &cv.unwrap(),
                        &d[bl..whole],
                    )
                    .unwrap();
                    let (o, _) = step(
                        alg,
                        Part::Last,
                        || unreachable!(),
                        &cv.unwrap(),
                        &d[whole..],
                    )
                    .unwrap();
                    assert_eq!(o.unwrap(), reference(alg, d), "{alg:?} {len} multi-part");
                }
            }
        }
        let cv = Stream::new(Alg::Sha256).save();
        assert_eq!(Stream::load(Alg::Sha1, &cv).map(|_| ()), Err(UNUSABLE));
        assert_eq!(
            Stream::new(Alg::Sha1).update_blocks(&[0; 10]),
            Err(SHORT_BUFFER)
        );
    }
}
