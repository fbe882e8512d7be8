//! The `vocab` stage kind: token ids and the train/validation split.
//!
//! - Split: a song goes to validation when a hash of its source file's
//!   blake3 falls under `val_fraction`, so the split does not move when a
//!   filter or an encode option changes, and identical files share a side.
//! - Frequencies are counted on the training split only, so validation
//!   tokens never seen in training become `<unk>`, honestly.
//! - Ids: 0 = `<pad>`, 1 = `<unk>`, then tokens with at least `min_count`
//!   training occurrences by falling count, ties by name.
//!
//! Output: the dataset of [`crate::dataset`] (`vocab.json`, `train.npy`,
//! `val.npy`, offsets), `split.json` (the source path of each song of each
//! split), `codec.json` (for decoding samples), `stats.json` and
//! `metrics.json`.

use rayon::prelude::*;
use serde::Serialize;

use crate::api::*;
use crate::dataset::{Dataset, PAD, Split, UNK, UNK_ID, Vocab, write_json};
use crate::songs::{CODEC_FILE, SongSet};

pub struct VocabKind;

/// Whether a song with this source hash (or, without one, this token line)
/// belongs to the validation split.
pub fn is_validation(source_blake3: &str, line: &str, val_fraction: f64) -> bool {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"vgmake-split\0");
    if source_blake3.is_empty() {
        hasher.update(line.as_bytes());
    } else {
        hasher.update(source_blake3.as_bytes());
    }
    let hash = hasher.finalize();
    let x = u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or_default());
    (x as f64 / u64::MAX as f64) < val_fraction
}

/// Builds the dataset from a song set and each song's side (`true` =
/// validation). Counting and mapping go through arrays indexed by the
/// set's local ids, in parallel over songs.
pub fn build_dataset(set: &SongSet, val: &[bool], min_count: u64) -> Dataset {
    let table_len = set.table.len();
    let counts: Vec<u64> = (0..set.len())
        .into_par_iter()
        .filter(|&i| !val[i])
        .fold(
            || vec![0u64; table_len],
            |mut counts, i| {
                for &id in set.song(i) {
                    counts[id as usize] += 1;
                }
                counts
            },
        )
        .reduce(
            || vec![0u64; table_len],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );

    // Final ids: by falling training count, ties by name (the table is
    // sorted by name); tokens rarer than min_count -> <unk>.
    let mut order: Vec<u32> = (0..table_len as u32)
        .filter(|&t| counts[t as usize] >= min_count.max(1))
        .collect();
    order.sort_unstable_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let mut final_id = vec![UNK_ID; table_len];
    let mut vocab = Vocab {
        tokens: vec![PAD.to_string(), UNK.to_string()],
        counts: vec![0, 0],
    };
    for (i, &t) in order.iter().enumerate() {
        final_id[t as usize] = i as u32 + 2;
        vocab.tokens.push(set.table[t as usize].clone());
        vocab.counts.push(counts[t as usize]);
    }
    vocab.counts[UNK_ID as usize] = (0..table_len)
        .filter(|&t| final_id[t] == UNK_ID)
        .map(|t| counts[t])
        .sum();

    let split = |side: bool| -> Split {
        let songs: Vec<usize> = (0..set.len()).filter(|&i| val[i] == side).collect();
        let mut offsets = Vec::with_capacity(songs.len() + 1);
        offsets.push(0u64);
        for &i in &songs {
            offsets.push(offsets.last().copied().unwrap_or(0) + set.song(i).len() as u64);
        }
        let ids: Vec<u32> = songs
            .par_iter()
            .flat_map_iter(|&i| set.song(i).iter().map(|&id| final_id[id as usize]))
            .collect();
        Split { ids, offsets }
    };
    let (train, val) = rayon::join(|| split(false), || split(true));
    Dataset { vocab, train, val }
}

#[derive(Debug, Serialize)]
struct PerSplit<T> {
    train: T,
    val: T,
}

#[derive(Debug, Serialize)]
struct TokensPerSong {
    mean: f64,
    median: u64,
    min: u64,
    max: u64,
}

#[derive(Debug, Serialize)]
struct Stats {
    songs: PerSplit<usize>,
    tokens: PerSplit<usize>,
    /// Ids including `<pad>` and `<unk>`.
    vocabulary_size: usize,
    /// Tokens that became `<unk>`.
    unknown_tokens: PerSplit<u64>,
    /// Share of the training tokens taken by the 10 most frequent tokens.
    top10_share: f64,
    top10: Vec<(String, u64)>,
    tokens_per_song: TokensPerSong,
    note: &'static str,
}

fn tokens_per_song(splits: [&Split; 2]) -> TokensPerSong {
    let mut lengths: Vec<u64> = splits
        .iter()
        .flat_map(|s| s.offsets.windows(2).map(|w| w[1] - w[0]))
        .collect();
    lengths.sort_unstable();
    let total: u64 = lengths.iter().sum();
    TokensPerSong {
        mean: total as f64 / lengths.len().max(1) as f64,
        median: lengths.get(lengths.len() / 2).copied().unwrap_or(0),
        min: lengths.first().copied().unwrap_or(0),
        max: lengths.last().copied().unwrap_or(0),
    }
}

fn stats(ds: &Dataset) -> Stats {
    let unk = |s: &Split| s.ids.iter().filter(|&&id| id == UNK_ID).count() as u64;
    let train_tokens = ds.train.ids.len();
    let mut ranked: Vec<(String, u64)> = ds
        .vocab
        .tokens
        .iter()
        .cloned()
        .zip(ds.vocab.counts.iter().copied())
        .skip(2)
        .collect();
    ranked.truncate(10);
    let top: u64 = ranked.iter().map(|t| t.1).sum();
    Stats {
        songs: PerSplit {
            train: ds.train.songs(),
            val: ds.val.songs(),
        },
        tokens: PerSplit {
            train: train_tokens,
            val: ds.val.ids.len(),
        },
        vocabulary_size: ds.vocab.len(),
        unknown_tokens: PerSplit {
            train: unk(&ds.train),
            val: unk(&ds.val),
        },
        top10_share: top as f64 / train_tokens.max(1) as f64,
        top10: ranked,
        tokens_per_song: tokens_per_song([&ds.train, &ds.val]),
        note: "token frequencies are counted on the training split only",
    }
}

impl StageKind for VocabKind {
    fn name(&self) -> &'static str {
        "vocab"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "maps tokens to ids and splits songs into train/validation (numpy-readable dataset)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                "min_count",
                ParamType::Int {
                    min: 1,
                    max: i64::MAX,
                },
                1,
                "tokens seen fewer times in the training split become <unk>",
            ),
            ParamSpec::new(
                "val_fraction",
                ParamType::Float { min: 0.0, max: 0.9 },
                0.1,
                "share of songs in the validation split (by a hash of the source file)",
            ),
        ]
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
        vec![MetricSpec::output("vocabulary_size", "vocab size").decimals(0)]
    }

    fn report(&self) -> ReportSpec {
        let number = |pointer, label| Fact::Number { pointer, label };
        ReportSpec {
            summaries: vec![SummarySpec {
                title: "Vocabulary and split",
                file: "stats.json",
                facts: vec![
                    number("/vocabulary_size", "vocabulary size (ids)"),
                    number("/songs/train", "training songs"),
                    number("/songs/val", "validation songs"),
                    number("/tokens/train", "training tokens"),
                    number("/tokens/val", "validation tokens"),
                    number(
                        "/unknown_tokens/val",
                        "validation tokens unseen in training",
                    ),
                    number("/tokens_per_song/median", "tokens per song, median"),
                    number("/top10_share", "share of the 10 most frequent tokens"),
                ],
            }],
            ..ReportSpec::default()
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let input = ctx.input("songs")?;
        let set = SongSet::read(&input.dir)?;
        let fraction = ctx.params.float("val_fraction");
        let val: Vec<bool> = (0..set.len())
            .into_par_iter()
            .map(|i| {
                let hash = &set.infos[i].blake3;
                if hash.is_empty() {
                    is_validation("", &set.line(i), fraction)
                } else {
                    is_validation(hash, "", fraction)
                }
            })
            .collect();
        if set.is_empty() {
            return Err(StageError::Input(format!(
                "no songs in {} (did limit drop them all?)",
                input.dir.display()
            )));
        }
        if val.iter().all(|&v| v) {
            return Err(StageError::Input(format!(
                "all {} songs fell in the validation split; lower `val_fraction`",
                set.len()
            )));
        }
        let min_count = ctx.params.int("min_count");
        let ds = build_dataset(&set, &val, min_count as u64);
        if ds.vocab.tokens.len() <= 2 {
            return Err(StageError::Config(format!(
                "`min_count` = {min_count} turns every token into <unk>: no token occurs that often in the training split ({} tokens); lower `stages.{}.min_count`",
                ds.train.ids.len(),
                ctx.stage
            )));
        }
        let out = ctx.out_dir;
        ds.write(out).ctx(|| "writing the dataset")?;
        // Which source file each song of each split came from, in id order.
        let side = |side: bool| -> Vec<&str> {
            set.infos
                .iter()
                .zip(&val)
                .filter(|(_, v)| **v == side)
                .map(|(info, _)| info.path.as_str())
                .collect()
        };
        write_json(
            &out.join("split.json"),
            &serde_json::json!({ "train": side(false), "val": side(true) }),
        )
        .ctx(|| "writing split.json")?;
        std::fs::copy(input.dir.join(CODEC_FILE), out.join(CODEC_FILE))
            .ctx(|| format!("copying {CODEC_FILE}"))?;
        let stats = stats(&ds);
        write_json(&out.join("stats.json"), &stats).ctx(|| "writing stats.json")?;
        write_json(
            &out.join("metrics.json"),
            &serde_json::json!({
                "vocabulary_size": stats.vocabulary_size,
                "train_songs": stats.songs.train,
                "val_songs": stats.songs.val,
                "val_unknown_rate":
                    stats.unknown_tokens.val as f64 / stats.tokens.val.max(1) as f64,
            }),
        )
        .ctx(|| "writing metrics.json")?;
        ctx.progress.message(&format!(
            "{} ids, {} train / {} val songs",
            stats.vocabulary_size, stats.songs.train, stats.songs.val
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &[&str]) -> SongSet {
        let infos = (0..lines.len())
            .map(|i| crate::songs::SongInfo {
                path: format!("{i}.mid"),
                blake3: String::new(),
            })
            .collect();
        let codec = crate::songs::CodecInfo::from_options(&Default::default());
        SongSet::from_lines(lines, infos, codec)
    }

    #[test]
    fn ids_by_falling_training_count_and_unknown_validation_tokens() {
        let songs = set(&[
            "start b a a finish",
            "start c a finish",
            "start z a finish", // z only in validation
        ]);
        let ds = build_dataset(&songs, &[false, false, true], 1);
        let names: Vec<&str> = ds.vocab.tokens.iter().map(|s| s.as_str()).collect();
        // a:3, finish:2, start:2 (tie by name), b:1, c:1.
        assert_eq!(names, ["<pad>", "<unk>", "a", "finish", "start", "b", "c"]);
        assert_eq!(ds.vocab.counts, [0, 0, 3, 2, 2, 1, 1]);
        assert_eq!(ds.train.songs(), 2);
        assert_eq!(ds.train.song(0), &[4, 5, 2, 2, 3]);
        assert_eq!(ds.val.song(0), &[4, UNK_ID, 2, 3]);
    }

    #[test]
    fn min_count_maps_rare_tokens_to_unknown() {
        let songs = set(&["start b a a finish", "start c a finish"]);
        let ds = build_dataset(&songs, &[false, false], 2);
        assert_eq!(ds.vocab.tokens.len(), 5);
        assert_eq!(ds.vocab.counts[UNK_ID as usize], 2);
        assert_eq!(ds.train.song(1)[1], UNK_ID);
    }

    #[test]
    fn split_is_stable_and_near_the_fraction() {
        let val = (0..2000)
            .filter(|i| is_validation(&format!("{i:064x}"), "", 0.1))
            .count();
        assert!((150..250).contains(&val), "{val}");
        assert_eq!(
            is_validation("ab", "x", 0.5),
            is_validation("ab", "other line", 0.5)
        );
        assert!(!is_validation("ab", "x", 0.0));
    }
}
