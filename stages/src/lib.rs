//! vgmake's built-in stage kinds, with their domain code, and the tools for
//! MIDI files (`vgmake encode`, `decode`, `render`, `roll`).
//!
//! The engine (crate `vgmake-engine`) sees these kinds only through the
//! stage API (crate `vgmake-api`, re-exported here as [`api`]) and the
//! [`kinds::registry`] that the binary hands it; everything about MIDI,
//! datasets and tensors lives here.

pub use vgmake_api as api;

pub mod child;
pub mod command;
pub mod data;
pub mod dataset;
pub mod encode;
pub mod input_file;
pub mod kinds;
pub mod limit;
pub mod midi;
pub mod plot;
pub mod sample;
pub mod scrape;
pub mod songs;
pub mod tools;
pub mod train;
pub mod vocab;
pub mod walk;
