//! The parts of the end-to-end echo bench, one concept per file.

pub mod alloc;
pub mod child;
pub mod config;
pub mod loadgen;
pub mod measure;
pub mod procstat;
pub mod report;
pub mod servers;
pub mod sys;
pub mod wire;
