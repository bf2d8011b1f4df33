//! placeholder: filled by its owner
pub mod entry;
pub mod object;
pub mod sink;
