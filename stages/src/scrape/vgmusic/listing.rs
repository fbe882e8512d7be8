//! Parses a vgmusic console page into songs. The page's first `<table>`
//! holds game header rows (any row with a `td.header` cell: the older
//! `tr.header` and the newer `tr.gameheader` layouts) followed by song rows
//! of four cells: link + title, "N bytes", sequencer, comments link whose
//! `/file/<md5>.html` names the MD5 of the file.
//!
//! html5ever's tokenizer reads the page (entities, attributes, comments,
//! script and style contents as the spec says); rows and cells are then
//! opened and closed the way HTML's table rules imply them: a `<td>` ends
//! the cell before it and a `<tr>` the row before it, so pages that leave
//! out `</td>` and `</tr>` read the same. Building the full DOM would cost
//! twice the time for nothing this page needs.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer,
};
use url::Url;

/// Songs read from one page at most: the largest console page of 2021 lists
/// about 5,000. Past this a page is not a listing we can trust, and reading
/// on would cost memory for nothing (a million links cost 842 MB).
pub const MAX_SONGS_PER_PAGE: usize = 50_000;
/// Rows reported as unreadable per page at most (the rest are counted).
const MAX_PROBLEMS: usize = 1_000;

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
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(
        RowSink {
            rows: RefCell::new(Rows::new(page_url)),
        },
        Default::default(),
    );
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let rows = tokenizer.sink.rows.into_inner();
    let mut listing = rows.listing;
    if rows.songs_over > 0 {
        listing.problems.push(format!(
            "the page lists more than {MAX_SONGS_PER_PAGE} songs: only the first \
             {MAX_SONGS_PER_PAGE} are read, {} more are ignored",
            rows.songs_over
        ));
    }
    if rows.problems_over > 0 {
        listing.problems.push(format!(
            "{} more unreadable rows not listed",
            rows.problems_over
        ));
    }
    if !rows.saw_table {
        listing
            .problems
            .push("no <table> on the page: not a console listing".into());
    }
    listing
}

#[derive(Debug, Default)]
struct Link {
    href: Option<String>,
    text: String,
}

/// One cell. Cells (and their strings) are reused from row to row: a page
/// has ~27,000 of them.
#[derive(Debug, Default)]
struct Cell {
    is_th: bool,
    /// `class="header"`: a game header cell.
    is_header: bool,
    text: String,
    links: Vec<Link>,
    link_count: usize,
}

impl Cell {
    fn reset(&mut self, is_th: bool, is_header: bool) {
        self.is_th = is_th;
        self.is_header = is_header;
        self.text.clear();
        self.link_count = 0;
    }

    fn links(&self) -> &[Link] {
        &self.links[..self.link_count]
    }

    fn open_link(&mut self, href: Option<&str>) {
        if self.link_count == self.links.len() {
            self.links.push(Link::default());
        }
        let link = &mut self.links[self.link_count];
        link.text.clear();
        link.href = href.map(str::to_owned);
        self.link_count += 1;
    }
}

/// The page's first table, read row by row into the listing.
struct Rows<'a> {
    page_url: &'a Url,
    saw_table: bool,
    /// Nesting depth of `<table>` while inside the first one; rows of a
    /// nested table are not ours.
    depth: u32,
    finished: bool,
    cells: Vec<Cell>,
    cell_count: usize,
    /// Whether text goes to the last cell.
    in_cell: bool,
    in_link: bool,
    game: String,
    listing: Listing,
    /// Songs past [`MAX_SONGS_PER_PAGE`], counted, not kept.
    songs_over: u64,
    /// Problems past [`MAX_PROBLEMS`], counted, not kept.
    problems_over: u64,
}

impl<'a> Rows<'a> {
    fn new(page_url: &'a Url) -> Self {
        Rows {
            page_url,
            saw_table: false,
            depth: 0,
            finished: false,
            cells: Vec::new(),
            cell_count: 0,
            in_cell: false,
            in_link: false,
            game: String::new(),
            listing: Listing::default(),
            songs_over: 0,
            problems_over: 0,
        }
    }

    fn end_row(&mut self) {
        let cells = &self.cells[..self.cell_count];
        if let Some(header) = cells.iter().find(|c| !c.is_th && c.is_header) {
            self.game = clean(&header.text);
        } else {
            let mut problems = Vec::new();
            if let Some(song) = song_row(cells, &self.game, self.page_url, &mut problems) {
                if self.listing.songs.len() < MAX_SONGS_PER_PAGE {
                    self.listing.songs.push(song);
                } else {
                    self.songs_over += 1;
                }
            }
            for problem in problems {
                if self.listing.problems.len() < MAX_PROBLEMS {
                    self.listing.problems.push(problem);
                } else {
                    self.problems_over += 1;
                }
            }
        }
        self.cell_count = 0;
        self.in_cell = false;
        self.in_link = false;
    }

    fn cell(&mut self) -> Option<&mut Cell> {
        if !self.in_cell || self.cell_count == 0 {
            return None;
        }
        self.cells.get_mut(self.cell_count - 1)
    }

    fn open_cell(&mut self, is_th: bool, is_header: bool) {
        if self.cell_count == self.cells.len() {
            self.cells.push(Cell::default());
        }
        self.cells[self.cell_count].reset(is_th, is_header);
        self.cell_count += 1;
        self.in_cell = true;
        self.in_link = false;
    }

    fn tag(&mut self, tag: &Tag) {
        let name: &str = &tag.name;
        let start = tag.kind == TagKind::StartTag;
        if name == "table" {
            match (start, self.saw_table) {
                (true, false) => {
                    self.saw_table = true;
                    self.depth = 1;
                }
                (true, true) => self.depth += 1,
                (false, _) if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 && !self.finished {
                        self.end_row();
                        self.finished = true;
                    }
                }
                _ => {}
            }
            return;
        }
        if self.depth != 1 || self.finished {
            return;
        }
        match (name, start) {
            ("tr" | "tbody" | "thead" | "tfoot", _) => self.end_row(),
            ("td" | "th", true) => {
                let is_header = tag.attrs.iter().any(|a| {
                    &*a.name.local == "class"
                        && a.value.split_ascii_whitespace().any(|c| c == "header")
                });
                self.open_cell(name == "th", is_header);
            }
            ("td" | "th", false) => {
                self.in_cell = false;
                self.in_link = false;
            }
            ("a", true) => {
                let href = tag
                    .attrs
                    .iter()
                    .find(|a| &*a.name.local == "href")
                    .map(|a| &*a.value);
                if let Some(cell) = self.cell() {
                    cell.open_link(href);
                    self.in_link = true;
                }
            }
            ("a", false) => self.in_link = false,
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.depth != 1 || self.finished {
            return;
        }
        let in_link = self.in_link;
        if let Some(cell) = self.cell() {
            cell.text.push_str(text);
            if in_link && cell.link_count > 0 {
                cell.links[cell.link_count - 1].text.push_str(text);
            }
        }
    }
}

struct RowSink<'a> {
    rows: RefCell<Rows<'a>>,
}

impl TokenSink for RowSink<'_> {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) => {
                self.rows.borrow_mut().tag(&tag);
                if tag.kind == TagKind::StartTag {
                    // The content models the tree builder would switch the
                    // tokenizer to: a "<tr>" inside a script is not a row.
                    return match &*tag.name {
                        "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                        "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                            TokenSinkResult::RawData(RawKind::Rawtext)
                        }
                        "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
                        "plaintext" => TokenSinkResult::Plaintext,
                        _ => TokenSinkResult::Continue,
                    };
                }
            }
            Token::CharacterTokens(text) => self.rows.borrow_mut().text(&text),
            Token::EOFToken => {
                let mut rows = self.rows.borrow_mut();
                if rows.depth > 0 && !rows.finished {
                    rows.end_row();
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

fn song_row(
    cells: &[Cell],
    game: &str,
    page_url: &Url,
    problems: &mut Vec<String>,
) -> Option<ListedSong> {
    let first = cells.first().filter(|c| !c.is_th)?;
    let link = first.links().iter().find(|l| l.href.is_some())?;
    let href = link.href.as_deref().unwrap_or("").trim().to_string();
    let title = clean(&link.text);
    let url = match page_url.join(&href) {
        Ok(url) => url,
        Err(e) => {
            problems.push(format!(
                "game {game:?}, song {title:?}: bad href {href:?}: {e}"
            ));
            return None;
        }
    };
    let text_of = |i: usize| cells.get(i).map(|c| clean(&c.text)).unwrap_or_default();
    Some(ListedSong {
        game: game.to_string(),
        title,
        sequencer: text_of(2),
        declared_size: parse_size(&text_of(1)),
        md5: cells.get(3).and_then(comments_md5),
        href,
        url,
    })
}

/// Text with runs of white space collapsed.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
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
fn comments_md5(cell: &Cell) -> Option<String> {
    cell.links().iter().find_map(|link| {
        let href = link.href.as_deref()?;
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
    fn nested_tables_scripts_and_rows_without_end_tags() {
        let page = Url::parse("http://site/c/").unwrap();
        let html = r#"<html><head><script>var x = "<table><tr><td><a href='no.mid'>x</a>";</script></head>
<body><!-- <tr><td><a href="comment.mid"> -->
<table><tr class="header"><td class="header">Game &amp; Co
<tr><td><a href="a.mid">A <b>bold</b> title</a><td>10 bytes<td>Seq<td><a href="/file/00000000000000000000000000000000.html">C</a>
<td><table><tr><td><a href="inner.mid">inner</a></table>
<tr><td><a href="b.mid">B</a><td>20 bytes
</table>
<table><tr><td><a href="second-table.mid">later</a></table>"#;
        let listing = parse(html, &page);
        let hrefs: Vec<&str> = listing.songs.iter().map(|s| s.href.as_str()).collect();
        assert_eq!(hrefs, ["a.mid", "b.mid"]);
        assert_eq!(listing.songs[0].game, "Game & Co");
        assert_eq!(listing.songs[0].title, "A bold title");
        assert_eq!(listing.songs[0].sequencer, "Seq");
        assert_eq!(listing.songs[1].declared_size, Some(20));
        assert_eq!(listing.songs[1].md5, None);
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
