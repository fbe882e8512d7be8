//! The stage kinds a binary offers, handed to the engine by `main`.

use crate::StageKind;

pub struct Registry {
    kinds: Vec<Box<dyn StageKind>>,
}

impl Registry {
    pub fn new(kinds: Vec<Box<dyn StageKind>>) -> Self {
        Registry { kinds }
    }
    /// The kind named `name`.
    pub fn find(&self, name: &str) -> Option<&dyn StageKind> {
        self.kinds
            .iter()
            .find(|k| k.name() == name)
            .map(|k| k.as_ref())
    }
    /// Every kind, in the order given.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn StageKind> {
        self.kinds.iter().map(|k| k.as_ref())
    }
    /// Their names (for "did you mean" suggestions).
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name()).collect()
    }
}
