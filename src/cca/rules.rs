//! CCA keywords and rule arrays.
//!
//! A keyword is exactly 8 ASCII bytes, left-aligned and blank-padded; a rule
//! array is keywords laid back to back. Keywords are compared after mapping NUL
//! bytes to blanks, so a NUL-padded keyword equals its blank-padded form; [`parse`]
//! does that mapping.

use std::fmt;

/// One 8-byte, blank-padded CCA keyword.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyword(pub [u8; 8]);

impl Keyword {
    /// Builds a keyword from text of at most 8 ASCII bytes (longer text is cut).
    #[allow(clippy::indexing_slicing, reason = "the loop bounds both indices")]
    pub const fn new(s: &str) -> Keyword {
        let b = s.as_bytes();
        let mut out = [b' '; 8];
        let mut i = 0;
        while i < 8 && i < b.len() {
            out[i] = b[i];
            i += 1;
        }
        Keyword(out)
    }

    /// The keyword's bytes with NUL mapped to blank.
    pub fn normalized(raw: [u8; 8]) -> Keyword {
        Keyword(raw.map(|c| if c == 0 { b' ' } else { c }))
    }

    /// The keyword as text without trailing blanks (for logs and errors).
    pub fn as_str(&self) -> String {
        String::from_utf8_lossy(&self.0).trim_end().to_string()
    }
}

impl fmt::Debug for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

macro_rules! keywords {
    ($($name:ident = $text:literal;)*) => {
        $(#[doc = concat!("`", $text, "`")] pub const $name: Keyword = Keyword::new($text);)*
    };
}

// The keywords the program passes or reads.
keywords! {
    RTCMK = "RTCMK"; AES = "AES"; HMAC = "HMAC"; ECC = "ECC"; QSA = "QSA";
    STATCCAE = "STATCCAE"; STATAES = "STATAES"; STATAPKA = "STATAPKA"; STATICSB = "STATICSB";
    CBC = "CBC"; INTDWAKW = "INTDWAKW";
}

/// The keywords only tests and the software CCA's tools pass.
#[cfg(feature = "testkit")]
mod testkit_keywords {
    use super::Keyword;
    keywords! {
        RTNMK = "RTNMK"; DES = "DES"; RSA = "RSA"; STATCCA = "STATCCA"; STATCRD2 = "STATCRD2";
        STATICSA = "STATICSA"; DOM_NUMS = "DOM-NUMS"; DOM_USAG = "DOM-USAG"; ADAPTER = "ADAPTER";
        SYM_MK = "SYM-MK"; ASYM_MK = "ASYM-MK"; AES_MK = "AES-MK"; APKA_MK = "APKA-MK";
        CLEAR = "CLEAR"; FIRST = "FIRST"; MIDDLE = "MIDDLE"; LAST = "LAST"; SET = "SET";
        RANDOM = "RANDOM"; MASTER = "MASTER"; KEY_MGMT = "KEY-MGMT"; RSA_CRT = "RSA-CRT";
        RSA_AESM = "RSA-AESM"; RSA_AESC = "RSA-AESC"; ECC_PAIR = "ECC-PAIR";
        INTERNAL = "INTERNAL"; NO_KEY = "NO-KEY"; KEYLN16 = "KEYLN16"; KEYLN24 = "KEYLN24";
        KEYLN32 = "KEYLN32"; KEYIDENT = "KEYIDENT"; INITIAL = "INITIAL";
    }
}
#[cfg(feature = "testkit")]
pub use testkit_keywords::*;

/// Why a rule array could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    /// The count is negative or larger than the bytes supplied.
    BadCount,
}

/// Splits `count` keywords out of `bytes`, NULs read as blanks.
pub fn parse(bytes: &[u8], count: usize) -> Result<Vec<Keyword>, RuleError> {
    let need = count.checked_mul(8).ok_or(RuleError::BadCount)?;
    let body = bytes.get(..need).ok_or(RuleError::BadCount)?;
    Ok(body
        .chunks_exact(8)
        .map(|c| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(c);
            Keyword::normalized(raw)
        })
        .collect())
}

/// An owned rule array, ready to pass to a verb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleArray(Vec<u8>);

impl RuleArray {
    /// Lays `keywords` back to back.
    pub fn new(keywords: &[Keyword]) -> RuleArray {
        RuleArray(keywords.iter().flat_map(|k| k.0).collect())
    }

    /// Number of keywords.
    #[cfg(feature = "testkit")]
    pub fn count(&self) -> usize {
        self.0.len() / 8
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_blank_padded_and_nul_tolerant() {
        assert_eq!(&RTCMK.0, b"RTCMK   ");
        let ra = RuleArray::new(&[RTNMK, AES]);
        assert_eq!(ra.as_bytes(), b"RTNMK   AES     ");
        let parsed = parse(b"RTCMK\0\0\0AES\0    ", 2).unwrap();
        assert_eq!(parsed, vec![RTCMK, AES]);
        assert_eq!(parse(b"RTCMK   ", 2), Err(RuleError::BadCount));
    }
}
