//! The layering `lib.rs` promises, checked on the sources: its list of modules is in order from the
//! top, and no module names one listed above it (`crate::x`, or `super::` climbing to the root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers as `lib.rs` lists them: its lines `//! - \`name\`: ...`, top first.
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` -> ["a", "b"]; `src/a/mod.rs` -> ["a"].
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The top-level modules a file's code names, each with the line it does so on.
fn named_modules(file: &Path) -> Vec<(String, usize)> {
    named_in(&std::fs::read_to_string(file).unwrap(), module_path(file).len())
}

/// The top-level modules `text` names, for a file `depth` modules below the crate root.
fn named_in(text: &str, depth: usize) -> Vec<(String, usize)> {
    let mut named = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.push((name, n + 1));
            rest = after;
        }
        // `super::` climbing as far as the crate root, then a module name.
        let supers = code.matches("super::").count();
        if supers >= depth && depth > 0 {
            let after = code.rsplit("super::").next().unwrap_or("");
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.push((name, n + 1));
            }
        }
    }
    named
}

#[test]
fn lib_rs_lists_every_module_and_none_imports_one_above_it() {
    let layers = layers();
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in files
        .iter()
        .filter(|f| !f.ends_with("lib.rs") && !f.ends_with("main.rs"))
    {
        let module = module_path(file)[0].clone();
        let Some(&own) = rank.get(module.as_str()) else {
            violations.push(format!("{module} is not in lib.rs's list of layers"));
            continue;
        };
        for (named, line) in named_modules(file) {
            match rank.get(named.as_str()) {
                Some(&theirs) if named != module && theirs < own => violations.push(format!(
                    "{}:{line}: {module} uses {named}, which is above it",
                    file.display()
                )),
                None if !named.is_empty() => {
                    violations.push(format!("{}:{line}: {named} is not a layer", file.display()))
                }
                _ => {}
            }
        }
    }
    assert!(
        layers.len() >= 10,
        "lib.rs lists its layers as `//! - `name`: ...` lines: {layers:?}"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    // The check itself, on text written for it: a file of `env` (low) naming `experiment` (high),
    // once by path and once by climbing from `env::docker` to the root.
    let text = "use crate::experiment::runner;\nuse super::super::report::Run;\n";
    assert_eq!(
        named_in(text, 2),
        [("experiment".to_owned(), 1), ("report".to_owned(), 2)]
    );
    assert_eq!(
        named_in("use super::docker;", 2),
        [],
        "one level up stays inside env"
    );
    let layers = layers();
    let position = |m: &str| layers.iter().position(|l| l == m).unwrap();
    assert!(position("experiment") < position("env"));
}
