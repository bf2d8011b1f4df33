//! placeholder: filled by its owner
pub mod entry;
