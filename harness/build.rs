//! Compiles every `experiments/*.toml` into a release build as a built-in experiment, so an
//! installed `fortress` carries its catalog: `experiment::catalog` includes the list this writes.
//!
//! A development build compiles none in and reads the folder at run time instead: a built-in
//! compiled in makes every edit of its file rebuild the harness and relink each test binary (7m44s
//! on this 2-core machine, 2026-12-07), where reading it costs nothing.

use std::path::Path;

fn main() {
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("built_in.rs");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let compiled_in = if release {
        format!("Some(&[\n{}])", entries().concat())
    } else {
        println!("cargo:rerun-if-changed=build.rs");
        "None".to_owned()
    };
    let code = format!(
        "/// Name and text of each built-in experiment (`experiments/*.toml`), by name, in a release\n\
         /// build; `None` in a development build, which reads the folder at run time.\n\
         const COMPILED_IN: Option<&[(&str, &str)]> = {compiled_in};\n"
    );
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// One `(name, include_str!(path))` line per experiment file, sorted by name.
fn entries() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_stem().expect("a file name").to_string_lossy();
            let path = path.canonicalize().expect("an existing file");
            format!(
                "    ({name:?}, include_str!({:?})),\n",
                path.display().to_string()
            )
        })
        .collect()
}
