//! Compiles every `experiments/*.toml` into the binary as a built-in experiment, so adding an
//! experiment is adding its file: `experiment::catalog` includes the list this writes.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let entries: Vec<String> = files
        .iter()
        .map(|path| {
            let name = path.file_stem().expect("a file name").to_string_lossy();
            let path = path.canonicalize().expect("an existing file");
            format!(
                "    ({name:?}, include_str!({:?})),\n",
                path.display().to_string()
            )
        })
        .collect();
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("built_in.rs");
    let code = format!(
        "/// Name and text of each built-in experiment (`experiments/*.toml`), by name.\n\
         pub const BUILT_IN: &[(&str, &str)] = &[\n{}];\n",
        entries.concat()
    );
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
