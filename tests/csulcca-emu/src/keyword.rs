//! CCA keywords and rule arrays, as the emulated card reads them.
//!
//! A keyword is 8 ASCII bytes, left-aligned and padded with blanks; a rule
//! array is `rule_array_count` keywords laid back to back, in no particular
//! order. Callers written in C sometimes pad with NUL bytes instead of
//! blanks (openCryptoki builds some rule arrays with `memcpy` of shorter
//! strings), so the card reads a NUL as a blank.

use std::fmt;

/// One 8-byte, blank-padded keyword.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyword(pub [u8; 8]);

impl Keyword {
    /// The keyword spelled `s` (at most 8 ASCII bytes; more are cut).
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

    /// The keyword in the first 8 bytes of `raw` (fewer bytes are padded with
    /// blanks), NUL read as blank.
    pub fn read(raw: &[u8]) -> Keyword {
        let mut out = [b' '; 8];
        for (d, s) in out.iter_mut().zip(raw) {
            *d = if *s == 0 { b' ' } else { *s };
        }
        Keyword(out)
    }

    /// The keyword without its trailing blanks; `"?"` when it is not text
    /// (no keyword the card knows is spelled so).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0)
            .map(|s| s.trim_end_matches(' '))
            .unwrap_or("?")
    }
}

impl fmt::Debug for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `count` keywords of a rule array, or `None` when `bytes` holds fewer.
pub fn split(bytes: &[u8], count: usize) -> Option<Vec<Keyword>> {
    let body = bytes.get(..count.checked_mul(8)?)?;
    Some(body.chunks_exact(8).map(Keyword::read).collect())
}

/// A rule array of the keywords spelled in `words`, ready to pass to a verb.
pub fn rule_array(words: &[&str]) -> Vec<u8> {
    words.iter().flat_map(|w| Keyword::new(w).0).collect()
}

macro_rules! keywords {
    ($($name:ident = $text:literal;)*) => {
        $(#[doc = concat!("`", $text, "`")] pub const $name: Keyword = Keyword::new($text);)*
    };
}

keywords! {
    RTCMK = "RTCMK"; RTNMK = "RTNMK"; DES = "DES"; AES = "AES"; HMAC = "HMAC"; RSA = "RSA";
    ECC = "ECC"; QSA = "QSA"; STATCCA = "STATCCA"; STATCCAE = "STATCCAE"; STATAES = "STATAES";
    STATAPKA = "STATAPKA"; STATCRD2 = "STATCRD2"; STATICSA = "STATICSA"; STATICSB = "STATICSB";
    DOM_NUMS = "DOM-NUMS"; DOM_USAG = "DOM-USAG"; ADAPTER = "ADAPTER"; SYM_MK = "SYM-MK";
    ASYM_MK = "ASYM-MK"; AES_MK = "AES-MK"; APKA_MK = "APKA-MK"; CLEAR = "CLEAR";
    FIRST = "FIRST"; MIDDLE = "MIDDLE"; LAST = "LAST"; SET = "SET"; RANDOM = "RANDOM";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_padded_nul_tolerant_and_bounded() {
        assert_eq!(&RTCMK.0, b"RTCMK   ");
        assert_eq!(rule_array(&["RTNMK", "AES"]), b"RTNMK   AES     ");
        assert_eq!(split(b"RTCMK\0\0\0AES\0    ", 2), Some(vec![RTCMK, AES]));
        assert_eq!(split(b"RTCMK   ", 2), None);
        assert_eq!(split(b"", usize::MAX), None);
        assert_eq!(Keyword::read(b"OP").as_str(), "OP");
        assert_eq!(Keyword::read(&[0xFF; 8]).as_str(), "?");
    }
}
