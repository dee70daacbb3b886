//! The one golden harness of the test suite.
//!
//! Every expected run of the binary is a case file `tests/cmd/**/NAME.case`, in one
//! format (described in `tests/cmd/README.md` and at [`Case::parse`]): the command
//! (argv[0], arguments, environment, standard input), the exit status, standard output
//! and standard error, and which documented difference from upstream pkcscca the run
//! shows. Two kinds of case use that format:
//!
//! * runnable cases (`tests/cmd/ours/`, `tests/cmd/upstream-3.27/`): the case alone is
//!   the test; [`Case::check`] runs the binary in a clean environment;
//! * scenario cases (`tests/cmd/keys/`, `tests/cmd/oldrsakeys/`, `tests/cmd/v2objectsv3/`):
//!   a Rust test builds the store and the card first, runs the binary and hands the
//!   run to [`check_scenario`], which compares the whole record, command included.
//!
//! `tests/cmd/upstream-3.27/` holds upstream's own recorded runs: their sections are
//! upstream's bytes, and our expected output is derived from them by the documented
//! differences the case names ([`Case::expected`]).
//!
//! `PKCSCCA_UPDATE_GOLDEN=1` rewrites the status and output of runnable and scenario
//! cases (never of a recording), keeping their comments and difference lines; review
//! the diff before committing it. Text snapshots that are not runs of the binary (the
//! store dumps of `tests/store_golden.rs`) live in `tests/golden/` and go through
//! [`assert_text`], with the same variable.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set (to anything) to rewrite goldens instead of comparing.
pub const UPDATE_VAR: &str = "PKCSCCA_UPDATE_GOLDEN";

/// Stands for the scenario's (or a runnable case's) scratch directory.
pub const LAB: &str = "@LAB@";

/// A line of a runnable case's stdout that stands for the usage text for argv[0].
const USAGE: &str = "@USAGE@\n";

/// Upstream's prefix of its own error lines (`print_error`), followed by the line
/// number and a blank.
const UPSTREAM_PREFIX: &str = "usr/sbin/pkcscca/pkcscca.c:";

/// `tests/cmd`.
pub fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd")
}

/// `tests/golden`: text snapshots that are not runs of the binary.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os(UPDATE_VAR).is_some()
}

/// Compares `got` with `tests/golden/<rel>`, or rewrites that file when
/// `PKCSCCA_UPDATE_GOLDEN` is set.
pub fn assert_text(rel: &str, got: &str) {
    let path = golden_dir().join(rel);
    if updating() {
        fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        fs::write(&path, got).expect("write golden");
        return;
    }
    let want = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with {UPDATE_VAR}=1)", path.display()));
    assert_eq!(got, want, "{} differs", path.display());
}

/// One case file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Case {
    /// Path under `tests/cmd` without `.case`, e.g. `ours/version`.
    pub name: String,
    /// The leading `#` lines, without the `# ` (kept when the file is rewritten).
    pub comments: Vec<String>,
    /// `difference:` lines: tags of the man page's DIFFERENCES FROM OPENCRYPTOKI list.
    pub differences: Vec<String>,
    /// `upstream: same`: the run is what upstream 3.27 prints and returns.
    pub upstream_same: bool,
    /// `recorded:` upstream's own command line: the sections are upstream's recorded bytes.
    pub recorded: Option<String>,
    /// `argv0:` (default `pkcscca`).
    pub argv0: Option<String>,
    /// `env:` NAME=VALUE lines, on top of `LANG=C`.
    pub env: Vec<(String, String)>,
    /// `stdin:` with `\n` escapes resolved.
    pub stdin: Vec<u8>,
    /// `stdout-file:` where standard output goes instead of a pipe (e.g. `/dev/full`).
    pub stdout_file: Option<String>,
    /// `args:` (or, for a recording, the words after `pkcscca` in its command line).
    pub args: Vec<String>,
    /// `rc:` the exit status.
    pub rc: i32,
    /// The `--- stdout` section, as written.
    pub stdout: Vec<u8>,
    /// The `--- stderr` section.
    pub stderr: Vec<u8>,
}

/// What a scenario test saw: the command it ran and its result.
#[derive(Debug)]
pub struct Observed<'a> {
    /// Arguments after argv[0].
    pub args: &'a [&'a str],
    /// Bytes piped to standard input.
    pub stdin: &'a [u8],
    /// Exit status.
    pub rc: i32,
    /// Standard output.
    pub stdout: &'a str,
    /// Standard error.
    pub stderr: &'a str,
}

/// Splits a command line into words: blanks separate, single quotes group (no escapes
/// inside), as far as the case files need.
pub fn shell_words(line: &str) -> Vec<String> {
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

/// Joins words back into an `args:` line, quoting words with blanks (or empty ones).
fn join_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            assert!(!w.contains('\''), "cannot record the argument {w:?}");
            if w.is_empty() || w.contains(char::is_whitespace) {
                format!("'{w}'")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resolves the `\n` escapes of `stdin:` lines (and of `printf` in recordings).
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").into_bytes()
}

fn escape(b: &[u8]) -> String {
    let s = std::str::from_utf8(b).expect("stdin is text");
    assert!(
        !s.contains('\\') && s.chars().all(|c| c == '\n' || !c.is_control()),
        "cannot record stdin {s:?}"
    );
    s.replace('\n', "\\n")
}

/// The usage text for `argv0`, from upstream's own `help` recording (argv[0] was
/// `pkcscca` there).
pub fn usage_for(argv0: &str) -> Vec<u8> {
    let help = Case::read(&cmd_dir().join("upstream-3.27/help.case"));
    String::from_utf8(help.stdout)
        .expect("usage text")
        .replace("\tpkcscca -", &format!("\t{argv0} -"))
        .into_bytes()
}

/// Whether `rest` (a stderr line after `PROGRAM: `) is one of glibc getopt's messages,
/// which upstream prints too, with the program name as invoked.
pub fn is_getopt_message(rest: &str) -> bool {
    rest.starts_with("invalid option -- '")
        || rest.starts_with("option requires an argument -- '")
        || rest.starts_with("unrecognized option '")
        || (rest.starts_with("option '")
            && (rest.ends_with("' doesn't allow an argument")
                || rest.ends_with("' requires an argument")
                || rest.contains("' is ambiguous")))
}

impl Case {
    /// Reads and parses a case file.
    pub fn read(path: &Path) -> Case {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path
            .strip_prefix(cmd_dir())
            .unwrap_or(path)
            .with_extension("")
            .display()
            .to_string();
        Case::parse(&name, &text)
    }

    /// Parses a case file:
    ///
    /// ```text
    /// # comment lines: why, and which upstream function it pins
    /// difference: TAG              (repeatable) a tag of the man page's differences list,
    /// upstream: same               or: the run is upstream 3.27's, byte for byte,
    /// recorded: CMDLINE            or: upstream's recorded run (tests/cmd/upstream-3.27)
    /// argv0: /usr/sbin/pkcscca     (optional; default pkcscca)
    /// env: NAME=VALUE              (optional, repeatable; LANG=C is always set)
    /// stdin: 76543210\n11223344\n  (optional; default empty)
    /// stdout-file: /dev/full       (optional; default a pipe)
    /// args: -m keys -v             (blank-separated, '' quoting; not in a recording)
    /// rc: 255
    /// --- stdout
    /// exact bytes; in a runnable case a line `@USAGE@` stands for the usage text
    /// --- stderr
    /// exact bytes
    /// ```
    ///
    /// `@LAB@` in arguments, environment and output stands for the scratch directory.
    pub fn parse(name: &str, text: &str) -> Case {
        let (head, sections) = text
            .split_once("--- stdout\n")
            .unwrap_or_else(|| panic!("{name}: no --- stdout section"));
        let (stdout, stderr) = sections
            .split_once("--- stderr\n")
            .unwrap_or_else(|| panic!("{name}: no --- stderr section"));
        let mut case = Case {
            name: name.to_string(),
            rc: -1,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            ..Case::default()
        };
        let mut saw_args = false;
        for line in head.lines() {
            if let Some(c) = line.strip_prefix('#') {
                case.comments
                    .push(c.strip_prefix(' ').unwrap_or(c).to_string());
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: not `key: value`: {line:?}"));
            let value = value.trim();
            match key {
                "difference" => case.differences.push(value.to_string()),
                "upstream" => {
                    assert_eq!(value, "same", "{name}: `upstream:` takes `same`");
                    case.upstream_same = true;
                }
                "recorded" => case.recorded = Some(value.to_string()),
                "argv0" => case.argv0 = Some(value.to_string()),
                "env" => {
                    let (k, v) = value
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{name}: env wants NAME=VALUE"));
                    case.env.push((k.to_string(), v.to_string()));
                }
                "stdin" => case.stdin = unescape(value),
                "stdout-file" => case.stdout_file = Some(value.to_string()),
                "args" => {
                    case.args = shell_words(value);
                    saw_args = true;
                }
                "rc" => {
                    case.rc = value
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}: rc is a number"))
                }
                other => panic!("{name}: unknown key {other:?}"),
            }
        }
        if let Some(cmd) = case.recorded.clone() {
            assert!(
                !saw_args,
                "{name}: a recording takes its arguments from `recorded:`"
            );
            case.take_recorded_command(&cmd);
        } else {
            assert!(saw_args, "{name}: `args:` is required");
        }
        assert!(case.rc >= 0, "{name}: `rc:` is required");
        case
    }

    /// Arguments and input of a recorded command line:
    /// `[printf '...' |] env VAR=... pkcscca ARGS [</dev/null]`.
    fn take_recorded_command(&mut self, cmd: &str) {
        let words = shell_words(cmd);
        if let [printf, text, pipe, ..] = words.as_slice() {
            if printf == "printf" && pipe == "|" {
                self.stdin = unescape(text);
            }
        }
        let at = words
            .iter()
            .position(|w| w == "pkcscca")
            .unwrap_or_else(|| panic!("{}: no `pkcscca` word in `recorded:`", self.name));
        self.args = words
            .get(at + 1..)
            .unwrap_or_default()
            .iter()
            .filter(|w| *w != "</dev/null")
            .cloned()
            .collect();
    }

    /// The file's text (the inverse of [`Case::parse`]).
    pub fn render(&self) -> String {
        let mut t = String::new();
        for c in &self.comments {
            if c.is_empty() {
                t.push_str("#\n");
            } else {
                writeln!(t, "# {c}").unwrap();
            }
        }
        for d in &self.differences {
            writeln!(t, "difference: {d}").unwrap();
        }
        if self.upstream_same {
            t.push_str("upstream: same\n");
        }
        if let Some(r) = &self.recorded {
            writeln!(t, "recorded: {r}").unwrap();
        }
        if let Some(a) = &self.argv0 {
            writeln!(t, "argv0: {a}").unwrap();
        }
        for (k, v) in &self.env {
            writeln!(t, "env: {k}={v}").unwrap();
        }
        if !self.stdin.is_empty() {
            writeln!(t, "stdin: {}", escape(&self.stdin)).unwrap();
        }
        if let Some(f) = &self.stdout_file {
            writeln!(t, "stdout-file: {f}").unwrap();
        }
        if self.recorded.is_none() {
            writeln!(t, "args: {}", join_words(&self.args)).unwrap();
        }
        writeln!(t, "rc: {}", self.rc).unwrap();
        t.push_str("--- stdout\n");
        t.push_str(&String::from_utf8_lossy(&self.stdout));
        t.push_str("--- stderr\n");
        t.push_str(&String::from_utf8_lossy(&self.stderr));
        t
    }

    fn argv0(&self) -> &str {
        self.argv0.as_deref().unwrap_or("pkcscca")
    }

    /// Our expected stdout and stderr, `@LAB@` standing for `lab`: for a recording,
    /// upstream's bytes with each named difference applied (each must change them);
    /// otherwise the sections with `@USAGE@` expanded.
    pub fn expected(&self, lab: &str) -> (Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (self.stdout.clone(), self.stderr.clone());
        if self.recorded.is_some() {
            for d in &self.differences {
                let before = (out.clone(), err.clone());
                derive(d, &mut out, &mut err)
                    .unwrap_or_else(|| panic!("{}: no derivation for {d:?}", self.name));
                assert!(
                    (&out, &err) != (&before.0, &before.1),
                    "{}: names {d:?}, but that difference changes nothing here",
                    self.name
                );
            }
        } else {
            let usage = usage_for(self.argv0());
            let mut expanded = Vec::new();
            for chunk in out.split_inclusive(|&b| b == b'\n') {
                if chunk == USAGE.as_bytes() {
                    expanded.extend_from_slice(&usage);
                } else {
                    expanded.extend_from_slice(chunk);
                }
            }
            out = expanded;
        }
        let sub = |b: Vec<u8>| {
            String::from_utf8(b)
                .expect("case output is text")
                .replace(LAB, lab)
                .into_bytes()
        };
        (sub(out), sub(err))
    }

    /// Runs a runnable case against the built binary (clean environment, `LANG=C`,
    /// a fresh scratch directory as `@LAB@`); returns a description of every
    /// difference, or with `PKCSCCA_UPDATE_GOLDEN` rewrites the case (not a recording).
    pub fn check(&self, path: &Path) -> Option<String> {
        let tmp = tempfile::tempdir().expect("scratch dir");
        let lab = tmp.path().display().to_string();
        let sub = |s: &str| s.replace(LAB, &lab);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pkcscca"));
        cmd.arg0(self.argv0())
            .args(self.args.iter().map(|a| sub(a)))
            .env_clear()
            .env("LANG", "C")
            // The machine's syslog gets no audit record from a test (no socket there).
            .env("PKCSCCA_SYSLOG_SOCKET", format!("{lab}/no-syslog"))
            .envs(self.env.iter().map(|(k, v)| (k, sub(v))))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(f) = &self.stdout_file {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(sub(f))
                .unwrap_or_else(|e| panic!("{}: {f}: {e}", self.name));
            cmd.stdout(file);
        }
        let mut child = cmd.spawn().expect("run pkcscca");
        let mut stdin = child.stdin.take().expect("stdin");
        // The binary may exit without reading; a broken pipe is fine.
        let _ = stdin.write_all(&self.stdin);
        drop(stdin);
        let got = child.wait_with_output().expect("wait for pkcscca");
        let rc = got.status.code().unwrap_or(-1);
        let (out, err) = (
            hide_time(&String::from_utf8_lossy(&got.stdout).replace(&lab, LAB)),
            hide_time(&String::from_utf8_lossy(&got.stderr).replace(&lab, LAB)),
        );
        if updating() && self.recorded.is_none() {
            let mut new = self.clone();
            new.rc = rc;
            new.stdout = with_usage_placeholder(out.as_bytes(), &usage_for(self.argv0()));
            new.stderr = err.into_bytes();
            if new != *self {
                fs::write(path, new.render()).expect("rewrite case");
            }
            return None;
        }
        let (want_out, want_err) = self.expected(LAB);
        let mut report = String::new();
        if rc != self.rc {
            writeln!(report, "  rc: want {}, got {:?}", self.rc, got.status).unwrap();
        }
        for (what, want, have) in [
            ("stdout", &want_out, out.as_bytes()),
            ("stderr", &want_err, err.as_bytes()),
        ] {
            if want.as_slice() != have {
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

/// Replaces a complete usage text in `out` by the `@USAGE@` line.
fn with_usage_placeholder(out: &[u8], usage: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let usage = String::from_utf8_lossy(usage);
    text.replacen(usage.as_ref(), USAGE, 1).into_bytes()
}

/// Applies one documented difference to upstream's recorded output; `None` when the
/// difference has no mechanical derivation (a recording cannot name it).
fn derive(difference: &str, out: &mut Vec<u8>, err: &mut Vec<u8>) -> Option<()> {
    match difference {
        // Our own error lines start with `pkcscca: ` where upstream prints its source
        // file and line.
        "error-prefix" => {
            let text = String::from_utf8(std::mem::take(err)).expect("stderr is text");
            let mut ours = String::new();
            for line in text.split_inclusive('\n') {
                match line.strip_prefix(UPSTREAM_PREFIX) {
                    Some(rest) => {
                        let after = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                        assert!(after.len() < rest.len(), "no line number: {line:?}");
                        let msg = after.strip_prefix(' ').expect("blank after LINE");
                        write!(ours, "pkcscca: {msg}").unwrap();
                    }
                    None => ours.push_str(line),
                }
            }
            *err = ours.into_bytes();
        }
        // Arguments (the slot included) are checked before the PIN prompts, so a run
        // that upstream ends with an argument error after prompting shows no prompts.
        "arguments-first" | "slot-checked-first" => {
            for prompt in [&b"Enter the SO PIN: \n"[..], b"Enter the USER PIN: \n"] {
                if let Some(rest) = out.strip_prefix(prompt) {
                    *out = rest.to_vec();
                }
            }
        }
        // `-h` prints our additions after upstream's usage text.
        "help-additions" => out.extend(pkcscca::usage::additions_text(b"pkcscca")),
        _ => return None,
    }
    Some(())
}

/// Every case file under `tests/cmd` (recursively), sorted by path.
pub fn all_cases() -> Vec<(PathBuf, Case)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).expect("read tests/cmd") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "case") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&cmd_dir(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let c = Case::read(&p);
            (p, c)
        })
        .collect()
}

/// The runnable cases of `tests/cmd/<dir>`, sorted by name.
pub fn cases_in(dir: &str) -> Vec<(PathBuf, Case)> {
    let root = cmd_dir().join(dir);
    all_cases()
        .into_iter()
        .filter(|(p, _)| p.parent() == Some(root.as_path()))
        .collect()
}

/// Runs every case given; one failure lists every case that differs.
pub fn check_all(cases: &[(PathBuf, Case)]) {
    let failures: Vec<String> = cases.iter().filter_map(|(p, c)| c.check(p)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Where a backup directory's name has its time (`<store>.pkcscca-backup.<UTC time>`,
/// with `.N` when taken twice in one second), the text `@TIME@`: the rest of the name
/// stays checked.
pub fn hide_time(s: &str) -> String {
    const MARK: &str = ".pkcscca-backup.";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(MARK) {
        let (head, tail) = rest.split_at(i + MARK.len());
        out.push_str(head);
        let stamp_len = tail
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_alphanumeric())
            .count();
        let mut end = stamp_len;
        let after = &tail[stamp_len..];
        if let Some(n) = after.strip_prefix('.') {
            let digits = n.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 {
                end += 1 + digits;
            }
        }
        out.push_str(TIME);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What [`hide_time`] writes for a backup's time.
pub const TIME: &str = "@TIME@";

/// Compares what a scenario test ran and saw with `tests/cmd/<name>.case` (`lab`
/// shown as `@LAB@`), or with `PKCSCCA_UPDATE_GOLDEN` writes it, keeping the existing
/// file's comments and difference lines. Panics on any difference, command included.
pub fn check_scenario(name: &str, lab: &Path, seen: &Observed<'_>) {
    let path = cmd_dir().join(format!("{name}.case"));
    let lab = lab.display().to_string();
    let hide = |s: &str| hide_time(&s.replace(&lab, LAB));
    let existing = path.exists().then(|| Case::read(&path));
    let mut got = existing.clone().unwrap_or_else(|| Case {
        name: name.to_string(),
        ..Case::default()
    });
    got.args = seen.args.iter().map(|a| hide(a)).collect();
    got.stdin = seen.stdin.to_vec();
    got.rc = seen.rc;
    got.stdout = hide(seen.stdout).into_bytes();
    got.stderr = hide(seen.stderr).into_bytes();
    if updating() {
        if existing.as_ref() != Some(&got) {
            fs::create_dir_all(path.parent().expect("case dir")).expect("create case dir");
            fs::write(&path, got.render()).expect("write case");
        }
        return;
    }
    let Some(want) = existing else {
        panic!("{}: missing (run with {UPDATE_VAR}=1)", path.display())
    };
    assert!(
        want.recorded.is_none()
            && !want
                .stdout
                .windows(USAGE.len())
                .any(|w| w == USAGE.as_bytes()),
        "{name}: a scenario case holds our output as is"
    );
    assert_eq!(
        got.render(),
        want.render(),
        "{} differs from this run (left: the run, right: the file)",
        path.display()
    );
}
