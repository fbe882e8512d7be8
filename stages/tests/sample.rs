//! The sample stage for real: a tiny model trained by the train stage on
//! demo songs encoded by the codec, then sampled, decoded, rendered and
//! measured.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress, Value};
use vgmake_stages::data::default_dir as default_data_dir;
use vgmake_stages::dataset::Dataset;
use vgmake_stages::midi::{EncodeOptions, NoteFormat, encode_bytes_as};
use vgmake_stages::sample::SampleKind;
use vgmake_stages::songs::{CodecInfo, SongInfo, SongSet};
use vgmake_stages::train::TrainKind;
use vgmake_stages::vocab::build_dataset;

/// A dataset from token lines, each with its side (`true` = validation).
fn dataset(songs: &[(&str, bool)]) -> Dataset {
    let val: Vec<bool> = songs.iter().map(|(_, v)| *v).collect();
    build_dataset(&song_set(songs), &val, 1)
}

/// The song set of token lines (sources `song{i}.mid`).
fn song_set(songs: &[(&str, bool)]) -> SongSet {
    let lines: Vec<&str> = songs.iter().map(|(l, _)| *l).collect();
    let infos = (0..songs.len())
        .map(|i| SongInfo {
            path: format!("song{i}.mid"),
            blake3: format!("{i:064}"),
        })
        .collect();
    SongSet::from_lines(
        &lines,
        infos,
        CodecInfo::from_options(&EncodeOptions::default()),
    )
}

/// The vocab and train outputs (and the song set, as limit writes it),
/// made once per test binary and note format.
struct Trained {
    _dir: tempfile::TempDir,
    vocab: PathBuf,
    train: PathBuf,
    songs: PathBuf,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| train_on(NoteFormat::OnOff))
}

fn trained_durations() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| train_on(NoteFormat::Duration))
}

fn train_on(format: NoteFormat) -> Trained {
    {
        let dir = tempfile::tempdir().unwrap();
        let demo = default_data_dir().join("demo/freedoom1");
        let files = ["D_VICTOR", "D_E1M8", "D_INTRO", "D_INTROA", "D_E1M5"];
        let lines: Vec<String> = files
            .iter()
            .map(|f| {
                let bytes = fs::read(demo.join(format!("{f}.mid"))).unwrap();
                encode_bytes_as(&bytes, &EncodeOptions::default(), format).unwrap()
            })
            .collect();
        // The last song is the validation split; its tokens unseen in
        // training become <unk>.
        let songs: Vec<(&str, bool)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i == files.len() - 1))
            .collect();
        let vocab = dir.path().join("vocab");
        fs::create_dir_all(&vocab).unwrap();
        dataset(&songs).write(&vocab).unwrap();
        // What the vocab stage adds: the source of each song of each split.
        let split = serde_json::json!({
            "train": (0..files.len() - 1).map(|i| format!("song{i}.mid")).collect::<Vec<_>>(),
            "val": [format!("song{}.mid", files.len() - 1)],
        });
        fs::write(vocab.join("split.json"), split.to_string()).unwrap();
        let songs_dir = dir.path().join("limit");
        fs::create_dir_all(&songs_dir).unwrap();
        song_set(&songs).write(&songs_dir).unwrap();
        let train = dir.path().join("train");
        let settings: Vec<(&str, Value)> = vec![
            ("d_model", 32.into()),
            ("layers", 1.into()),
            ("heads", 2.into()),
            ("context", 64.into()),
            ("batch", 8.into()),
            ("steps", 30.into()),
            ("warmup", 5.into()),
            ("eval_every", 30.into()),
            ("checkpoint_every", 30.into()),
            ("threads", 1.into()),
        ];
        run_standalone(
            &TrainKind,
            &settings,
            &[input("vocab", &vocab)],
            &train,
            &dir.path().join("train_work"),
            &vgmake_stages::data::default_dir(),
            &NoProgress,
        )
        .unwrap();
        Trained {
            _dir: dir,
            vocab,
            train,
            songs: songs_dir,
        }
    }
}

fn input(kind: &str, dir: &Path) -> Input {
    Input {
        slot: None,
        stage: kind.into(),
        kind: kind.into(),
        dir: dir.to_path_buf(),
        hashes: Default::default(),
    }
}

/// Runs the sample stage with `overrides`; returns its output folder.
fn sample(overrides: &[(&str, Value)]) -> Result<(tempfile::TempDir, PathBuf), String> {
    let t = trained();
    sample_with(
        &[input("train", &t.train), input("vocab", &t.vocab)],
        overrides,
    )
}

fn sample_with(
    inputs: &[Input],
    overrides: &[(&str, Value)],
) -> Result<(tempfile::TempDir, PathBuf), String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_standalone(
        &SampleKind,
        overrides,
        inputs,
        &out,
        &dir.path().join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .map_err(|e| e.to_string())?;
    Ok((dir, out))
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(out.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn samples_decode_render_and_are_measured() {
    let (_dir, out) = sample(&[("count", 3.into()), ("max_tokens", 300.into())]).unwrap();
    let text = fs::read_to_string(out.join("tokens.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "the requested count");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with("start ") && line.ends_with(" finish"),
            "{line}"
        );
        assert!(!line.contains("<unk>") && !line.contains("<pad>"));
        let name = format!("sample_{:03}", i + 1);
        let own = fs::read_to_string(out.join(format!("{name}.txt"))).unwrap();
        assert_eq!(own.trim_end(), *line);
        let mid = fs::read(out.join(format!("{name}.mid"))).unwrap();
        let smf = midly::Smf::parse(&mid).expect("midly reads the sample");
        assert!(smf.tracks.len() >= 2, "a tempo track and a note track");
        let mut wav = hound::WavReader::open(out.join(format!("{name}.wav"))).unwrap();
        assert_eq!(wav.spec().sample_rate, 44_100);
        let loudest = wav
            .samples::<i16>()
            .map(|s| s.unwrap().unsigned_abs())
            .max();
        assert!(loudest.unwrap_or(0) > 1000, "{name}.wav is not silent");
        assert!(
            fs::read(out.join(format!("{name}.png")))
                .unwrap()
                .starts_with(b"\x89PNG")
        );
    }
    let m = metrics(&out);
    assert_eq!(m["validity"], 1.0, "{m}");
    assert_eq!(m["samples"].as_array().unwrap().len(), 3);
    assert_eq!(m["validation_songs"], 1);
    assert_eq!(m["validation"].as_array().unwrap().len(), 1);
    let overlap = m["overlap"].as_object().unwrap();
    assert_eq!(overlap.len(), 12);
    for (name, v) in overlap {
        if let Some(v) = v.as_f64() {
            assert!((0.0..=1.0).contains(&v), "{name} {v}");
        }
    }
    let mean = m["overlap_mean"].as_f64().unwrap_or_else(|| panic!("{m}"));
    assert!((0.0..=1.0).contains(&mean));
    for key in [
        "pitch_range",
        "pitch_class_entropy",
        "groove_consistency",
        "valid",
        "stop",
        "note_length_mean",
        "note_length_p95",
        "long_note_share",
        "note_length_guard",
    ] {
        assert!(m["samples"][0].get(key).is_some(), "{key} missing: {m}");
    }
}

#[test]
fn the_same_seed_gives_the_same_samples() {
    let run = |seed: i64| {
        let (_dir, out) = sample(&[
            ("count", 2.into()),
            ("max_tokens", 120.into()),
            ("seed", seed.into()),
        ])
        .unwrap();
        let files = [
            "tokens.txt",
            "sample_002.mid",
            "sample_002.wav",
            "sample_002.png",
            "metrics.json",
        ];
        files.map(|f| fs::read(out.join(f)).unwrap())
    };
    let a = run(5);
    assert_eq!(a, run(5), "every output is byte-identical");
    assert_ne!(a[0], run(6)[0], "another seed, other songs");
}

#[test]
fn greedy_top_k_and_a_validation_prompt() {
    let t = trained();
    let data = Dataset::load(&t.vocab).unwrap();
    let (_dir, out) = sample(&[
        ("count", 2.into()),
        ("max_tokens", 80.into()),
        ("temperature", 0.0.into()),
        ("prompt", "val:0".into()),
        ("prompt_tokens", 12.into()),
    ])
    .unwrap();
    let text = fs::read_to_string(out.join("tokens.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], lines[1], "greedy: no randomness");
    // The prompt's known tokens open the song.
    let prompt: Vec<&str> = data.val.song(0)[..12]
        .iter()
        .map(|&id| data.vocab.tokens[id as usize].as_str())
        .filter(|t| !t.starts_with('<'))
        .collect();
    assert!(
        lines[0].starts_with(&prompt.join(" ")),
        "{}\n{}",
        lines[0],
        prompt.join(" ")
    );
    assert!(
        lines[0].split(' ').count() <= 80 + 20,
        "max_tokens plus closing tokens"
    );

    let (_dir, out) = sample(&[
        ("count", 1.into()),
        ("top_k", 1.into()),
        ("max_tokens", 40.into()),
    ])
    .unwrap();
    let m = metrics(&out);
    assert_eq!(m["validity"], 1.0, "{m}");
}

#[test]
fn bad_settings_and_inputs_are_named() {
    let err = sample(&[("prompt", "val:7".into())]).unwrap_err();
    assert!(err.contains("validation song 7 does not exist"), "{err}");
    let err = sample(&[("prompt", "middle".into())]).unwrap_err();
    assert!(err.contains("`prompt`"), "{err}");
    // A model whose vocabulary does not match the dataset.
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("vocab");
    fs::create_dir_all(&other).unwrap();
    dataset(&[("start i0:v80:60 wait:4 end:i0:v80:60 finish", false)])
        .write(&other)
        .unwrap();
    let err = run_standalone(
        &SampleKind,
        &[],
        &[input("train", &t.train), input("vocab", &other)],
        &dir.path().join("out"),
        &dir.path().join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("vocabulary of") && err.contains(&*other.to_string_lossy()),
        "{err}"
    );
    let err = run_standalone(
        &SampleKind,
        &[],
        &[input("train", dir.path()), input("vocab", &t.vocab)],
        &dir.path().join("out2"),
        &dir.path().join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn real_validation_songs_come_from_limit_and_are_valid() {
    let t = trained();
    // From the dataset's ids alone: the tokens unseen in training are
    // <unk>, dropped, and the validation song loses notes' starts or ends.
    let (_d1, ids_only) = sample(&[("count", 1.into()), ("max_tokens", 60.into())]).unwrap();
    let m = metrics(&ids_only);
    assert_eq!(m["reference_songs_from"], "vocab");
    let unknown = m["validation"][0]["unknown_tokens"].as_u64().unwrap();
    assert!(
        unknown > 0,
        "the validation song has tokens unseen in training"
    );
    let notes_from_ids = m["validation"][0]["notes"].as_u64().unwrap();
    // With the song set beside it: the real lines, valid.
    let inputs = [
        input("train", &t.train),
        input("vocab", &t.vocab),
        input("limit", &t.songs),
    ];
    let (_d2, out) =
        sample_with(&inputs, &[("count", 4.into()), ("max_tokens", 200.into())]).unwrap();
    let m = metrics(&out);
    assert_eq!(m["reference_songs_from"], "limit");
    assert_eq!(m["validation_validity"], 1.0, "{}", m["validation"][0]);
    assert_eq!(m["validation"][0]["unknown_tokens"], unknown);
    let notes = m["validation"][0]["notes"].as_u64().unwrap();
    assert!(
        notes > notes_from_ids,
        "the real song has its unseen notes: {notes} vs {notes_from_ids}"
    );
    assert_eq!(m["train_songs"], 4);
    // The ceiling: training songs against the validation song. KDE of
    // distances needs two validation songs: with one, shared bins.
    for key in ["ceiling_mean", "ceiling_bins_mean", "overlap_bins_mean"] {
        let v = m[key].as_f64().unwrap_or_else(|| panic!("{key}: {m}"));
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    assert!(m["ceiling_kde_mean"].is_null() && m["overlap_kde_mean"].is_null());
    assert_eq!(m["overlap_method"], "bins");
    assert_eq!(m["overlap_mean"], m["overlap_bins_mean"]);
    assert_eq!(m["ceiling_mean"], m["ceiling_bins_mean"]);
    // Guards derived from the training songs, and no sample breaks them.
    let longest = m["longest_note_beats"]["train"].as_f64().unwrap();
    assert_eq!(m["guards"]["max_note_beats"], longest);
    assert!(m["longest_note_beats"]["samples"].as_f64().unwrap() <= longest);
    assert!(m["guards"]["max_polyphony"].as_u64().unwrap() >= 1);
}

#[test]
fn duration_songs_sample_valid_with_guards_and_continuations() {
    let t = trained_durations();
    let vocab = fs::read_to_string(t.vocab.join("vocab.json")).unwrap();
    assert!(
        vocab.contains("\"d:4\"") && !vocab.contains("end:"),
        "a duration vocabulary"
    );
    let inputs = [
        input("train", &t.train),
        input("vocab", &t.vocab),
        input("limit", &t.songs),
    ];
    let (_d, out) = sample_with(
        &inputs,
        &[
            ("count", 3.into()),
            ("max_tokens", 300.into()),
            ("max_note_beats", 2.0.into()),
            ("max_polyphony", 2.into()),
            ("prompt", "val:0".into()),
            ("prompt_tokens", 40.into()),
        ],
    )
    .unwrap();
    let m = metrics(&out);
    assert_eq!(m["validity"], 1.0, "{m}");
    assert_eq!(m["validation_validity"], 1.0);
    let text = fs::read_to_string(out.join("tokens.txt")).unwrap();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        assert!(!line.contains("end:"), "{line}");
        for (i, w) in words.iter().enumerate() {
            if w.starts_with('i') {
                assert!(
                    words[i + 1].starts_with("d:"),
                    "a start without length: {line}"
                );
            }
        }
    }
    // Every length the model drew (after the prompt) obeys the guard: at
    // most 2 beats = 32 steps, so no tie either.
    for (line, s) in text.lines().zip(m["samples"].as_array().unwrap()) {
        let words: Vec<&str> = line.split(' ').collect();
        let generated =
            (s["drawn"].as_u64().unwrap() + s["closing_tokens"].as_u64().unwrap()) as usize;
        for w in &words[words.len() - generated..] {
            if let Some(d) = w.strip_prefix("d:") {
                assert!(d.parse::<u32>().unwrap() <= 32, "{w} in {line}");
            }
        }
    }
    assert_eq!(m["guards"]["max_note_beats"], 2.0);
    assert_eq!(m["guards"]["max_polyphony"], 2);
    assert!(
        m["guards"]["polyphony"]["draws"].as_u64().unwrap() > 0,
        "{}",
        m["guards"]
    );
    let c = &m["continuation"];
    assert!(c["true_notes"].as_u64().unwrap() > 0, "{c}");
    assert!(
        c["metrics"]["note_length_mean"]["samples"].is_number(),
        "{c}"
    );
}
