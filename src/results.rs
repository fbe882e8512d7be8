//! What each built variant has: the parameters of its stages and the
//! numbers they report, labelled as their stage kinds declare them
//! ([`vgmake_api::MetricSpec`]). `compare` reads it; the engine itself
//! knows no metric by name.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use vgmake_api::{Better, EVERY_NUMBER, MetricSpec, Source};

use crate::pipeline::Pipeline;
use crate::store::{ActionRecord, Store};

/// One shown number.
#[derive(Debug, Clone)]
pub struct Metric {
    pub label: String,
    /// The value as shown (scaled).
    pub value: f64,
    /// The value as text, with the declared precision.
    pub text: String,
    pub better: Better,
}

/// One built variant.
pub struct VariantResults {
    pub variant: String,
    /// `stage.param` (table entries as `stage.param.entry`) -> value text.
    pub params: BTreeMap<String, String>,
    /// In pipeline order (dependencies first): each stage's declared
    /// metrics (a `command` stage: every number of its `metrics.json`,
    /// labelled `stage.key`), then each stage's time.
    pub metrics: Vec<Metric>,
}

impl VariantResults {
    pub fn metric(&self, label: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.label == label)
    }
}

/// The results `variant` last built, read from its refs.
pub fn load(pipeline: &Pipeline, store: &Store, variant: &str) -> VariantResults {
    let refs = store.refs(variant);
    let mut params = BTreeMap::new();
    let mut metrics = Vec::new();
    let mut times = Vec::new();
    for stage in &stage_order(pipeline, refs.keys()) {
        let Some(record) = store.record(&refs[stage].key) else {
            continue;
        };
        for (k, v) in &record.manifest.params {
            match v {
                toml::Value::Table(t) => {
                    for (entry, ev) in t {
                        params.insert(format!("{stage}.{k}.{entry}"), ev.to_string());
                    }
                }
                _ => {
                    params.insert(format!("{stage}.{k}"), v.to_string());
                }
            }
        }
        let declared = pipeline
            .stage(stage)
            .map(|d| d.kind.metrics())
            .unwrap_or_default();
        for spec in &declared {
            if spec.key == EVERY_NUMBER {
                metrics.extend(every_number(stage, &record));
                continue;
            }
            if let Some(stored) = value_of(spec, &record) {
                metrics.push(Metric {
                    label: spec.label.to_string(),
                    value: stored * spec.scale,
                    text: spec.format(stored),
                    better: spec.better,
                });
            }
        }
        let seconds = (record.seconds * 10.0).round() / 10.0;
        times.push(Metric {
            label: format!("time {stage} (s)"),
            value: seconds,
            text: format!("{seconds:.1}"),
            better: Better::Lower,
        });
    }
    metrics.extend(times);
    VariantResults {
        variant: variant.to_string(),
        params,
        metrics,
    }
}

/// `built` (stage names of a variant's refs) in pipeline order,
/// dependencies first, then stages no longer in the file.
pub fn stage_order<'a>(
    pipeline: &Pipeline,
    built: impl Iterator<Item = &'a String> + Clone,
) -> Vec<String> {
    let graph = crate::graph::StageGraph::new(
        pipeline
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.deps.as_slice())),
    );
    let mut order: Vec<String> = graph
        .topological_order()
        .iter()
        .filter(|s| built.clone().any(|b| b == *s))
        .map(|s| s.to_string())
        .collect();
    order.extend(built.filter(|k| pipeline.stage(k).is_none()).cloned());
    order
}

/// The index in `all` of the best value of metric `label`, when its kind
/// says which way is better and not every value reads the same.
pub fn best(all: &[&VariantResults], label: &str) -> Option<usize> {
    let values: Vec<(usize, &Metric)> = all
        .iter()
        .enumerate()
        .filter_map(|(row, b)| b.metric(label).map(|m| (row, m)))
        .collect();
    let order = |a: &&(usize, &Metric), b: &&(usize, &Metric)| a.1.value.total_cmp(&b.1.value);
    let winner = match values.first().map(|(_, m)| m.better) {
        Some(Better::Lower) => values.iter().min_by(order),
        Some(Better::Higher) => values.iter().max_by(order),
        _ => None,
    };
    let distinct: std::collections::BTreeSet<&str> =
        values.iter().map(|(_, m)| m.text.as_str()).collect();
    winner.filter(|_| distinct.len() > 1).map(|(row, _)| *row)
}

fn value_of(spec: &MetricSpec, record: &ActionRecord) -> Option<f64> {
    match spec.source {
        Source::Output => record.metrics.as_ref()?.get(spec.key)?.as_f64(),
        Source::Measured => record.measurements.get(spec.key).copied(),
    }
}

/// Every top-level number of a stage's `metrics.json`.
fn every_number(stage: &str, record: &ActionRecord) -> Vec<Metric> {
    let Some(Json::Object(obj)) = &record.metrics else {
        return Vec::new();
    };
    obj.iter()
        .filter_map(|(k, v)| {
            let value = v.as_f64()?;
            Some(Metric {
                label: format!("{stage}.{k}"),
                value,
                text: plain_number(value),
                better: Better::Neither,
            })
        })
        .collect()
}

/// A number without declared precision: integers as such, else 3 decimals
/// (1 from 100 up).
pub fn plain_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// The parameters whose values are not the same in every variant of `all`.
pub fn differing_params(all: &[&VariantResults]) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> =
        all.iter().flat_map(|b| b.params.keys()).collect();
    names
        .into_iter()
        .filter(|p| {
            let values: std::collections::BTreeSet<Option<&String>> =
                all.iter().map(|b| b.params.get(*p)).collect();
            values.len() > 1
        })
        .cloned()
        .collect()
}

/// Every metric label of `all`, in first-seen order, times last.
pub fn labels(all: &[&VariantResults]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for results in all {
        for m in &results.metrics {
            if !labels.contains(&m.label) {
                labels.push(m.label.clone());
            }
        }
    }
    let (times, rest): (Vec<String>, Vec<String>) =
        labels.into_iter().partition(|l| l.starts_with("time "));
    rest.into_iter().chain(times).collect()
}
