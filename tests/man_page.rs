//! The man page (`man/pkcscca.1`) renders without a warning from groff (all
//! warnings, man macro style checks) or mandoc's linter, keeps its layout
//! (text after an example goes on at the indentation it had before), fits an
//! 80-column terminal, and documents what the packaging installs.
//!
//! groff, man and mandoc are not on every machine: the checks that run them are
//! `#[ignore]`d, and .ci/run, which installs them, runs them with `--ignored`
//! (here: `apt-get install groff-base man-db mandoc`, then
//! `cargo test -p pkcscca --test man_page -- --include-ignored`). Without a
//! tool they fail. The checks of the page's text against the README and the
//! golden cases read the page's source and always run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::golden;

fn page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man/pkcscca.1")
}

/// Runs `cmd`; a missing program is a failure that says what to install.
fn run(mut cmd: Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed (apt-get install groff-base man-db mandoc)",
            cmd.get_program()
        ),
        Err(e) => panic!("running {cmd:?}: {e}"),
    }
}

/// The page as plain text at `width` columns (groff's ASCII output without
/// overstriking or escape sequences).
fn render(width: u32) -> String {
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-Tutf8", "-P-cbou", "-ww"])
        .arg(format!("-rLL={width}n"))
        .arg(page())
        .env("LC_ALL", "C.UTF-8");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert!(stderr.is_empty(), "groff warnings:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn groff_reports_no_warning_and_no_style_problem() {
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-z", "-ww", "-rCHECKSTYLE=3"])
        .arg(page());
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert!(stderr.is_empty(), "groff:\n{stderr}");
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn mandoc_lint_reports_no_warning() {
    // Style notes (source lines over 80 bytes) are not rendering problems.
    let mut cmd = Command::new("mandoc");
    cmd.args(["-T", "lint", "-W", "warning"]).arg(page());
    let out = run(cmd);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && all.is_empty(), "mandoc:\n{all}");
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn man_dash_l_renders_the_page() {
    // What the README tells a reader to type.
    let mut cmd = Command::new("man");
    cmd.arg("-l")
        .arg(page())
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l failed: {stderr}");
    assert!(stderr.is_empty(), "man -l: {stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PKCSCCA(1)"), "{text}");
    assert!(text.contains("NAME"), "{text}");
}

/// Leading blanks of a rendered line.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The indentation of the text before the no-fill example whose first line
/// starts with `start`, of the example, and of the text after it.
fn indents_around_example(text: &str, start: &str) -> (usize, usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{text}"));
    let before = lines
        .get(..first)
        .unwrap()
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("text before the example");
    let rest = lines.get(first..).unwrap();
    let end = rest
        .iter()
        .position(|l| l.trim().is_empty())
        .expect("end of the example");
    let after = rest
        .get(end..)
        .unwrap()
        .iter()
        .find(|l| !l.trim().is_empty())
        .expect("text after the example");
    (indent(before), indent(rest.first().unwrap()), indent(after))
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn text_after_the_json_examples_keeps_the_option_indentation() {
    let text = render(80);
    // The --json option's paragraph: body text, the example, the text after it.
    let (body, example, after) = indents_around_example(&text, "{\"mode\":\"keys\"");
    assert!(example > body, "example not indented:\n{text}");
    assert_eq!(
        after, body,
        "indentation lost after the first example:\n{text}"
    );
    let (body2, example2, after2) = indents_around_example(&text, "{\"mode\":\"oldrsakeys\"");
    assert_eq!((body2, example2, after2), (body, example, body), "{text}");
    // The option paragraphs are indented below the section's own text.
    let section = indent(
        text.lines()
            .find(|l| {
                // Justification may widen the spaces between words.
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .starts_with("Long options may be abbreviated")
            })
            .expect("the paragraph after the options"),
    );
    assert!(section < body, "{text}");
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn fits_an_80_column_terminal() {
    let text = render(80);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "line wider than 80 columns: {line:?}"
        );
    }
}

#[test]
#[ignore = "needs groff, man-db and mandoc: apt-get install groff-base man-db mandoc (.ci/run runs it)"]
fn documents_installed_files_and_coexistence_with_opencryptoki() {
    let text = render(80);
    let files = text
        .split("\nFILES\n")
        .nth(1)
        .expect("FILES section")
        .split("\nDIFFERENCES FROM OPENCRYPTOKI\n")
        .next()
        .unwrap();
    for path in [
        "/usr/sbin/pkcscca",
        "/usr/local/sbin/pkcscca",
        "/usr/share/bash-completion/completions/pkcscca",
    ] {
        assert!(files.contains(path), "FILES lacks {path}:\n{files}");
    }
    let notes = text
        .split("\nNOTES\n")
        .nth(1)
        .expect("NOTES section")
        .split("\nEXAMPLES\n")
        .next()
        .unwrap();
    for needle in [
        "/usr/sbin/pkcscca.opencryptoki",
        "/usr/share/man/man1/pkcscca.opencryptoki.1.gz",
        "dpkg-divert --local --rename --remove /usr/sbin/pkcscca",
        "--divert /usr/sbin/pkcscca.opencryptoki \\\n",
        "--add /usr/sbin/pkcscca\n",
    ] {
        assert!(notes.contains(needle), "NOTES lacks {needle:?}:\n{notes}");
    }
}

// ----- the list of differences against the golden cases ---------------------------------

/// The items of the man page's DIFFERENCES FROM OPENCRYPTOKI list, read from the
/// source: each is `.TP`, `.B TAG`, then its text. Tags with `\-` read as `-`.
fn difference_items() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(page()).unwrap();
    let section = src
        .split_once(".SH DIFFERENCES FROM OPENCRYPTOKI\n")
        .and_then(|(_, rest)| rest.split_once("\n.SH "))
        .map(|(s, _)| s)
        .expect("DIFFERENCES FROM OPENCRYPTOKI section");
    section
        .split(".TP\n")
        .skip(1)
        .map(|item| {
            let (head, body) = item.split_once('\n').expect("item text");
            let tag = head
                .strip_prefix(".B ")
                .unwrap_or_else(|| panic!("item without a `.B TAG` line: {item:?}"))
                .replace("\\-", "-");
            (tag, body.replace("\\-", "-"))
        })
        .collect()
}

/// The tags of the README's differences table (rows starting with a quoted tag).
fn readme_tags() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split_once("\n## Differences from upstream pkcscca 3.27\n")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(s, _)| s)
        .expect("README section Differences from upstream pkcscca 3.27");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(tag, _)| tag.to_string())
        .collect()
}

#[test]
fn every_listed_difference_has_a_tag_an_exit_status_and_a_golden() {
    let items = difference_items();
    assert!(items.len() >= 20, "{items:?}");
    let cases = golden::all_cases();
    let mut seen = std::collections::BTreeSet::new();
    for (tag, body) in &items {
        assert!(seen.insert(tag.clone()), "{tag} is listed twice");
        assert!(
            !tag.is_empty()
                && tag.split('-').all(|w| !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
            "tag {tag:?}: lower-case words joined by hyphens"
        );
        assert!(
            body.to_lowercase().contains("exit status"),
            "{tag}: the item does not state its exit status:\n{body}"
        );
        let shown_by: Vec<&str> = cases
            .iter()
            .filter(|(_, c)| c.differences.contains(tag))
            .map(|(_, c)| c.name.as_str())
            .collect();
        assert!(
            !shown_by.is_empty(),
            "{tag}: no golden case in tests/cmd shows it"
        );
    }
    let tags: Vec<String> = items.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        readme_tags(),
        tags,
        "the README lists the man page's differences, in order"
    );
}

/// Whether an argument is the long option `name`, possibly abbreviated to at least
/// `min` characters, possibly with `=VALUE`.
fn is_long_option(arg: &str, name: &str, min: usize) -> bool {
    arg.strip_prefix("--")
        .map(|a| a.split_once('=').map_or(a, |(n, _)| n))
        .is_some_and(|n| n.len() >= min && name.starts_with(n))
}

#[test]
fn every_golden_names_the_documented_differences_it_shows() {
    let tags: Vec<String> = difference_items().into_iter().map(|(t, _)| t).collect();
    let cases = golden::all_cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut problems = Vec::new();
    for (_, c) in &cases {
        let mut complain = |what: String| problems.push(format!("{}: {what}", c.name));
        for d in &c.differences {
            if !tags.contains(d) {
                complain(format!("names {d:?}, which the man page does not list"));
            }
        }
        if c.differences
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            != c.differences.len()
        {
            complain("names a difference twice".into());
        }
        match (
            c.recorded.is_some(),
            c.upstream_same,
            c.differences.is_empty(),
        ) {
            // An upstream recording: what it differs in is derived (and checked) by cli.rs.
            (true, false, _) => continue,
            (false, true, true) | (false, false, false) => {}
            (_, true, false) => complain("says `upstream: same` and names differences".into()),
            (false, false, true) => {
                complain("names no difference and does not say `upstream: same`".into())
            }
            (true, true, _) => complain("a recording cannot say `upstream: same`".into()),
        }
        let stdout = String::from_utf8_lossy(&c.stdout);
        let stderr = String::from_utf8_lossy(&c.stderr);
        let argv0 = c.argv0.as_deref().unwrap_or("pkcscca");
        // Lines only we print: our prefix on a line that is not one of getopt's.
        let ours_prefixed = stderr.lines().any(|l| {
            [format!("{argv0}: "), "pkcscca: ".to_string()]
                .iter()
                .any(|p| {
                    l.strip_prefix(p.as_str())
                        .is_some_and(|r| !golden::is_getopt_message(r))
                })
        });
        let names = |t: &str| c.differences.iter().any(|d| d == t);
        let shows = [
            ("error-prefix", ours_prefixed),
            (
                "object-names",
                format!("{stdout}{stderr}").contains("handle="),
            ),
            ("output-failed", c.rc == 12),
            (
                "help-version",
                c.args
                    .iter()
                    .any(|a| is_long_option(a, "help", 1) || is_long_option(a, "version", 4)),
            ),
            (
                "counts-line",
                stdout.contains("\nRe-enciphered: ")
                    || stdout.contains("\nDry run: would re-encipher"),
            ),
            ("backup", stderr.contains(".pkcscca-backup.")),
            (
                "help-additions",
                stdout.contains("\n Additions of pkcscca-rs:\n"),
            ),
            (
                "dry-run-json",
                c.args
                    .iter()
                    .any(|a| is_long_option(a, "dry-run", 2) || is_long_option(a, "json", 1)),
            ),
        ];
        for (tag, shown) in shows {
            if c.upstream_same && shown {
                complain(format!("says `upstream: same` but shows {tag}"));
            }
            if names(tag) && !shown && tag != "error-prefix" {
                complain(format!("names {tag}, but does not show it"));
            }
            if shown && !names(tag) && tag != "error-prefix" {
                complain(format!("shows {tag}, but does not name it"));
            }
        }
        if names("error-prefix") && !ours_prefixed {
            complain("names error-prefix, but prints no error line of ours".into());
        }
        let exit_3 = ["failed-keys", "unreadable-object", "unknown-mkvp"];
        // `-m status` exits 3 for keys under no register (its own item says so).
        let explains_3 = exit_3.iter().any(|t| names(t)) || names("status");
        if (c.rc == 3 && !explains_3) || (c.rc != 3 && exit_3.iter().any(|t| names(t))) {
            complain(format!("exit status {} against {exit_3:?}", c.rc));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
