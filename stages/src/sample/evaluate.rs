//! What the samples are measured against, and the report.
//!
//! - **Reference songs**: the real token lines of the training and
//!   validation songs. The vocab stage's ids map tokens unseen in training to
//!   `<unk>`; dropping those from a validation song leaves an `end:` whose
//!   start was unknown, or a note whose end was, which the grammar checker
//!   rightly rejects and which the metrics read as a note held to the end of
//!   the song. So when the sample stage also depends on a stage holding the
//!   songs (`limit` or `encode`), the real lines are taken from it, matched
//!   by the source paths of the vocab stage's `split.json`; otherwise the ids
//!   with `<unk>` dropped are used, and each validation song says how many
//!   tokens it lost.
//! - **Ceiling**: the same overlap for training songs against the validation
//!   songs, for all of them and for random sets of as many songs as there are
//!   samples (overlap depends on set size: 4 songs fill at most 4 bins).
//! - **Guards**: `max_note_beats` and `max_polyphony` default to what the
//!   training songs do ([`derived_guards`]).
//! - **Continuation**: with `prompt = "val:N"`, the samples' notes after the
//!   prompt beside the true continuation of song N over as many beats.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde_json::{Value as Json, json};

use super::check::check_line;
use super::metrics::{METRICS, SongMetrics, measure};
use super::overlap::{kde_overlap, overlapped_area};
use crate::api::StageContext;
use crate::dataset::{Dataset, PAD_ID, UNK_ID};
use crate::midi::DRUM_PROGRAM;
use crate::midi::encoder::GridNote;
use crate::midi::parse_tokens;
use crate::songs::SongSet;
use crate::train::rng::Rng;

/// The overlap `overlap_mean` reports: "kde" (Yang & Lerch) or "bins"
/// (KDE falls back to bins with fewer than two validation songs).
pub const HEADLINE: &str = "kde";

/// The real lines of both splits, and where they came from.
pub struct Reference {
    pub train: Vec<String>,
    pub val: Vec<String>,
    /// "limit" / "encode" (real lines), or "vocab" (ids, `<unk>` dropped).
    pub source: String,
    /// Per validation song: tokens that are `<unk>` in the dataset.
    pub val_unknown: Vec<usize>,
}

fn id_lines(data: &Dataset, split: &crate::dataset::Split) -> Vec<String> {
    (0..split.songs())
        .map(|i| {
            let words: Vec<&str> = split
                .song(i)
                .iter()
                .filter(|&&id| id != PAD_ID && id != UNK_ID)
                .map(|&id| data.vocab.tokens[id as usize].as_str())
                .collect();
            words.join(" ")
        })
        .collect()
}

/// The reference songs: real lines from a `limit` or `encode` input when
/// the sample stage has one (and it holds every song of `split.json`),
/// else the dataset's ids.
pub fn reference(ctx: &StageContext, data: &Dataset, vocab_dir: &Path) -> Reference {
    let val_unknown = (0..data.val.songs())
        .map(|i| data.val.song(i).iter().filter(|&&id| id == UNK_ID).count())
        .collect();
    let real = ctx.input("songs").ok().and_then(|input| {
        let lines = real_lines(&input.dir, vocab_dir, data)?;
        Some((input.kind.clone(), lines))
    });
    match real {
        Some((source, (train, val))) => Reference {
            train,
            val,
            source,
            val_unknown,
        },
        None => Reference {
            train: id_lines(data, &data.train),
            val: id_lines(data, &data.val),
            source: "vocab".into(),
            val_unknown,
        },
    }
}

/// Both splits' lines from a song set, by the paths of `split.json`; `None`
/// when something does not match (another song set).
fn real_lines(
    songs_dir: &Path,
    vocab_dir: &Path,
    data: &Dataset,
) -> Option<(Vec<String>, Vec<String>)> {
    let set = SongSet::read(songs_dir).ok()?;
    let split: Json =
        serde_json::from_slice(&std::fs::read(vocab_dir.join("split.json")).ok()?).ok()?;
    let index: BTreeMap<&str, usize> = set
        .infos
        .iter()
        .enumerate()
        .map(|(i, info)| (info.path.as_str(), i))
        .collect();
    let side = |name: &str, expected: &crate::dataset::Split| -> Option<Vec<String>> {
        let paths = split.get(name)?.as_array()?;
        if paths.len() != expected.songs() {
            return None;
        }
        paths
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let i = *index.get(p.as_str()?)?;
                // The same song: as many tokens as its ids.
                (set.song(i).len() == expected.song(k).len()).then(|| set.line(i))
            })
            .collect()
    };
    Some((side("train", &data.train)?, side("val", &data.val)?))
}

/// Grid notes of a line (an unreadable line has none).
pub fn notes_of(line: &str) -> Vec<GridNote> {
    parse_tokens(line).map(|s| s.notes).unwrap_or_default()
}

/// The guards' defaults from the training songs: the longest note (steps),
/// and the number of melodic notes sounding at once that 99% of their
/// sounding time stays within.
pub fn derived_guards(train: &[Vec<GridNote>]) -> (u64, usize) {
    let longest = train
        .iter()
        .flatten()
        .map(|n| n.end - n.start)
        .max()
        .unwrap_or(0);
    // Time spent at each count of sounding melodic notes.
    let mut time_at: Vec<u64> = Vec::new();
    for notes in train {
        let mut events: Vec<(u64, i64)> = notes
            .iter()
            .filter(|n| n.program != DRUM_PROGRAM)
            .flat_map(|n| [(n.start, 1), (n.end, -1)])
            .collect();
        events.sort_unstable();
        let (mut count, mut at) = (0i64, 0u64);
        for (step, delta) in events {
            if count > 0 {
                let c = count as usize;
                if time_at.len() <= c {
                    time_at.resize(c + 1, 0);
                }
                time_at[c] += step - at;
            }
            count += delta;
            at = step;
        }
    }
    let total: u64 = time_at.iter().sum();
    let mut cumulative = 0;
    let mut polyphony = time_at.len().saturating_sub(1);
    for (c, t) in time_at.iter().enumerate() {
        cumulative += t;
        if total > 0 && cumulative as f64 >= 0.99 * total as f64 {
            polyphony = c;
            break;
        }
    }
    (longest, polyphony.max(1))
}

/// Metrics of reference lines (valid = passes the checker).
pub fn measure_lines(lines: &[String], spb: u32) -> Vec<(SongMetrics, Result<(), String>)> {
    lines
        .par_iter()
        .map(|line| {
            let check = check_line(line, spb);
            (measure(&notes_of(line), spb, check.is_ok()), check)
        })
        .collect()
}

fn values(songs: &[&SongMetrics], name: &str) -> Vec<f64> {
    songs.iter().filter_map(|m| m.get(name)).collect()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Per metric overlap of `a` with the reference `b` in both methods, and
/// each method's mean.
fn overlaps(
    a: &[&SongMetrics],
    b: &[&SongMetrics],
) -> (BTreeMap<&'static str, [Option<f64>; 2]>, [Option<f64>; 2]) {
    let mut per = BTreeMap::new();
    for name in METRICS {
        let (x, y) = (values(a, name), values(b, name));
        per.insert(name, [kde_overlap(&x, &y), overlapped_area(&x, &y)]);
    }
    let means = [0, 1].map(|k| {
        let known: Vec<f64> = per.values().filter_map(|v| v[k]).collect();
        mean(&known)
    });
    (per, means)
}

fn method(
    per: &BTreeMap<&'static str, [Option<f64>; 2]>,
    k: usize,
) -> BTreeMap<&'static str, Option<f64>> {
    per.iter().map(|(n, v)| (*n, v[k])).collect()
}

fn stats(v: &[f64]) -> Json {
    let m = mean(v).unwrap_or(f64::NAN);
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
    json!({ "mean": m, "std": var.sqrt(), "sets": v.len() })
}

/// The `metrics.json` object: samples, validation songs, the overlap of
/// the samples with the validation songs (headline: [`HEADLINE`]) and the
/// ceiling, training songs against validation songs.
pub fn report(
    samples: &[(Json, SongMetrics)],
    validation: &[(SongMetrics, Result<(), String>)],
    val_unknown: &[usize],
    train: &[(SongMetrics, Result<(), String>)],
) -> Json {
    let sample_metrics: Vec<&SongMetrics> = samples.iter().map(|s| &s.1).collect();
    let val: Vec<&SongMetrics> = validation.iter().map(|v| &v.0).collect();
    let tr: Vec<&SongMetrics> = train.iter().map(|v| &v.0).collect();
    let validity = |songs: &[&SongMetrics]| {
        songs.iter().filter(|m| m.valid).count() as f64 / songs.len().max(1) as f64
    };
    let means = |songs: &[&SongMetrics]| -> BTreeMap<&str, Option<f64>> {
        METRICS
            .iter()
            .chain(&["note_length_max"])
            .map(|&n| (n, mean(&values(songs, n))))
            .collect()
    };
    let max_of = |songs: &[&SongMetrics]| {
        songs
            .iter()
            .filter_map(|m| m.note_length_max)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
    };
    let (per, overlap_means) = overlaps(&sample_metrics, &val);
    // KDE needs two reference songs; with fewer, the shared bins.
    let k = if HEADLINE == "kde" && overlap_means[0].is_some() {
        0
    } else {
        1
    };
    let (ceiling_per, ceiling_means) = overlaps(&tr, &val);
    // The ceiling at the samples' set size: random sets of training songs.
    let size = samples.len().min(tr.len());
    let mut at_size = [Vec::new(), Vec::new()];
    let mut rng = Rng::new(7);
    for _ in 0..if size > 0 { 32 } else { 0 } {
        let mut pool: Vec<&SongMetrics> = tr.clone();
        let mut chosen = Vec::with_capacity(size);
        for _ in 0..size {
            chosen.push(pool.swap_remove(rng.below(pool.len() as u64) as usize));
        }
        let (_, m) = overlaps(&chosen, &val);
        for j in 0..2 {
            if let Some(x) = m[j] {
                at_size[j].push(x);
            }
        }
    }
    let validation_entries: Vec<Json> = validation
        .iter()
        .enumerate()
        .map(|(i, (m, check))| {
            let mut e = serde_json::to_value(m).unwrap_or(Json::Null);
            e["unknown_tokens"] = json!(val_unknown.get(i).copied().unwrap_or(0));
            if let Err(why) = check {
                e["invalid_because"] = json!(why);
            }
            e
        })
        .collect();
    let overlap_mean = overlap_means[k];
    let ceiling_at_size = mean(&at_size[k]);
    json!({
        "validity": validity(&sample_metrics),
        "overlap_method": (["kde", "bins"])[k],
        "overlap_mean": overlap_mean,
        "overlap": method(&per, k),
        "overlap_kde_mean": overlap_means[0],
        "overlap_bins_mean": overlap_means[1],
        "overlap_bins": method(&per, 1),
        "ceiling_mean": ceiling_means[k],
        "ceiling": method(&ceiling_per, k),
        "ceiling_kde_mean": ceiling_means[0],
        "ceiling_bins_mean": ceiling_means[1],
        "ceiling_at_sample_count": {
            "songs": size,
            "kde": stats(&at_size[0]),
            "bins": stats(&at_size[1]),
        },
        "ceiling_gap": overlap_mean.zip(ceiling_at_size).map(|(o, c)| c - o),
        "sample_means": means(&sample_metrics),
        "validation_means": means(&val),
        "train_means": means(&tr),
        "longest_note_beats": {
            "samples": max_of(&sample_metrics),
            "validation": max_of(&val),
            "train": max_of(&tr),
        },
        "validation_validity": validity(&val),
        "validation_songs": val.len(),
        "train_songs": tr.len(),
        "samples": samples.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        "validation": validation_entries,
    })
}

/// Notes that start in `from..to`, moved to start at 0.
fn window(notes: &[GridNote], from: u64, to: u64) -> Vec<GridNote> {
    notes
        .iter()
        .filter(|n| n.start >= from && n.start < to)
        .map(|n| GridNote {
            start: n.start - from,
            end: n.end - from,
            ..*n
        })
        .collect()
}

/// The grid step where the first `tokens` tokens of `line` end.
pub fn steps_of_prefix(line: &str, tokens: usize) -> u64 {
    line.split_ascii_whitespace()
        .take(tokens)
        .filter_map(crate::midi::tokens::Token::parse)
        .map(|t| t.wait_steps() as u64)
        .sum()
}

/// With a `val:N` prompt: each sample's notes after the prompt, and the true
/// continuation of song N over as many beats as the longest of them, side by
/// side (means), with each metric's ratio samples / true.
pub fn continuation(samples: &[String], truth: &str, prompt_steps: u64, spb: u32) -> Json {
    let generated: Vec<Vec<GridNote>> = samples
        .iter()
        .map(|s| {
            let notes = notes_of(s);
            window(&notes, prompt_steps, u64::MAX)
        })
        .collect();
    let span = generated
        .iter()
        .flatten()
        .map(|n| n.start + 1)
        .max()
        .unwrap_or(0);
    let truth_notes = window(&notes_of(truth), prompt_steps, prompt_steps + span);
    let sample_metrics: Vec<SongMetrics> =
        generated.iter().map(|n| measure(n, spb, true)).collect();
    let refs: Vec<&SongMetrics> = sample_metrics.iter().collect();
    let truth_metrics = measure(&truth_notes, spb, true);
    let mut side = BTreeMap::new();
    for name in METRICS.iter().chain(&["note_length_max"]) {
        let s = mean(&values(&refs, name));
        let t = truth_metrics.get(name);
        let ratio = s.zip(t).and_then(|(s, t)| (t != 0.0).then(|| s / t));
        side.insert(*name, json!({ "samples": s, "true": t, "ratio": ratio }));
    }
    json!({
        "prompt_steps": prompt_steps,
        "beats": span as f64 / spb.max(1) as f64,
        "true_notes": truth_notes.len(),
        "sample_notes": generated.iter().map(Vec::len).sum::<usize>(),
        "metrics": side,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_follow_the_training_songs() {
        // Two songs at 4 steps per beat: the longest note is 12 steps; two
        // melodic notes sound together for 4 of 20 sounding steps (20%),
        // so 99% of the time needs 2; drums do not count.
        let a = notes_of(
            "start i0:v80:60 d:12 wait:8 i0:v80:64 d:8 i128:v80:36 d:4 i128:v80:37 d:4 finish",
        );
        let b = notes_of("start i0:v80:60 wait:4 end:i0:v80:60 finish");
        assert_eq!(derived_guards(&[a.clone(), b]), (12, 2));
        // Mostly one voice: two for 1 step of 196.
        let long = notes_of("start i0:v80:60 d:64 d:64 d:64 d:4 i1:v80:60 d:1 finish");
        assert_eq!(derived_guards(&[long]), (196, 1));
        assert_eq!(
            steps_of_prefix("start i0:v80:60 d:12 wait:8 i0:v80:64 wait:3", 5),
            8
        );
    }

    #[test]
    fn continuation_compares_the_same_span() {
        let truth = "start i0:v80:60 d:4 wait:4 i0:v80:62 d:4 wait:4 i0:v80:64 d:4 wait:4 \
                     i0:v80:65 d:4 finish";
        // The prompt is the first 4 tokens (4 steps); the sample goes on
        // for two notes, so the true continuation counts two notes too.
        let sample = "start i0:v80:60 d:4 wait:4 i0:v80:67 d:8 wait:4 i0:v80:60 d:8 finish";
        let c = continuation(&[sample.to_string()], truth, 4, 4);
        assert_eq!(c["true_notes"], 2);
        assert_eq!(c["sample_notes"], 2);
        assert_eq!(c["metrics"]["note_length_mean"]["samples"], 2.0);
        assert_eq!(c["metrics"]["note_length_mean"]["true"], 1.0);
        assert_eq!(c["metrics"]["note_length_mean"]["ratio"], 2.0);
    }
}
