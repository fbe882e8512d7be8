//! Whether a built variant is what `pipeline.toml` says now (and `why` not),
//! and the command line that builds its results again.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use crate::executor::BuildEnv;
use crate::history::HistoryEntry;
use crate::pipeline::{BuildVariants, DEFAULT_VARIANT, Pipeline, Resolved};
use crate::plan::{PlanState, plan};
use crate::project::Project;
use crate::store::{StageRef, Store};

pub enum Freshness {
    UpToDate,
    /// One line per stage that a build would change.
    Stale(Vec<String>),
    /// It could not be told (a sweep no build in the history names).
    Unknown(String),
}

/// Plans the variant as the pipeline file defines it now and compares
/// the plan with what the variant last built. Never reaches the remote.
pub fn check(
    project: &Project,
    store: &Store,
    history: &[HistoryEntry],
    variant: &str,
    refs: &BTreeMap<String, StageRef>,
) -> Freshness {
    let resolved = match definition(&project.pipeline, history, variant) {
        Ok(r) => r,
        Err(why) => return Freshness::Unknown(why),
    };
    let cancel = AtomicBool::new(false);
    let env = BuildEnv {
        store,
        project_dir: &project.dir,
        data_dir: &project.data_dir,
        cancel: &cancel,
        threads: 1,
        remote: None,
        slurm: None,
        ran_on: None,
        resolved_roots: Default::default(),
    };
    let plans = match plan(&env, &resolved, &[]) {
        Ok(p) => p,
        Err(e) => return Freshness::Unknown(e.to_string()),
    };
    let mut reasons = Vec::new();
    for p in plans {
        let built = refs.get(&p.name).map(|r| r.key.as_str());
        match p.state {
            PlanState::Cached if p.key.as_deref() == built => {}
            PlanState::Cached if built.is_none() => reasons.push(format!(
                "`{}` was not built in this variant (its result is in the cache)",
                p.name
            )),
            PlanState::Cached => reasons.push(format!(
                "`{}`: the last build of this variant had other settings (a --set?); the pipeline's result is in the cache",
                p.name
            )),
            _ if p.reasons.is_empty() => reasons.push(format!("`{}` will run", p.name)),
            _ => reasons.push(format!("`{}` will run: {}", p.name, p.reasons.join("; "))),
        }
    }
    if reasons.is_empty() {
        Freshness::UpToDate
    } else {
        Freshness::Stale(reasons)
    }
}

/// The variant a sweep point was built on: `short` for `short+lr=0.1`.
fn base<'a>(pipeline: &Pipeline, variant: &'a str) -> Option<&'a str> {
    if variant == DEFAULT_VARIANT || pipeline.variants.contains_key(variant) {
        return Some(variant);
    }
    variant
        .split_once('+')
        .map(|(b, _)| b)
        .filter(|b| pipeline.variants.contains_key(*b))
}

/// The variant as the pipeline file and the `--set` arguments of the build
/// that last made it define it now.
fn definition(
    pipeline: &Pipeline,
    history: &[HistoryEntry],
    variant: &str,
) -> Result<Resolved, String> {
    let declared = variant == DEFAULT_VARIANT || pipeline.variants.contains_key(variant);
    if declared {
        return pipeline
            .resolve(Some(variant), &[])
            .map_err(|e| e.to_string());
    }
    let Some(build) = history
        .iter()
        .rev()
        .find(|h| h.variants.iter().any(|v| v == variant))
    else {
        return Err(
            "not declared in pipeline.toml, and no build in the history names it".to_string(),
        );
    };
    if build.sets.is_empty() {
        return Err("no longer declared in pipeline.toml".to_string());
    }
    let all = BuildVariants::new(pipeline, base(pipeline, variant), &build.sets, false)
        .map_err(|e| e.to_string())?
        .all;
    all.into_iter()
        .find(|r| r.variant == variant)
        .ok_or_else(|| {
            format!(
                "the --set arguments of its last build ({}) no longer make this variant",
                build.sets.join(" ")
            )
        })
}

/// `vgmake build [--variant V] [--set stage.key=value ...]`: the variant's
/// own definition plus every parameter whose built value differs from it,
/// so the command gives these results even after `pipeline.toml` changed.
pub fn reproduce(
    pipeline: &Pipeline,
    variant: &str,
    built: &[(String, BTreeMap<String, toml::Value>)],
) -> String {
    let base = base(pipeline, variant).unwrap_or(DEFAULT_VARIANT);
    let mut words = vec!["vgmake".to_string(), "build".to_string()];
    if base != DEFAULT_VARIANT {
        words.push("--variant".into());
        words.push(shell_word(base));
    }
    let defined = pipeline.resolve(Some(base), &[]).ok();
    for (stage, params) in built {
        let now = defined
            .as_ref()
            .and_then(|d| d.stage(stage))
            .map(|s| s.params.values());
        let Some(now) = now else {
            continue;
        };
        for (key, value) in params {
            let was = now.get(key);
            match (value, was) {
                (_, Some(w)) if w == value => {}
                (toml::Value::Table(t), Some(toml::Value::Table(w))) => {
                    for (entry, v) in t {
                        if w.get(entry) != Some(v) {
                            words.push("--set".into());
                            words.push(shell_word(&format!(
                                "{stage}.{key}.{entry}={}",
                                set_value(v)
                            )));
                        }
                    }
                }
                _ => {
                    words.push("--set".into());
                    words.push(shell_word(&format!("{stage}.{key}={}", set_value(value))));
                }
            }
        }
    }
    words.join(" ")
}

/// A value as `--set` reads it back: a plain word stays bare, any other
/// string is TOML-quoted.
fn set_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./:".contains(c))
                && toml::from_str::<toml::Table>(&format!("v = {s}")).is_err();
            if plain { s.clone() } else { value.to_string() }
        }
        other => other.to_string(),
    }
}

/// Single-quotes a word for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./:=+,@".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_they_were() {
        assert_eq!(set_value(&"duration".into()), "duration");
        assert_eq!(set_value(&"true".into()), "\"true\"");
        assert_eq!(set_value(&"a b".into()), "\"a b\"");
        assert_eq!(set_value(&toml::Value::Float(0.002)), "0.002");
        assert_eq!(shell_word("train.lr=0.002"), "train.lr=0.002");
        assert_eq!(
            shell_word("scrape.source=\"it's\""),
            r#"'scrape.source="it'\''s"'"#
        );
    }
}
