//! `vgmake report`'s page: one self-contained HTML file (styles, script and
//! SVG charts inlined; media linked by relative paths or embedded) built
//! from what the stage kinds declare ([`vgmake_api::ReportSpec`],
//! [`vgmake_api::MetricSpec`]). [`gather`] reads the cache into a [`Page`];
//! the other files each write one part of it; [`html::document`] puts them
//! together.

mod axis;
mod bars;
mod chart;
mod corpus;
mod freshness;
mod gather;
mod html;
mod listen;
mod media;
mod parallel;
mod provenance;
mod table;

use std::io;
use std::path::PathBuf;

pub use gather::{Page, gather};
pub use media::MediaMode;

/// Why the page could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The whole page as HTML.
pub fn render(page: &Page, media: &MediaMode) -> Result<String, PageError> {
    let mut body = String::new();
    body.push_str(&table::write(page));
    body.push_str(&chart::write(page));
    body.push_str(&listen::write(page, media)?);
    body.push_str(&corpus::write(page));
    body.push_str(&provenance::write(page));
    Ok(html::document(page, &body))
}
