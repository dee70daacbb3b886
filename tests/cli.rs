//! Golden tests of the command-line contract, run against the built binary.
//!
//! Two sets of data files:
//!
//! * `tests/cmd/upstream-3.27/NAME.{cmd,stdout,stderr,rc}`: runs of upstream pkcscca
//!   3.27.0, copied unchanged from the shared vectors. Our expected output is derived from
//!   them by the documented deliberate differences (see `derive_ours`), so the link to
//!   upstream stays visible.
//! * `tests/cmd/ours/NAME.case`: behaviour where we differ from or extend upstream, one
//!   file per case (format described at `Case::parse`).
//!
//! Each case runs the binary with `argv[0]` set as upstream was invoked, a clean
//! environment, and the case's standard input; stdout, stderr and the exit status must
//! match byte for byte. All mismatches are reported together.

// Test helpers outside #[test] fns: a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd")
}

/// One expected run.
#[derive(Debug)]
struct Case {
    name: String,
    argv0: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    rc: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Splits a command line into words: blanks separate, single quotes group (no escapes
/// inside), as far as the case files need.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Interprets the `\n` escapes used by `printf` in the vectors and by `stdin:` lines.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").into_bytes()
}

/// The usage text for `argv0`, taken from upstream's own `help` vector (argv[0] was
/// `pkcscca` there).
fn usage_for(argv0: &str) -> Vec<u8> {
    let upstream = fs::read_to_string(cmd_dir().join("upstream-3.27/help.stdout")).unwrap();
    upstream
        .replace("\tpkcscca -", &format!("\t{argv0} -"))
        .into_bytes()
}

impl Case {
    /// Reads an upstream vector: `printf '...' | env VAR=... pkcscca ARGS [</dev/null]`.
    fn upstream(dir: &Path, name: &str) -> Case {
        let read = |ext: &str| fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
        let cmd = String::from_utf8(read("cmd")).unwrap();
        let words = shell_words(cmd.trim_end());
        let stdin = match words.as_slice() {
            [printf, text, pipe, ..] if printf == "printf" && pipe == "|" => unescape(text),
            _ => Vec::new(),
        };
        let at = words
            .iter()
            .position(|w| w == "pkcscca")
            .expect("program word");
        let args = words[at + 1..]
            .iter()
            .filter(|w| *w != "</dev/null")
            .cloned()
            .collect();
        let rc = String::from_utf8(read("rc"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Case {
            name: format!("upstream-3.27/{name}"),
            argv0: "pkcscca".into(),
            args,
            env: vec![("LANG".into(), "C".into())],
            stdin,
            rc,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }

    /// Our expected output for an upstream vector, by the deliberate differences listed in
    /// the vectors' README and our man page:
    /// * our error lines start with `pkcscca: ` where upstream has
    ///   `usr/sbin/pkcscca/pkcscca.c:LINE `;
    /// * every argument is validated before the PIN prompts, so runs that upstream ended
    ///   with an argument error after prompting show no prompts.
    fn derive_ours(mut self) -> Case {
        let stderr = String::from_utf8(self.stderr).unwrap();
        let mut ours = String::new();
        for line in stderr.split_inclusive('\n') {
            match line.strip_prefix("usr/sbin/pkcscca/pkcscca.c:") {
                Some(rest) => {
                    let after_line_no = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                    assert!(after_line_no.len() < rest.len(), "{}: {line:?}", self.name);
                    let text = after_line_no.strip_prefix(' ').expect("space after LINE");
                    write!(ours, "pkcscca: {text}").unwrap();
                }
                None => ours.push_str(line),
            }
        }
        self.stderr = ours.into_bytes();
        for prompt in [&b"Enter the SO PIN: \n"[..], b"Enter the USER PIN: \n"] {
            if let Some(rest) = self.stdout.strip_prefix(prompt) {
                self.stdout = rest.to_vec();
            }
        }
        self
    }

    /// Reads `ours/NAME.case`:
    ///
    /// ```text
    /// # comment lines (why, and which upstream function it pins)
    /// argv0: /usr/sbin/pkcscca        (optional; default pkcscca)
    /// env: NAME=VALUE                 (optional, repeatable)
    /// stdin: 76543210\n11223344\n     (optional; default empty)
    /// args: -m keys -v                (blank-separated, '' quoting)
    /// rc: 255
    /// --- stdout
    /// exact bytes; a line `@USAGE@` stands for the usage text for argv0
    /// --- stderr
    /// exact bytes
    /// ```
    fn parse(path: &Path) -> Case {
        let text = fs::read_to_string(path).unwrap();
        let name = format!("ours/{}", path.file_stem().unwrap().to_string_lossy());
        let (head, sections) = text.split_once("--- stdout\n").expect("--- stdout section");
        let (stdout, stderr) = sections
            .split_once("--- stderr\n")
            .expect("--- stderr section");
        let mut case = Case {
            name,
            argv0: "pkcscca".into(),
            args: Vec::new(),
            env: vec![("LANG".into(), "C".into())],
            stdin: Vec::new(),
            rc: -1,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let mut saw_args = false;
        for line in head
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (key, value) = line.split_once(':').expect("key: value");
            let value = value.trim();
            match key {
                "argv0" => case.argv0 = value.into(),
                "env" => {
                    let (k, v) = value.split_once('=').expect("NAME=VALUE");
                    case.env.push((k.into(), v.into()));
                }
                "stdin" => case.stdin = unescape(value),
                "args" => {
                    case.args = shell_words(value);
                    saw_args = true;
                }
                "rc" => case.rc = value.parse().expect("rc number"),
                other => panic!("{}: unknown key {other}", case.name),
            }
        }
        assert!(
            saw_args && case.rc >= 0,
            "{}: args and rc are required",
            case.name
        );
        let usage = usage_for(&case.argv0);
        for chunk in stdout.split_inclusive('\n') {
            if chunk == "@USAGE@\n" {
                case.stdout.extend_from_slice(&usage);
            } else {
                case.stdout.extend_from_slice(chunk.as_bytes());
            }
        }
        case
    }

    /// Runs the binary; returns a description of every difference.
    fn check(&self) -> Option<String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
            .arg0(&self.argv0)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The binary may exit without reading; a broken pipe is fine.
        let _ = stdin.write_all(&self.stdin);
        drop(stdin);
        let got = child.wait_with_output().unwrap();
        let mut report = String::new();
        if got.status.code() != Some(self.rc) {
            writeln!(report, "  rc: want {}, got {:?}", self.rc, got.status).unwrap();
        }
        for (what, want, have) in [
            ("stdout", &self.stdout, &got.stdout),
            ("stderr", &self.stderr, &got.stderr),
        ] {
            if want != have {
                writeln!(
                    report,
                    "  {what}:\n    want {:?}\n    got  {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(have)
                )
                .unwrap();
            }
        }
        (!report.is_empty()).then(|| format!("{} ({:?}):\n{report}", self.name, self.args))
    }
}

fn check_all(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().filter_map(Case::check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn names_with_ext(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn upstream_vectors_match_after_documented_differences() {
    let dir = cmd_dir().join("upstream-3.27");
    let names = names_with_ext(&dir, "cmd");
    // The shared vectors hold 16 runs; losing some silently would weaken this test.
    assert_eq!(names.len(), 16, "{names:?}");
    let cases: Vec<Case> = names
        .iter()
        .map(|n| Case::upstream(&dir, n).derive_ours())
        .collect();
    check_all(&cases);
}

#[test]
fn derivation_changes_only_prefix_and_prompts() {
    // Pins the derivation itself on one vector with both kinds of change.
    let dir = cmd_dir().join("upstream-3.27");
    let raw = Case::upstream(&dir, "keys-missing-slot");
    assert!(raw
        .stdout
        .starts_with(b"Enter the SO PIN: \nEnter the USER PIN: \n"));
    assert_eq!(raw.stdin, b"76543210\n11223344\n");
    assert_eq!(raw.args, ["-m", "keys", "-k", "aes"]);
    let ours = raw.derive_ours();
    assert_eq!(ours.stdout, usage_for("pkcscca"));
    assert_eq!(ours.stderr, b"pkcscca: missing slot number\n");
    assert_eq!(ours.rc, 255);
}

#[test]
fn our_cases_match() {
    let dir = cmd_dir().join("ours");
    let names = names_with_ext(&dir, "case");
    assert!(names.len() >= 30, "{names:?}");
    let cases: Vec<Case> = names
        .iter()
        .map(|n| Case::parse(&dir.join(format!("{n}.case"))))
        .collect();
    check_all(&cases);
}

#[test]
fn man_page_documents_every_exit_status() {
    use pkcscca::exit::Exit;
    let page =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/pkcscca.1")).unwrap();
    let section = page
        .split_once(".SH EXIT STATUS\n")
        .and_then(|(_, rest)| rest.split_once("\n.SH "))
        .map(|(s, _)| s)
        .expect("EXIT STATUS section");
    for exit in Exit::ALL {
        let entry = format!(".TP\n.B {}\n", exit.code());
        assert!(section.contains(&entry), "{exit:?} missing from man page");
    }
}

/// A summary that could not be written is not a success: `pkcscca ... > /dev/full`.
#[test]
fn failed_stdout_write_is_not_success() {
    for args in [&["-h"][..], &["--version"], &["--help"]] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(12), "{args:?}");
    }
    // The same command with a working stdout succeeds.
    let ok = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
        .arg("-h")
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
}
