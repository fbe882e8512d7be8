//! The `train` stage kind: reads the vocab stage's dataset, trains (resuming
//! from the stage's state folder), and writes the model, its config, the
//! metrics with baselines, the curve and its plot. Tokens/s, wall time and
//! peak memory are measurements, reported through the context: the output
//! is the same bytes for the same key.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde_json::{Map, Value as Json, json};

use super::baselines::Ngram;
use super::evaluate::evaluate;
use super::settings::{self, Settings};
use super::trainer::{self, Hooks};
use super::{curve, curve_plot, memory, score};
use crate::api::*;
use crate::dataset::{Dataset, write_json};

pub struct TrainKind;

pub const VERSION: u32 = 4;

impl StageKind for TrainKind {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn doc(&self) -> &'static str {
        "trains a decoder-only Transformer on the vocab dataset; metrics against unigram/bigram baselines"
    }
    fn params(&self) -> Vec<ParamSpec> {
        settings::specs()
    }
    fn validate(&self, params: &Params) -> Result<(), String> {
        Settings::from_params(params).validate()
    }
    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[Slot {
            name: "dataset",
            kinds: &["vocab"],
            what: "the dataset to train on",
            optional: false,
        }])
    }
    fn state_ignores(&self) -> &'static [&'static str] {
        settings::NOT_IN_STATE
    }
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::output("val_bits_per_token", "val bits/token")
                .unit("bits/token")
                .lower_is_better(),
            MetricSpec::output("bigram_val_bits_per_token", "bigram bits/token")
                .unit("bits/token")
                .lower_is_better(),
            MetricSpec::output("unigram_val_bits_per_token", "unigram bits/token")
                .unit("bits/token")
                .lower_is_better(),
            MetricSpec::output("val_bits_per_note", "val bits/note")
                .unit("bits/note")
                .lower_is_better()
                .decimals(2)
                .headline(),
            MetricSpec::output("bigram_val_bits_per_note", "bigram bits/note")
                .unit("bits/note")
                .lower_is_better()
                .decimals(2),
            MetricSpec::output("unigram_val_bits_per_note", "unigram bits/note")
                .unit("bits/note")
                .lower_is_better()
                .decimals(2),
            MetricSpec::output("val_accuracy", "val accuracy").higher_is_better(),
            MetricSpec::measured("tokens_per_second", "tokens/s")
                .unit("tokens/s")
                .higher_is_better()
                .decimals(0),
        ]
    }

    fn report(&self) -> ReportSpec {
        let loss = |column, title| {
            CurveSpec::new(curve::FILE, "step", column)
                .title(title)
                .labels("step", "loss (nats/token)")
        };
        ReportSpec {
            curves: vec![
                loss("train_loss", "Training loss"),
                loss("val_loss", "Validation loss"),
            ],
            ..ReportSpec::default()
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let wall = Instant::now();
        let s = Settings::from_params(ctx.params);
        s.validate().map_err(StageError::Config)?;
        let input = ctx.input("dataset")?;
        let data = Dataset::load(&input.dir).map_err(|e| {
            StageError::Input(format!(
                "reading the dataset in {}: {e}",
                input.dir.display()
            ))
        })?;
        let state_dir = ctx.state_dir()?;

        let threads = if s.threads == 0 {
            ctx.threads.max(1)
        } else {
            s.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| StageError::Other(format!("starting {threads} threads: {e}")))?;
        ctx.progress.set_total(s.steps as u64);
        let log = |line: &str| ctx.progress.log(line);
        let cancelled = || ctx.is_cancelled();
        let step_done = |done: usize, total: usize, loss: f64| {
            ctx.progress.advance(1);
            ctx.progress
                .message(&format!("step {done}/{total}, loss {loss:.3}"));
        };
        let hooks = Hooks {
            cancelled: &cancelled,
            log: &log,
            step_done: &step_done,
        };
        let (outcome, model_score) = pool.install(|| {
            let outcome = trainer::train(&s, &data, state_dir, &hooks)?;
            let model = trainer::eval_model(&outcome.config, &outcome.params)?;
            let is_note = score::note_mask(&data.vocab.tokens);
            let full = evaluate(&model, &data.val.ids, &is_note, s.batch, 0)
                .map_err(|e| StageError::Other(format!("evaluating: {e}")))?;
            Ok::<_, StageError>((outcome, full))
        })?;

        let is_note = score::note_mask(&data.vocab.tokens);
        let ngram = Ngram::fit(&data.train, data.vocab.len());
        let ids = &data.val.ids;
        let (uni, bi) = ngram.score(&ids[..ids.len() - 1], &ids[1..], &is_note);

        let out = ctx.out_dir;
        let tensors: HashMap<String, Tensor> = outcome
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<candle_core::Result<_>>()
            .map_err(|e| StageError::Other(format!("copying the weights off the device: {e}")))?;
        // CPU f32 safetensors from any device: a model trained on a GPU
        // samples on the CPU and the other way round.
        candle_core::safetensors::save(&tensors, out.join("model.safetensors"))
            .map_err(|e| StageError::Other(format!("writing model.safetensors: {e}")))?;
        let mut config = serde_json::to_value(&outcome.config).expect("plain struct");
        config["weights"] =
            json!("model.safetensors, f32, linear weights stored (in, out): y = x @ w + b");
        config["vocabulary"] = json!("vocab.json of the vocab stage this model was trained on");
        write_json(&out.join("config.json"), &config).ctx(|| "writing config.json")?;
        std::fs::write(out.join(curve::FILE), curve::to_csv(&outcome.curve))
            .ctx(|| "writing curve.csv")?;
        curve_plot::draw(&outcome.curve, &out.join("curve.png")).map_err(StageError::Other)?;

        let mut m = Map::new();
        let mut put = |prefix: &str, sum: score::Summary| {
            m.insert(format!("{prefix}val_loss"), json!(sum.loss));
            m.insert(
                format!("{prefix}val_bits_per_token"),
                json!(sum.bits_per_token),
            );
            m.insert(format!("{prefix}val_accuracy"), json!(sum.accuracy));
            m.insert(
                format!("{prefix}val_top5_accuracy"),
                json!(sum.top5_accuracy),
            );
            m.insert(
                format!("{prefix}val_bits_per_note"),
                finite(sum.bits_per_note),
            );
        };
        put("", model_score.summary());
        put("unigram_", uni.summary());
        put("bigram_", bi.summary());
        m.insert("steps".into(), json!(s.steps));
        m.insert("parameters".into(), json!(outcome.config.parameter_count()));
        m.insert(
            "train_loss".into(),
            json!(outcome.curve.last().map(|r| r.train_loss)),
        );
        m.insert("val_tokens".into(), json!(model_score.tokens));
        m.insert("val_notes".into(), json!(model_score.notes));
        write_json(&out.join("metrics.json"), &Json::Object(m)).ctx(|| "writing metrics.json")?;

        // Measurements: beside the result in the action record, not in it.
        let measure = |name: &str, value: f64| ctx.measurements.record(name, value);
        let tps = outcome.tokens_trained as f64 / outcome.train_seconds.max(1e-9);
        measure("tokens_per_second", tps.round());
        measure("resumed_from_step", outcome.resumed_from as f64);
        measure("threads", threads as f64);
        measure("wall_seconds", wall.elapsed().as_secs_f64());
        if let Some(rss) = memory::peak_rss_bytes() {
            measure("peak_rss_bytes", rss as f64);
        }
        Ok(())
    }
}

/// JSON has no NaN: a number that is not finite is written as null.
fn finite(v: f64) -> Json {
    if v.is_finite() { json!(v) } else { Json::Null }
}
