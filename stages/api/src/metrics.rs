//! The numbers a stage kind reports, declared so that `compare` and the
//! report can show them (label, unit, which way is better, precision)
//! without knowing what they mean.

/// The key of [`MetricSpec::every_output_number`].
pub const EVERY_NUMBER: &str = "*";

/// Where a metric's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A number at the top level of the output's `metrics.json`: part of
    /// the result, so it must be a deterministic function of the inputs.
    Output,
    /// A measurement ([`crate::Measurements`]): kept in the action record
    /// beside the result, never hashed (tokens/s, peak memory).
    Measured,
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    /// Neither (a count, a size).
    Neither,
}

/// One declared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// Its key in `metrics.json` or its measurement name.
    pub key: &'static str,
    /// Column label, e.g. "val bits/token".
    pub label: &'static str,
    /// Unit after scaling, e.g. "bits/token" ("" for a plain number).
    pub unit: &'static str,
    pub source: Source,
    pub better: Better,
    /// The shown value is the stored one times this (nats -> bits: log2 e).
    pub scale: f64,
    /// Decimals to show.
    pub decimals: usize,
    /// One of the numbers a variant is judged by (the report's parallel
    /// coordinates put it beside the swept parameters).
    pub headline: bool,
}

impl MetricSpec {
    /// A number of the output's `metrics.json`, shown as it is.
    pub const fn output(key: &'static str, label: &'static str) -> Self {
        MetricSpec {
            key,
            label,
            unit: "",
            source: Source::Output,
            better: Better::Neither,
            scale: 1.0,
            decimals: 3,
            headline: false,
        }
    }
    /// Every top-level number of the output's `metrics.json`, each labelled
    /// `stage.key`: for kinds whose numbers are the user's (`command`).
    pub const fn every_output_number() -> Self {
        MetricSpec::output(EVERY_NUMBER, "")
    }
    /// A measurement, shown as it is.
    pub const fn measured(key: &'static str, label: &'static str) -> Self {
        MetricSpec {
            source: Source::Measured,
            ..MetricSpec::output(key, label)
        }
    }
    pub const fn lower_is_better(self) -> Self {
        MetricSpec {
            better: Better::Lower,
            ..self
        }
    }
    pub const fn higher_is_better(self) -> Self {
        MetricSpec {
            better: Better::Higher,
            ..self
        }
    }
    pub const fn unit(self, unit: &'static str) -> Self {
        MetricSpec { unit, ..self }
    }
    pub const fn scale(self, scale: f64) -> Self {
        MetricSpec { scale, ..self }
    }
    pub const fn decimals(self, decimals: usize) -> Self {
        MetricSpec { decimals, ..self }
    }
    pub const fn headline(self) -> Self {
        MetricSpec {
            headline: true,
            ..self
        }
    }

    /// The value as shown: scaled and rounded to its decimals.
    pub fn format(&self, stored: f64) -> String {
        format!("{:.*}", self.decimals, stored * self.scale)
    }
}
