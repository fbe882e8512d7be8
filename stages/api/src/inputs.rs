//! What a stage kind reads from its dependencies, declared so that the
//! engine can check a pipeline's `deps` when it parses the file, before
//! anything runs.

/// What a stage kind consumes.
#[derive(Debug, Clone, Copy)]
pub enum Inputs {
    /// Any number of dependencies of any kind, in the order of `deps`
    /// (the `command` kind).
    Any,
    /// Each slot is filled by exactly one dependency of one of its kinds, and
    /// there are no other dependencies. No slots: a source stage.
    Slots(&'static [Slot]),
}

/// One input of a stage kind: "the dataset, from a `vocab` stage".
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// The name the kind asks for it by ([`crate::StageContext::input`]).
    pub name: &'static str,
    /// The stage kinds whose output it can read.
    pub kinds: &'static [&'static str],
    /// What it is, for error messages: "the dataset to train on".
    pub what: &'static str,
    /// Whether the kind works without it (reads it when it is there).
    pub optional: bool,
}

/// Why a list of dependencies does not fit a kind's [`Inputs`].
#[derive(Debug, Clone, PartialEq)]
pub enum InputError {
    /// No dependency fills this slot.
    Missing { slot: Slot },
    /// Dependency number `dep` (its kind `kind`) fills no slot.
    Unexpected { dep: usize, kind: String },
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Inputs {
    /// Matches dependencies (by kind, in `deps` order) to slots: for each
    /// dependency the slot it fills (`None` under [`Inputs::Any`]). Each
    /// dependency takes the first unfilled slot that accepts its kind.
    pub fn assign(&self, dep_kinds: &[&str]) -> Result<Vec<Option<&'static str>>, Vec<InputError>> {
        let Inputs::Slots(slots) = self else {
            return Ok(vec![None; dep_kinds.len()]);
        };
        let mut filled = vec![false; slots.len()];
        let mut assigned = Vec::new();
        let mut errors = Vec::new();
        for (dep, kind) in dep_kinds.iter().enumerate() {
            let slot = (0..slots.len()).find(|&s| !filled[s] && slots[s].kinds.contains(kind));
            match slot {
                Some(s) => {
                    filled[s] = true;
                    assigned.push(Some(slots[s].name));
                }
                None => errors.push(InputError::Unexpected {
                    dep,
                    kind: kind.to_string(),
                }),
            }
        }
        for (s, slot) in slots.iter().enumerate() {
            if !filled[s] && !slot.optional {
                errors.push(InputError::Missing { slot: *slot });
            }
        }
        if errors.is_empty() {
            Ok(assigned)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Inputs = Inputs::Slots(&[
        Slot {
            name: "model",
            kinds: &["train"],
            what: "the trained model",
            optional: false,
        },
        Slot {
            name: "dataset",
            kinds: &["vocab"],
            what: "the vocabulary",
            optional: false,
        },
        Slot {
            name: "songs",
            kinds: &["limit"],
            what: "the real songs",
            optional: true,
        },
    ]);

    #[test]
    fn slots_are_filled_by_kind_in_any_order() {
        assert_eq!(
            SAMPLE.assign(&["vocab", "train"]).unwrap(),
            vec![Some("dataset"), Some("model")]
        );
        assert_eq!(
            SAMPLE.assign(&["limit", "vocab", "train"]).unwrap(),
            vec![Some("songs"), Some("dataset"), Some("model")]
        );
        assert_eq!(Inputs::Any.assign(&["x", "y"]).unwrap(), vec![None, None]);
    }

    #[test]
    fn missing_and_extra_dependencies_are_errors() {
        let errors = SAMPLE.assign(&["train", "train"]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(matches!(&errors[0], InputError::Unexpected { dep: 1, kind } if kind == "train"));
        assert!(matches!(&errors[1], InputError::Missing { slot } if slot.name == "dataset"));
        assert!(Inputs::Slots(&[]).assign(&["scrape"]).is_err());
    }
}
