//! The `sample` stage: loads the model (`train`) and the dataset (`vocab`),
//! generates `count` songs under the grammar mask, writes each as MIDI, WAV
//! and piano roll, and measures them beside the validation songs.
//!
//! Outputs: `tokens.txt` (one sample per line, as encode writes songs) and
//! per sample `sample_NNN.txt` (its tokens), `.mid`, `.wav` and `.png`; and `metrics.json` with `validity`,
//! `samples`, `validation`, `overlap`, `overlap_mean`, the means of each
//! metric on both sides, and `validation_validity`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use rayon::prelude::*;
use serde_json::{Value as Json, json};

use super::check::check_line;
use super::generate::{CANCELLED, Cached, GenerateOptions, Generated, generate_until};
use super::grammar::Grammar;
use super::metrics::{METRICS, SongMetrics, measure};
use super::overlap::overlapped_area;
use super::roll::write_roll;
use super::sampler::SamplingOptions;
use super::score::Score;
use super::synth::render;
use super::wav::write_wav;
use crate::api::*;
use crate::dataset::{Dataset, PAD_ID, UNK_ID, write_json};
use crate::midi::{DecodeOptions, decode_tokens, parse_tokens};
use crate::songs::{CODEC_FILE, CodecInfo};
use crate::train::Gpt;
use crate::train::rng::Rng;

pub struct SampleKind;

const VERSION: u32 = 1;
/// Grid steps per beat when the dataset does not say (encode's default).
pub const DEFAULT_STEPS_PER_BEAT: u32 = 16;

impl StageKind for SampleKind {
    fn name(&self) -> &'static str {
        "sample"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn doc(&self) -> &'static str {
        "generates songs from the model (tokens, MIDI, chip-synth WAV, piano roll) and music metrics"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let int = |min, max| ParamType::Int { min, max };
        vec![
            ParamSpec::new("count", int(1, 10_000), 4, "songs to generate"),
            ParamSpec::new(
                "max_tokens",
                int(2, 1_000_000),
                1024,
                "tokens per song at most (prompt included); open notes are then closed",
            ),
            ParamSpec::new(
                "temperature",
                ParamType::Float {
                    min: 0.0,
                    max: 100.0,
                },
                1.0,
                "divides the logits; 0 = always the most likely token",
            ),
            ParamSpec::new(
                "top_k",
                int(0, 1_000_000),
                0,
                "draw among the k most likely tokens only (0 = all)",
            ),
            ParamSpec::new(
                "top_p",
                ParamType::Float { min: 0.0, max: 1.0 },
                0.95,
                "draw among the most likely tokens holding this probability (1 = all)",
            ),
            ParamSpec::new("seed", int(0, i64::MAX), 1, "seed of the draws"),
            ParamSpec::new(
                "prompt",
                ParamType::ANY_STR,
                "start",
                "\"start\", or \"val:N\": the first `prompt_tokens` tokens of validation song N",
            ),
            ParamSpec::new(
                "prompt_tokens",
                int(1, 1_000_000),
                64,
                "tokens taken from the validation song for a `val:N` prompt",
            ),
            ParamSpec::new(
                "validation_songs",
                int(0, 1_000_000),
                50,
                "validation songs measured for comparison (the first N)",
            ),
        ]
    }
    fn validate(&self, params: &Params) -> Result<(), String> {
        parse_prompt(params.str("prompt")).map(|_| ())
    }
    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[
            Slot {
                name: "model",
                kinds: &["train"],
                what: "the trained model",
            },
            Slot {
                name: "dataset",
                kinds: &["vocab"],
                what: "the vocabulary and validation songs the model was trained on",
            },
        ])
    }
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::output("validity", "sample validity").higher_is_better(),
            MetricSpec::output("overlap_mean", "sample overlap").higher_is_better(),
        ]
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let params = ctx.params;
        let train_dir = &ctx.input("model")?.dir;
        let vocab_dir = &ctx.input("dataset")?.dir;
        let data = Dataset::load(vocab_dir).map_err(|e| {
            StageError::Input(format!(
                "reading the dataset in {}: {e}",
                vocab_dir.display()
            ))
        })?;
        let model = Gpt::load(train_dir, &Device::Cpu).map_err(StageError::Input)?;
        if model.config.vocab_size != data.vocab.len() {
            return Err(StageError::Input(format!(
                "the model in {} has a vocabulary of {} tokens, the dataset in {} has {}",
                train_dir.display(),
                model.config.vocab_size,
                vocab_dir.display(),
                data.vocab.len()
            )));
        }
        let spb = steps_per_beat(vocab_dir)?;
        ctx.progress.log(&format!("{spb} grid steps per beat"));
        let grammar = Grammar::new(&data.vocab.tokens);
        let prompt = prompt_ids(&data, params)?;
        let options = GenerateOptions {
            sampling: SamplingOptions {
                temperature: params.float("temperature") as f32,
                top_k: params.usize("top_k"),
                top_p: params.float("top_p") as f32,
            },
            max_tokens: params.usize("max_tokens"),
        };
        let count = params.usize("count");
        let seed = params.int("seed") as u64;
        ctx.progress.set_total(count as u64);

        // Each sample has its own seed, so samples do not depend on the
        // thread that wrote them or on `count`.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
            .map_err(|e| StageError::Other(format!("starting threads: {e}")))?;
        let started = Instant::now();
        let songs: Vec<Result<Generated, StageError>> = pool.install(|| {
            (0..count)
                .into_par_iter()
                .map(|i| {
                    ctx.check_cancelled()?;
                    let mut rng = Rng::new(sample_seed(seed, i));
                    let song = generate_until(
                        &mut Cached::new(&model),
                        &grammar,
                        &prompt,
                        &options,
                        &mut rng,
                        &|| ctx.is_cancelled(),
                    )
                    .map_err(|e| match e.as_str() {
                        CANCELLED => StageError::Cancelled,
                        _ => StageError::Other(format!("sample {}: {e}", i + 1)),
                    })?;
                    ctx.progress.advance(1);
                    Ok(song)
                })
                .collect()
        });
        let songs: Vec<Generated> = songs.into_iter().collect::<Result<_, _>>()?;
        let drawn: usize = songs.iter().map(|s| s.drawn).sum();
        let seconds = started.elapsed().as_secs_f64();
        ctx.progress.log(&format!(
            "generated {drawn} tokens in {seconds:.2} s ({:.0} tokens/s)",
            drawn as f64 / seconds.max(1e-9)
        ));

        let out = ctx.out_dir;
        let lines: Vec<&str> = songs.iter().map(|s| s.text.as_str()).collect();
        std::fs::write(out.join("tokens.txt"), lines.join("\n") + "\n")
            .ctx(|| "writing tokens.txt")?;
        let sample_entries: Vec<(Json, SongMetrics)> = pool.install(|| {
            songs
                .par_iter()
                .enumerate()
                .map(|(i, song)| write_sample(out, i, song, spb))
                .collect::<Result<_, _>>()
        })?;
        let validation = pool.install(|| validation_metrics(&data, params, spb));
        let unreadable = validation.iter().filter(|m| m.is_none()).count();
        if unreadable > 0 {
            ctx.progress.log(&format!(
                "{unreadable} validation songs skipped: their tokens do not parse"
            ));
        }
        let validation: Vec<SongMetrics> = validation.into_iter().flatten().collect();
        let mut metrics = report(&sample_entries, &validation);
        metrics["validation_skipped"] = json!(unreadable);
        write_json(&out.join("metrics.json"), &metrics).ctx(|| "writing metrics.json")?;
        ctx.progress.message(&format!(
            "{count} samples, validity {}, overlap {}",
            metrics["validity"], metrics["overlap_mean"]
        ));
        Ok(())
    }
}

/// `start` -> `None`, `val:N` -> `Some(N)`.
fn parse_prompt(prompt: &str) -> Result<Option<usize>, String> {
    if prompt == "start" {
        return Ok(None);
    }
    prompt
        .strip_prefix("val:")
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "`prompt`: expected \"start\" or \"val:N\" (N a song number), found \"{prompt}\""
            )
        })
}

fn prompt_ids(data: &Dataset, params: &Params) -> Result<Vec<u32>, StageError> {
    match parse_prompt(params.str("prompt")).map_err(StageError::Config)? {
        None => Ok(Vec::new()),
        Some(n) if n < data.val.songs() => {
            let song = data.val.song(n);
            Ok(song[..song.len().min(params.usize("prompt_tokens"))].to_vec())
        }
        Some(n) => Err(StageError::Config(format!(
            "`prompt`: validation song {n} does not exist; the dataset has {} (0..{})",
            data.val.songs(),
            data.val.songs()
        ))),
    }
}

/// The encode stage's `steps_per_beat`, from the dataset's `codec.json`,
/// else the default 16.
fn steps_per_beat(vocab_dir: &Path) -> Result<u32, StageError> {
    let path = vocab_dir.join(CODEC_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<CodecInfo>(&bytes)
            .map(|c| c.steps_per_beat.max(1))
            .map_err(|e| StageError::Input(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DEFAULT_STEPS_PER_BEAT),
        Err(e) => Err(StageError::io(format!("reading {}", path.display()), e)),
    }
}

fn sample_seed(seed: u64, index: usize) -> u64 {
    let hash = blake3::hash(format!("sample {seed} {index}").as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Writes `sample_NNN.{txt,mid,wav,png}`; returns its report entry and metrics.
fn write_sample(
    out: &Path,
    index: usize,
    song: &Generated,
    spb: u32,
) -> Result<(Json, SongMetrics), StageError> {
    let name = format!("sample_{:03}", index + 1);
    let check = check_line(&song.text, spb);
    let grid = parse_tokens(&song.text)
        .map_err(|e| StageError::Other(format!("{name}: the sampler wrote a bad line: {e}")))?;
    let midi = decode_tokens(
        &song.text,
        &DecodeOptions {
            steps_per_beat: spb,
        },
    )
    .map_err(|e| StageError::Other(format!("{name}: decoding: {e}")))?;
    std::fs::write(out.join(format!("{name}.txt")), format!("{}\n", song.text))
        .ctx(|| format!("writing {name}.txt"))?;
    std::fs::write(out.join(format!("{name}.mid")), midi).ctx(|| format!("writing {name}.mid"))?;
    let score = Score::from_grid(&grid, spb);
    write_wav(&out.join(format!("{name}.wav")), &render(&score)).map_err(StageError::Other)?;
    write_roll(&out.join(format!("{name}.png")), &score).map_err(StageError::Other)?;
    let metrics = measure(&grid.notes, spb, check.is_ok());
    let mut entry = json!({
        "name": name,
        "tokens": song.tokens,
        "drawn": song.drawn,
        "closing_tokens": song.closed,
        "stop": song.stop,
    });
    if let Err(why) = check {
        entry["invalid_because"] = json!(why);
    }
    merge(&mut entry, &metrics);
    Ok((entry, metrics))
}

/// Metrics of the first `validation_songs` validation songs (special ids
/// dropped); `None` for a song the codec cannot parse.
fn validation_metrics(data: &Dataset, params: &Params, spb: u32) -> Vec<Option<SongMetrics>> {
    let cap = params.usize("validation_songs").min(data.val.songs());
    (0..cap)
        .into_par_iter()
        .map(|i| {
            let text: Vec<&str> = data
                .val
                .song(i)
                .iter()
                .filter(|&&id| id != PAD_ID && id != UNK_ID)
                .map(|&id| data.vocab.tokens[id as usize].as_str())
                .collect();
            let text = text.join(" ");
            let grid = parse_tokens(&text).ok()?;
            Some(measure(&grid.notes, spb, check_line(&text, spb).is_ok()))
        })
        .collect()
}

fn merge(entry: &mut Json, metrics: &SongMetrics) {
    if let (Json::Object(e), Ok(Json::Object(m))) = (entry, serde_json::to_value(metrics)) {
        e.extend(m);
    }
}

/// The `metrics.json` object.
fn report(samples: &[(Json, SongMetrics)], validation: &[SongMetrics]) -> Json {
    let sample_metrics: Vec<&SongMetrics> = samples.iter().map(|s| &s.1).collect();
    let validity = |songs: &[&SongMetrics]| {
        songs.iter().filter(|m| m.valid).count() as f64 / songs.len().max(1) as f64
    };
    let values = |songs: &[&SongMetrics], name: &str| -> Vec<f64> {
        songs.iter().filter_map(|m| m.get(name)).collect()
    };
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let validation: Vec<&SongMetrics> = validation.iter().collect();
    let mut overlap = BTreeMap::new();
    let mut sample_means = BTreeMap::new();
    let mut validation_means = BTreeMap::new();
    for name in METRICS {
        let (s, v) = (values(&sample_metrics, name), values(&validation, name));
        overlap.insert(name, overlapped_area(&s, &v));
        sample_means.insert(name, mean(&s));
        validation_means.insert(name, mean(&v));
    }
    let known: Vec<f64> = overlap.values().flatten().copied().collect();
    let validation_entries: Vec<Json> = validation
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or(Json::Null))
        .collect();
    json!({
        "validity": validity(&sample_metrics),
        "overlap_mean": mean(&known),
        "overlap": overlap,
        "sample_means": sample_means,
        "validation_means": validation_means,
        "validation_validity": validity(&validation),
        "validation_songs": validation.len(),
        "samples": samples.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        "validation": validation_entries,
    })
}
