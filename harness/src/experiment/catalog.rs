//! The built-in experiments (`experiments/*.toml`, compiled in) and finding an experiment by name or path.

use std::path::Path;

use super::definition::{self, DefinitionError, Plan, Profile};

/// Name and text of each built-in experiment.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "cache-outage",
        include_str!("../../../experiments/cache-outage.toml"),
    ),
    ("flash-sale", include_str!("../../../experiments/flash-sale.toml")),
    ("n-plus-one", include_str!("../../../experiments/n-plus-one.toml")),
    ("db-latency", include_str!("../../../experiments/db-latency.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown experiment {name:?}; built-in experiments: {known} (or give the path of a .toml file)")]
    Unknown { name: String, known: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
}

/// A built-in experiment by name, or a file by path (anything with a `/` or ending in `.toml`).
pub fn load(name_or_path: &str, profile: Profile) -> Result<Plan, CatalogError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        let text = std::fs::read_to_string(Path::new(name_or_path)).map_err(|source| CatalogError::Read {
            path: name_or_path.into(),
            source,
        })?;
        return Ok(definition::parse(name_or_path, &text, profile)?);
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
    Ok(definition::parse(
        &format!("experiments/{name}.toml"),
        text,
        profile,
    )?)
}

/// Every built-in experiment, parsed (a broken built-in is a bug: the tests parse them all).
pub fn all(profile: Profile) -> Result<Vec<Plan>, CatalogError> {
    BUILT_IN.iter().map(|(name, _)| load(name, profile)).collect()
}
