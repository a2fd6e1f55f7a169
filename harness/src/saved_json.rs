//! Reading back the JSON files Fortress writes for itself (a run's `summary.json`, the gate's
//! baselines). Each carries a `schema` number; a file of another schema is refused before it is
//! half-read into today's types. Callers name the file and say what to do about it.

use serde::de::DeserializeOwned;

/// Why a saved file could not be read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Unreadable {
    /// Not JSON, or not the shape expected (a half-written file, a hand edit).
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    /// Written in another schema; `found` is what the file says (`none` when it says nothing).
    Schema { found: String },
}

impl From<serde_json::Error> for Unreadable {
    fn from(e: serde_json::Error) -> Self {
        Self::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Unreadable> {
    Ok(serde_json::from_str(text)?)
}

/// `text` as a `T`, provided its top-level `schema` is `schema`.
pub fn parse_versioned<T: DeserializeOwned>(text: &str, schema: u32) -> Result<T, Unreadable> {
    let raw: serde_json::Value = parse(text)?;
    match raw.get("schema") {
        Some(found) if found.as_u64() == Some(u64::from(schema)) => parse(text),
        None | Some(serde_json::Value::Null) => Err(Unreadable::Schema { found: "none".into() }),
        Some(found) => Err(Unreadable::Schema {
            found: found.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_schema_is_refused_by_what_it_says() {
        let read = |text: &str| parse_versioned::<serde_json::Value>(text, 1);
        assert!(read(r#"{"schema": 1, "x": 2}"#).is_ok());
        assert_eq!(
            read(r#"{"x": 2}"#),
            Err(Unreadable::Schema { found: "none".into() })
        );
        assert_eq!(
            read(r#"{"schema": 2}"#),
            Err(Unreadable::Schema { found: "2".into() })
        );
        assert!(matches!(
            read("{\n\"schema\": 1,"),
            Err(Unreadable::Malformed { line: 2, .. })
        ));
    }
}
