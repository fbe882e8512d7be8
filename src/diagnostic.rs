//! Errors in pipeline files and overrides, with the place they point at and
//! a "did you mean" suggestion.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value came from: a line of a file, or a `--set` argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// A command-line argument, as typed: `--set train.heads=3`, `--variant shrot`.
    CommandLine(String),
}

impl Origin {
    /// The origin of byte offset `offset` in `text`, read from `path`.
    pub fn in_file(path: &Path, text: &str, offset: usize) -> Origin {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        Origin::File {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::CommandLine(arg) => write!(f, "{arg}"),
        }
    }
}

/// One problem found in the pipeline: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub origin: Origin,
    /// The dotted key it is about, e.g. `stages.limit.max_event`.
    pub key: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl Diagnostic {
    pub fn new(origin: Origin, key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            origin,
            key: key.into(),
            message: message.into(),
            suggestion: None,
        }
    }

    /// Adds "did you mean `X`?" when one of `candidates` is close to `wrong`.
    pub fn suggest<'a>(
        mut self,
        wrong: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        self.suggestion = closest(wrong, candidates).map(str::to_string);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        Ok(())
    }
}

/// Every problem found, printed one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `wrong` by edit distance, if close enough to be
/// a plausible typo (at most a third of the longer name, and at least 1).
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, c)| *d <= (wrong.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// Edit distance over chars, counting a swap of two neighbours as one edit
/// (optimal string alignment), since "trian" for "train" is one typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["max_events", "min_events", "max_wait_beats"];
        assert_eq!(closest("max_event", names), Some("max_events"));
        assert_eq!(closest("maxevents", names), Some("max_events"));
        assert_eq!(closest("temperature", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("trian", "train"), 1);
    }

    #[test]
    fn origin_counts_lines_and_columns() {
        let text = "a = 1\n[b]\n  c = 2\n";
        let o = Origin::in_file(Path::new("p.toml"), text, text.find('c').unwrap());
        assert_eq!(o.to_string(), "p.toml:3:3");
    }
}
