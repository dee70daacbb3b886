//! The usage text, byte for byte as openCryptoki 3.27's `pkcscca` prints it, and the
//! list of our additions that `-h` and `--help` print after it.
//!
//! [`usage_text`] mirrors `pkcscca.c: usage()`; it is also what follows an argument
//! error, as upstream prints it there. The program name is `argv[0]` exactly as the user typed
//! it (a bare `pkcscca` when found through `PATH`, `/usr/sbin/pkcscca` when run by path),
//! so it is taken as raw bytes. The text, including its trailing blanks and tab runs, is
//! part of the drop-in contract and must not be reflowed.

/// The usage text with `progname` substituted, as bytes (`argv[0]` need not be UTF-8).
pub fn usage_text(progname: &[u8]) -> Vec<u8> {
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
    expand(PIECES, progname)
}

/// One piece of a help text: literal text, or the program name.
enum Piece {
    Text(&'static str),
    Prog,
}

fn expand(pieces: &[Piece], progname: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(1024 + 4 * progname.len());
    for piece in pieces {
        match piece {
            Piece::Text(s) => text.extend_from_slice(s.as_bytes()),
            Piece::Prog => text.extend_from_slice(progname),
        }
    }
    text
}

/// Our additions, which `-h` and `--help` print after [`usage_text`] (never after an
/// argument error): laid out as upstream's text is, descriptions at column 32.
pub fn additions_text(progname: &[u8]) -> Vec<u8> {
    use Piece::{Prog, Text};
    const PIECES: &[Piece] = &[
        Text("\n Additions of pkcscca-rs:\n"),
        Text(" Report Key Status:\t\t"),
        Prog,
        Text(" -m status -s SLOTID [OPTIONS]\n"),
        Text(" -m status\t\t\tShows which master key register (NEW, CURRENT,\n"),
        Text("\t\t\t\tOLD or none) each secure key is enciphered under;\n"),
        Text("\t\t\t\twrites nothing, and runs while pkcsslotd runs\n"),
        Text(" -k aes|apka|asym|sym|all\tThe keytype(s) to report (default: all)\n"),
        Text(" Restore a Backup:\t\t"),
        Prog,
        Text(" -m restore -s SLOTID --from BACKUP [OPTIONS]\n"),
        Text(" -m restore\t\t\tPuts back the objects a run changed, from the\n"),
        Text("\t\t\t\tbackup that run made and named\n"),
        Text(" --from BACKUP\t\t\tThe backup directory\n"),
        Text(" -d DATASTORE\t\t\tWith -m status and -m restore, names the token\n"),
        Text("\t\t\t\tinstead of -s SLOTID\n"),
        Text(" -k all\t\t\t\tWith -m keys: every keytype in one run\n"),
        Text(" --dry-run\t\t\tDo everything but write\n"),
        Text(" --json\t\t\t\tPrint one JSON document (-m keys, oldrsakeys,\n"),
        Text("\t\t\t\tstatus)\n"),
        Text(" --no-backup\t\t\tDo not back up the datastore before writing\n"),
        Text(" --threads N\t\t\tUp to N key token changes at once (1 to 64)\n"),
        Text(" -h, --help\t\t\tShow this help\n"),
        Text(" --version\t\t\tShow the version\n"),
    ];
    expand(PIECES, progname)
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

    #[test]
    fn additions_name_the_program_and_every_addition() {
        let s = String::from_utf8(additions_text(b"/sbin/pkcscca")).unwrap();
        assert!(s.starts_with("\n"));
        assert_eq!(s.matches("/sbin/pkcscca -m ").count(), 2);
        for word in [
            "-m status",
            "-m restore",
            "--from BACKUP",
            "-k all",
            "--dry-run",
            "--json",
            "--no-backup",
            "--threads N",
            "--help",
            "--version",
        ] {
            assert!(s.contains(word), "{word}");
        }
        // Upstream's layout: every description starts at column 32 (tabs of 8).
        for line in s.lines().filter(|l| l.starts_with(" -")) {
            let (head, _) = line.rsplit_once('\t').unwrap();
            let col = head.chars().fold(0, |c, ch| if ch == '\t' { c / 8 * 8 + 8 } else { c + 1 });
            assert_eq!(col / 8 * 8 + 8, 32, "{line:?}");
        }
    }
}
