//! `vgmake compare`: built variants side by side, with only the parameters
//! that differ between them and the key metrics of each stage.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde_json::Value as Json;

use crate::cli::{Common, CompareFormat};
use crate::commands::usage_error;
use crate::project::Project;
use crate::store::Store;

/// The metrics shown: (column label, key in a stage's metrics.json,
/// scale). Any stage may report them (a user's `command` stage too); bits
/// are nats / ln 2.
const METRICS: &[(&str, &str, f64)] = &[
    ("songs kept", "kept", 1.0),
    ("vocab size", "vocab_size", 1.0),
    ("val bits/token", "val_bits_per_token", 1.0),
    (
        "bigram bits/token",
        "bigram_val_loss",
        std::f64::consts::LOG2_E,
    ),
    (
        "unigram bits/token",
        "unigram_val_loss",
        std::f64::consts::LOG2_E,
    ),
    ("val accuracy", "val_accuracy", 1.0),
    ("sample validity", "validity", 1.0),
    ("sample overlap", "overlap_mean", 1.0),
];

/// One built variant: its parameters, metrics and stage times.
struct Built {
    variant: String,
    /// `stage.param` (table entries as `stage.param.entry`) -> value text.
    params: BTreeMap<String, String>,
    /// Column label -> value.
    metrics: BTreeMap<String, f64>,
}

const WIDTH: usize = 80;

pub fn run(
    common: &Common,
    names: &[String],
    format: CompareFormat,
    sort: Option<&str>,
) -> ExitCode {
    let project = match Project::load(common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        return usage_error("nothing is built yet (run `vgmake build`)");
    };
    let available = store.ref_variants();
    let names: Vec<String> = if names.is_empty() {
        available.clone()
    } else {
        names.to_vec()
    };
    let mut built = Vec::new();
    for name in &names {
        if !available.contains(name) {
            let hint = crate::diagnostic::closest(name, available.iter().map(String::as_str))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return usage_error(format!(
                "variant `{name}` has not been built (built: {}){hint}",
                available.join(", ")
            ));
        }
        built.push(load(&store, name));
    }
    if let Some(metric) = sort {
        let label = METRICS
            .iter()
            .find(|(label, key, _)| *label == metric || *key == metric)
            .map(|m| m.0.to_string())
            .or_else(|| {
                built
                    .iter()
                    .flat_map(|b| b.metrics.keys())
                    .find(|k| k.as_str() == metric)
                    .cloned()
            });
        let Some(label) = label else {
            return usage_error(format!(
                "--sort: no metric `{metric}` (metrics: {})",
                metric_labels(&built).join(", ")
            ));
        };
        built.sort_by(|a, b| {
            let (x, y) = (a.metrics.get(&label), b.metrics.get(&label));
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    let table = Table::of(&built);
    match format {
        CompareFormat::Json => println!("{}", serde_json::to_string_pretty(&table.json()).unwrap()),
        CompareFormat::Csv => print!("{}", table.csv()),
        CompareFormat::Markdown => print!("{}", table.markdown()),
        CompareFormat::Table => print!("{}", table.text()),
    }
    ExitCode::SUCCESS
}

fn load(store: &Store, variant: &str) -> Built {
    let mut params = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for (stage, r) in store.refs(variant) {
        let Some(record) = store.record(&r.key) else {
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
        for (label, key, scale) in METRICS {
            if let Some(x) = record
                .metrics
                .as_ref()
                .and_then(|m| m.get(*key))
                .and_then(Json::as_f64)
            {
                metrics.insert(label.to_string(), x * scale);
            }
        }
        metrics.insert(format!("time {stage} (s)"), record.seconds);
    }
    Built {
        variant: variant.to_string(),
        params,
        metrics,
    }
}

fn metric_labels(built: &[Built]) -> Vec<String> {
    let present: BTreeSet<&String> = built.iter().flat_map(|b| b.metrics.keys()).collect();
    let mut labels: Vec<String> = METRICS
        .iter()
        .map(|m| m.0.to_string())
        .filter(|l| present.contains(l))
        .collect();
    labels.extend(
        present
            .into_iter()
            .filter(|l| l.starts_with("time "))
            .cloned(),
    );
    labels
}

/// Rows are variants; columns are the differing parameters, then metrics.
struct Table {
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
    raw: Vec<(String, BTreeMap<String, Json>)>,
}

impl Table {
    fn of(built: &[Built]) -> Table {
        let all_params: BTreeSet<&String> = built.iter().flat_map(|b| b.params.keys()).collect();
        let differing: Vec<String> = all_params
            .into_iter()
            .filter(|p| {
                let values: BTreeSet<Option<&String>> =
                    built.iter().map(|b| b.params.get(*p)).collect();
                values.len() > 1
            })
            .cloned()
            .collect();
        let metrics = metric_labels(built);
        let mut columns = differing.clone();
        columns.extend(metrics.iter().cloned());
        let mut rows = Vec::new();
        let mut raw = Vec::new();
        for b in built {
            let mut cells = Vec::new();
            let mut obj = BTreeMap::new();
            for p in &differing {
                let v = b.params.get(p).cloned().unwrap_or_else(|| "-".into());
                obj.insert(p.clone(), Json::String(v.clone()));
                cells.push(v);
            }
            for m in &metrics {
                match b.metrics.get(m) {
                    Some(x) => {
                        cells.push(format_metric(*x));
                        obj.insert(m.clone(), serde_json::json!(x));
                    }
                    None => cells.push("-".into()),
                }
            }
            rows.push((b.variant.clone(), cells));
            raw.push((b.variant.clone(), obj));
        }
        Table { columns, rows, raw }
    }

    fn json(&self) -> Json {
        Json::Array(
            self.raw
                .iter()
                .map(|(v, obj)| {
                    let mut o = serde_json::Map::new();
                    o.insert("variant".into(), Json::String(v.clone()));
                    o.extend(obj.clone());
                    Json::Object(o)
                })
                .collect(),
        )
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = std::iter::once("variant".to_string())
            .chain(self.columns.iter().cloned())
            .collect();
        out.push_str(&csv_line(&header));
        for (v, cells) in &self.rows {
            let line: Vec<String> = std::iter::once(v.clone())
                .chain(cells.iter().cloned())
                .collect();
            out.push_str(&csv_line(&line));
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("| variant | {} |\n", self.columns.join(" | "));
        out.push_str(&format!("|---|{}\n", "---|".repeat(self.columns.len())));
        for (v, cells) in &self.rows {
            out.push_str(&format!("| {v} | {} |\n", cells.join(" | ")));
        }
        out
    }

    /// Aligned text; transposed (one row per column) when too wide for 80.
    fn text(&self) -> String {
        let header: Vec<String> = std::iter::once("variant".to_string())
            .chain(self.columns.iter().cloned())
            .collect();
        let mut grid: Vec<Vec<String>> = vec![header];
        for (v, cells) in &self.rows {
            grid.push(
                std::iter::once(v.clone())
                    .chain(cells.iter().cloned())
                    .collect(),
            );
        }
        if render(&grid).lines().any(|l| l.chars().count() > WIDTH) {
            let n = grid[0].len();
            grid = (0..n)
                .map(|c| grid.iter().map(|row| row[c].clone()).collect())
                .collect();
        }
        render(&grid)
    }
}

fn render(grid: &[Vec<String>]) -> String {
    let cols = grid.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| grid.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in grid.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
            out.push('\n');
        }
    }
    out
}

fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

fn format_metric(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}
