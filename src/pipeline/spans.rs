//! Where each key of a TOML document is: `toml::de::DeTable` keeps spans,
//! so every message can name the file, line and column.

use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::Origin;

/// Key positions of a TOML document, by key path.
pub struct Spans<'a> {
    path: &'a Path,
    text: &'a str,
    starts: HashMap<Vec<String>, usize>,
}

impl<'a> Spans<'a> {
    pub fn new(path: &'a Path, text: &'a str, root: &DeTable) -> Self {
        let mut starts = HashMap::new();
        index_spans(root, &mut Vec::new(), &mut starts);
        Spans { path, text, starts }
    }

    /// The origin of the key at `keys`, or of its nearest ancestor.
    pub fn origin(&self, keys: &[&str]) -> Origin {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        loop {
            if let Some(&start) = self.starts.get(&keys) {
                return Origin::in_file(self.path, self.text, start);
            }
            if keys.pop().is_none() {
                return Origin::in_file(self.path, self.text, 0);
            }
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
