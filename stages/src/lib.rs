//! vgmake's stage API and its built-in stage kinds, with their domain code.
//!
//! The engine (the `vgmake` crate) sees stages only through [`api`] and
//! [`registry`]; everything about MIDI, datasets and tensors lives here.

pub mod api;
pub mod command;
pub mod dataset;
pub mod encode;
pub mod limit;
pub mod memo;
pub mod midi;
pub mod plot;
pub mod registry;
pub mod sample;
pub mod scrape;
pub mod songs;
pub mod train;
pub mod vocab;
pub mod walk;
