//! `vgmake compare`: built variants side by side, with only the parameters
//! that differ between them and the key metrics of each stage.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde_json::Value as Json;

use crate::cli::{Common, CompareFormat};
use crate::commands::usage_error;
use crate::project::Project;
use crate::results::{self, VariantResults};
use crate::store::Store;

const WIDTH: usize = 80;

pub fn run(
    host: &'static crate::Host,
    common: &Common,
    names: &[String],
    format: CompareFormat,
    sort: Option<&str>,
) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        return usage_error("nothing is built yet (run `vgmake build`)");
    };
    let names = match super::built_variants(&store, names, "compare") {
        Ok(n) => n,
        Err(d) => return usage_error(d),
    };
    let mut built: Vec<VariantResults> = names
        .iter()
        .map(|name| results::load(&project.pipeline, &store, name))
        .collect();
    if let Some(metric) = sort {
        let labels = results::labels(&built.iter().collect::<Vec<_>>());
        if !labels.iter().any(|l| l == metric) {
            return usage_error(format!(
                "--sort: no metric `{metric}` (metrics: {})",
                labels.join(", ")
            ));
        }
        built.sort_by(|a, b| {
            let value = |r: &VariantResults| r.metric(metric).map(|m| m.value);
            value(a)
                .partial_cmp(&value(b))
                .unwrap_or(std::cmp::Ordering::Equal)
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

/// Rows are variants; columns are the differing parameters, then metrics.
struct Table {
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
    raw: Vec<(String, BTreeMap<String, Json>)>,
    /// (row, column) of the best value of each metric whose kind says
    /// which way is better, marked `*` in the text table.
    best: BTreeSet<(usize, usize)>,
}

impl Table {
    fn of(built: &[VariantResults]) -> Table {
        let all: Vec<&VariantResults> = built.iter().collect();
        let differing = results::differing_params(&all);
        let metrics = results::labels(&all);
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
            for label in &metrics {
                match b.metric(label) {
                    Some(m) => {
                        cells.push(m.text.clone());
                        obj.insert(label.clone(), serde_json::json!(m.value));
                    }
                    None => cells.push("-".into()),
                }
            }
            rows.push((b.variant.clone(), cells));
            raw.push((b.variant.clone(), obj));
        }
        let mut best = BTreeSet::new();
        for (i, label) in metrics.iter().enumerate() {
            if let Some(row) = results::best(&all, label) {
                best.insert((row, differing.len() + i));
            }
        }
        Table {
            columns,
            rows,
            raw,
            best,
        }
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

    /// Aligned text for a terminal: columns whose value is the same for
    /// every variant move to a footer, headers wrap at `.` and spaces, and
    /// the table is transposed (one row per column) when that is narrower
    /// and the plain layout does not fit in 80 columns.
    fn text(&self) -> String {
        let varying: Vec<usize> = (0..self.columns.len())
            .filter(|&c| {
                self.rows
                    .iter()
                    .map(|(_, cells)| &cells[c])
                    .collect::<BTreeSet<_>>()
                    .len()
                    > 1
                    || self.rows.len() < 2
            })
            .collect();
        let mut footer = String::new();
        for c in (0..self.columns.len()).filter(|c| !varying.contains(c)) {
            footer.push_str(&format!(
                "same in all: {} = {}\n",
                self.columns[c], self.rows[0].1[c]
            ));
        }
        let header: Vec<String> = std::iter::once("variant".to_string())
            .chain(varying.iter().map(|&c| self.columns[c].clone()))
            .collect();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .enumerate()
            .map(|(row, (v, cells))| {
                std::iter::once(v.clone())
                    .chain(varying.iter().map(|&c| {
                        if self.best.contains(&(row, c)) {
                            format!("{}*", cells[c])
                        } else {
                            cells[c].clone()
                        }
                    }))
                    .collect()
            })
            .collect();
        let normal = render(&header, &body, true);
        let mut grid = vec![header];
        grid.extend(body);
        let n = grid[0].len();
        let flipped_rows: Vec<Vec<String>> = (0..n)
            .map(|c| grid.iter().map(|row| row[c].clone()).collect())
            .collect();
        let flipped = render(&flipped_rows[0], &flipped_rows[1..], false);
        let width = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        let table = if width(&normal) <= WIDTH || width(&normal) <= width(&flipped) {
            normal
        } else {
            flipped
        };
        let legend = if self.best.is_empty() {
            ""
        } else {
            "* best value\n"
        };
        table + legend + &footer
    }
}

/// Renders a header and rows as aligned columns; with `wrap`, long headers
/// break at `.` and spaces to stay as narrow as the column's values.
fn render(header: &[String], rows: &[Vec<String>], wrap: bool) -> String {
    let cols = header.len();
    let value_width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let header_lines: Vec<Vec<String>> = header
        .iter()
        .enumerate()
        .map(|(c, h)| {
            if wrap && c > 0 {
                wrap_header(h, value_width(c).max(6))
            } else {
                vec![h.clone()]
            }
        })
        .collect();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            value_width(c).max(
                header_lines[c]
                    .iter()
                    .map(|l| l.chars().count())
                    .max()
                    .unwrap_or(0),
            )
        })
        .collect();
    let height = header_lines.iter().map(Vec::len).max().unwrap_or(1);
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells
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
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = String::new();
    for i in 0..height {
        // Header lines are bottom-aligned, so the last part sits on the rule.
        out.push_str(&line(
            header_lines
                .iter()
                .map(|h| {
                    h.get((i + h.len()).wrapping_sub(height))
                        .map_or("", String::as_str)
                })
                .collect(),
        ));
    }
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Splits a header after `.` and at spaces into lines of at most `width`
/// characters where possible.
fn wrap_header(header: &str, width: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for ch in header.chars() {
        piece.push(ch);
        if ch == '.' || ch == ' ' {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    pieces.push(piece);
    let mut lines: Vec<String> = Vec::new();
    for p in pieces {
        match lines.last_mut() {
            Some(last) if last.chars().count() + p.trim_end().chars().count() <= width => {
                last.push_str(&p)
            }
            _ => lines.push(p),
        }
    }
    lines
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
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
