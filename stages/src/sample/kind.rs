//! The `sample` stage: loads the model (`train`) and the dataset (`vocab`),
//! generates `count` songs under the grammar mask, writes each as MIDI, WAV
//! and piano roll, and measures them beside the validation songs.
//!
//! Outputs: `tokens.txt` (one sample per line, as encode writes songs) and
//! per sample `sample_NNN.txt` (its tokens), `.mid`, `.wav` and `.png`; the
//! same four files for `reference`, a validation song cut to `max_tokens`
//! tokens (what the samples are heard beside); and `metrics.json` with `validity`,
//! `samples`, `validation`, `overlap`, `overlap_mean`, the means of each
//! metric on both sides, and `validation_validity`; the ceiling, guard
//! counts and continuation metrics come from [`super::evaluate`].

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value as Json, json};

use super::check::check_line;
use super::evaluate;
use super::generate::{CANCELLED, Cached, GenerateOptions, Generated, GuardCount, generate_until};
use super::grammar::Grammar;
use super::metrics::{SongMetrics, measure};
use super::roll::write_roll;
use super::sampler::SamplingOptions;
use super::score::Score;
use super::synth::render;
use super::wav::write_wav;
use crate::api::*;
use crate::dataset::{Dataset, write_json};
use crate::midi::{DecodeOptions, decode_tokens, parse_tokens};
use crate::songs::{CODEC_FILE, CodecInfo};
use crate::train::Gpt;
use crate::train::rng::Rng;

pub struct SampleKind;

/// 3: writes `reference.*`, one validation song cut to `max_tokens`.
const VERSION: u32 = 3;
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
            ParamSpec::new(
                "max_note_beats",
                ParamType::Float {
                    min: 0.0,
                    max: 1_000_000.0,
                },
                0.0,
                "no sampled note lasts longer, in beats (0 = the longest note of the training songs)",
            ),
            ParamSpec::new(
                "max_polyphony",
                int(0, 10_000),
                0,
                "no new melodic note while this many sound (0 = what 99% of the training songs' sounding time stays within)",
            ),
            // The model and its KV cache live there; sampling and metrics stay on the CPU.
            crate::train::device::spec(),
        ]
    }
    fn validate(&self, params: &Params) -> Result<(), String> {
        crate::train::device::check(params.str("device"))?;
        parse_prompt(params.str("prompt")).map(|_| ())
    }
    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[
            Slot {
                name: "model",
                kinds: &["train"],
                what: "the trained model",
                optional: false,
            },
            Slot {
                name: "dataset",
                kinds: &["vocab"],
                what: "the vocabulary and validation songs the model was trained on",
                optional: false,
            },
            Slot {
                name: "songs",
                kinds: &["limit", "encode"],
                what: "the real token lines of the songs (measured against instead of the ids, which lose tokens unseen in training)",
                optional: true,
            },
        ])
    }
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::output("validity", "sample validity").higher_is_better(),
            MetricSpec::output("overlap_mean", "sample overlap")
                .higher_is_better()
                .headline(),
        ]
    }
    fn report(&self) -> ReportSpec {
        super::reference::report_spec()
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
        let device = crate::train::device::open(params.str("device"))?;
        let model = Gpt::load(train_dir, &device).map_err(StageError::Input)?;
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
        let reference = evaluate::reference(ctx, &data, vocab_dir);
        let train_notes: Vec<_> = reference
            .train
            .iter()
            .map(|l| evaluate::notes_of(l))
            .collect();
        let (longest, polyphony) = evaluate::derived_guards(&train_notes);
        let max_note_steps = match params.float("max_note_beats") {
            b if b > 0.0 => (b * spb as f64).ceil() as u64,
            _ => longest,
        };
        let max_polyphony = match params.usize("max_polyphony") {
            0 => polyphony,
            p => p,
        };
        ctx.progress.log(&format!(
            "reference songs from {}; guards: notes at most {max_note_steps} steps, {max_polyphony} melodic notes at once",
            reference.source
        ));
        let grammar =
            Grammar::new(&data.vocab.tokens).with_guards(spb, max_note_steps, max_polyphony);
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
        let cap = params.usize("validation_songs").min(reference.val.len());
        let validation = pool.install(|| evaluate::measure_lines(&reference.val[..cap], spb));
        let train = pool.install(|| evaluate::measure_lines(&reference.train, spb));
        let mut metrics =
            evaluate::report(&sample_entries, &validation, &reference.val_unknown, &train);
        metrics["reference_songs_from"] = json!(reference.source);
        let mut guards = [GuardCount::default(); 2];
        for song in &songs {
            guards[0].add(&song.note_length_guard);
            guards[1].add(&song.polyphony_guard);
        }
        metrics["guards"] = json!({
            "max_note_beats": max_note_steps as f64 / spb as f64,
            "max_polyphony": max_polyphony,
            "note_length": guards[0],
            "polyphony": guards[1],
        });
        let prompted = parse_prompt(params.str("prompt")).ok().flatten();
        let listened = prompted.unwrap_or(0);
        if let Some(line) = reference.val.get(listened) {
            metrics["reference"] = super::reference::write(
                out,
                line,
                listened,
                params.usize("max_tokens"),
                spb,
                vocab_dir,
            )?;
        }
        if let Some(n) = prompted {
            let prompt_tokens = params.usize("prompt_tokens");
            let truth = &reference.val[n];
            let steps = evaluate::steps_of_prefix(truth, prompt_tokens);
            let texts: Vec<String> = songs.iter().map(|s| s.text.clone()).collect();
            metrics["continuation"] = evaluate::continuation(&texts, truth, steps, spb);
        }
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
    let (check, metrics) = write_song(out, &name, &song.text, spb)?;
    let mut entry = json!({
        "name": name,
        "tokens": song.tokens,
        "drawn": song.drawn,
        "closing_tokens": song.closed,
        "stop": song.stop,
        "note_length_guard": song.note_length_guard,
        "polyphony_guard": song.polyphony_guard,
    });
    if let Err(why) = check {
        entry["invalid_because"] = json!(why);
    }
    merge(&mut entry, &metrics);
    Ok((entry, metrics))
}

/// Writes a token line as `<name>.{txt,mid,wav,png}`; returns its check
/// and metrics.
pub(super) fn write_song(
    out: &Path,
    name: &str,
    text: &str,
    spb: u32,
) -> Result<(Result<(), String>, SongMetrics), StageError> {
    let check = check_line(text, spb);
    let grid = parse_tokens(text)
        .map_err(|e| StageError::Other(format!("{name}: a bad token line: {e}")))?;
    let midi = decode_tokens(
        text,
        &DecodeOptions {
            steps_per_beat: spb,
        },
    )
    .map_err(|e| StageError::Other(format!("{name}: decoding: {e}")))?;
    std::fs::write(out.join(format!("{name}.txt")), format!("{text}\n"))
        .ctx(|| format!("writing {name}.txt"))?;
    std::fs::write(out.join(format!("{name}.mid")), midi).ctx(|| format!("writing {name}.mid"))?;
    let score = Score::from_grid(&grid, spb);
    write_wav(&out.join(format!("{name}.wav")), &render(&score)).map_err(StageError::Other)?;
    write_roll(&out.join(format!("{name}.png")), &score).map_err(StageError::Other)?;
    let metrics = measure(&grid.notes, spb, check.is_ok());
    Ok((check, metrics))
}

pub(super) fn merge(entry: &mut Json, metrics: &SongMetrics) {
    if let (Json::Object(e), Ok(Json::Object(m))) = (entry, serde_json::to_value(metrics)) {
        e.extend(m);
    }
}
