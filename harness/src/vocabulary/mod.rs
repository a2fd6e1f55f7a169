//! The words every layer of the lab speaks, each a closed set parsed once at the edge: which variant
//! ran, which link or container a fault hits, what was measured, what the users did, how a prediction
//! came out and what the process answers. A name is written in exactly one place: here.
//!
//! Nothing here imports any other module of the lab; everything else may import it.

pub use closed_set::Unknown;
pub(crate) use closed_set::closed_set;
mod capacity;
mod counter;
mod exit;
mod explore;
mod metric;
mod outcome;
mod role;
mod scenario;
mod variant;

pub use capacity::{CapacityFigure, Condition};
pub use counter::Counter;
pub use exit::ExitCode;
pub use explore::Class;
pub use metric::{Cadence, Metric, Needs, Owner, Producer};
pub use outcome::Outcome;
pub use role::{Link, Role, UnknownRole};
pub use scenario::{Scenario, Start};
pub use variant::Variant;
