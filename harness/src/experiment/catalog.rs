//! The built-in experiments (every `experiments/*.toml`, compiled in by `build.rs`) and finding an
//! experiment by name or path.

use std::path::{Path, PathBuf};

use super::definition::{self, DefinitionError, Plan, Profile};

// `BUILT_IN`: every `experiments/*.toml`, compiled in by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/built_in.rs"));

/// The folder the built-ins were compiled from.
const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown experiment {name:?}; built-in experiments: {known} (or give the path of a .toml file)")]
    Unknown { name: String, known: String },
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
}

/// A built-in experiment by name, or a file by path (anything with a `/` or ending in `.toml`).
pub fn load(name_or_path: &str, profile: Profile) -> Result<Plan, CatalogError> {
    let (file, text) = text(name_or_path)?;
    Ok(definition::parse(&file, &text, profile)?)
}

/// The file an experiment is read from (as errors name it) and its text: a built-in by name, or a
/// file by path.
pub fn text(name_or_path: &str) -> Result<(String, String), CatalogError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        let text = std::fs::read_to_string(Path::new(name_or_path)).map_err(|source| CatalogError::Read {
            path: name_or_path.into(),
            source,
        })?;
        return Ok((name_or_path.to_owned(), text));
    }
    let (name, text) = BUILT_IN
        .iter()
        .find(|(name, _)| *name == name_or_path)
        .ok_or_else(|| {
            let known: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
            CatalogError::Unknown {
                name: name_or_path.into(),
                known: known.join(", "),
            }
        })?;
    if let Some(source) = edited_since_build(name, text) {
        tracing::warn!(
            "{} was edited since this binary was built: the run uses the experiment as it was then \
             (rebuild with `cargo build`, or give the file's path to run it as it is now)",
            source.display()
        );
    }
    Ok((format!("experiments/{name}.toml"), (*text).to_owned()))
}

/// The file a built-in was compiled from, when it still exists and says something else: a series of
/// runs after an edit would otherwise judge the old file while its author reads the new one.
fn edited_since_build(name: &str, compiled: &str) -> Option<PathBuf> {
    let source = Path::new(SOURCE_DIR).join(format!("{name}.toml"));
    differs(&source, compiled).then(|| source.canonicalize().unwrap_or(source))
}

/// Whether `path` exists and holds something other than `compiled` (a binary copied to another
/// machine, with no source beside it, is not stale).
fn differs(path: &Path, compiled: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|on_disk| on_disk != compiled)
}

/// Every built-in experiment, parsed (a broken built-in is a bug: the tests parse them all).
pub fn all(profile: Profile) -> Result<Vec<Plan>, CatalogError> {
    BUILT_IN.iter().map(|(name, _)| load(name, profile)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_differs_only_when_it_exists_and_says_something_else() {
        let file = std::env::temp_dir().join(format!("fortress-catalog-{}.toml", std::process::id()));
        std::fs::write(&file, "name = \"x\"\n").unwrap();
        let (same, other) = (differs(&file, "name = \"x\"\n"), differs(&file, "name = \"y\"\n"));
        std::fs::remove_file(&file).unwrap();
        assert!(
            !same && other,
            "same text differs: {same}; other text differs: {other}"
        );
        assert!(!differs(&file, "name = \"x\"\n"), "a missing file is not stale");
    }

    /// This test binary was built from the files on disk, so none of them reads as edited.
    #[test]
    fn every_built_in_matches_the_file_it_was_compiled_from() {
        for (name, text) in BUILT_IN {
            assert_eq!(edited_since_build(name, text), None, "{name}");
        }
    }
}
