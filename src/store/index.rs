//! `TOK_OBJ/OBJ.IDX`: one 8-character object name plus LF per line.
//!
//! Mirrors the index handling of `loadsave.c: load_public_token_objects()` and
//! `save_token_object()`, but strictly: a name that is not 8 safe characters
//! (no `/`, no blanks or control characters, so never `.`, `..` or `../x`)
//! is an error, because such a line could only make us read or replace a
//! file outside `TOK_OBJ`. Repeated names are reported and skipped.

use super::ObjectName;

/// A problem in OBJ.IDX: 1-based line number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadLine(pub(crate) u64);

/// The parsed index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    /// Names in file order, first occurrence only.
    pub(crate) names: Vec<ObjectName>,
    /// 1-based line numbers of repeated names that were skipped.
    pub(crate) duplicate_lines: Vec<u64>,
    /// Whether the last line lacked its LF (openCryptoki tolerates this on load).
    pub(crate) missing_final_lf: bool,
}

/// Parses OBJ.IDX content.
pub(crate) fn parse(data: &[u8]) -> Result<Index, BadLine> {
    let mut idx = Index::default();
    let mut rest = data;
    let mut line = 0u64;
    while !rest.is_empty() {
        line += 1;
        let (entry, next, had_lf) = match rest.iter().position(|b| *b == b'\n') {
            Some(p) => (
                rest.get(..p).unwrap_or(&[]),
                rest.get(p + 1..).unwrap_or(&[]),
                true,
            ),
            None => (rest, &[][..], false),
        };
        rest = next;
        if !had_lf {
            idx.missing_final_lf = true;
        }
        let arr: [u8; 8] = entry.try_into().map_err(|_| BadLine(line))?;
        let name = ObjectName::from_bytes(arr).ok_or(BadLine(line))?;
        if idx.names.contains(&name) {
            idx.duplicate_lines.push(line);
        } else {
            idx.names.push(name);
        }
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let i = parse(b"00000000\n10000000\n00000000\n").unwrap();
        assert_eq!(i.names.len(), 2);
        assert_eq!(i.duplicate_lines, [3]);
        assert!(!i.missing_final_lf);
        assert!(parse(b"OBabcdef").unwrap().missing_final_lf);
        assert_eq!(parse(b"00000000\n../x\n"), Err(BadLine(2)));
        assert_eq!(parse(b"../xxxxx\n"), Err(BadLine(1)));
        assert_eq!(parse(b"0000000\n"), Err(BadLine(1)));
        assert_eq!(parse(b"00000000\r\n"), Err(BadLine(1)));
        assert_eq!(parse(b"\n"), Err(BadLine(1)));
        assert_eq!(parse(b"abc defg\n"), Err(BadLine(1)));
        assert!(parse(b"").unwrap().names.is_empty());
    }
}
