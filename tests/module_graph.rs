//! The crate's top-level modules depend on each other in one direction only.
//!
//! Reads every `crate::<module>` path in the code (comments and doc comments
//! excluded) of `src/`, builds the graph of top-level modules, and fails on a cycle,
//! naming it. The layering the code follows is printed (`--nocapture`), leaves first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The top-level modules named by `crate::` paths in `code`, including the ones inside
/// `crate::{a::X, b}` groups.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let deps = graph.entry(from.clone()).or_default();
        for to in referenced(&code) {
            // Macros exported at the crate root (the CCA verb table) are not modules.
            if to != from && modules.contains(&to) {
                deps.insert(to);
            }
        }
    }
    // Peel off modules whose dependencies are all peeled: what remains is in a cycle.
    let mut order = Vec::new();
    let mut left = graph.clone();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if ready.is_empty() {
            panic!("import cycle among these modules: {left:#?}");
        }
        for m in ready {
            left.remove(&m);
            order.push(m);
        }
    }
    println!("layers, leaves first: {}", order.join(" < "));
    for (m, deps) in &graph {
        println!(
            "{m} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

#[test]
fn the_reader_sees_grouped_and_plain_paths() {
    let code = "use crate::{config::X, store::lock::L};\nuse crate::exit::Exit;\n";
    let got: Vec<String> = referenced(code).into_iter().collect();
    assert_eq!(got, ["config", "exit", "store"]);
}
