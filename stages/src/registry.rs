//! The built-in stage kinds, looked up by name.

use std::sync::OnceLock;

use crate::api::StageKind;

fn all() -> &'static [Box<dyn StageKind>] {
    static KINDS: OnceLock<Vec<Box<dyn StageKind>>> = OnceLock::new();
    KINDS.get_or_init(|| {
        vec![
            Box::new(crate::scrape::ScrapeKind),
            Box::new(crate::encode::EncodeKind),
            Box::new(crate::limit::LimitKind),
            Box::new(crate::vocab::VocabKind),
            Box::new(crate::train::TrainKind),
            Box::new(crate::sample::SampleKind),
            Box::new(crate::command::CommandKind),
        ]
    })
}

/// The kind named `name`, if built in.
pub fn find(name: &str) -> Option<&'static dyn StageKind> {
    all().iter().find(|k| k.name() == name).map(|k| k.as_ref())
}

/// Every built-in kind, in pipeline order.
pub fn kinds() -> impl Iterator<Item = &'static dyn StageKind> {
    all().iter().map(|k| k.as_ref())
}

/// The names of the built-in kinds (for "did you mean" suggestions).
pub fn names() -> Vec<&'static str> {
    kinds().map(|k| k.name()).collect()
}
