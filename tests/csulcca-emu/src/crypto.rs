//! The emulator's key-protection schemes (all *emulator choices*): each
//! keeps the field sizes of the real token layouts and is deterministic
//! given the same key material, so re-enciphering the same token under the
//! same registers always yields the same bytes.
//!
//! * DES tokens: each 8-byte key part TDES-EDE3-ECB under the SYM MK XORed
//!   with the control vector (`cvL ‖ cvR ‖ cvL`).
//! * AES DATA: AES-256-CBC, zero IV, over key ‖ zero pad to 32 bytes.
//! * AES CIPHER / HMAC: RFC 3394 key wrap whose initial value is the first 8
//!   bytes of the 12-byte payload header; output as long as input.
//! * PKA object-protection keys (OPK): AES-256-CBC zero IV (APKA) or
//!   TDES-EDE3-CBC zero IV (ASYM); private components under the OPK with
//!   RFC 5649 (AES) or TDES-CBC.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use cipher::block_padding::NoPadding;
use cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use des::TdesEde3;
use zeroize::Zeroizing;

use crate::codes::{COMPONENT, SHORT_BUFFER, UNUSABLE};
use crate::Fail;

/// Bytes from the operating system's random source.
pub fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    getrandom::getrandom(&mut v).map_err(|_| COMPONENT)?;
    Ok(v)
}

fn tdes(key: &[u8]) -> Result<TdesEde3, Fail> {
    TdesEde3::new_from_slice(key).map_err(|_| COMPONENT)
}

fn aes256(key: &[u8]) -> Result<Aes256, Fail> {
    Aes256::new_from_slice(key).map_err(|_| COMPONENT)
}

/// TDES-EDE3 ECB over whole 8-byte blocks, in place.
pub fn tdes_ecb(key: &[u8], data: &mut [u8], encrypt: bool) -> Result<(), Fail> {
    let c = tdes(key)?;
    for b in data.chunks_exact_mut(8) {
        let blk = des::cipher::generic_array::GenericArray::from_mut_slice(b);
        if encrypt {
            c.encrypt_block(blk)
        } else {
            c.decrypt_block(blk)
        }
    }
    Ok(())
}

/// CBC without padding over `data` (a whole number of blocks), in place,
/// with the `cbc` crate's encryptor or decryptor for block cipher `C`.
fn cbc<C>(key: &[u8], iv: &[u8], data: &mut [u8], enc: bool) -> Result<(), Fail>
where
    C: BlockCipher + BlockEncrypt + BlockDecrypt + KeyInit,
{
    let len = data.len();
    if enc {
        cbc::Encryptor::<C>::new_from_slices(key, iv)
            .map_err(|_| COMPONENT)?
            .encrypt_padded_mut::<NoPadding>(data, len)
            .map(|_| ())
            .map_err(|_| SHORT_BUFFER)
    } else {
        cbc::Decryptor::<C>::new_from_slices(key, iv)
            .map_err(|_| COMPONENT)?
            .decrypt_padded_mut::<NoPadding>(data)
            .map(|_| ())
            .map_err(|_| SHORT_BUFFER)
    }
}

/// TDES-EDE3-CBC in place; `data` a multiple of 8 bytes.
pub fn tdes_cbc(key: &[u8], iv: &[u8; 8], data: &mut [u8], enc: bool) -> Result<(), Fail> {
    if !data.len().is_multiple_of(8) {
        return Err(SHORT_BUFFER);
    }
    cbc::<TdesEde3>(key, iv, data, enc)
}

/// AES-CBC (128/192/256 by key length) in place; `data` a multiple of 16.
pub fn aes_cbc(key: &[u8], iv: &[u8; 16], data: &mut [u8], enc: bool) -> Result<(), Fail> {
    if !data.len().is_multiple_of(16) {
        return Err(SHORT_BUFFER);
    }
    match key.len() {
        16 => cbc::<Aes128>(key, iv, data, enc),
        24 => cbc::<Aes192>(key, iv, data, enc),
        32 => cbc::<Aes256>(key, iv, data, enc),
        _ => Err(UNUSABLE),
    }
}

/// AES-ECB (128/192/256) in place; `data` a multiple of 16.
pub fn aes_ecb(key: &[u8], data: &mut [u8], enc: bool) -> Result<(), Fail> {
    if !data.len().is_multiple_of(16) {
        return Err(SHORT_BUFFER);
    }
    for b in data.chunks_exact_mut(16) {
        aes_cbc(key, &[0u8; 16], b, enc)?;
    }
    Ok(())
}

/// AES-256-CBC with a zero IV, in place (AES DATA tokens, APKA OPK blobs).
pub fn aes256_cbc0(key: &[u8], data: &mut [u8], enc: bool) -> Result<(), Fail> {
    aes_cbc(key, &[0u8; 16], data, enc)
}

/// Splits a key-wrap buffer into its integrity register A and 8-byte blocks.
fn kw_split(buf: &[u8], bad: Fail) -> Result<([u8; 8], Vec<[u8; 8]>), Fail> {
    if !buf.len().is_multiple_of(8) || buf.len() < 24 {
        return Err(bad);
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(buf.get(..8).ok_or(bad)?);
    let r = buf
        .get(8..)
        .unwrap_or(&[])
        .chunks_exact(8)
        .map(|c| c.try_into().unwrap_or([0; 8]))
        .collect();
    Ok((a, r))
}

/// Writes A ‖ blocks back over `buf` (same length as split).
fn kw_join(buf: &mut [u8], a: &[u8; 8], r: &mut [[u8; 8]]) {
    let out: Zeroizing<Vec<u8>> =
        Zeroizing::new(a.iter().chain(r.iter().flatten()).copied().collect());
    r.iter_mut().for_each(|x| *x = [0; 8]);
    buf.copy_from_slice(&out);
}

/// RFC 3394 AES key wrap of `buf[8..]` with initial value `buf[..8]`; the
/// result replaces `buf` and has the same length.
pub fn aeskw_wrap_inplace(kek: &[u8], buf: &mut [u8]) -> Result<(), Fail> {
    let c = aes256(kek)?;
    let (mut a, mut r) = kw_split(buf, SHORT_BUFFER)?;
    let mut t = 0u64;
    for _ in 0..6 {
        for ri in r.iter_mut() {
            t += 1;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&a);
            b[8..].copy_from_slice(ri);
            c.encrypt_block(aes::cipher::generic_array::GenericArray::from_mut_slice(
                &mut b,
            ));
            a.copy_from_slice(&b[..8]);
            a.iter_mut().zip(t.to_be_bytes()).for_each(|(x, y)| *x ^= y);
            ri.copy_from_slice(&b[8..]);
        }
    }
    kw_join(buf, &a, &mut r);
    Ok(())
}

/// Inverse of [`aeskw_wrap_inplace`]: recovers initial value and data in place.
pub fn aeskw_unwrap_inplace(kek: &[u8], buf: &mut [u8]) -> Result<(), Fail> {
    let c = aes256(kek)?;
    let (mut a, mut r) = kw_split(buf, UNUSABLE)?;
    let mut t = 6 * r.len() as u64;
    for _ in 0..6 {
        for ri in r.iter_mut().rev() {
            let mut b = [0u8; 16];
            a.iter_mut().zip(t.to_be_bytes()).for_each(|(x, y)| *x ^= y);
            b[..8].copy_from_slice(&a);
            b[8..].copy_from_slice(ri);
            c.decrypt_block(aes::cipher::generic_array::GenericArray::from_mut_slice(
                &mut b,
            ));
            a.copy_from_slice(&b[..8]);
            ri.copy_from_slice(&b[8..]);
            t -= 1;
        }
    }
    kw_join(buf, &a, &mut r);
    Ok(())
}

/// RFC 5649 AES key wrap with padding under a 32-byte OPK.
pub fn kwp_wrap(kek: &[u8], data: &[u8]) -> Result<Vec<u8>, Fail> {
    let k = aes_kw::KekAes256::try_from(kek).map_err(|_| COMPONENT)?;
    k.wrap_with_padding_vec(data).map_err(|_| COMPONENT)
}

/// RFC 5649 unwrap; an integrity failure is 8/47 (token content invalid).
pub fn kwp_unwrap(kek: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let k = aes_kw::KekAes256::try_from(kek).map_err(|_| COMPONENT)?;
    k.unwrap_with_padding_vec(data)
        .map(Zeroizing::new)
        .map_err(|_| UNUSABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3394_vector_256() {
        // RFC 3394, section 4.6: 256-bit data with a 256-bit KEK.
        let kek = unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let mut buf = unhex(
            "A6A6A6A6A6A6A6A600112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        );
        aeskw_wrap_inplace(&kek, &mut buf).unwrap();
        assert_eq!(
            buf,
            unhex(
                "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
            )
        );
        aeskw_unwrap_inplace(&kek, &mut buf).unwrap();
        assert_eq!(&buf[..8], &[0xA6; 8]);
    }

    fn unhex(s: &str) -> Vec<u8> {
        crate::state::unhex(s).unwrap()
    }

    #[test]
    fn cbc_aes256_vector() {
        // NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first two blocks.
        let key = unhex("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4");
        let iv: [u8; 16] = unhex("000102030405060708090A0B0C0D0E0F")
            .try_into()
            .unwrap();
        let plain = unhex("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51");
        let mut d = plain.clone();
        aes_cbc(&key, &iv, &mut d, true).unwrap();
        assert_eq!(
            d,
            unhex("F58C4C04D6E5F1BA779EABFB5F7BFBD69CFC4E967EDB808D679F777BC6702C7D")
        );
        aes_cbc(&key, &iv, &mut d, false).unwrap();
        assert_eq!(d, plain);
        assert_eq!(aes_cbc(&key, &iv, &mut [0; 15], true), Err(SHORT_BUFFER));
    }

    #[test]
    fn cbc_roundtrips() {
        let mut d = *b"0123456789abcdef0123456789abcdef";
        aes256_cbc0(&[7; 32], &mut d, true).unwrap();
        assert_ne!(&d, b"0123456789abcdef0123456789abcdef");
        aes256_cbc0(&[7; 32], &mut d, false).unwrap();
        assert_eq!(&d, b"0123456789abcdef0123456789abcdef");
        let mut e = *b"12345678abcdefgh";
        tdes_cbc(&[1; 24], &[0; 8], &mut e, true).unwrap();
        tdes_cbc(&[1; 24], &[0; 8], &mut e, false).unwrap();
        assert_eq!(&e, b"12345678abcdefgh");
    }
}
