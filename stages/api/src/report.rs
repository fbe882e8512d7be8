//! What a stage kind shows in `vgmake report`, declared the way its metrics
//! are ([`crate::MetricSpec`]): which columns of which output file are a
//! curve, which files per item are audio, images or downloads, which numbers
//! of a JSON report summarize the stage. The engine renders them without
//! knowing what a loss, a song or a histogram is.

use crate::MetricSpec;

/// Everything a kind contributes to the report; empty by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSpec {
    /// Series over steps, each drawn as one chart with a line per variant.
    pub curves: Vec<CurveSpec>,
    /// Items the stage writes as files (a generated song: audio, image,
    /// download), shown side by side per variant.
    pub gallery: Option<GallerySpec>,
    /// Facts read from the stage's JSON reports (the corpus section).
    pub summaries: Vec<SummarySpec>,
}

/// One series of a CSV file in the output (header row names the columns;
/// an empty cell is a missing point).
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSpec {
    pub file: &'static str,
    /// The column of the x axis (a step count).
    pub x: &'static str,
    /// The column drawn.
    pub y: &'static str,
    /// The chart's heading, e.g. "Validation loss".
    pub title: &'static str,
    pub x_label: &'static str,
    pub y_label: &'static str,
}

impl CurveSpec {
    pub const fn new(file: &'static str, x: &'static str, y: &'static str) -> Self {
        CurveSpec {
            file,
            x,
            y,
            title: y,
            x_label: x,
            y_label: y,
        }
    }
    pub const fn title(self, title: &'static str) -> Self {
        CurveSpec { title, ..self }
    }
    pub const fn labels(self, x_label: &'static str, y_label: &'static str) -> Self {
        CurveSpec {
            x_label,
            y_label,
            ..self
        }
    }
}

/// How a file of an item is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Played in an audio player (WAV, OGG...).
    Audio,
    /// Shown as a picture (PNG, SVG...).
    Image,
    /// Offered as a link to download (MIDI, text).
    Download,
}

/// One file of each item: `<stem>.<extension>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaFile {
    pub extension: &'static str,
    pub kind: MediaKind,
    /// What it is, for labels and alt text: "piano roll", "MIDI file".
    pub label: &'static str,
}

impl MediaFile {
    pub const fn new(extension: &'static str, kind: MediaKind, label: &'static str) -> Self {
        MediaFile {
            extension,
            kind,
            label,
        }
    }
}

/// A place in a JSON file of the output: an RFC 6901 pointer ("" = the
/// whole document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonAt {
    pub file: &'static str,
    pub pointer: &'static str,
}

/// Items written as files: every stem `<prefix>...` of the output with at
/// least one of `files` is an item.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySpec {
    /// The heading: "Samples".
    pub title: &'static str,
    pub prefix: &'static str,
    pub files: Vec<MediaFile>,
    /// An array of one object per item; its `name_key` field is the stem,
    /// its numbers the item's own metrics (shown as `item_metrics` say).
    pub items: Option<(JsonAt, &'static str)>,
    pub item_metrics: Vec<MetricSpec>,
    /// A real item written beside them for comparison (a song of the
    /// corpus), shown once per distinct file.
    pub reference: Option<ReferenceSpec>,
}

/// The reference item of a gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSpec {
    /// Its file stem: `reference` for `reference.wav`, `reference.png`.
    pub stem: &'static str,
    /// What it is: "a validation song of the corpus".
    pub label: &'static str,
    /// An object describing it: its numbers are shown like an item's, a
    /// string field `title_key` names it.
    pub about: Option<(JsonAt, &'static str)>,
}

/// Facts of one JSON report of the output, under a heading.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySpec {
    pub title: &'static str,
    pub file: &'static str,
    pub facts: Vec<Fact>,
}

/// One fact of a summary, found by a JSON pointer into its file.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A number.
    Number {
        pointer: &'static str,
        label: &'static str,
    },
    /// An object of name -> number (songs dropped by reason), as a table.
    Counts {
        pointer: &'static str,
        label: &'static str,
    },
    /// An array of `{low, high, count}` bins, drawn as bars.
    Histogram {
        pointer: &'static str,
        label: &'static str,
        x_label: &'static str,
    },
}
