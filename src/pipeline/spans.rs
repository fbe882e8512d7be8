//! Where each key of a TOML document is: `toml::de::DeTable` keeps spans,
//! so every message can name the file, line and column.

use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::Origin;

/// Key positions of a TOML document, by key path.
pub struct Spans<'a> {
    path: &'a Path,
    starts: HashMap<Vec<String>, usize>,
    /// Byte offset of each line's start, so that an origin costs a binary
    /// search, not a scan of the file (pipelines of 20,000 stages).
    line_starts: Vec<usize>,
}

impl<'a> Spans<'a> {
    pub fn new(path: &'a Path, text: &'a str, root: &DeTable) -> Self {
        let mut starts = HashMap::new();
        index_spans(root, &mut Vec::new(), &mut starts);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Spans {
            path,
            starts,
            line_starts,
        }
    }

    /// The origin of the key at `keys`, or of its nearest ancestor.
    pub fn origin(&self, keys: &[&str]) -> Origin {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        loop {
            if let Some(&start) = self.starts.get(&keys) {
                return self.at(start);
            }
            if keys.pop().is_none() {
                return self.at(0);
            }
        }
    }
}

impl Spans<'_> {
    /// The origin of byte `offset` (columns count bytes; keys are ASCII-led).
    fn at(&self, offset: usize) -> Origin {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        Origin::File {
            path: self.path.to_path_buf(),
            line,
            column: offset - self.line_starts[line - 1] + 1,
        }
    }
}

fn index_spans(table: &DeTable, prefix: &mut Vec<String>, out: &mut HashMap<Vec<String>, usize>) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        out.entry(prefix.clone()).or_insert(key.span().start);
        if let DeValue::Table(inner) = value.get_ref() {
            index_spans(inner, prefix, out);
        }
        prefix.pop();
    }
}
