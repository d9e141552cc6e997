//! Configuration: the ConfigMap keys, their rules, the typed model, the snapshot the core reads,
//! and where snapshots come from.
//!
//! - [`load`]: a ConfigMap out of a file's text.
//! - [`store`]: the snapshot in force, which every source publishes into.
//! - [`file_source`]: the standalone `--config` file, polled.
//! - [`metrics`]: the `config` group of metrics.

pub mod extra;
pub mod file_source;
pub mod keys;
pub mod load;
pub mod metrics;
mod model;
mod problem;
mod quote;
pub mod rules;
pub mod shared_map;
mod snapshot;
mod source;
pub mod store;

pub use extra::{ExtraEnvAllowlist, extra_env_name};
pub use file_source::{ConfigFile, MAX_CONFIG_FILE_BYTES};
pub use load::{
    ConfigFileError, LoadedConfigMap, load_config_map, parse_config, standalone_snapshot,
};
pub use metrics::ConfigMetrics;
pub use model::{WorkloadIdentityConfig, fingerprint, suggest};
pub use problem::{ConfigProblem, ConfigWarning, Rule};
pub use shared_map::SharedMap;
pub use snapshot::{ConfigEntry, ConfigOrigin, ConfigSnapshot, Resolved, SeenConfigMap};
pub use source::{ConfigMapShape, DataShape, config_from_object, config_map_data, parse_env_file};
pub use store::ConfigStore;
