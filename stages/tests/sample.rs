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
use vgmake_stages::midi::{EncodeOptions, encode_file};
use vgmake_stages::sample::SampleKind;
use vgmake_stages::songs::{CodecInfo, SongInfo, SongSet};
use vgmake_stages::train::TrainKind;
use vgmake_stages::vocab::build_dataset;

/// A dataset from token lines, each with its side (`true` = validation).
fn dataset(songs: &[(&str, bool)]) -> Dataset {
    let lines: Vec<&str> = songs.iter().map(|(l, _)| *l).collect();
    let infos = (0..songs.len())
        .map(|i| SongInfo {
            path: format!("song{i}.mid"),
            blake3: format!("{i:064}"),
        })
        .collect();
    let set = SongSet::from_lines(
        &lines,
        infos,
        CodecInfo::from_options(&EncodeOptions::default()),
    );
    let val: Vec<bool> = songs.iter().map(|(_, v)| *v).collect();
    build_dataset(&set, &val, 1)
}

/// The vocab and train outputs, made once per test binary.
struct Trained {
    _dir: tempfile::TempDir,
    vocab: PathBuf,
    train: PathBuf,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let demo = default_data_dir().join("demo/freedoom1");
        let files = ["D_VICTOR", "D_E1M8", "D_INTRO", "D_INTROA", "D_E1M5"];
        let lines: Vec<String> = files
            .iter()
            .map(|f| {
                encode_file(&demo.join(format!("{f}.mid")), &EncodeOptions::default()).unwrap()
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
        }
    })
}

fn input(kind: &str, dir: &Path) -> Input {
    Input {
        slot: None,
        stage: kind.into(),
        kind: kind.into(),
        dir: dir.to_path_buf(),
    }
}

/// Runs the sample stage with `overrides`; returns its output folder.
fn sample(overrides: &[(&str, Value)]) -> Result<(tempfile::TempDir, PathBuf), String> {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_standalone(
        &SampleKind,
        overrides,
        &[input("train", &t.train), input("vocab", &t.vocab)],
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
    assert_eq!(overlap.len(), 9);
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
