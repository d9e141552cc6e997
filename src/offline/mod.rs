//! The offline commands, `check` and `review`: files in, text out, decisions by the same core the
//! server uses. Pure functions over strings so they are tested without processes.

mod check;
mod review;

pub use check::{CheckContext, CheckReport, check_config_map, check_env_file};
pub use review::{OutputFormat, ReviewReport, review_stream};
