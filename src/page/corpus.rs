//! The corpus section: what the data stages report (songs kept and dropped
//! by reason, the events histogram, the vocabulary), once per distinct
//! output, naming the variants that share it.

use super::bars::histogram;
use super::gather::{FactValue, Page};
use super::html::{escape, section};
use crate::results::plain_number;

pub fn write(page: &Page) -> String {
    let mut body = String::new();
    if page.summaries.is_empty() {
        body.push_str("<p>No stage of these variants declares a summary.</p>\n");
    }
    for s in &page.summaries {
        let who = if s.variants.len() == page.variants.len() {
            "every variant".to_string()
        } else {
            s.variants.join(", ")
        };
        body.push_str(&format!(
            "<section class=\"summary\">\n<h3>{} <small>({}; {})</small></h3>\n",
            escape(s.title),
            escape(&s.stage),
            escape(&who)
        ));
        let numbers: Vec<String> = s
            .facts
            .iter()
            .filter_map(|f| match f {
                FactValue::Number(label, v) => Some(format!(
                    "<div><dt>{}</dt><dd>{}</dd></div>",
                    escape(label),
                    plain_number(*v)
                )),
                _ => None,
            })
            .collect();
        if !numbers.is_empty() {
            body.push_str(&format!(
                "<dl class=\"numbers\">{}</dl>\n",
                numbers.concat()
            ));
        }
        for f in &s.facts {
            match f {
                FactValue::Counts(label, counts) => {
                    let rows: String = counts
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                                escape(&k.replace('_', " ")),
                                plain_number(*v)
                            )
                        })
                        .collect();
                    body.push_str(&format!(
                        "<table class=\"counts\"><caption>{}</caption><tbody>{}</tbody></table>\n",
                        escape(label),
                        if rows.is_empty() {
                            "<tr><td>none</td></tr>".to_string()
                        } else {
                            rows
                        }
                    ));
                }
                FactValue::Histogram {
                    label,
                    x_label,
                    bins,
                } => body.push_str(&histogram(label, x_label, bins)),
                FactValue::Number(..) => {}
            }
        }
        body.push_str("</section>\n");
    }
    section(
        "corpus",
        "Corpus",
        "What the data stages report, once per distinct result.",
        &body,
    )
}
