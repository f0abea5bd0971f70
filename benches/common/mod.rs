//! The parts of the end-to-end benches (echo over TCP, echo over UDP), one concept
//! per file. Both bench binaries compile all of it and each uses its own part,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod alloc;
pub mod child;
pub mod config;
pub mod exact;
pub mod load;
pub mod measure;
pub mod perf;
pub mod procstat;
pub mod report;
pub mod rotation;
pub mod servers;
pub mod sys;
pub mod udp_load;
pub mod wire;
