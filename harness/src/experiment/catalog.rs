//! The built-in experiments (every `experiments/*.toml`) and finding an experiment by name or path.
//!
//! A release build carries them compiled in (`build.rs`); a development build reads the folder it
//! was built from at run time, so editing a built-in needs no rebuild.

use std::path::{Path, PathBuf};

use super::definition::{self, DefinitionError, Plan, Profile};

// `COMPILED_IN`: every `experiments/*.toml` in a release build, `None` in a development build.
include!(concat!(env!("OUT_DIR"), "/built_in.rs"));

/// The folder the built-ins come from (read at run time by a development build).
const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown experiment {name:?}; built-in experiments: {known} (or give the path of a .toml file)")]
    Unknown { name: String, known: String },
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "cannot read the built-in experiments from {path}: a development build reads them from the \
         checkout it was built in (give the path of a .toml file, or install a release build with \
         `cargo install --path harness`, which carries them)"
    )]
    Folder { path: String, source: std::io::Error },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
}

/// One built-in experiment: its name (the file's stem) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltIn {
    pub name: String,
    pub text: String,
}

/// Every built-in experiment, by name: compiled in (release), or read from the folder (development).
pub fn built_ins() -> Result<Vec<BuiltIn>, CatalogError> {
    match COMPILED_IN {
        Some(compiled) => Ok(compiled
            .iter()
            .map(|(name, text)| BuiltIn {
                name: (*name).to_owned(),
                text: (*text).to_owned(),
            })
            .collect()),
        None => read_folder(Path::new(SOURCE_DIR)),
    }
}

/// Every `*.toml` of `dir`, sorted by name.
fn read_folder(dir: &Path) -> Result<Vec<BuiltIn>, CatalogError> {
    let folder_error = |source| CatalogError::Folder {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(folder_error)? {
        let path = entry.map_err(folder_error)?.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Some(name) = path.file_stem()
        {
            files.push((name.to_string_lossy().into_owned(), path));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Read {
                path: path.display().to_string(),
                source,
            })?;
            Ok(BuiltIn { name, text })
        })
        .collect()
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
    let built_ins = built_ins()?;
    let Some(built_in) = built_ins.iter().find(|b| b.name == name_or_path) else {
        let known: Vec<&str> = built_ins.iter().map(|b| b.name.as_str()).collect();
        return Err(CatalogError::Unknown {
            name: name_or_path.into(),
            known: known.join(", "),
        });
    };
    if COMPILED_IN.is_some()
        && let Some(source) = edited_since_build(&built_in.name, &built_in.text)
    {
        tracing::warn!(
            "{} was edited since this binary was built: the run uses the experiment as it was then \
             (rebuild with `cargo build --release`, or give the file's path to run it as it is now)",
            source.display()
        );
    }
    Ok((
        format!("experiments/{}.toml", built_in.name),
        built_in.text.clone(),
    ))
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
    built_ins()?
        .iter()
        .map(|b| {
            Ok(definition::parse(
                &format!("experiments/{}.toml", b.name),
                &b.text,
                profile,
            )?)
        })
        .collect()
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

    /// Whatever this build's catalog comes from, it says what the folder says now: a release build
    /// was compiled from these files, a development build reads them.
    #[test]
    fn every_built_in_matches_its_file() {
        for built_in in built_ins().unwrap() {
            assert_eq!(
                edited_since_build(&built_in.name, &built_in.text),
                None,
                "{}",
                built_in.name
            );
        }
    }

    #[test]
    fn a_folder_read_lists_its_toml_files_by_name_and_a_missing_one_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("fortress-catalog-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("b.toml", "b"),
            ("a.toml", "a"),
            ("notes.md", "not an experiment"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let read = read_folder(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<(String, String)> = read.unwrap().into_iter().map(|b| (b.name, b.text)).collect();
        assert_eq!(names, [("a".into(), "a".into()), ("b".into(), "b".into())]);
        let missing = read_folder(&dir).unwrap_err().to_string();
        assert!(missing.contains("cargo install --path harness"), "{missing}");
    }
}
