//! Test support shared by the integration tests.

pub mod vgmusic_site;
