//! The engine: the handle other threads use ([`handle`]), configuring and
//! starting the loops ([`builder`]), binding the listeners ([`bind`]).

mod bind;
mod builder;
mod handle;

pub use builder::EngineBuilder;
pub use handle::Engine;
