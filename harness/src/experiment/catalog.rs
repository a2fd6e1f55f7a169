//! The built-in experiments (every `experiments/*.toml`, compiled in by `build.rs`) and finding an
//! experiment by name or path.

use std::path::Path;

use super::definition::{self, DefinitionError, Plan, Profile};

// `BUILT_IN`: every `experiments/*.toml`, compiled in by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/built_in.rs"));

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
    Ok((format!("experiments/{name}.toml"), (*text).to_owned()))
}

/// Every built-in experiment, parsed (a broken built-in is a bug: the tests parse them all).
pub fn all(profile: Profile) -> Result<Vec<Plan>, CatalogError> {
    BUILT_IN.iter().map(|(name, _)| load(name, profile)).collect()
}
