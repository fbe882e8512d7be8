//! A histogram as SVG bars: `(low, high, count)` bins on a linear x axis.

use std::fmt::Write;

use super::axis::Scale;
use super::chart::{WIDTH, axes};
use super::html::escape;

const HEIGHT: f64 = 260.0;

pub fn histogram(title: &str, x_label: &str, bins: &[(f64, f64, f64)]) -> String {
    let x = Scale::fit(bins.iter().flat_map(|b| [b.0, b.1]), 64.0, WIDTH - 16.0);
    let top = bins.iter().map(|b| b.2).fold(0.0, f64::max);
    let y = Scale {
        d0: 0.0,
        d1: top.max(1.0) * 1.05,
        r0: HEIGHT - 46.0,
        r1: 14.0,
    };
    let total: f64 = bins.iter().map(|b| b.2).sum();
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}: {} bars, {total} in all, the tallest {top}\">\n",
        escape(title),
        bins.len()
    );
    svg.push_str(&axes(&x, &y, x_label, "count"));
    svg.push_str("<g class=\"bars\">\n");
    for &(low, high, count) in bins {
        let (x0, x1) = (x.at(low), x.at(high));
        let (y0, y1) = (y.at(count), y.at(0.0));
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{low}-{high}: {count}</title></rect>",
            (x1 - x0 - 1.0).max(0.5),
            y1 - y0
        );
    }
    svg.push_str("</g>\n</svg>\n");
    format!(
        "<figure class=\"chart histogram\">\n<figcaption>{}</figcaption>\n{svg}</figure>\n",
        escape(title)
    )
}
