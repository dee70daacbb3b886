//! CSUACFQ, CSUACFV, CSUAACM and CSUACRA/CSUACRD: what openCryptoki asks the
//! card at token initialisation (`usr/lib/cca_stdll/cca_specific.c`,
//! `cca_mkchange.c`) and what pkcscca asks before a migration.

use super::parse_rules;
use crate::codes::*;
use crate::keyword::{self, Keyword};
use crate::state::{mkvp, MkType, Register, State, Store};
use crate::Fail;

/// CSUACFV's version string (fits `%u.%u.%u` and `%u.%u.%uz%s`).
pub const VERSION: &str = "8.4.0z20240101";
/// Firmware version element of STATCCA/STATCCAE.
pub const FIRMWARE: &str = "8.4.0z  ";
/// Serial number of the emulated adapter.
pub const SERIAL: &str = "EMU00001";
/// Build date element.
pub const BUILD_DATE: &str = "20240101";
/// The one role the emulator knows.
pub const ROLE: &str = "DFLT";

/// Output of CSUACFQ.
pub struct QueryOut {
    /// Rule-array elements to write back (None: leave the rule array alone).
    pub rule_array: Option<Vec<Keyword>>,
    /// Verb data to write back.
    pub verb_data: Vec<u8>,
}

fn digit(r: &Register) -> Keyword {
    Keyword::new(match r.state {
        2 => "2",
        3 => "3",
        _ => "1",
    })
}

fn states(s: &State, t: MkType) -> [Keyword; 3] {
    let set = s.set(t);
    [digit(&set.new), digit(&set.cur), digit(&set.old)]
}

/// A STATICSB/STATICSA block: `len(2) id(2) value`.
fn block(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(value);
}

/// MKVP of a register (zeros when empty), `len` bytes.
fn vp(t: MkType, r: &Register, len: usize) -> Vec<u8> {
    let mut v = if r.value.is_empty() || r.state < 2 {
        vec![0u8; len]
    } else {
        mkvp(t, &r.value)
    };
    v.resize(len, 0);
    v
}

/// The 240-byte STATICSB verb data: sixteen `len(2) id(2) value` blocks, the
/// SYM current (0F07), AES current (0F0B) and APKA current (0F0E) MKVPs at
/// the offsets openCryptoki reads. The block IDs of the other registers are
/// *emulator choices* (by pattern); the SYM and ASYM "MDC-4"
/// blocks carry the emulator's own patterns (SYM: the 8-byte MKVP padded
/// with zeros; ASYM: its 16-byte MKVP).
pub fn staticsb(s: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(240);
    let sym = s.set(MkType::Sym);
    let asym = s.set(MkType::Asym);
    let aes = s.set(MkType::Aes);
    let apka = s.set(MkType::Apka);
    let (y, a, e, p) = (MkType::Sym, MkType::Asym, MkType::Aes, MkType::Apka);
    block(&mut out, 0x0F02, &vp(y, &sym.old, 16));
    block(&mut out, 0x0F01, &vp(y, &sym.cur, 16));
    block(&mut out, 0x0F03, &vp(y, &sym.new, 16));
    block(&mut out, 0x0F12, &vp(a, &asym.old, 16));
    block(&mut out, 0x0F11, &vp(a, &asym.cur, 16));
    block(&mut out, 0x0F13, &vp(a, &asym.new, 16));
    block(&mut out, 0x0F08, &vp(y, &sym.old, 8));
    block(&mut out, 0x0F07, &vp(y, &sym.cur, 8));
    block(&mut out, 0x0F06, &vp(y, &sym.new, 8));
    block(&mut out, 0x0F09, &[0u8; 8]);
    block(&mut out, 0x0F0C, &vp(e, &aes.old, 8));
    block(&mut out, 0x0F0B, &vp(e, &aes.cur, 8));
    block(&mut out, 0x0F0A, &vp(e, &aes.new, 8));
    block(&mut out, 0x0F0F, &vp(p, &apka.old, 8));
    block(&mut out, 0x0F0E, &vp(p, &apka.cur, 8));
    block(&mut out, 0x0F0D, &vp(p, &apka.new, 8));
    out
}

/// CSUACFQ. `vd_cap` is the caller's verb-data buffer size.
pub fn facility_query(
    store: &Store,
    rule_bytes: &[u8],
    count: i64,
    vd_cap: usize,
) -> Result<QueryOut, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 2)?;
    let kw = *kws.first().ok_or(BAD_COUNT)?;
    let s = store.read()?;
    let sp = Keyword::new("");
    let serial = Keyword::new(SERIAL);
    let out = |ra: Vec<Keyword>| {
        Ok(QueryOut {
            rule_array: Some(ra),
            verb_data: Vec::new(),
        })
    };
    let [sn, sc, so] = states(&s, MkType::Sym);
    let [an, ac, ao] = states(&s, MkType::Asym);
    let info = [
        Keyword::new(FIRMWARE),
        Keyword::new(BUILD_DATE),
        Keyword::new(ROLE),
    ];
    if kw == keyword::STATCCA {
        out([sn, sc, so, info[0], info[1], info[2]].to_vec())
    } else if kw == keyword::STATCCAE {
        out([sn, sc, so, info[0], info[1], info[2], an, ac, ao].to_vec())
    } else if kw == keyword::STATAES {
        out(states(&s, MkType::Aes).to_vec())
    } else if kw == keyword::STATAPKA {
        out(states(&s, MkType::Apka).to_vec())
    } else if kw == keyword::STATCRD2 {
        let mut ra = vec![sp; 15];
        if let Some(e) = ra.first_mut() {
            *e = Keyword::new("1");
        }
        if let Some(e) = ra.get_mut(14) {
            *e = serial;
        }
        out(ra)
    } else if kw == keyword::STATICSA || kw == keyword::STATICSB {
        let b = kw == keyword::STATICSB;
        let need = if b { 240 } else { 204 };
        if vd_cap < need {
            return Err(SHORT_BUFFER);
        }
        let mut vd = staticsb(&s);
        vd.truncate(need);
        let mut ra = vec![serial, sn, sc, so, an, ac, ao];
        ra.extend(states(&s, MkType::Aes));
        if b {
            ra.extend(states(&s, MkType::Apka));
        }
        Ok(QueryOut {
            rule_array: Some(ra),
            verb_data: vd,
        })
    } else if kw == keyword::DOM_NUMS {
        if vd_cap < 4 {
            return Err(SHORT_BUFFER);
        }
        Ok(QueryOut {
            rule_array: None,
            verb_data: 1u32.to_be_bytes().to_vec(),
        })
    } else if kw == keyword::DOM_USAG {
        if vd_cap < 4 {
            return Err(SHORT_BUFFER);
        }
        Ok(QueryOut {
            rule_array: None,
            verb_data: 0u32.to_be_bytes().to_vec(),
        })
    } else {
        Err(BAD_KEYWORD)
    }
}

/// CSUAACM: `LSTROLES` lists `DFLT`; `GET-ROLE` of it returns a role that
/// is valid all day, every day, with every access-control point enabled.
pub fn access_control(rule_bytes: &[u8], count: i64, name: &[u8]) -> Result<Vec<u8>, Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 1)?;
    let kw = kws.first().copied().ok_or(BAD_COUNT)?;
    if kw == Keyword::new("LSTROLES") {
        return Ok(Keyword::new(ROLE).0.to_vec());
    }
    if kw != Keyword::new("GET-ROLE") {
        return Err(BAD_KEYWORD);
    }
    if Keyword::read(name) != Keyword::new(ROLE) {
        return Err(UNKNOWN_ROLE);
    }
    let mut out = Vec::with_capacity(300);
    out.extend_from_slice(&0x0101u16.to_be_bytes());
    out.extend_from_slice(b"Default role (emu)  ");
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0x0000u16.to_be_bytes());
    out.extend_from_slice(&0x173Bu16.to_be_bytes());
    out.push(0xFE);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0x0000u16.to_be_bytes());
    out.extend_from_slice(&0x07FFu16.to_be_bytes());
    out.extend_from_slice(&256u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&[0xFF; 256]);
    Ok(out)
}

/// CSUACRA / CSUACRD: select (or release) the one emulated adapter.
pub fn resource(rule_bytes: &[u8], count: i64, resource: &[u8]) -> Result<(), Fail> {
    let kws = parse_rules(rule_bytes, count, 1, 2)?;
    for k in kws {
        let s = k.as_str();
        let ok = matches!(s, "DEVICE" | "DEV-ANY" | "SERIAL" | "DOMN-DEF" | "DOM-ANY")
            || s.starts_with("DOMN");
        if !ok {
            return Err(BAD_KEYWORD);
        }
        if s == "DEVICE" {
            let r = String::from_utf8_lossy(resource)
                .trim_end_matches(['\0', ' '])
                .to_string();
            if r != "CRP01" && !r.is_empty() {
                return Err(NOT_AVAILABLE);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staticsb_layout_matches_opencryptoki_offsets() {
        let s = State::from_seed("q");
        let vd = staticsb(&s);
        assert_eq!(vd.len(), 240);
        for (id_at, id, t) in [
            (134, 0x0F07u16, MkType::Sym),
            (182, 0x0F0B, MkType::Aes),
            (218, 0x0F0E, MkType::Apka),
        ] {
            assert_eq!(&vd[id_at..id_at + 2], &id.to_be_bytes());
            assert_eq!(&vd[id_at + 2..id_at + 10], &s.set(t).cur_vp(t).unwrap()[..]);
        }
        assert_eq!(&vd[146..148], &[0x0F, 0x06]);
        assert_eq!(&vd[194..196], &[0x0F, 0x0A]);
        assert_eq!(&vd[230..232], &[0x0F, 0x0D]);
        assert_eq!(&vd[196..204], &[0; 8], "empty NEW register reports zeros");
    }

    #[test]
    fn role_block_shape() {
        let r = access_control(b"GET-ROLE", 1, b"DFLT    ").unwrap();
        assert_eq!(r.len(), 2 + 20 + 2 + 2 + 2 + 1 + 2 + 2 + 8 + 256);
        assert_eq!(&r[26..28], &[0x17, 0x3B]);
        assert_eq!(r[28], 0xFE);
        assert_eq!(access_control(b"LSTROLES", 1, &[]).unwrap(), b"DFLT    ");
        assert_eq!(access_control(b"BOGUS   ", 1, &[]), Err(BAD_KEYWORD));
    }
}
