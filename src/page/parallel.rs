//! Parallel coordinates for a sweep: one vertical axis per parameter that
//! differs between the variants, then one per headline metric; each variant
//! is a line across them, so what a parameter does to the result shows as
//! lines that cross or run parallel.

use std::fmt::Write;

use vgmake_api::Better;

use super::axis::{Scale, label};
use super::chart::{WIDTH, legend};
use super::gather::Page;
use super::html::{color, escape};

const HEIGHT: f64 = 320.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 30.0;
const SIDE: f64 = 56.0;

/// One axis: its name and each variant's position on it (0 = bottom, 1 = top).
struct Axis {
    name: String,
    /// Labels at the bottom and top (numbers), or at each category.
    marks: Vec<(f64, String)>,
    positions: Vec<Option<f64>>,
}

pub fn write(page: &Page) -> String {
    if page.variants.len() < 2 || page.params.is_empty() || page.headline.is_empty() {
        return String::new();
    }
    let mut axes: Vec<Axis> = Vec::new();
    for p in &page.params {
        let values: Vec<Option<String>> = page
            .variants
            .iter()
            .map(|v| {
                v.results
                    .params
                    .get(p)
                    .map(|s| s.trim_matches('"').to_string())
            })
            .collect();
        axes.push(axis(p, &values));
    }
    for h in &page.headline {
        let metrics: Vec<_> = page.variants.iter().map(|v| v.results.metric(h)).collect();
        let values: Vec<Option<String>> = metrics
            .iter()
            .map(|m| m.map(|m| m.value.to_string()))
            .collect();
        let better = match metrics.iter().flatten().next().map(|m| m.better) {
            Some(Better::Lower) => " \u{2193}",
            Some(Better::Higher) => " \u{2191}",
            _ => "",
        };
        axes.push(axis(&format!("{h}{better}"), &values));
    }
    let step = (WIDTH - 2.0 * SIDE) / (axes.len() - 1).max(1) as f64;
    let x = |i: usize| SIDE + i as f64 * step;
    let y = |t: f64| HEIGHT - BOTTOM - t * (HEIGHT - BOTTOM - TOP);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"parallel-title parallel-desc\">\n<desc id=\"parallel-desc\">Axes: {}. One line per variant.</desc>\n<g class=\"axis\">\n",
        escape(
            &axes
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    for (i, a) in axes.iter().enumerate() {
        let px = x(i);
        let _ = writeln!(
            svg,
            "<line class=\"frame\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>",
            HEIGHT - BOTTOM
        );
        let (first, rest) = match a.name.split_once('.') {
            Some((stage, key)) if !a.name.contains(' ') => (format!("{stage}."), key.to_string()),
            _ => (String::new(), a.name.clone()),
        };
        let _ = writeln!(
            svg,
            "<text class=\"title\" text-anchor=\"middle\"><tspan x=\"{px:.1}\" y=\"18\">{}</tspan><tspan x=\"{px:.1}\" y=\"32\">{}</tspan></text>",
            escape(&first),
            escape(&rest)
        );
        for (t, text) in &a.marks {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">{}</text>",
                px + 4.0,
                y(*t) + 4.0,
                escape(text)
            );
        }
    }
    svg.push_str("</g>\n<g class=\"lines\">\n");
    for (v, variant) in page.variants.iter().enumerate() {
        let points: Vec<String> = axes
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.positions[v].map(|t| format!("{:.1},{:.1}", x(i), y(t))))
            .collect();
        let name = escape(variant.name());
        let _ = writeln!(
            svg,
            "<polyline class=\"series\" data-variant=\"{name}\" stroke=\"{}\" points=\"{}\"><title>{name}</title></polyline>",
            color(v),
            points.join(" ")
        );
    }
    svg.push_str("</g>\n</svg>\n");
    let all: Vec<usize> = (0..page.variants.len()).collect();
    format!(
        "<figure class=\"chart parallel\">\n<figcaption id=\"parallel-title\">The parameters that differ against the headline metrics (&#8595; lower is better, &#8593; higher)</figcaption>\n{svg}{}</figure>\n",
        legend(page, &all)
    )
}

/// A numeric axis when every value is a number, else one mark per
/// distinct value in sorted order.
fn axis(name: &str, values: &[Option<String>]) -> Axis {
    let numbers: Option<Vec<Option<f64>>> = values
        .iter()
        .map(|v| match v {
            Some(s) => s.parse::<f64>().ok().filter(|x| x.is_finite()).map(Some),
            None => Some(None),
        })
        .collect();
    if let Some(numbers) = numbers {
        let scale = Scale::fit(numbers.iter().flatten().copied(), 0.0, 1.0);
        let present: Vec<f64> = numbers.iter().flatten().copied().collect();
        let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut marks = vec![(scale.at(lo), label(lo))];
        if hi > lo {
            marks.push((scale.at(hi), label(hi)));
        }
        return Axis {
            name: name.to_string(),
            marks,
            positions: numbers.iter().map(|n| n.map(|v| scale.at(v))).collect(),
        };
    }
    let mut distinct: Vec<&String> = values.iter().flatten().collect();
    distinct.sort();
    distinct.dedup();
    let at = |i: usize| (i as f64 + 0.5) / distinct.len() as f64;
    Axis {
        name: name.to_string(),
        marks: distinct
            .iter()
            .enumerate()
            .map(|(i, s)| (at(i), s.to_string()))
            .collect(),
        positions: values
            .iter()
            .map(|v| {
                v.as_ref()
                    .and_then(|s| distinct.iter().position(|d| *d == s))
                    .map(at)
            })
            .collect(),
    }
}
