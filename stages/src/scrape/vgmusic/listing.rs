//! Parses a vgmusic console page into songs. The page's first `<table>`
//! holds game header rows (any row with a `td.header` cell: the older
//! `tr.header` and the newer `tr.gameheader` layouts) followed by song rows
//! of four cells: link + title, "N bytes", sequencer, comments link whose
//! `/file/<md5>.html` names the MD5 of the file. html5ever closes the
//! `</td>`/`</tr>` the site leaves out.

use scraper::{ElementRef, Html};
use url::Url;

/// One song row.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSong {
    pub game: String,
    pub title: String,
    pub sequencer: String,
    /// The href as written on the page (percent-encoded, relative).
    pub href: String,
    /// `href` resolved against the console page's URL.
    pub url: Url,
    pub declared_size: Option<u64>,
    /// Lower-case hex MD5 from the comments link.
    pub md5: Option<String>,
}

#[derive(Debug, Default)]
pub struct Listing {
    /// Songs in page order.
    pub songs: Vec<ListedSong>,
    /// Rows that looked like songs but could not be read.
    pub problems: Vec<String>,
}

/// Parses `html`, the page found at `page_url`.
pub fn parse(html: &str, page_url: &Url) -> Listing {
    let document = Html::parse_document(html);
    let mut listing = Listing::default();
    let Some(table) = document
        .root_element()
        .descendent_elements()
        .find(|e| e.value().name() == "table")
    else {
        listing
            .problems
            .push("no <table> on the page: not a console listing".into());
        return listing;
    };
    let mut game = String::new();
    for row in rows(table) {
        let cells: Vec<ElementRef> = row
            .child_elements()
            .filter(|c| c.value().name() == "td")
            .collect();
        if let Some(header) = cells.iter().find(|c| has_class(c, "header")) {
            game = clean_text(*header);
            continue;
        }
        if let Some(song) = song_row(&cells, &game, page_url, &mut listing.problems) {
            listing.songs.push(song);
        }
    }
    listing
}

/// The `<tr>` elements of `table` (through the implicit `<tbody>`), not
/// those of nested tables.
fn rows(table: ElementRef) -> impl Iterator<Item = ElementRef> {
    table.child_elements().flat_map(|child| {
        let nested: Vec<ElementRef> = match child.value().name() {
            "tr" => vec![child],
            "tbody" | "thead" | "tfoot" => child
                .child_elements()
                .filter(|r| r.value().name() == "tr")
                .collect(),
            _ => Vec::new(),
        };
        nested
    })
}

fn song_row(
    cells: &[ElementRef],
    game: &str,
    page_url: &Url,
    problems: &mut Vec<String>,
) -> Option<ListedSong> {
    let first = cells.first()?;
    let link = first
        .descendent_elements()
        .find(|e| e.value().name() == "a" && e.value().attr("href").is_some())?;
    let href = link.value().attr("href").unwrap_or("").trim().to_string();
    let title = clean_text(link);
    let url = match page_url.join(&href) {
        Ok(url) => url,
        Err(e) => {
            problems.push(format!(
                "game {game:?}, song {title:?}: bad href {href:?}: {e}"
            ));
            return None;
        }
    };
    let text_of = |i: usize| cells.get(i).map(|c| clean_text(*c)).unwrap_or_default();
    Some(ListedSong {
        game: game.to_string(),
        title,
        sequencer: text_of(2),
        declared_size: parse_size(&text_of(1)),
        md5: cells.get(3).and_then(|c| comments_md5(*c)),
        href,
        url,
    })
}

fn has_class(element: &ElementRef, class: &str) -> bool {
    element
        .value()
        .attr("class")
        .is_some_and(|c| c.split_ascii_whitespace().any(|x| x == class))
}

/// The element's text with runs of white space collapsed.
fn clean_text(element: ElementRef) -> String {
    let text: String = element.text().collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "12,345 bytes" -> 12345.
fn parse_size(text: &str) -> Option<u64> {
    let digits: String = text
        .split_whitespace()
        .next()?
        .chars()
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// The MD5 in a `/file/<md5>.html` link.
fn comments_md5(cell: ElementRef) -> Option<String> {
    cell.descendent_elements().find_map(|a| {
        let href = a.value().attr("href")?;
        let name = href.rsplit('/').next()?;
        let hex = name.strip_suffix(".html")?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture page of /work/shared/vgmusic/README.md, both layouts,
    /// end tags left out in the first song row.
    const FIXTURE: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">
<html><head><meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>VGMusic - Fixture Console</title></head><body>
<table width="100%">
<tr><th class="header">Song Title</th><th class="header">File Size</th><th class="header">Sequenced By</th><th class="header">Comments</th></tr>
<tr><td colspan="4"></td></tr>
<tr class="header"><td class="header" colspan="4"><a name="Alpha_Quest">Alpha Quest</a></td></tr>
<tr><td><a href="alpha_title.mid">Title Screen</a><td align="right">1234   bytes<td align="center">Seq One<td class="comments" align="center"><a href="/file/0123456789ABCDEF0123456789abcdef.html">Comments</a>
<tr><td colspan="4"></td></tr>
<tr class="gameheader"><td class="header" colspan="5"><a name="Legend_of_Beta_The">Legend of Beta, The: Pokémon &amp; Friends</a></td></tr>
<tr><td><a href="LoB_%28Overworld%29.mid">Overworld (Remix)</a></td><td align="right">
 98 bytes</td><td align="center"> </td><td class="comments" align="center"><a href="/file/ffffffffffffffffffffffffffffffff.html">Comments</a></td></tr>
</table><address>indexer 0.0.1</address></body></html>"#;

    #[test]
    fn reads_both_layouts_and_tolerates_missing_end_tags() {
        let page = Url::parse("http://site/music/console/fixture/").unwrap();
        let listing = parse(FIXTURE, &page);
        assert!(listing.problems.is_empty(), "{:?}", listing.problems);
        assert_eq!(listing.songs.len(), 2);
        let first = &listing.songs[0];
        assert_eq!(first.game, "Alpha Quest");
        assert_eq!(first.title, "Title Screen");
        assert_eq!(first.sequencer, "Seq One");
        assert_eq!(first.declared_size, Some(1234));
        assert_eq!(
            first.md5.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            first.url.as_str(),
            "http://site/music/console/fixture/alpha_title.mid"
        );
        let second = &listing.songs[1];
        assert_eq!(second.game, "Legend of Beta, The: Pokémon & Friends");
        assert_eq!(second.href, "LoB_%28Overworld%29.mid");
        assert_eq!(second.sequencer, "");
        assert_eq!(second.declared_size, Some(98));
    }

    #[test]
    fn a_page_without_a_table_is_a_problem_not_a_panic() {
        let page = Url::parse("http://site/x/").unwrap();
        let listing = parse("<html><body><h1>Error 500</h1></body></html>", &page);
        assert!(listing.songs.is_empty());
        assert_eq!(listing.problems.len(), 1);
    }

    #[test]
    fn sizes_and_md5_links_are_read_leniently() {
        assert_eq!(parse_size(" 12,345\u{a0}bytes "), Some(12345));
        assert_eq!(parse_size("bytes"), None);
        assert_eq!(parse_size(""), None);
    }
}
