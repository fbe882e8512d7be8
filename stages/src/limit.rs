//! The `limit` stage kind: keeps songs with `min_events <= events <=
//! max_events` (tokens counted with `start` and `finish`) whose longest wait
//! is at most `max_wait_beats`.
//!
//! Output: the kept song set (same layout as encode's), `report.json`
//! (`kept`, `dropped`, `dropped_by_reason`, the histogram),
//! `events_histogram.txt` and `events_histogram.png` (events per song, over
//! every input song, thresholds marked), `metrics.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::Serialize;

use crate::api::*;
use crate::dataset::write_json;
use crate::plot::{self, Bin};
use crate::songs::SongSet;

pub struct LimitKind;

/// Why a song was dropped (the keys of `dropped_by_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    TooFewEvents,
    TooManyEvents,
    WaitTooLong,
}

impl DropReason {
    pub fn key(&self) -> &'static str {
        match self {
            DropReason::TooFewEvents => "too_few_events",
            DropReason::TooManyEvents => "too_many_events",
            DropReason::WaitTooLong => "wait_too_long",
        }
    }
}

/// The filter, with waits in grid steps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_events: usize,
    pub max_events: usize,
    pub max_wait_steps: u64,
}

impl Limits {
    /// Why `(events, longest_wait)` is dropped, the first reason only.
    pub fn check(&self, events: usize, longest_wait: u64) -> Option<DropReason> {
        if events < self.min_events {
            Some(DropReason::TooFewEvents)
        } else if events > self.max_events {
            Some(DropReason::TooManyEvents)
        } else if longest_wait > self.max_wait_steps {
            Some(DropReason::WaitTooLong)
        } else {
            None
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    kept: usize,
    dropped: usize,
    dropped_by_reason: BTreeMap<&'static str, usize>,
    max_wait_steps: u64,
    events_histogram: Vec<Bin>,
}

impl StageKind for LimitKind {
    fn name(&self) -> &'static str {
        "limit"
    }
    fn version(&self) -> u32 {
        // Its own (1), and the song sets it writes.
        100 + crate::songs::SONG_SET_VERSION
    }
    fn doc(&self) -> &'static str {
        "keeps songs within an event count range and without overlong waits"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let count = ParamType::Int {
            min: 0,
            max: i64::MAX,
        };
        vec![
            ParamSpec::new(
                "min_events",
                count.clone(),
                0,
                "drop songs with fewer tokens (start and finish included)",
            ),
            ParamSpec::new(
                "max_events",
                count,
                10_000,
                "drop songs with more tokens (start and finish included)",
            ),
            ParamSpec::new(
                "max_wait_beats",
                ParamType::Float { min: 0.0, max: 1e9 },
                8.0,
                "drop songs with a single wait longer than this many quarter notes",
            ),
            ParamSpec::new(
                "histogram_bins",
                ParamType::Int { min: 1, max: 500 },
                50,
                "bars of the events-per-song histogram",
            ),
        ]
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        if params.int("min_events") > params.int("max_events") {
            return Err(format!(
                "`min_events` ({}) must not exceed `max_events` ({})",
                params.int("min_events"),
                params.int("max_events")
            ));
        }
        Ok(())
    }

    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[Slot {
            name: "songs",
            kinds: &["encode", "limit"],
            what: "encoded songs",
            optional: false,
        }])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::output("kept", "songs kept").decimals(0)]
    }

    fn report(&self) -> ReportSpec {
        ReportSpec {
            summaries: vec![SummarySpec {
                title: "Songs kept by the event-count and wait filter",
                file: "report.json",
                facts: vec![
                    Fact::Number {
                        pointer: "/kept",
                        label: "songs kept",
                    },
                    Fact::Number {
                        pointer: "/dropped",
                        label: "songs dropped",
                    },
                    Fact::Counts {
                        pointer: "/dropped_by_reason",
                        label: "dropped, by reason",
                    },
                    Fact::Histogram {
                        pointer: "/events_histogram",
                        label: "Events (tokens) per song, every encoded song",
                        x_label: "events per song",
                    },
                ],
            }],
            ..ReportSpec::default()
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let input = ctx.input("songs")?;
        let set = SongSet::read(&input.dir)?;
        let spb = set.codec.steps_per_beat as f64;
        let limits = Limits {
            min_events: ctx.params.usize("min_events"),
            max_events: ctx.params.usize("max_events"),
            // A wait of exactly max_wait_beats is kept.
            max_wait_steps: (ctx.params.float("max_wait_beats") * spb + 1e-9).floor() as u64,
        };
        // The wait of each distinct token (0 for the others).
        let wait_of: Vec<u64> = set
            .table
            .iter()
            .map(|t| {
                t.strip_prefix("wait:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        let scanned: Vec<(usize, u64)> = (0..set.len())
            .into_par_iter()
            .map(|i| {
                let song = set.song(i);
                let longest = song.iter().map(|&id| wait_of[id as usize]).max();
                (song.len(), longest.unwrap_or(0))
            })
            .collect();
        let mut dropped_by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
        for reason in [
            DropReason::TooFewEvents,
            DropReason::TooManyEvents,
            DropReason::WaitTooLong,
        ] {
            dropped_by_reason.insert(reason.key(), 0);
        }
        let mut kept = Vec::new();
        for (i, &(events, wait)) in scanned.iter().enumerate() {
            match limits.check(events, wait) {
                None => kept.push(i),
                Some(reason) => *dropped_by_reason.entry(reason.key()).or_insert(0) += 1,
            }
        }
        let events: Vec<u64> = scanned.iter().map(|s| s.0 as u64).collect();
        let bins = histogram(&events, ctx.params.usize("histogram_bins"));
        let report = Report {
            kept: kept.len(),
            dropped: set.len() - kept.len(),
            dropped_by_reason,
            max_wait_steps: limits.max_wait_steps,
            events_histogram: bins.clone(),
        };
        let out = ctx.out_dir;
        set.subset(&kept).write(out)?;
        write_json(&out.join("report.json"), &report).ctx(|| "writing report.json")?;
        write_json(
            &out.join("metrics.json"),
            &serde_json::json!({ "kept": report.kept, "dropped": report.dropped }),
        )
        .ctx(|| "writing metrics.json")?;
        std::fs::write(out.join("events_histogram.txt"), histogram_text(&bins))
            .ctx(|| "writing events_histogram.txt")?;
        let min_label = format!("min {}", limits.min_events);
        let max_label = format!("max {}", limits.max_events);
        let mut markers = vec![(limits.max_events as u64, max_label.as_str())];
        if limits.min_events > 0 {
            markers.push((limits.min_events as u64, min_label.as_str()));
        }
        plot::histogram_png(
            &out.join("events_histogram.png"),
            "Number of events per song",
            "events (tokens) per song",
            "songs",
            &bins,
            &markers,
        )
        .ctx(|| "writing events_histogram.png")?;
        ctx.progress
            .message(&format!("{} kept, {} dropped", report.kept, report.dropped));
        Ok(())
    }
}

/// Equal-width bins over `0..=max` with round widths (1, 2 or 5 times a
/// power of ten).
pub fn histogram(values: &[u64], bins: usize) -> Vec<Bin> {
    let max = values.iter().copied().max().unwrap_or(0);
    let width = plot::nice_step((max + 1) as f64, bins.max(1) as u32).max(1.0) as u64;
    let count = (max / width + 1) as usize;
    let mut out: Vec<Bin> = (0..count as u64)
        .map(|i| Bin {
            low: i * width,
            high: (i + 1) * width,
            count: 0,
        })
        .collect();
    for &v in values {
        out[(v / width) as usize].count += 1;
    }
    out
}

/// The histogram as text: one line per bin with a bar of `#`.
pub fn histogram_text(bins: &[Bin]) -> String {
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let mut text = String::from("events per song (low..high): songs\n");
    for bin in bins {
        let bar = "#".repeat((bin.count * 50).div_ceil(max) as usize);
        let _ = writeln!(
            text,
            "{:>7}..{:<7} {:>6} {bar}",
            bin.low, bin.high, bin.count
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_bounds_are_inclusive() {
        let limits = Limits {
            min_events: 3,
            max_events: 10,
            max_wait_steps: 128,
        };
        assert_eq!(limits.check(3, 128), None);
        assert_eq!(limits.check(10, 0), None);
        assert_eq!(limits.check(2, 500), Some(DropReason::TooFewEvents));
        assert_eq!(limits.check(11, 500), Some(DropReason::TooManyEvents));
        assert_eq!(limits.check(5, 129), Some(DropReason::WaitTooLong));
    }

    #[test]
    fn histogram_bins_cover_every_value() {
        let values = [0, 5, 99, 100, 1234];
        let bins = histogram(&values, 10);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(bins[0].low, 0);
        assert!(bins.last().unwrap().high > 1234);
        let width = bins[0].high;
        assert_eq!(width, 200);
        let text = histogram_text(&bins);
        assert!(text.lines().nth(1).unwrap().contains("0..200"));
    }
}
