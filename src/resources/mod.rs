//! `remediation.yaml` and `shipyard.yaml`: parsing, matching, and where they come from.
//!
//! - [`remediation`]: the two remediation formats, problem matching and action selection.
//! - [`shipyard`]: the two shipyard formats and whether a stage remediates.
//! - [`source`]: reading the files from a directory or the Keptn API.
//! - [`plan`]: both together, as the remediator needs them.
//!
//! Every parse error is a [`FileError`] naming file, line and column.

pub mod plan;
pub mod remediation;
pub mod shipyard;
pub mod source;
mod yaml;

pub use plan::{Plan, load_plan};
pub use remediation::{Format, MatchKind, Remediation, RemediationFile, SelectError};
pub use shipyard::{Shipyard, ShipyardFormat};
pub use source::{DirSource, KeptnApiSource, Loaded, ResourceApi, ResourceSource, SourceError};
pub use yaml::{FileError, MAX_FILE_BYTES};
