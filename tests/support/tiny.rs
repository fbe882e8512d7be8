//! The real stages on the demo corpus with a tiny model: a project whose
//! variants train and sample in a second or two each (tests/report.rs,
//! benches/report.rs).

/// scrape -> encode (duration format) -> limit -> vocab -> train -> sample.
pub fn pipeline(steps: usize, samples: usize, max_tokens: usize) -> String {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo");
    format!(
        r#"
[stages.scrape]
source = "{data}"

[stages.encode]
deps = ["scrape"]
instrument_groups = "chip"
note_off_velocity = false
note_format = "duration"

[stages.limit]
deps = ["encode"]
max_events = 6000

[stages.vocab]
deps = ["limit"]

[stages.train]
deps = ["vocab"]
d_model = 32
layers = 1
heads = 2
context = 64
batch = 8
steps = {steps}
warmup = 5
lr = 0.01
eval_every = 10
eval_tokens = 1024
checkpoint_every = {steps}

[stages.sample]
deps = ["train", "vocab", "limit"]
count = {samples}
max_tokens = {max_tokens}
validation_songs = 4
"#
    )
}
