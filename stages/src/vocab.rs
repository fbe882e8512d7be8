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
use rustc_hash::FxHashMap;
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

/// Songs interned by one worker: token text -> local id.
struct Chunk<'a> {
    local: FxHashMap<&'a str, u32>,
    /// Local ids, song after song.
    ids: Vec<u32>,
    /// Token count of each song.
    lengths: Vec<usize>,
    /// Training occurrences per local id.
    train_counts: Vec<u64>,
}

fn intern<'a>(songs: &[(&'a str, bool)]) -> Chunk<'a> {
    let mut chunk = Chunk {
        local: FxHashMap::default(),
        ids: Vec::new(),
        lengths: Vec::with_capacity(songs.len()),
        train_counts: Vec::new(),
    };
    for &(line, val) in songs {
        let before = chunk.ids.len();
        for token in line.split_ascii_whitespace() {
            let next = chunk.local.len() as u32;
            let id = *chunk.local.entry(token).or_insert(next);
            if id == next {
                chunk.train_counts.push(0);
            }
            if !val {
                chunk.train_counts[id as usize] += 1;
            }
            chunk.ids.push(id);
        }
        chunk.lengths.push(chunk.ids.len() - before);
    }
    chunk
}

/// Builds the dataset from token lines with their split flags (`true` =
/// validation).
pub fn build_dataset(songs: &[(&str, bool)], min_count: u64, threads: usize) -> Dataset {
    let per_chunk = songs.len().div_ceil(threads.max(1) * 4).max(1);
    let chunks: Vec<Chunk> = songs.par_chunks(per_chunk).map(intern).collect();

    // Merge the local tables into one (global ids in first-seen order).
    let mut global: FxHashMap<&str, u32> = FxHashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut remaps: Vec<Vec<u32>> = Vec::with_capacity(chunks.len());
    for chunk in &chunks {
        let mut remap = vec![0u32; chunk.local.len()];
        for (&token, &local) in &chunk.local {
            let id = *global.entry(token).or_insert_with(|| {
                names.push(token);
                counts.push(0);
                names.len() as u32 - 1
            });
            counts[id as usize] += chunk.train_counts[local as usize];
            remap[local as usize] = id;
        }
        remaps.push(remap);
    }

    // Final ids: by falling training count, ties by name; rare ones -> <unk>.
    let mut order: Vec<u32> = (0..names.len() as u32)
        .filter(|&g| counts[g as usize] >= min_count.max(1))
        .collect();
    order.sort_unstable_by(|&a, &b| {
        counts[b as usize]
            .cmp(&counts[a as usize])
            .then_with(|| names[a as usize].cmp(names[b as usize]))
    });
    let mut final_id = vec![UNK_ID; names.len()];
    let mut vocab = Vocab {
        tokens: vec![PAD.to_string(), UNK.to_string()],
        counts: vec![0, 0],
    };
    for (i, &g) in order.iter().enumerate() {
        final_id[g as usize] = i as u32 + 2;
        vocab.tokens.push(names[g as usize].to_string());
        vocab.counts.push(counts[g as usize]);
    }
    vocab.counts[UNK_ID as usize] = (0..names.len())
        .filter(|&g| final_id[g] == UNK_ID)
        .map(|g| counts[g])
        .sum();

    // Map every chunk to final ids in parallel, then assemble the splits in
    // song order.
    let mapped: Vec<Vec<u32>> = chunks
        .par_iter()
        .zip(&remaps)
        .map(|(chunk, remap)| {
            chunk
                .ids
                .iter()
                .map(|&l| final_id[remap[l as usize] as usize])
                .collect()
        })
        .collect();
    let (mut train, mut val) = (Split::new(), Split::new());
    let mut song_index = 0;
    for (chunk, ids) in chunks.iter().zip(&mapped) {
        let mut at = 0;
        for &len in &chunk.lengths {
            let split = if songs[song_index].1 {
                &mut val
            } else {
                &mut train
            };
            split.push_song(&ids[at..at + len]);
            at += len;
            song_index += 1;
        }
    }
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

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let input = ctx.single_input()?;
        let set = SongSet::read(&input.dir)?;
        let fraction = ctx.params.float("val_fraction");
        let songs: Vec<(&str, bool)> = set
            .lines()
            .into_iter()
            .zip(&set.infos)
            .map(|(line, info)| (line, is_validation(&info.blake3, line, fraction)))
            .collect();
        if songs.is_empty() {
            return Err(StageError::Input(format!(
                "no songs in {} (did limit drop them all?)",
                input.dir.display()
            )));
        }
        if songs.iter().all(|s| s.1) {
            return Err(StageError::Input(format!(
                "all {} songs fell in the validation split; lower `val_fraction`",
                songs.len()
            )));
        }
        let ds = build_dataset(&songs, ctx.params.int("min_count") as u64, ctx.threads);
        let out = ctx.out_dir;
        ds.write(out).ctx(|| "writing the dataset")?;
        // Which source file each song of each split came from, in id order.
        let side = |val: bool| -> Vec<&str> {
            set.infos
                .iter()
                .zip(&songs)
                .filter(|(_, s)| s.1 == val)
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

    #[test]
    fn ids_by_falling_training_count_and_unknown_validation_tokens() {
        let songs = [
            ("start b a a finish", false),
            ("start c a finish", false),
            ("start z a finish", true), // z only in validation
        ];
        let ds = build_dataset(&songs, 1, 2);
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
        let songs = [("start b a a finish", false), ("start c a finish", false)];
        let ds = build_dataset(&songs, 2, 1);
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
