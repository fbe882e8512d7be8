//! The listening room: each variant's items side by side (an audio player,
//! the image, the download link, the item's own numbers), with the
//! reference items (a real song) first, once per distinct file.

use vgmake_api::MediaKind;

use super::PageError;
use super::gather::{Item, Page};
use super::html::{escape, section, swatch};
use super::media::MediaMode;

pub fn write(page: &Page, media: &MediaMode) -> Result<String, PageError> {
    let mut body = String::new();
    for r in &page.references {
        let who = if r.variants.len() == page.variants.len() {
            "every variant".to_string()
        } else {
            format!("variants {}", r.variants.join(", "))
        };
        body.push_str(&format!(
            "<section class=\"reference\">\n<h3>For reference: {}</h3>\n<p>{} (the same for {}).</p>\n<div class=\"cards\">\n{}</div>\n</section>\n",
            escape(&r.title),
            escape(r.label),
            escape(&who),
            card(&r.item, "reference", media)?
        ));
    }
    let mut any = false;
    for (i, v) in page.variants.iter().enumerate() {
        for g in &v.galleries {
            any = true;
            let name = escape(v.name());
            body.push_str(&format!(
                "<section class=\"gallery\" data-variant=\"{name}\">\n<h3>{}{name}: {} <small>({})</small></h3>\n<div class=\"cards\">\n",
                swatch(i),
                escape(g.title),
                escape(&g.stage)
            ));
            if g.items.is_empty() {
                body.push_str("<p>No items in this output.</p>\n");
            }
            for item in &g.items {
                body.push_str(&card(item, v.name(), media)?);
            }
            body.push_str("</div>\n</section>\n");
        }
    }
    if !any {
        body.push_str("<p>No stage of these variants writes media.</p>\n");
    }
    Ok(section(
        "listen",
        "Listening room",
        "Each variant's samples side by side: listen, look at the piano roll, download the MIDI file.",
        &body,
    ))
}

/// One item: its audio players, images and links, then its numbers.
fn card(item: &Item, owner: &str, media: &MediaMode) -> Result<String, PageError> {
    let name = escape(&item.name);
    let whose = escape(owner);
    let mut html = format!("<article class=\"card\">\n<h4>{name}</h4>\n");
    let mut links = Vec::new();
    for (file, path) in &item.files {
        let src = escape(&media.source(path)?);
        let what = escape(file.label);
        match file.kind {
            MediaKind::Image => html.push_str(&format!(
                "<img src=\"{src}\" alt=\"{what} of {name} ({whose})\" decoding=\"async\">\n"
            )),
            MediaKind::Audio => html.push_str(&format!(
                "<audio controls preload=\"metadata\" src=\"{src}\" aria-label=\"{what} of {name} ({whose})\"></audio>\n"
            )),
            MediaKind::Download => {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                links.push(format!(
                    "<a href=\"{src}\" download=\"{}\">{what}<span class=\"sr\"> of {name} ({whose})</span></a>",
                    escape(&file_name)
                ));
            }
        }
    }
    if !links.is_empty() {
        html.push_str(&format!("<p class=\"links\">{}</p>\n", links.join(" ")));
    }
    if !item.numbers.is_empty() {
        html.push_str("<dl class=\"numbers\">");
        for (label, value) in &item.numbers {
            html.push_str(&format!(
                "<div><dt>{}</dt><dd>{}</dd></div>",
                escape(label),
                escape(value)
            ));
        }
        html.push_str("</dl>\n");
    }
    html.push_str("</article>\n");
    Ok(html)
}
