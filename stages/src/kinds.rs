//! The built-in stage kinds, in pipeline order, for the engine's registry.

use crate::api::{Registry, StageKind};

pub fn registry() -> Registry {
    let kinds: Vec<Box<dyn StageKind>> = vec![
        Box::new(crate::scrape::ScrapeKind),
        Box::new(crate::encode::EncodeKind),
        Box::new(crate::limit::LimitKind),
        Box::new(crate::vocab::VocabKind),
        Box::new(crate::train::TrainKind),
        Box::new(crate::sample::SampleKind),
        Box::new(crate::command::CommandKind),
    ];
    Registry::new(kinds)
}

/// The built-in kind named `name` (for tests, examples and tools).
pub fn find(name: &str) -> Option<&'static dyn StageKind> {
    static BUILT_IN: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    BUILT_IN.get_or_init(registry).find(name)
}
