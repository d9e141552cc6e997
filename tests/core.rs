//! The admission core and the offline commands, through the library.
//! One test binary (modules under tests/core/) to keep build times down.

#[path = "core/common.rs"]
mod common;

#[path = "core/bounds.rs"]
mod bounds;
#[path = "core/carto.rs"]
mod carto;
#[path = "core/config.rs"]
mod config;
#[path = "core/extras.rs"]
mod extras;
#[path = "core/golden.rs"]
mod golden;
#[path = "core/mutation.rs"]
mod mutation;
#[path = "core/offline.rs"]
mod offline;
#[path = "core/plan.rs"]
mod plan;
#[path = "core/props.rs"]
mod props;
#[path = "core/pruned.rs"]
mod pruned;
#[path = "core/validation.rs"]
mod validation;
#[path = "core/wire.rs"]
mod wire;
