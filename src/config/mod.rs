//! Configuration: the ConfigMap keys, their rules, the typed model and the snapshot the core reads.

pub mod keys;
mod model;
mod problem;
pub mod rules;
mod snapshot;
mod source;

pub use model::{WorkloadIdentityConfig, fingerprint, suggest};
pub use problem::{ConfigProblem, ConfigWarning, Rule};
pub use snapshot::{ConfigEntry, ConfigOrigin, ConfigSnapshot, Resolved};
pub use source::{ConfigMapShape, DataShape, config_from_object, config_map_data, parse_env_file};
