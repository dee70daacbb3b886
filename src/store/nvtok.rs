//! NVTOK.DAT: a raw copy of openCryptoki's `TOKEN_DATA` struct
//! (`usr/lib/common/host_defs.h`; `TOKEN_DATA_OLD` for the old format).
//!
//! Old format: 232 bytes, every integer in the writer's host order. New
//! format: 592 bytes, the same prefix plus a `dat` block, every integer BE
//! (`loadsave.c: save_token_data()` converts them on every save).
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0, 32 | 32 each | label, manufacturer (blank-padded) |
//! | 64, 80 | 16 each | model, serial number (blank-padded) |
//! | 96 | 4 | token flags (`CKF_*`) |
//! | 100 | 10 × 4 | session and memory counts; max / min PIN length at 116 / 120 |
//! | 140, 142 | 2 each | hardware and firmware version (major, minor) |
//! | 144 | 16 | UTC time (blanks) |
//! | 160, 184 | 24 each | old format: SHA-1 of the USER / SO PIN in bytes 0..20 |
//! | 208 | 8 | up to 3.17: the base-36 object name counter; unused since |
//! | 216 | 4 × 4 | the "tweak vector" (four i32 flags) |
//! | 232 | 4 | new format from here: `dat.version` (tokversion at creation) |
//! | 236 | 4 | alignment padding |
//! | 240, 344, 448, 520 | 8 each | PBKDF2 iterations: SO login, USER login, SO wrap, USER wrap |
//! | 248, 352, 456, 528 | 64 each | their salts: 32-byte purpose string, 32 random bytes |
//! | 312, 416 | 32 each | SO and USER login verifiers (PBKDF2 output) |
//!
//! We keep the raw bytes and decode fields on demand, so that a rewrite
//! (only the name counter at offset 208 is ever changed by us) keeps every
//! byte we do not interpret.

#[cfg(feature = "testkit")]
use super::bytes::put;
use super::bytes::{u32_at, u64_at, ByteOrder};
use super::Format;

/// Size of the old-format struct `TOKEN_DATA_OLD`.
pub(crate) const OLD_LEN: usize = 232;
/// Size of the new-format struct `TOKEN_DATA`.
pub(crate) const NEW_LEN: usize = 592;

/// Field offsets (see the table above).
pub(crate) mod off {
    #![cfg_attr(
        not(feature = "testkit"),
        allow(
            dead_code,
            reason = "the whole layout; only store creation writes some fields"
        )
    )]
    pub(crate) const LABEL: usize = 0;
    pub(crate) const MANUFACTURER: usize = 32;
    pub(crate) const MODEL: usize = 64;
    pub(crate) const SERIAL: usize = 80;
    pub(crate) const FLAGS: usize = 96;
    pub(crate) const MAX_PIN_LEN: usize = 116;
    pub(crate) const MIN_PIN_LEN: usize = 120;
    pub(crate) const HW_VERSION: usize = 140;
    pub(crate) const UTC_TIME: usize = 144;
    pub(crate) const USER_PIN_SHA: usize = 160;
    pub(crate) const SO_PIN_SHA: usize = 184;
    pub(crate) const NEXT_NAME: usize = 208;
    pub(crate) const TWEAK: usize = 216;
    pub(crate) const VERSION: usize = 232;
    pub(crate) const SO_LOGIN_IT: usize = 240;
    pub(crate) const SO_LOGIN_SALT: usize = 248;
    pub(crate) const SO_LOGIN_KEY: usize = 312;
    pub(crate) const USER_LOGIN_IT: usize = 344;
    pub(crate) const USER_LOGIN_SALT: usize = 352;
    pub(crate) const USER_LOGIN_KEY: usize = 416;
    pub(crate) const SO_WRAP_IT: usize = 448;
    pub(crate) const SO_WRAP_SALT: usize = 456;
    pub(crate) const USER_WRAP_IT: usize = 520;
    pub(crate) const USER_WRAP_SALT: usize = 528;
}

/// PKCS#11 token flags (`CKF_*`) used here.
pub(crate) mod flags {
    #![cfg_attr(
        not(feature = "testkit"),
        allow(dead_code, reason = "only store creation sets most flags")
    )]
    pub(crate) const RNG: u32 = 0x0000_0001;
    pub(crate) const LOGIN_REQUIRED: u32 = 0x0000_0004;
    pub(crate) const USER_PIN_INITIALIZED: u32 = 0x0000_0008;
    pub(crate) const CLOCK_ON_TOKEN: u32 = 0x0000_0040;
    pub(crate) const DUAL_CRYPTO: u32 = 0x0000_0200;
    pub(crate) const TOKEN_INITIALIZED: u32 = 0x0000_0400;
    pub(crate) const USER_PIN_TO_BE_CHANGED: u32 = 0x0008_0000;
    pub(crate) const SO_PIN_TO_BE_CHANGED: u32 = 0x0080_0000;
}

/// The "user PIN not set" sentinel of old-format stores: 20 ASCII zeros.
pub(crate) const USER_PIN_SENTINEL: [u8; 20] = [b'0'; 20];

/// The four salt purpose strings of the new format (`h_extern.h`).
#[cfg(feature = "testkit")]
pub(crate) const SO_LOGIN_PURPOSE: &[u8; 32] = b"so_login_purpose________________";
#[cfg(feature = "testkit")]
pub(crate) const USER_LOGIN_PURPOSE: &[u8; 32] = b"user_login_purpose______________";
#[cfg(feature = "testkit")]
pub(crate) const SO_WRAP_PURPOSE: &[u8; 32] = b"so_wrap_purpose_________________";
#[cfg(feature = "testkit")]
pub(crate) const USER_WRAP_PURPOSE: &[u8; 32] = b"user_wrap_purpose_______________";

/// One PBKDF2 parameter set: iteration count and 64-byte salt.
pub(crate) struct Kdf<'a> {
    pub(crate) iterations: u64,
    pub(crate) salt: &'a [u8],
}

/// The contents of NVTOK.DAT.
#[derive(Clone)]
pub(crate) struct TokenData {
    raw: Vec<u8>,
    #[cfg_attr(
        not(feature = "testkit"),
        allow(
            dead_code,
            reason = "read by `version`, which only store creation calls"
        )
    )]
    format: Format,
    /// Order of the integers: the host order (old) or BE (new).
    int_order: ByteOrder,
}

impl TokenData {
    /// Wraps raw bytes whose size has been checked for `format`.
    pub(crate) fn from_raw(raw: Vec<u8>, format: Format, host: ByteOrder) -> Option<Self> {
        let need = match format {
            Format::Old => OLD_LEN,
            Format::New => NEW_LEN,
        };
        if raw.len() < need {
            return None;
        }
        let int_order = match format {
            Format::Old => host,
            Format::New => ByteOrder::Big,
        };
        Some(TokenData {
            raw,
            format,
            int_order,
        })
    }

    /// The format implied by a file size, if it is one of the two sizes.
    pub(crate) fn format_for_size(size: usize) -> Option<Format> {
        match size {
            OLD_LEN => Some(Format::Old),
            NEW_LEN => Some(Format::New),
            _ => None,
        }
    }

    /// Guesses the writer's byte order of an old-format NVTOK.DAT from the PIN
    /// length limits (small in that order only). `None` if both or neither fit.
    pub(crate) fn probe_order(raw: &[u8]) -> Option<ByteOrder> {
        let plausible = |o: ByteOrder| {
            let max = u32_at(raw, off::MAX_PIN_LEN, o);
            let min = u32_at(raw, off::MIN_PIN_LEN, o);
            (1..=0xFFFF).contains(&max) && min <= max
        };
        match (plausible(ByteOrder::Little), plausible(ByteOrder::Big)) {
            (true, false) => Some(ByteOrder::Little),
            (false, true) => Some(ByteOrder::Big),
            _ => None,
        }
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub(crate) fn flags(&self) -> u32 {
        u32_at(&self.raw, off::FLAGS, self.int_order)
    }

    pub(crate) fn field(&self, at: usize, len: usize) -> &[u8] {
        self.raw.get(at..at + len).unwrap_or(&[])
    }

    pub(crate) fn so_pin_sha(&self) -> &[u8] {
        self.field(off::SO_PIN_SHA, 20)
    }

    pub(crate) fn user_pin_sha(&self) -> &[u8] {
        self.field(off::USER_PIN_SHA, 20)
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn next_name(&self) -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.field(off::NEXT_NAME, 8));
        a
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn set_next_name(&mut self, name: &[u8; 8]) {
        put(&mut self.raw, off::NEXT_NAME, name);
    }

    /// `dat.version` (new format only).
    #[cfg(feature = "testkit")]
    pub(crate) fn version(&self) -> Option<u32> {
        (self.format == Format::New).then(|| u32_at(&self.raw, off::VERSION, ByteOrder::Big))
    }

    fn kdf(&self, it: usize, salt: usize) -> Kdf<'_> {
        Kdf {
            iterations: u64_at(&self.raw, it, ByteOrder::Big),
            salt: self.field(salt, 64),
        }
    }

    pub(crate) fn so_login(&self) -> Kdf<'_> {
        self.kdf(off::SO_LOGIN_IT, off::SO_LOGIN_SALT)
    }

    pub(crate) fn user_login(&self) -> Kdf<'_> {
        self.kdf(off::USER_LOGIN_IT, off::USER_LOGIN_SALT)
    }

    pub(crate) fn so_wrap(&self) -> Kdf<'_> {
        self.kdf(off::SO_WRAP_IT, off::SO_WRAP_SALT)
    }

    pub(crate) fn user_wrap(&self) -> Kdf<'_> {
        self.kdf(off::USER_WRAP_IT, off::USER_WRAP_SALT)
    }

    pub(crate) fn so_login_key(&self) -> &[u8] {
        self.field(off::SO_LOGIN_KEY, 32)
    }

    pub(crate) fn user_login_key(&self) -> &[u8] {
        self.field(off::USER_LOGIN_KEY, 32)
    }

    /// The token model (`CK_TOKEN_INFO.model`) the STDLL wrote at C_InitToken,
    /// blank padding removed: `CCA` / `IBM CCA Token` for the CCA token, `Soft` /
    /// `IBM SoftTok` for the soft token (usr/lib/cca_stdll/cca_specific.c,
    /// usr/lib/soft_stdll/soft_specific.c).
    pub(crate) fn model(&self) -> String {
        String::from_utf8_lossy(self.field(off::MODEL, 16))
            .trim_end_matches(' ')
            .to_string()
    }

    /// The label, blank padding removed.
    #[cfg(feature = "testkit")]
    pub(crate) fn label(&self) -> String {
        String::from_utf8_lossy(self.field(off::LABEL, 32))
            .trim_end_matches(' ')
            .to_string()
    }
}

/// Builds the raw bytes of a fresh NVTOK.DAT as openCryptoki 3.27 (3.8.1 if
/// `v381`) writes them after C_InitToken: `utility.c: init_token_data()` and
/// the CCA STDLL's names. New-format PBKDF2 fields are filled by the caller.
#[cfg(feature = "testkit")]
pub(crate) fn template_bytes(format: Format, host: ByteOrder, label: &[u8], v381: bool) -> Vec<u8> {
    let len = match format {
        Format::Old => OLD_LEN,
        Format::New => NEW_LEN,
    };
    let o = match format {
        Format::Old => host,
        Format::New => ByteOrder::Big,
    };
    let mut raw = vec![0u8; len];
    let blank = |raw: &mut Vec<u8>, at: usize, n: usize, text: &[u8]| {
        let mut f = vec![b' '; n];
        for (d, s) in f.iter_mut().zip(text) {
            *d = *s;
        }
        put(raw, at, &f);
    };
    blank(&mut raw, off::LABEL, 32, label);
    let (manuf, model, serial): (&[u8], &[u8], &[u8]) = if v381 {
        (b"IBM Corp.", b"IBM CCA Token", b"123")
    } else {
        (b"IBM", b"CCA", b"")
    };
    blank(&mut raw, off::MANUFACTURER, 32, manuf);
    blank(&mut raw, off::MODEL, 16, model);
    blank(&mut raw, off::SERIAL, 16, serial);
    let mut fl = flags::RNG
        | flags::LOGIN_REQUIRED
        | flags::CLOCK_ON_TOKEN
        | flags::TOKEN_INITIALIZED
        | flags::USER_PIN_TO_BE_CHANGED
        | flags::SO_PIN_TO_BE_CHANGED;
    if !v381 {
        fl |= flags::DUAL_CRYPTO;
    }
    let max_sessions = if v381 { 0xFFFF_FFFF } else { 0 };
    let words: [u32; 11] = [
        fl,
        max_sessions,
        0xFFFF_FFFF,
        max_sessions,
        0xFFFF_FFFF,
        8,
        4,
        0xFFFF_FFFF,
        0xFFFF_FFFF,
        0xFFFF_FFFF,
        0xFFFF_FFFF,
    ];
    for (i, w) in words.iter().enumerate() {
        put(&mut raw, off::FLAGS + 4 * i, &o.u32_bytes(*w));
    }
    if v381 {
        put(&mut raw, off::HW_VERSION, &[1, 0, 1, 0]);
    }
    put(&mut raw, off::UTC_TIME, &[b' '; 16]);
    if format == Format::Old {
        put(&mut raw, off::USER_PIN_SHA, &USER_PIN_SENTINEL);
    }
    if v381 {
        put(&mut raw, off::NEXT_NAME, b"00000000");
    }
    for (i, v) in [1u32, 0, 1, 1].iter().enumerate() {
        put(&mut raw, off::TWEAK + 4 * i, &o.u32_bytes(*v));
    }
    if format == Format::New {
        put(
            &mut raw,
            off::VERSION,
            &ByteOrder::Big.u32_bytes(0x0003_000C),
        );
    }
    raw
}

/// Sets the flags word of a raw NVTOK.DAT.
#[cfg(feature = "testkit")]
pub(crate) fn set_flags(raw: &mut [u8], format: Format, host: ByteOrder, value: u32) {
    let o = match format {
        Format::Old => host,
        Format::New => ByteOrder::Big,
    };
    put(raw, off::FLAGS, &o.u32_bytes(value));
}
