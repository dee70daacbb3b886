//! `opencryptoki.conf` parsing, without I/O.
//!
//! Two grammars exist:
//! * current (3.17+ generic config library, `usr/lib/config/cfglex.l`,
//!   `cfgparse.y`, slot keys checked in `usr/sbin/pkcsslotd/slotmgr.c`):
//!   `version <bare>`, `disable-event-support`, `statistics (…)`, decimal and
//!   hex numbers, `x.y` VERSION tokens, bare words and quoted strings, exact
//!   slot keys including `tokversion` and `usergroup`;
//! * 3.8.1 (`usr/sbin/pkcsslotd/lexer.l`, `parser.y`): values are runs of
//!   anything but `"`, `=`, blanks and newlines, keys match by prefix, `{` may
//!   start the next line, no `tokversion`.
//!
//! [`parse_str`] accepts a file valid in either grammar (current first).
//! Where 3.8.1 would reject blank or comment lines inside a stanza we accept
//! them. Errors carry the file name and line.

/// One `slot N { … }` stanza.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotConfig {
    /// Slot number.
    pub slot: u32,
    /// STDLL library (`libpkcs11_cca.so`); a slot without one does not exist.
    pub stdll: Option<String>,
    /// Token directory name under the data store root.
    pub tokname: Option<String>,
    /// Data store format selector, `major << 16 | minor` (absent = old format).
    pub tokversion: Option<u32>,
    /// Token group (3.24+).
    pub usergroup: Option<String>,
    /// Token-specific configuration file.
    pub confname: Option<String>,
    /// Slot description.
    pub description: Option<String>,
    /// Slot manufacturer.
    pub manufacturer: Option<String>,
    /// Line of the `slot` keyword (1-based).
    pub line: u32,
}

/// Which grammar to apply. The program always uses [`Grammar::Auto`]; the tests pin
/// one grammar to show what each accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub enum Grammar {
    /// Try the current grammar, then 3.8.1; report the current grammar's error.
    Auto,
    /// Current (3.17+) grammar only.
    Current,
    /// openCryptoki 3.8.1 grammar only.
    V381,
}

/// A configuration error: `file:line: what`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {what}")]
pub struct ConfigError {
    /// File name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The problem.
    pub what: String,
}

/// Parses `text` (named `file` in errors) with [`Grammar::Auto`].
pub fn parse_str(text: &str, file: &str) -> Result<Vec<SlotConfig>, ConfigError> {
    parse_with(text, file, Grammar::Auto)
}

/// Parses `text` with the given grammar.
pub fn parse_with(
    text: &str,
    file: &str,
    grammar: Grammar,
) -> Result<Vec<SlotConfig>, ConfigError> {
    let err = |(line, what): (u32, String)| ConfigError {
        file: file.to_string(),
        line,
        what,
    };
    let slots = match grammar {
        Grammar::Current => current::parse(text).map_err(err)?,
        Grammar::V381 => v381::parse(text).map_err(err)?,
        Grammar::Auto => match current::parse(text) {
            Ok(s) => s,
            Err(e) => v381::parse(text).map_err(|_| err(e))?,
        },
    };
    validate(&slots).map_err(err)?;
    Ok(slots)
}

/// Checks made by pkcsslotd after parsing (`usr/sbin/pkcsslotd/slotmgr.c`).
fn validate(slots: &[SlotConfig]) -> Result<(), (u32, String)> {
    for (i, s) in slots.iter().enumerate() {
        if s.slot >= 1024 {
            return Err((s.line, format!("slot number {} must be below 1024", s.slot)));
        }
        if let Some(t) = &s.tokname {
            if t.is_empty()
                || t == "."
                || t == ".."
                || t.contains('/')
                || t == "HSM_MK_CHANGE"
                || t.len() > 255
            {
                return Err((s.line, format!("invalid tokname '{t}'")));
            }
        }
        for p in slots.iter().take(i) {
            if p.slot == s.slot {
                return Err((s.line, format!("duplicate slot number {}", s.slot)));
            }
            if p.tokname.is_some() && p.tokname == s.tokname {
                return Err((s.line, "tokname used by two slots".to_string()));
            }
            if s.tokname.is_none() && p.tokname.is_none() && s.stdll.is_some() && p.stdll == s.stdll
            {
                return Err((
                    s.line,
                    "two slots without tokname use the same stdll".to_string(),
                ));
            }
        }
    }
    Ok(())
}

/// The bytes of `b` from `i` on (empty past the end).
fn tail(b: &[u8], i: usize) -> &[u8] {
    b.get(i..).unwrap_or(&[])
}

/// Parses `x.y` into `x << 16 | y` (each at most 0xFFFF).
pub(crate) fn parse_version(s: &str) -> Option<u32> {
    let (a, b) = s.split_once('.')?;
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let a: u32 = a.parse().ok().filter(|v| *v <= 0xFFFF)?;
    let b: u32 = b.parse().ok().filter(|v| *v <= 0xFFFF)?;
    Some(a << 16 | b)
}

/// The current (3.17+) grammar.
mod current {
    use super::{parse_version, tail, SlotConfig};

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Eol,
        Eq,
        LBrace,
        RBrace,
        LParen,
        RParen,
        Comma,
        Number(u64),
        Version(u32),
        Bare(String),
        Str(String),
        FileVersion,
    }

    type Res<T> = Result<T, (u32, String)>;

    fn lex(text: &str) -> Res<Vec<(Tok, u32)>> {
        let b = text.as_bytes();
        let mut i = 0usize;
        let mut line = 1u32;
        let mut out = Vec::new();
        let mut seen_main = false;
        let at = |j: usize| b.get(j).copied().unwrap_or(0);
        while i < b.len() {
            let c = at(i);
            match c {
                b' ' | b'\t' => i += 1,
                b'\n' => {
                    out.push((Tok::Eol, line));
                    line += 1;
                    i += 1;
                }
                b'#' => {
                    while i < b.len() && at(i) != b'\n' {
                        i += 1;
                    }
                }
                _ if !seen_main && tail(b, i).starts_with(b"version") => {
                    out.push((Tok::FileVersion, line));
                    seen_main = true;
                    i += 7;
                }
                b'=' | b'{' | b'}' | b'(' | b')' | b',' => {
                    seen_main = true;
                    out.push((
                        match c {
                            b'=' => Tok::Eq,
                            b'{' => Tok::LBrace,
                            b'}' => Tok::RBrace,
                            b'(' => Tok::LParen,
                            b')' => Tok::RParen,
                            _ => Tok::Comma,
                        },
                        line,
                    ));
                    i += 1;
                }
                b'"' => {
                    seen_main = true;
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && at(j) != b'"' {
                        j += 1;
                    }
                    if j >= b.len() {
                        return Err((line, "unterminated string".into()));
                    }
                    let s = text.get(start..j).unwrap_or("");
                    let l0 = line;
                    line += s.matches('\n').count() as u32;
                    if !s.is_empty() {
                        out.push((Tok::Str(s.to_string()), l0));
                    }
                    i = j + 1;
                }
                b'0'..=b'9' => {
                    seen_main = true;
                    let digits = tail(b, i).iter().take_while(|c| c.is_ascii_digit()).count();
                    let hex = if c == b'0' && matches!(at(i + 1), b'x') {
                        let n = tail(b, i + 2)
                            .iter()
                            .take_while(|c| c.is_ascii_hexdigit())
                            .count();
                        if n > 0 {
                            n + 2
                        } else {
                            0
                        }
                    } else {
                        0
                    };
                    let ver = if at(i + digits) == b'.' {
                        let n = tail(b, i + digits + 1)
                            .iter()
                            .take_while(|c| c.is_ascii_digit())
                            .count();
                        if n > 0 {
                            digits + 1 + n
                        } else {
                            0
                        }
                    } else {
                        0
                    };
                    let dec = if c == b'0' { 1 } else { digits };
                    let best = hex.max(ver).max(dec);
                    let s = text.get(i..i + best).unwrap_or("");
                    if best == hex && hex > 0 {
                        let v = u64::from_str_radix(&s[2..], 16)
                            .map_err(|_| (line, "number too large".to_string()))?;
                        out.push((Tok::Number(v), line));
                    } else if best == ver && ver > 0 {
                        let v = parse_version(s).ok_or((line, format!("invalid version '{s}'")))?;
                        out.push((Tok::Version(v), line));
                    } else {
                        let v: u64 = s
                            .parse()
                            .map_err(|_| (line, "number too large".to_string()))?;
                        out.push((Tok::Number(v), line));
                    }
                    i += best;
                }
                c if c.is_ascii_alphabetic() || c == b'.' || c == b'/' => {
                    seen_main = true;
                    let n = tail(b, i)
                        .iter()
                        .take_while(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/')
                        })
                        .count();
                    out.push((
                        Tok::Bare(text.get(i..i + n).unwrap_or("").to_string()),
                        line,
                    ));
                    i += n;
                }
                _ => {
                    let ch = text.get(i..).unwrap_or("").chars().next().unwrap_or('?');
                    return Err((line, format!("unexpected character '{ch}'")));
                }
            }
        }
        Ok(out)
    }

    struct P {
        toks: Vec<(Tok, u32)>,
        pos: usize,
        last_line: u32,
    }

    impl P {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos).map(|t| &t.0)
        }
        fn line(&self) -> u32 {
            self.toks.get(self.pos).map_or(self.last_line, |t| t.1)
        }
        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).map(|t| t.0.clone());
            if t.is_some() {
                self.pos += 1;
            }
            t
        }
        fn eols(&mut self) -> bool {
            let mut any = false;
            while self.peek() == Some(&Tok::Eol) {
                self.pos += 1;
                any = true;
            }
            any
        }
        fn expect(&mut self, t: Tok, what: &str) -> Res<()> {
            let line = self.line();
            if self.next().as_ref() == Some(&t) {
                Ok(())
            } else {
                Err((line, format!("syntax error: expected {what}")))
            }
        }
    }

    pub(super) fn parse(text: &str) -> Res<Vec<SlotConfig>> {
        let toks = lex(text)?;
        let last_line = toks.last().map_or(1, |t| t.1);
        let mut p = P {
            toks,
            pos: 0,
            last_line,
        };
        let mut slots = Vec::new();
        p.eols();
        if p.peek() == Some(&Tok::FileVersion) {
            p.next();
            let line = p.line();
            match p.next() {
                Some(Tok::Bare(_)) => {}
                _ => return Err((line, "syntax error: expected a word after 'version'".into())),
            }
        }
        loop {
            p.eols();
            let line = p.line();
            let Some(t) = p.next() else { break };
            let Tok::Bare(key) = t else {
                return Err((line, "syntax error".into()));
            };
            let nl = p.eols();
            match p.peek().cloned() {
                Some(Tok::Number(n)) if key == "slot" && !nl => {
                    p.next();
                    p.eols();
                    p.expect(Tok::LBrace, "'{'")?;
                    let slot = u32::try_from(n)
                        .map_err(|_| (line, "slot number too large".to_string()))?;
                    slots.push(parse_slot(&mut p, slot, line)?);
                }
                Some(Tok::LParen) if key == "statistics" => {
                    p.next();
                    let mut want_word = true;
                    let mut words = 0;
                    loop {
                        p.eols();
                        let l = p.line();
                        match p.next() {
                            Some(Tok::RParen) if !want_word || words == 0 => break,
                            Some(Tok::Comma) if !want_word => want_word = true,
                            Some(Tok::Bare(v)) if want_word => {
                                if !matches!(v.as_str(), "off" | "on" | "implicit" | "internal") {
                                    return Err((l, format!("unexpected token '{v}'")));
                                }
                                want_word = false;
                                words += 1;
                            }
                            _ => return Err((l, "syntax error in statistics list".into())),
                        }
                    }
                }
                _ if key == "disable-event-support" => {}
                Some(Tok::Eq) if !nl => return Err((line, format!("unexpected token '{key}'"))),
                _ => return Err((line, format!("unexpected token '{key}'"))),
            }
        }
        Ok(slots)
    }

    fn parse_slot(p: &mut P, slot: u32, line: u32) -> Res<SlotConfig> {
        let mut s = SlotConfig {
            slot,
            line,
            ..Default::default()
        };
        loop {
            p.eols();
            let l = p.line();
            match p.next() {
                Some(Tok::RBrace) => return Ok(s),
                Some(Tok::Bare(key)) => {
                    if p.next() != Some(Tok::Eq) {
                        return Err((l, format!("syntax error after '{key}'")));
                    }
                    let v = p.next();
                    let as_str = |v: &Option<Tok>| match v {
                        Some(Tok::Bare(x)) | Some(Tok::Str(x)) => Some(x.clone()),
                        _ => None,
                    };
                    let as_ver = |v: &Option<Tok>| match v {
                        Some(Tok::Version(x)) => Some(*x),
                        Some(Tok::Str(x)) => parse_version(x),
                        _ => None,
                    };
                    let bad = || (l, format!("unexpected token '{key}'"));
                    match key.as_str() {
                        "stdll" => s.stdll = Some(as_str(&v).ok_or_else(bad)?),
                        "description" => s.description = Some(as_str(&v).ok_or_else(bad)?),
                        "manufacturer" => s.manufacturer = Some(as_str(&v).ok_or_else(bad)?),
                        "confname" => s.confname = Some(as_str(&v).ok_or_else(bad)?),
                        "tokname" => s.tokname = Some(as_str(&v).ok_or_else(bad)?),
                        "usergroup" => s.usergroup = Some(as_str(&v).ok_or_else(bad)?),
                        "hwversion" | "firmwareversion" => {
                            as_ver(&v).ok_or_else(bad)?;
                        }
                        "tokversion" => s.tokversion = Some(as_ver(&v).ok_or_else(bad)?),
                        _ => return Err(bad()),
                    }
                }
                None => return Err((l, "syntax error: missing '}'".into())),
                _ => return Err((l, "syntax error in slot definition".into())),
            }
        }
    }
}

/// The openCryptoki 3.8.1 grammar.
mod v381 {
    use super::{tail, SlotConfig};

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Eol,
        Eq,
        LBrace,
        RBrace,
        Integer(u64),
        Version,
        Slot,
        Str(String),
    }

    type Res<T> = Result<T, (u32, String)>;

    fn lex(text: &str) -> Res<Vec<(Tok, u32)>> {
        let b = text.as_bytes();
        let mut i = 0usize;
        let mut line = 1u32;
        let mut out = Vec::new();
        let at = |j: usize| b.get(j).copied().unwrap_or(0);
        let run = |j: usize| {
            tail(b, j)
                .iter()
                .take_while(|c| !matches!(c, b'"' | b'=' | b' ' | b'\t' | b'\n'))
                .count()
        };
        while i < b.len() {
            let c = at(i);
            let r = run(i);
            match c {
                b' ' | b'\t' => i += 1,
                b'=' => {
                    out.push((Tok::Eq, line));
                    i += 1;
                }
                b'\n' if at(i + 1) == b'{' && run(i + 1) == 1 => {
                    line += 1;
                    out.push((Tok::LBrace, line));
                    i += 2;
                }
                b'\n' => {
                    out.push((Tok::Eol, line));
                    line += 1;
                    i += 1;
                }
                b'#' if tail(b, i).contains(&b'\n') => {
                    while at(i) != b'\n' {
                        i += 1;
                    }
                    out.push((Tok::Eol, line));
                    line += 1;
                    i += 1;
                }
                b'{' if r == 1 => {
                    out.push((Tok::LBrace, line));
                    i += 1;
                }
                b'}' if r == 1 => {
                    out.push((Tok::RBrace, line));
                    i += 1;
                }
                b'"' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && !matches!(at(j), b'"' | b'\n') {
                        j += 1;
                    }
                    if at(j) != b'"' {
                        return Err((line, "unterminated string".into()));
                    }
                    out.push((Tok::Str(text.get(start..j).unwrap_or("").to_string()), line));
                    i = j + 1;
                }
                _ => {
                    let w = text.get(i..i + r).unwrap_or("");
                    let tok = if w.bytes().all(|c| c.is_ascii_digit()) {
                        Tok::Integer(
                            w.parse()
                                .map_err(|_| (line, "number too large".to_string()))?,
                        )
                    } else if w == "version" {
                        Tok::Version
                    } else if w == "slot" {
                        Tok::Slot
                    } else {
                        Tok::Str(w.to_string())
                    };
                    out.push((tok, line));
                    i += r;
                }
            }
        }
        Ok(out)
    }

    const KEYS: [&str; 7] = [
        "stdll",
        "description",
        "manufacturer",
        "hwversion",
        "firmwareversion",
        "confname",
        "tokname",
    ];

    pub(super) fn parse(text: &str) -> Res<Vec<SlotConfig>> {
        let toks = lex(text)?;
        let end_line = toks.last().map_or(1, |t| t.1);
        let mut it = toks.into_iter().peekable();
        let mut slots = Vec::new();
        while let Some((t, line)) = it.next() {
            match t {
                Tok::Eol => {}
                Tok::Version => match (it.next(), it.next()) {
                    (Some((Tok::Str(_), _)), Some((Tok::Eol, _)) | None) => {}
                    _ => return Err((line, "syntax error after 'version'".into())),
                },
                Tok::Slot => {
                    let Some((Tok::Integer(n), _)) = it.next() else {
                        return Err((line, "syntax error: expected slot number".into()));
                    };
                    while matches!(it.peek(), Some((Tok::Eol, _))) {
                        it.next();
                    }
                    if !matches!(it.next(), Some((Tok::LBrace, _))) {
                        return Err((line, "syntax error: expected '{'".into()));
                    }
                    let slot = u32::try_from(n)
                        .map_err(|_| (line, "slot number too large".to_string()))?;
                    let mut s = SlotConfig {
                        slot,
                        line,
                        ..Default::default()
                    };
                    loop {
                        match it.next() {
                            Some((Tok::Eol, _)) => {}
                            Some((Tok::RBrace, _)) => break,
                            Some((Tok::Str(key), l)) => {
                                let val = match (it.next(), it.next()) {
                                    (Some((Tok::Eq, _)), Some((Tok::Str(v), _))) => v,
                                    (Some((Tok::Eq, _)), Some((Tok::Integer(v), _))) => {
                                        v.to_string()
                                    }
                                    _ => return Err((l, format!("syntax error after '{key}'"))),
                                };
                                match KEYS.iter().find(|k| k.starts_with(key.as_str())) {
                                    Some(&"stdll") => s.stdll = Some(val),
                                    Some(&"description") => s.description = Some(val),
                                    Some(&"manufacturer") => s.manufacturer = Some(val),
                                    Some(&"confname") => s.confname = Some(val),
                                    Some(&"tokname") => s.tokname = Some(val),
                                    Some(_) => {}
                                    None => {
                                        return Err((l, format!("unknown config keyword '{key}'")))
                                    }
                                }
                            }
                            Some((_, l)) => {
                                return Err((l, "syntax error in slot definition".into()))
                            }
                            None => return Err((end_line, "syntax error: missing '}'".into())),
                        }
                    }
                    slots.push(s);
                }
                _ => return Err((line, "syntax error".into())),
            }
        }
        Ok(slots)
    }
}
