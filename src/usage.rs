//! The usage text, byte for byte as openCryptoki 3.27's `pkcscca` prints it.
//!
//! Mirrors `pkcscca.c: usage()`. The program name is `argv[0]` exactly as the user typed
//! it (a bare `pkcscca` when found through `PATH`, `/usr/sbin/pkcscca` when run by path),
//! so it is taken as raw bytes. The text, including its trailing blanks and tab runs, is
//! part of the drop-in contract and must not be reflowed.

/// The usage text with `progname` substituted, as bytes (`argv[0]` need not be UTF-8).
pub fn usage_text(progname: &[u8]) -> Vec<u8> {
    // Each entry is either literal text or the program name.
    enum Piece {
        Text(&'static str),
        Prog,
    }
    use Piece::{Prog, Text};
    const PIECES: &[Piece] = &[
        Text(" Help:\t\t\t\t"),
        Prog,
        Text(" -h\n"),
        Text(" -h\t\t\t\tShow this help\n\n"),
        Text(" Migrate Object Version:\t"),
        Prog,
        Text(" -m v2objectsv3 [OPTIONS] \n"),
        Text(" -m v2objectsv3\t\t\tMigrates CCA private token objects from"),
        Text(" CCA\n\t\t\t\tencryption (used in v2) to software encryption"),
        Text(" \n\t\t\t\t(used in v3). \n"),
        Text(" Migrate Wrapped Keys:\t\t"),
        Prog,
        Text(" -m keys -s SLOTID -k KEYTYPE [OPTIONS] \n"),
        Text(" -m keys\t\t\tUnwraps private keys with the"),
        Text(" old CCA master\n\t\t\t\tkey and wraps them with the"),
        Text(" new CCA master key\n"),
        Text(" -s, --slotid SLOTID\t\tPKCS slot number\n"),
        Text(" -k aes|apka|asym|sym\t\tMigrate selected keytype\n\n"),
        Text(" Migrate old RSA Keys:\t\t"),
        Prog,
        Text(" -m oldrsakeys -s SLOTID [OPTIONS] \n"),
        Text(" -m oldrsakeys\t\t\tConverts old RSA keys (RSA-CRT) to the new\n "),
        Text("\t\t\t\tformat (RSA-AESC) and extracts the public key\n"),
        Text("\t\t\t\tsection only from key objects containing the\n"),
        Text("\t\t\t\tfull RSA key token\n"),
        Text(" -s, --slotid SLOTID\t\tPKCS slot number\n\n"),
        Text(" Options:\n"),
        Text(" -d, --datastore DATASTORE\tCCA token datastore location\n"),
        Text(" -v, --verbose LEVEL\t\tset verbose level (optional):\n"),
        Text("\t\t\t\tnone (default), error, warn, info, devel, debug\n"),
    ];
    let mut text = Vec::with_capacity(1024 + 4 * progname.len());
    for piece in PIECES {
        match piece {
            Text(s) => text.extend_from_slice(s.as_bytes()),
            Prog => text.extend_from_slice(progname),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_program_as_invoked_in_all_four_places() {
        let text = usage_text(b"/usr/sbin/pkcscca");
        let s = String::from_utf8(text).unwrap();
        assert_eq!(s.matches("/usr/sbin/pkcscca ").count(), 4);
        assert!(s.starts_with(" Help:\t\t\t\t/usr/sbin/pkcscca -h\n"));
    }

    #[test]
    fn keeps_upstream_trailing_blanks() {
        let s = String::from_utf8(usage_text(b"pkcscca")).unwrap();
        assert!(s.contains("pkcscca -m v2objectsv3 [OPTIONS] \n"));
        assert!(s.contains("software encryption \n\t\t\t\t(used in v3). \n"));
        assert!(s.contains("to the new\n \t\t\t\tformat (RSA-AESC)"));
        assert!(s.ends_with("debug\n"));
    }
}
