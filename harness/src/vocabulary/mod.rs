//! The words every layer of the lab speaks, each a closed set parsed once at the edge: which variant
//! ran, which link or container a fault hits, what was measured, what the users did, how a prediction
//! came out and what the process answers. A name is written in exactly one place: here.
//!
//! Nothing here imports any other module of the lab; everything else may import it.

#[macro_use]
mod closed_set;
pub(crate) use closed_set::closed_set;
mod exit;
mod metric;
mod outcome;
mod role;
mod scenario;
mod variant;

pub use exit::ExitCode;
pub use metric::{Cadence, Metric, Needs, Owner, Producer};
pub use outcome::Outcome;
pub use role::{Link, Role, UnknownRole};
pub use scenario::Scenario;
pub use variant::Variant;

/// A name that is not in its closed set; the message lists the names that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}; {what}s: {known}")]
pub struct Unknown {
    pub what: &'static str,
    pub got: String,
    pub known: String,
}

impl Unknown {
    pub fn new<'a>(what: &'static str, got: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            what,
            got: got.to_owned(),
            known: known.into_iter().collect::<Vec<_>>().join(", "),
        }
    }
}
