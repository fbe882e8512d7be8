//! Provenance: per variant, each stage's key, when it was built and how
//! long it took, whether the variant is up to date, and the command that
//! builds it again.

use super::freshness::Freshness;
use super::gather::Page;
use super::html::{escape, section, swatch};
use crate::commands::log::utc;
use crate::report::format_seconds;

pub fn write(page: &Page) -> String {
    let mut body = String::new();
    for (i, v) in page.variants.iter().enumerate() {
        let name = escape(v.name());
        let state = match &v.freshness {
            Freshness::UpToDate => "up to date with pipeline.toml".to_string(),
            Freshness::Stale(r) => format!("out of date: {}", escape(&r.join("; "))),
            Freshness::Unknown(why) => format!("freshness unknown: {}", escape(why)),
        };
        let rows: String = v
            .stages
            .iter()
            .map(|s| {
                format!(
                    "<tr><th scope=\"row\">{}</th><td>{}</td><td><code title=\"{}\">{}</code></td><td>{} UTC</td><td>{}</td></tr>",
                    escape(&s.name),
                    escape(&s.kind),
                    escape(&format!("key {}, output {}", s.key, s.output)),
                    escape(&s.key[..s.key.len().min(12)]),
                    utc(s.finished),
                    format_seconds(s.seconds)
                )
            })
            .collect();
        body.push_str(&format!(
            "<details class=\"provenance\" data-variant=\"{name}\">\n<summary>{}{name}: {state}</summary>\n<p>Build it again: <code class=\"command\">{}</code></p>\n<div class=\"scroll\"><table><thead><tr><th scope=\"col\">stage</th><th scope=\"col\">kind</th><th scope=\"col\">key</th><th scope=\"col\">built</th><th scope=\"col\">time</th></tr></thead><tbody>{rows}</tbody></table></div>\n</details>\n",
            swatch(i),
            escape(&v.reproduce)
        ));
    }
    section(
        "provenance",
        "Provenance",
        "Each variant's stage results: key (hover for the full key and output hash), when built, how long it took, and the command that builds the same results again.",
        &body,
    )
}
