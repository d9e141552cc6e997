//! Certificates of the admission listener.

pub mod self_managed;
