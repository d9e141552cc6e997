//! The cost bounds of one admission request (defined in the leaf module [`crate::limits`], which
//! the config uses too), under the name the admission code and its callers use.

pub use crate::limits::*;
