//! C signatures of the CCA verbs, as function-pointer types.
//!
//! Every CCA verb returns `void` and reports status through its first two
//! parameters; every integer is a `long *` (64 bits on LP64 Linux) and every
//! byte string an `unsigned char *` (cca.md §4.1, openCryptoki `csulincl.h`).
//! The loader in `cca::ffi` resolves symbols to these types, and the
//! software emulator checks each export against them at compile time
//! (`const _: CsnbktcFn = CSNBKTC;`), so both sides of the ABI share one
//! definition.

use std::os::raw::{c_long, c_uchar, c_void};

/// Pointer to a `long` parameter.
pub type PLong = *mut c_long;
/// Pointer to a byte-string parameter.
pub type PBytes = *mut c_uchar;

/// CSNBKTC (Key Token Change): fixed-length DES/AES DATA tokens.
pub type CsnbktcFn = unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PBytes);
/// CSNBKTC2 (Key Token Change2): variable-length AES CIPHER / HMAC tokens.
pub type Csnbktc2Fn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSNDKTC (PKA Key Token Change): RSA, ECC and QSA private tokens.
pub type CsndktcFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSUACFQ (Cryptographic Facility Query).
pub type CsuacfqFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSUACFV (Cryptographic Facility Version).
pub type CsuacfvFn = unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes);
/// CSUAACM (Access Control Maintenance).
pub type CsuaacmFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PBytes, PLong, PBytes);
/// CSUACRA / CSUACRD (Cryptographic Resource Allocate / Deallocate).
pub type CsuacraFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSNBMKP (Master Key Process).
pub type CsnbmkpFn = unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PBytes);
/// CSNBDEC (Decipher, DES/TDES).
pub type CsnbdecFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    PBytes,
);
/// CSNBENC (Encipher, DES/TDES).
pub type CsnbencFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PBytes,
);
/// CSNBSAE / CSNBSAD (Symmetric Algorithm Encipher / Decipher, AES): after
/// the rule array, key identifier (length, token), key parameters (length,
/// data), block size (a lone `long *`), IV (length, data), chain data
/// (length, data), input text (length, data), output text (length, data),
/// optional data (length, data): 21 parameters, as openCryptoki 3.8.1's
/// `csulincl.h` declares and its `token_specific_aes_cbc()` calls them.
pub type CsnbsaeFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNDPKT (PKA Key Translate).
pub type CsndpktFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNDPKX (PKA Public Key Extract).
pub type CsndpkxFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSNBKGN (Key Generate).
pub type CsnbkgnFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
    PBytes,
);
/// CSNBKGN2 (Key Generate2).
pub type Csnbkgn2Fn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNBKTB (Key Token Build).
pub type CsnbktbFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    *mut c_void,
    PLong,
    PBytes,
    PBytes,
    PBytes,
    PLong,
    PBytes,
    PBytes,
);
/// CSNBKTB2 (Key Token Build2).
pub type Csnbktb2Fn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNBCKM (Multiple Clear Key Import).
pub type CsnbckmFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes, PBytes);
/// CSNBKPI2 (Key Part Import2).
pub type Csnbkpi2Fn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSNDPKB (PKA Key Token Build).
pub type CsndpkbFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNDPKG (PKA Key Generate).
pub type CsndpkgFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PBytes,
    PLong,
    PBytes,
);
/// CSNBRNG (Random Number Generate, 8 bytes).
pub type CsnbrngFn = unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PBytes, PBytes);
/// CSNBRNGL (Random Number Generate Long).
pub type CsnbrnglFn =
    unsafe extern "C" fn(PLong, PLong, PLong, PBytes, PLong, PBytes, PLong, PBytes, PLong, PBytes);
/// CSNDDSG (Digital Signature Generate).
pub type CsnddsgFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PLong,
    PBytes,
);
/// CSNDDSV (Digital Signature Verify).
pub type CsnddsvFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNDPKE / CSNDPKD (PKA Encrypt / Decrypt).
pub type CsndpkeFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNBHMG / CSNBHMV (HMAC Generate / Verify).
pub type CsnbhmgFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// CSNBOWH (One-Way Hash).
pub type CsnbowhFn = unsafe extern "C" fn(
    PLong,
    PLong,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
    PLong,
    PBytes,
);
/// Shape used by the emulator for verbs it does not implement: only the
/// common status prefix is touched (the C caller may pass more arguments,
/// which the System V calling convention lets the callee ignore).
pub type UnimplementedFn = unsafe extern "C" fn(PLong, PLong);

/// Every symbol openCryptoki's CCA STDLL (3.8.1 and current), pkcscca and
/// zkey resolve from `libcsulcca.so`: the union of cca.md §7.1 (102 names).
pub const ALL_VERBS: [&str; 102] = [
    "CSNBCKI", "CSNBCKM", "CSNBDKX", "CSNBDKM", "CSNBKEX", "CSNBKGN", "CSNBKGN2", "CSNBKIM",
    "CSNBKPI", "CSNBKPI2", "CSNBKSI", "CSNBKRC", "CSNBAKRC", "CSNBKRD", "CSNBKRL", "CSNBKRR",
    "CSNBKRW", "CSNDKRC", "CSNDKRD", "CSNDKRL", "CSNDKRR", "CSNDKRW", "CSNBKYT", "CSNBKYTX",
    "CSNBKTC", "CSNBKTC2", "CSNBKTR", "CSNBRNG", "CSNBRNGL", "CSNBSAE", "CSNBSAD", "CSNBDEC",
    "CSNBENC", "CSNBMGN", "CSNBMVR", "CSNBKTB", "CSNBKTB2", "CSNDPKG", "CSNDPKB", "CSNBOWH",
    "CSNDPKI", "CSNDDSG", "CSNDDSV", "CSNDKTC", "CSNDPKX", "CSNDSYI", "CSNDSYI2", "CSNDSYX",
    "CSUACFQ", "CSUACFC", "CSNDSBC", "CSNDSBD", "CSUALCT", "CSUAACM", "CSUAACI", "CSNDPKH",
    "CSNDPKR", "CSUAMKD", "CSNDRKD", "CSNDRKL", "CSNDSYG", "CSNBPTR", "CSNBCPE", "CSNBCPA",
    "CSNBPGN", "CSNBPVR", "CSNBDKG", "CSNBEPG", "CSNBCVE", "CSNBCSG", "CSNBCSV", "CSNBCVG",
    "CSNBKTP", "CSNDPKE", "CSNDPKD", "CSNBPEX", "CSNBPEXX", "CSUARNT", "CSNBCVT", "CSNBMDG",
    "CSUACRA", "CSUACRD", "CSNBTRV", "CSNBSKY", "CSNBSPN", "CSNBPCU", "CSNDEDH", "CSUAPRB",
    "CSNDTBC", "CSNDRKX", "CSNBKET", "CSNBHMG", "CSNBHMV", "CSNBCTT2", "CSUACFV", "CSNBRKA",
    "CSNBKTR2", "CSNBMKP", "CSUADHK", "CSUADHQ", "CSUAPCV", "CSNDPKT",
];
