//! The variants table: one row per variant, the parameters that differ,
//! every declared metric (the best marked), and whether the variant is up
//! to date with `pipeline.toml`. The script sorts it by any column: each
//! header is a button, so the keyboard sorts too.

use vgmake_api::Better;

use super::freshness::Freshness;
use super::gather::Page;
use super::html::{escape, section, swatch};
use crate::results;

/// The note of a parameter's header (and what marks its column).
const PARAMETER: &str = "a parameter that differs between the variants";

pub fn write(page: &Page) -> String {
    let all: Vec<&results::VariantResults> = page.variants.iter().map(|v| &v.results).collect();
    let mut head = vec![header(0, "variant", "")];
    for p in &page.params {
        head.push(header(head.len(), p, PARAMETER));
    }
    for label in &page.labels {
        let better = all
            .iter()
            .find_map(|r| r.metric(label))
            .map_or(Better::Neither, |m| m.better);
        let note = match better {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
            Better::Neither => "",
        };
        head.push(header(head.len(), label, note));
    }
    head.push(header(
        head.len(),
        "status",
        "up to date with pipeline.toml?",
    ));
    let best: Vec<Option<usize>> = page.labels.iter().map(|l| results::best(&all, l)).collect();
    let mut rows = String::new();
    for (i, v) in page.variants.iter().enumerate() {
        let name = escape(v.name());
        rows.push_str(&format!(
            "<tr data-variant=\"{name}\"><th scope=\"row\" data-value=\"{name}\">{}{name}</th>",
            swatch(i)
        ));
        for p in &page.params {
            let text = v.results.params.get(p).map_or("-", String::as_str);
            rows.push_str(&format!(
                "<td data-value=\"{}\">{}</td>",
                escape(text.trim_matches('"')),
                escape(text)
            ));
        }
        for (label, best) in page.labels.iter().zip(&best) {
            match v.results.metric(label) {
                Some(m) if *best == Some(i) => rows.push_str(&format!(
                    "<td class=\"best\" data-value=\"{}\"><strong>{}</strong> <span class=\"star\" role=\"img\" aria-label=\"best\">&#9733;</span></td>",
                    m.value,
                    escape(&m.text)
                )),
                Some(m) => rows.push_str(&format!(
                    "<td data-value=\"{}\">{}</td>",
                    m.value,
                    escape(&m.text)
                )),
                None => rows.push_str("<td data-value=\"\">-</td>"),
            }
        }
        rows.push_str(&status_cell(&v.freshness));
        rows.push_str("</tr>\n");
    }
    let body = format!(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Variants table (scrolls sideways)\">\n<table id=\"variants-table\" class=\"sortable\">\n<caption>{} variant{}: the parameters that differ between them, then each stage's metrics; &#9733; marks the best value. Sort by a column with its header button.</caption>\n<thead><tr>{}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n</div>\n",
        page.variants.len(),
        if page.variants.len() == 1 { "" } else { "s" },
        head.concat()
    );
    section("variants", "Variants", "", &body)
}

fn header(column: usize, label: &str, note: &str) -> String {
    let title = if note.is_empty() {
        String::new()
    } else {
        format!(" title=\"{}\"", escape(note))
    };
    let hint = match note {
        "lower is better" => {
            "<span class=\"dir\" aria-hidden=\"true\"> &#8595;</span><span class=\"sr\"> (lower is better)</span>"
        }
        "higher is better" => {
            "<span class=\"dir\" aria-hidden=\"true\"> &#8593;</span><span class=\"sr\"> (higher is better)</span>"
        }
        _ => "",
    };
    let class = if note == PARAMETER {
        " class=\"param\""
    } else {
        ""
    };
    format!(
        "<th scope=\"col\"{class} aria-sort=\"none\"{title}><button type=\"button\" data-column=\"{column}\">{}{hint}</button></th>",
        escape(label)
    )
}

fn status_cell(freshness: &Freshness) -> String {
    match freshness {
        Freshness::UpToDate => "<td data-value=\"0\" class=\"fresh\">up to date</td>".to_string(),
        Freshness::Stale(reasons) => {
            let items: String = reasons
                .iter()
                .map(|r| format!("<li>{}</li>", escape(r)))
                .collect();
            format!(
                "<td data-value=\"1\" class=\"stale\"><details><summary>out of date</summary><ul>{items}</ul></details></td>"
            )
        }
        Freshness::Unknown(why) => format!(
            "<td data-value=\"2\"><details><summary>unknown</summary><p>{}</p></details></td>",
            escape(why)
        ),
    }
}
