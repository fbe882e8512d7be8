//! The page around the sections: head, inlined style and script, header
//! and navigation; and what every writer shares (escaping, variant colours).

use super::gather::Page;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("script.js");

/// Text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Variant `index`'s colour: ten distinct ones (Tableau 10, readable on
/// white), then hues a golden angle apart.
pub fn color(index: usize) -> String {
    const TEN: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    match TEN.get(index) {
        Some(c) => c.to_string(),
        None => format!("hsl({:.0} 65% 42%)", (index as f64 * 137.508) % 360.0),
    }
}

/// A small coloured square that marks a variant beside its name.
pub fn swatch(index: usize) -> String {
    format!(
        r#"<span class="swatch" style="background:{}" aria-hidden="true"></span>"#,
        color(index)
    )
}

/// A section with its heading, linked from the navigation.
pub fn section(id: &str, title: &str, intro: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\" aria-labelledby=\"h-{id}\">\n<h2 id=\"h-{id}\">{}</h2>\n{}{body}</section>\n",
        escape(title),
        if intro.is_empty() {
            String::new()
        } else {
            format!("<p class=\"intro\">{intro}</p>\n")
        }
    )
}

const SECTIONS: [(&str, &str); 5] = [
    ("variants", "Variants"),
    ("curves", "Curves"),
    ("listen", "Listening room"),
    ("corpus", "Corpus"),
    ("provenance", "Provenance"),
];

/// The whole document around `body`.
pub fn document(page: &Page, body: &str) -> String {
    let project = page.project_dir.display().to_string();
    let nav: String = SECTIONS
        .iter()
        .map(|(id, title)| format!("<li><a href=\"#{id}\">{title}</a></li>"))
        .collect();
    let variants = page.variants.len();
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vgmake {version}">
<title>vgmake report: {title}</title>
<style>
{STYLE}</style>
</head>
<body>
<a class="skip" href="#main">Skip to the report</a>
<header>
<h1>vgmake report</h1>
<p>{project} &middot; {variants} variant{plural} &middot; written {when} UTC by vgmake {version}</p>
<nav aria-label="Sections"><ul>{nav}</ul></nav>
</header>
<main id="main">
{body}</main>
<script>
{SCRIPT}</script>
</body>
</html>
"##,
        version = env!("CARGO_PKG_VERSION"),
        title = escape(
            page.project_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_str()
        ),
        project = escape(&project),
        plural = if variants == 1 { "" } else { "s" },
        when = crate::commands::log::utc(page.generated),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
