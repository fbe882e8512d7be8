//! The real stages through the real binary: the demo corpus end to end,
//! incremental rebuilds of data stages, variants sharing their common
//! stages, and a training run killed with `kill -9` that resumes.

mod support;

use std::time::Duration;

use support::Project;

/// The data stages and a tiny model, so a test trains in about a second.
fn pipeline(extra: &str) -> String {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo");
    format!(
        r#"
[stages.scrape]
source = "{data}"

[stages.encode]
deps = ["scrape"]
instrument_groups = "chip"
note_off_velocity = false

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
steps = 150
warmup = 5
lr = 0.01
eval_every = 20
eval_tokens = 2048
checkpoint_every = 5

[stages.sample]
deps = ["train", "vocab"]
count = 2
max_tokens = 200
validation_songs = 5
{extra}
"#
    )
}

fn json(p: &Project, rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.path().join(rel)).unwrap()).unwrap()
}

#[test]
fn demo_corpus_end_to_end_then_a_filter_change_reruns_only_limit_and_below() {
    let p = Project::new(&pipeline(""));
    let first = p.build(&[]);
    assert_eq!(
        first.with_status("ran"),
        ["encode", "limit", "sample", "scrape", "train", "vocab"]
    );
    let encode = json(&p, "out/default/encode/report.json");
    assert_eq!(encode["encoded"], 94, "{encode}");
    assert_eq!(encode["skipped"], 0);
    // Each song's hash (the engine's, from scrape's manifest) is its file's.
    let songs = json(&p, "out/default/encode/songs.json");
    for song in songs.as_array().unwrap() {
        let path = song["path"].as_str().unwrap();
        let bytes = std::fs::read(p.out("default", "scrape").join(path)).unwrap();
        assert_eq!(
            song["blake3"],
            blake3::hash(&bytes).to_hex().as_str(),
            "{path}"
        );
    }
    let limit = json(&p, "out/default/limit/report.json");
    let kept = limit["kept"].as_u64().unwrap();
    assert!(kept > 30 && kept < 94, "{limit}");
    assert!(
        p.out("default", "limit")
            .join("events_histogram.png")
            .exists()
    );
    let metrics = json(&p, "out/default/train/metrics.json");
    for key in [
        "val_loss",
        "val_bits_per_token",
        "val_accuracy",
        "unigram_val_loss",
        "bigram_val_loss",
        "steps",
        "parameters",
    ] {
        assert!(metrics[key].is_number(), "{key} missing in {metrics}");
    }
    assert!(
        metrics["val_loss"].as_f64().unwrap() < metrics["unigram_val_loss"].as_f64().unwrap(),
        "{metrics}"
    );
    for file in ["model.safetensors", "config.json", "curve.csv", "curve.png"] {
        assert!(p.out("default", "train").join(file).exists(), "{file}");
    }

    let sample = json(&p, "out/default/sample/metrics.json");
    assert_eq!(sample["validity"], 1.0, "{sample}");
    assert_eq!(sample["samples"].as_array().unwrap().len(), 2);
    for ext in ["txt", "mid", "wav", "png"] {
        assert!(
            p.out("default", "sample")
                .join(format!("sample_001.{ext}"))
                .exists(),
            "{ext}"
        );
    }
    let show = p.run(&["show", "sample"]);
    assert!(
        show.stdout.contains("validity") && show.stdout.contains("overlap"),
        "{}",
        show.stdout
    );

    // Training again from scratch under --force gives the same bytes (the
    // measurements live in the action record, not in the output), so the
    // sample below it is cut off instead of rerun.
    let model = std::fs::read(p.out("default", "train").join("model.safetensors")).unwrap();
    let metrics_bytes = std::fs::read(p.out("default", "train").join("metrics.json")).unwrap();
    std::fs::remove_dir_all(p.path().join("cache/state")).unwrap();
    let again = p.build(&["--force", "train"]);
    assert_eq!(again.with_status("ran"), ["train"]);
    assert_eq!(again.with_status("cutoff"), ["sample"]);
    assert_eq!(
        std::fs::read(p.out("default", "train").join("model.safetensors")).unwrap(),
        model
    );
    assert_eq!(
        std::fs::read(p.out("default", "train").join("metrics.json")).unwrap(),
        metrics_bytes
    );
    let show = p.run(&["show", "train", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(
        shown["measurements"]["tokens_per_second"].as_f64().unwrap() > 0.0,
        "{}",
        show.stdout
    );
    assert_eq!(
        shown["measurements"]["resumed_from_step"], 0.0,
        "{}",
        show.stdout
    );

    // A stricter filter: limit and everything below rerun, encode is cached.
    let stricter = p.build(&["--set", "limit.max_events=4000"]);
    assert_eq!(stricter.with_status("cached"), ["encode", "scrape"]);
    assert_eq!(
        stricter.with_status("ran"),
        ["limit", "sample", "train", "vocab"]
    );
    let why = p.run(&["why", "limit", "--set", "limit.max_events=3000"]);
    assert!(
        why.stdout.contains("param limit.max_events 4000 -> 3000"),
        "{}",
        why.stdout
    );
    // Back to the first value: restored from the cache, nothing runs.
    assert!(p.build(&[]).with_status("ran").is_empty());
}

#[test]
fn variants_that_differ_only_in_train_share_everything_upstream() {
    let p = Project::new(&pipeline("[variants.wide]\ntrain.d_model = 48\n"));
    let run = p.build(&["--all-variants"]);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ran = |stage: &str| {
        lines
            .iter()
            .filter(|v| v["status"] == "ran" && v["name"] == stage)
            .count()
    };
    assert_eq!(
        [
            ran("scrape"),
            ran("encode"),
            ran("limit"),
            ran("vocab"),
            ran("train"),
            ran("sample")
        ],
        [1, 1, 1, 1, 2, 2]
    );
    let compare = p.run(&["compare", "--format", "csv"]);
    let header = compare.stdout.lines().next().unwrap();
    assert!(
        header.starts_with(
            "variant,train.d_model,songs encoded,songs kept,vocab size,val bits/token"
        ),
        "{header}"
    );
}

#[test]
fn a_killed_training_run_resumes_from_its_checkpoint() {
    let p = Project::new(&pipeline("").replace("steps = 150", "steps = 1000"));
    p.build(&["vocab"]);
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut cmd = p.command(&["build"]);
        cmd.process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    // Wait for a few checkpoints, then kill -9 in the middle of training.
    let state = p.path().join("cache/state/train");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !has_sealed_checkpoint(&state) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    assert!(
        !p.out("default", "train").exists(),
        "training finished before the kill; make it longer"
    );
    let run = p.build(&["-v"]);
    assert_eq!(run.with_status("ran"), ["sample", "train"]);
    // How far it got before the kill is a measurement, beside the result.
    let show = p.run(&["show", "train", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let resumed = shown["measurements"]["resumed_from_step"].as_f64().unwrap();
    assert!(resumed > 0.0 && resumed < 1000.0, "{}", show.stdout);
    assert_eq!(p.run(&["verify"]).code, 0);
}

fn has_sealed_checkpoint(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let path = e.path();
            if path.is_dir() {
                has_sealed_checkpoint(&path)
            } else {
                // A checkpoint counts once sealed (its `.b3` is written last):
                // a kill before that resumes from the start.
                path.extension().is_some_and(|x| x == "safetensors")
                    && path.with_extension("safetensors.b3").exists()
            }
        })
}

/// Without the `cuda` feature, asking either stage for the GPU is an error
/// of the pipeline (exit 2) that says how to rebuild, before any stage runs;
/// bf16 on the CPU likewise.
#[test]
fn cuda_without_the_feature_and_bf16_on_the_cpu_are_refused_before_anything_runs() {
    let p = Project::new(&pipeline(""));
    let mut cases = vec![("train.dtype=bf16", "`dtype = \"bf16\"` is for GPU training")];
    if !cfg!(feature = "cuda") {
        let rebuild = "cargo build --release --features cuda";
        cases.push(("train.device=cuda", rebuild));
        cases.push(("sample.device=cuda", rebuild));
    }
    for (set, says) in cases {
        let run = p.run(&["build", "--set", set]);
        assert_eq!(run.code, 2, "{set}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{set}: {}", run.stderr);
        assert!(!p.path().join("cache").exists(), "{set}: nothing ran");
    }
}

/// The listing cache (cache/listings.bin) answers for a corpus folder only
/// while the folder is unchanged: a file added, removed or renamed in a
/// folder listed by an earlier build is seen by the next one.
#[test]
fn a_corpus_change_is_seen_after_its_folders_were_remembered() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo");
    let p = Project::new("");
    let corpus = p.path().join("songs");
    let sub = corpus.join("freedm");
    std::fs::create_dir_all(&sub).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(format!("{demo}/freedm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    names.sort();
    for song in &names[..3] {
        std::fs::copy(song, sub.join(song.file_name().unwrap())).unwrap();
    }
    p.write_pipeline("[stages.scrape]\nsource = \"songs\"\n");
    let files = |p: &Project| {
        let index = std::fs::read(p.out("default", "scrape").join("index.json")).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        index["files"].as_array().map_or(0, |a| a.len())
    };
    // Folders are remembered once they have been left alone for 2 s.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(p.build(&[]).with_status("ran"), ["scrape"]);
    assert!(p.path().join("cache/listings.bin").exists());
    assert_eq!(files(&p), 3);
    assert_eq!(p.build(&[]).with_status("cached"), ["scrape"]);

    std::fs::copy(&names[3], sub.join("added.mid")).unwrap();
    assert_eq!(p.build(&[]).with_status("ran"), ["scrape"]);
    assert_eq!(files(&p), 4);

    std::thread::sleep(Duration::from_millis(2100));
    p.build(&[]); // remembers the folder as it is now
    std::fs::rename(sub.join("added.mid"), sub.join("renamed.mid")).unwrap();
    assert_eq!(p.build(&[]).with_status("ran"), ["scrape"]);
    let index = std::fs::read_to_string(p.out("default", "scrape").join("index.json")).unwrap();
    assert!(
        index.contains("renamed.mid") && !index.contains("added.mid"),
        "{index}"
    );
}
