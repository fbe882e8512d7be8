//! What a build would do, without doing it: `status`, `why` and
//! `build --dry-run`. Keys are computed wherever the dependencies' outputs
//! are known (cached); a stage below one that will run is "will run unless
//! cut off".

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Error;
use crate::executor::{BuildEnv, DepOutput, key_manifest, manifest_from, remembered};
use crate::hashing::KeyManifest;
use crate::pipeline::Resolved;
use crate::scheduler::{handed_over, selection};
use crate::store::Store;

/// What a build would do with a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanState {
    Cached,
    /// Not in the local cache, but the remote cache has it: a build fetches it.
    Remote,
    WillRun,
}

impl PlanState {
    pub fn word(self) -> &'static str {
        match self {
            PlanState::Cached => "cached",
            PlanState::Remote => "remote",
            PlanState::WillRun => "will-run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    pub name: String,
    pub state: PlanState,
    pub key: Option<String>,
    pub output: Option<String>,
    /// Why it will run, one reason per line.
    pub reasons: Vec<String>,
}

pub fn plan(
    env: &BuildEnv,
    resolved: &Resolved,
    targets: &[String],
) -> Result<Vec<StagePlan>, Error> {
    let refs = env.store.refs(&resolved.variant);
    let mut plans: BTreeMap<String, StagePlan> = BTreeMap::new();
    let kind_of: BTreeMap<&str, &str> = resolved
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.kind.name()))
        .collect();
    let mut order = Vec::new();
    let selected = selection(resolved, targets)?;
    // As a build does: a hit is verified now when handed over, otherwise
    // when a stage that will run reads it (see `Verify`).
    let handed_over = handed_over(&selected, targets);
    for stage in selected {
        let name = stage.name.clone();
        let verified = |output: &str| {
            !handed_over.contains(name.as_str()) || env.store.verify_output(output).is_ok()
        };
        let mut deps = Vec::new();
        let mut upstream_runs = Vec::new();
        for d in &stage.deps {
            let p = &plans[d];
            match &p.output {
                Some(out) if matches!(p.state, PlanState::Cached | PlanState::Remote) => {
                    deps.push(DepOutput {
                        stage: d.clone(),
                        kind: kind_of[d.as_str()].to_string(),
                        key: p.key.clone().unwrap_or_default(),
                        output: out.clone(),
                    })
                }
                _ => upstream_runs.push(d.clone()),
            }
        }
        let plan = if !upstream_runs.is_empty() {
            let mut reasons: Vec<String> = upstream_runs
                .iter()
                .map(|d| format!("upstream `{d}` will run (this stage is cut off if its output comes out unchanged)"))
                .collect();
            // Its own changes (parameters, version, external inputs) are known
            // already: compare them with the last build, taking the old
            // dependency outputs as they were.
            if let Some(old) = refs.get(&name).and_then(|r| env.store.record(&r.key)) {
                let known = deps.iter().map(|d| (d.stage.clone(), d.output.clone()));
                let mut partial = key_manifest(env, stage, &[])?;
                partial.deps = old.manifest.deps.clone();
                partial.deps.extend(known);
                reasons.extend(explain(env.store, &name, &old.manifest, &partial));
            }
            StagePlan {
                name: name.clone(),
                state: PlanState::WillRun,
                key: None,
                output: None,
                reasons,
            }
        } else {
            // As a build's probe: the key memo knows the key from the inputs'
            // stamps, without a manifest of every corpus file.
            let (gathered, _, found) = remembered(env, stage, &deps)?;
            match found {
                Some((key, output)) if verified(&output) => StagePlan {
                    name: name.clone(),
                    state: PlanState::Cached,
                    key: Some(key),
                    output: Some(output),
                    reasons: vec![],
                },
                _ => {
                    let manifest = manifest_from(env, gathered, stage, &deps)?;
                    let key = manifest.key().to_hex().to_string();
                    match env.store.record(&key) {
                        Some(r) if verified(&r.output) => StagePlan {
                            name: name.clone(),
                            state: PlanState::Cached,
                            key: Some(key),
                            output: Some(r.output),
                            reasons: vec![],
                        },
                        found if let Some(output) = env.remote.and_then(|r| r.has_record(&key)) => {
                            StagePlan {
                                name: name.clone(),
                                state: PlanState::Remote,
                                key: Some(key),
                                output: Some(output),
                                reasons: vec![format!(
                                    "available in the remote cache {} (a build fetches it){}",
                                    env.remote.map_or("", |r| r.url()),
                                    if found.is_some() {
                                        "; the local copy failed verification"
                                    } else {
                                        ""
                                    }
                                )],
                            }
                        }
                        found => {
                            let mut reasons = match refs
                                .get(&name)
                                .and_then(|r| env.store.record(&r.key))
                            {
                                Some(old) => explain(env.store, &name, &old.manifest, &manifest),
                                None => vec![format!(
                                    "not built before in variant `{}`",
                                    resolved.variant
                                )],
                            };
                            if let Some(r) = found {
                                reasons.push(format!(
                                    "cached output {} failed verification",
                                    &r.output[..12]
                                ));
                            } else if reasons.is_empty() {
                                reasons.push(
                                "its result is no longer in the cache (removed by gc or damaged)"
                                    .into(),
                            );
                            }
                            StagePlan {
                                name: name.clone(),
                                state: PlanState::WillRun,
                                key: Some(key),
                                output: None,
                                reasons,
                            }
                        }
                    }
                }
            }
        };
        if plan.state == PlanState::WillRun {
            // It reads its cached inputs: a damaged one is rebuilt first.
            for d in &stage.deps {
                let dep = plans.get_mut(d).expect("dependencies come first");
                if dep.state == PlanState::Cached
                    && let Some(output) = &dep.output
                    && env.store.verify_output(output).is_err()
                {
                    dep.state = PlanState::WillRun;
                    dep.reasons = vec![format!(
                        "cached output {} failed verification (`{name}` reads it)",
                        &output[..12]
                    )];
                    dep.output = None;
                }
            }
        }
        order.push(name.clone());
        plans.insert(name, plan);
    }
    Ok(order
        .into_iter()
        .map(|n| plans.remove(&n).unwrap())
        .collect())
}

/// Each difference between the manifest a stage was last built from and
/// the current one, in words.
pub fn explain(store: &Store, stage: &str, old: &KeyManifest, new: &KeyManifest) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.kind != new.kind {
        reasons.push(format!("kind {} -> {}", old.kind, new.kind));
    }
    if old.version != new.version {
        reasons.push(format!(
            "stage kind `{}` version {} -> {} (its output format changed)",
            new.kind, old.version, new.version
        ));
    }
    let stage_prefix = |k: &str| format!("{stage}.{k}");
    for (k, v) in &new.params {
        match (old.params.get(k), v) {
            (Some(o), _) if o == v => {}
            // Table parameters: name the entries that changed.
            (Some(toml::Value::Table(o)), toml::Value::Table(n)) => {
                for key in o
                    .keys()
                    .chain(n.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let show = |v: Option<&toml::Value>| {
                        v.map_or("(unset)".to_string(), |v| v.to_string())
                    };
                    if o.get(key) != n.get(key) {
                        reasons.push(format!(
                            "param {}.{key} {} -> {}",
                            stage_prefix(k),
                            show(o.get(key)),
                            show(n.get(key))
                        ));
                    }
                }
            }
            (Some(o), _) => reasons.push(format!("param {} {} -> {}", stage_prefix(k), o, v)),
            (None, _) => reasons.push(format!("param {} (new) = {}", stage_prefix(k), v)),
        }
    }
    for (dep, hash) in &new.deps {
        match old.deps.get(dep) {
            Some(o) if o == hash => {}
            Some(o) => {
                let change = match (store.tree_manifest(o), store.tree_manifest(hash)) {
                    (Some(a), Some(b)) => b.diff_summary(&a),
                    _ => "output changed".into(),
                };
                reasons.push(format!("input {dep}: {change}"));
            }
            None => reasons.push(format!("new input {dep}")),
        }
    }
    for dep in old.deps.keys().filter(|d| !new.deps.contains_key(*d)) {
        reasons.push(format!("input {dep} removed"));
    }
    for (name, value) in &new.external {
        if old.external.get(name) != Some(value) {
            let what = name
                .strip_prefix("path:")
                .map(|p| format!("{p} changed"))
                .unwrap_or_else(|| format!("{name} changed"));
            reasons.push(format!("external input: {what}"));
        }
    }
    reasons
}
