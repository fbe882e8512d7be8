//! The curves section: one SVG line chart per declared series (training
//! loss, validation loss...) with a line per variant, and a legend whose
//! entries highlight their variant on hover or focus; then the parallel
//! coordinates of a sweep.

use std::fmt::Write;

use super::axis::{Scale, label};
use super::gather::{Chart, Page};
use super::html::{color, escape, section, swatch};
use super::parallel;

pub const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 46.0;

pub fn write(page: &Page) -> String {
    let mut body = String::new();
    if page.charts.is_empty() {
        body.push_str("<p>No stage of these variants declares a curve.</p>\n");
    }
    let stages: std::collections::BTreeSet<&str> =
        page.charts.iter().map(|c| c.stage.as_str()).collect();
    for (i, chart) in page.charts.iter().enumerate() {
        body.push_str(&line_chart(page, chart, i, stages.len() > 1));
    }
    body.push_str(&parallel::write(page));
    section(
        "curves",
        "Curves",
        "Every variant on one chart per series; point at a variant in a legend to pick out its line.",
        &body,
    )
}

fn line_chart(page: &Page, chart: &Chart, index: usize, name_stage: bool) -> String {
    let spec = &chart.spec;
    let points = || chart.lines.iter().flat_map(|(_, p)| p.iter());
    let x = Scale::fit(points().map(|p| p.0), LEFT, WIDTH - RIGHT);
    let y = Scale::fit(points().map(|p| p.1), HEIGHT - BOTTOM, TOP);
    let title = if name_stage {
        format!("{} ({})", spec.title, chart.stage)
    } else {
        spec.title.to_string()
    };
    let id = format!("chart-{index}");
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">\n<desc id=\"{id}-desc\">{}</desc>\n",
        escape(&describe(page, chart))
    );
    svg.push_str(&axes(&x, &y, spec.x_label, spec.y_label));
    svg.push_str("<g class=\"lines\">\n");
    for (variant, line) in &chart.lines {
        let name = escape(page.variants[*variant].name());
        let mut coords = String::new();
        for (px, py) in line {
            let _ = write!(coords, "{:.1},{:.1} ", x.at(*px), y.at(*py));
        }
        let _ = writeln!(
            svg,
            "<polyline class=\"series\" data-variant=\"{name}\" stroke=\"{}\" points=\"{}\"><title>{name}</title></polyline>",
            color(*variant),
            coords.trim_end()
        );
    }
    svg.push_str("</g>\n</svg>\n");
    let variants: Vec<usize> = chart.lines.iter().map(|(v, _)| *v).collect();
    format!(
        "<figure class=\"chart line-chart\" data-stage=\"{}\" data-series=\"{}\">\n<figcaption id=\"{id}-title\">{}</figcaption>\n{svg}{}</figure>\n",
        escape(&chart.stage),
        escape(spec.y),
        escape(&title),
        legend(page, &variants)
    )
}

/// What the chart shows, for screen readers: each variant's last value.
fn describe(page: &Page, chart: &Chart) -> String {
    let lasts: Vec<String> = chart
        .lines
        .iter()
        .map(|(v, points)| match points.last() {
            Some((x, y)) => format!(
                "{} {} at {} {}",
                page.variants[*v].name(),
                label(*y),
                chart.spec.x_label,
                label(*x)
            ),
            None => format!("{} no points", page.variants[*v].name()),
        })
        .collect();
    format!(
        "{} against {}, one line per variant; last values: {}",
        chart.spec.y_label,
        chart.spec.x_label,
        lasts.join("; ")
    )
}

/// Grid lines, tick labels and axis titles of a plot area.
pub fn axes(x: &Scale, y: &Scale, x_label: &str, y_label: &str) -> String {
    let mut g = String::from("<g class=\"axis\">\n");
    let (left, right) = (x.r0, x.r1);
    let (bottom, top) = (y.r0, y.r1);
    for t in y.ticks(5) {
        let py = y.at(t);
        let _ = writeln!(
            g,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{right}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            py + 4.0,
            label(t)
        );
    }
    for t in x.ticks(6) {
        let px = x.at(t);
        let _ = writeln!(
            g,
            "<line class=\"tick\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{bottom}\" y2=\"{:.1}\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 18.0,
            label(t)
        );
    }
    let _ = writeln!(
        g,
        "<line class=\"frame\" x1=\"{left}\" x2=\"{right}\" y1=\"{bottom}\" y2=\"{bottom}\"/><line class=\"frame\" x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\"/>"
    );
    let _ = writeln!(
        g,
        "<text class=\"title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        bottom + 36.0,
        escape(x_label)
    );
    let _ = writeln!(
        g,
        "<text class=\"title\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (top + bottom) / 2.0,
        escape(y_label)
    );
    g.push_str("</g>\n");
    g
}

/// The legend of the given variants: buttons, so hover and keyboard focus
/// both pick a variant out.
pub fn legend(page: &Page, variants: &[usize]) -> String {
    let items: String = variants
        .iter()
        .map(|&v| {
            let name = escape(page.variants[v].name());
            format!(
                "<li><button type=\"button\" class=\"key\" data-variant=\"{name}\">{}{name}</button></li>",
                swatch(v)
            )
        })
        .collect();
    format!(
        "<ul class=\"legend\" aria-label=\"Variants (point at one to highlight it)\">{items}</ul>\n"
    )
}
