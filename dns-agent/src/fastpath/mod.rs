//! placeholder: filled by its owner
pub mod entry;
pub mod sink;
