//! The scrape (local) -> encode -> limit -> vocab chain, run for real on the
//! bundled demo corpus with `run_standalone`.

use std::path::Path;

use serde_json::Value as Json;
use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, Memo, NoProgress, StageKind, Value};
use vgmake_stages::dataset::Dataset;
use vgmake_stages::kinds as registry;

fn kind(name: &str) -> &'static dyn StageKind {
    registry::find(name).unwrap_or_else(|| panic!("kind {name} is registered"))
}

fn input(stage: &str, dir: &Path) -> Input {
    Input {
        slot: None,
        stage: stage.into(),
        kind: stage.into(),
        dir: dir.to_path_buf(),
        hashes: Default::default(),
    }
}

fn json(path: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(name: &str, params: &[(&str, Value)], inputs: &[Input], out: &Path, work: &Path) {
    run_standalone(
        kind(name),
        params,
        inputs,
        out,
        work,
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn demo_corpus_through_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, root) = (tmp.path().join("work"), tmp.path());
    let scrape = root.join("scrape");
    run("scrape", &[("source", "demo".into())], &[], &scrape, &work);
    let index = json(&scrape.join("index.json"));
    let files = index["files"].as_array().unwrap();
    assert!(files.len() >= 90, "{} files", files.len());
    assert!(files[0]["blake3"].as_str().unwrap().len() == 64);
    assert_eq!(files[0]["console"], "pc");
    assert!(scrape.join("LICENSES/freedoom.copyright").is_file());

    let encode = root.join("encode");
    run(
        "encode",
        &[("lines", true.into())],
        &[input("scrape", &scrape)],
        &encode,
        &work,
    );
    let report = json(&encode.join("report.json"));
    let encoded = report["encoded"].as_u64().unwrap();
    assert_eq!(
        encoded + report["skipped"].as_u64().unwrap(),
        files.len() as u64
    );
    assert!(encoded >= 90);
    let tokens = std::fs::read_to_string(encode.join("tokens.txt")).unwrap();
    assert_eq!(tokens.lines().count() as u64, encoded);
    let set = vgmake_stages::songs::SongSet::read(&encode).unwrap();
    for (i, line) in tokens.lines().enumerate() {
        assert_eq!(set.line(i), line, "ids and tokens.txt agree");
    }
    assert!(
        tokens
            .lines()
            .all(|l| l.starts_with("start tempo:") && l.ends_with(" finish"))
    );

    // Memoized: a second run into a fresh folder gives the same songs; by
    // default without tokens.txt, whose bytes `vgmake lines` makes from
    // the song set.
    let again = root.join("encode2");
    run("encode", &[], &[input("scrape", &scrape)], &again, &work);
    assert!(!again.join("tokens.txt").exists());
    let again_set = vgmake_stages::songs::SongSet::read(&again).unwrap();
    assert_eq!(again_set, set);
    let mut printed = Vec::new();
    again_set.write_lines_to(&mut printed).unwrap();
    assert_eq!(printed, tokens.as_bytes());

    let limit = root.join("limit");
    run(
        "limit",
        &[("max_events", 6000.into()), ("max_wait_beats", 8.into())],
        &[input("encode", &encode)],
        &limit,
        &work,
    );
    let report = json(&limit.join("report.json"));
    let kept = report["kept"].as_u64().unwrap();
    assert_eq!(kept + report["dropped"].as_u64().unwrap(), encoded);
    let by_reason: u64 = report["dropped_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, report["dropped"].as_u64().unwrap());
    let kept_set = vgmake_stages::songs::SongSet::read(&limit).unwrap();
    assert_eq!(kept_set.len() as u64, kept);
    for i in 0..kept_set.len() {
        assert!(kept_set.song(i).len() <= 6000);
        let line = kept_set.line(i);
        assert!(
            tokens.lines().any(|l| l == line),
            "a kept song is an encoded song"
        );
    }
    assert!(
        std::fs::read(limit.join("events_histogram.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    assert!(
        std::fs::read_to_string(limit.join("events_histogram.txt"))
            .unwrap()
            .contains('#')
    );

    let vocab = root.join("vocab");
    run("vocab", &[], &[input("limit", &limit)], &vocab, &work);
    let ds = Dataset::load(&vocab).unwrap();
    assert_eq!((ds.train.songs() + ds.val.songs()) as u64, kept);
    assert!(ds.val.songs() > 0 && ds.train.songs() > ds.val.songs());
    let stats = json(&vocab.join("stats.json"));
    assert_eq!(
        stats["vocabulary_size"].as_u64().unwrap(),
        ds.vocab.len() as u64
    );
    assert!(vocab.join("codec.json").is_file());

    // The split does not move when a filter changes: a song in validation
    // stays there under a looser limit.
    let limit2 = root.join("limit2");
    run("limit", &[], &[input("encode", &encode)], &limit2, &work);
    let vocab2 = root.join("vocab2");
    run("vocab", &[], &[input("limit", &limit2)], &vocab2, &work);
    let split = |dir: &Path, side: &str| -> std::collections::BTreeSet<String> {
        json(&dir.join("split.json"))[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let (val, val2, train2) = (
        split(&vocab, "val"),
        split(&vocab2, "val"),
        split(&vocab2, "train"),
    );
    assert_eq!(val.len(), ds.val.songs());
    assert!(val.is_subset(&val2), "validation songs stay in validation");
    assert!(train2.is_disjoint(&val));
}

#[test]
fn local_folder_source_with_rmid_and_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let corpus = work.join("my songs/nes");
    std::fs::create_dir_all(&corpus).unwrap();
    let demo = vgmake_stages::data::default_dir().join("demo/freedoom1");
    let first = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .min()
        .unwrap();
    let smf = std::fs::read(&first).unwrap();
    std::fs::write(corpus.join("a.MID"), &smf).unwrap();
    // The same song in a RIFF RMID wrapper.
    let mut rmid = b"RIFF".to_vec();
    let data_len = smf.len() as u32;
    rmid.extend_from_slice(&(4 + 8 + data_len + data_len % 2).to_le_bytes());
    rmid.extend_from_slice(b"RMIDdata");
    rmid.extend_from_slice(&data_len.to_le_bytes());
    rmid.extend_from_slice(&smf);
    if data_len % 2 == 1 {
        rmid.push(0);
    }
    std::fs::write(corpus.join("b.rmi"), &rmid).unwrap();
    std::fs::write(corpus.join("c.mid"), b"<html>not found</html>").unwrap();
    std::fs::write(corpus.join("notes.txt"), b"ignored").unwrap();

    let scrape = tmp.path().join("scrape");
    // A relative source resolves against the project folder (work here).
    run(
        "scrape",
        &[("source", "my songs".into())],
        &[],
        &scrape,
        &work,
    );
    let index = json(&scrape.join("index.json"));
    let paths: Vec<&str> = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["nes/a.MID", "nes/b.rmi", "nes/c.mid"]);
    assert_eq!(index["files"][0]["console"], "nes");
    assert_eq!(json(&scrape.join("report.json"))["nes"]["bad_files"], 1);

    let encode = tmp.path().join("encode");
    run("encode", &[], &[input("scrape", &scrape)], &encode, &work);
    let report = json(&encode.join("report.json"));
    assert_eq!(report["encoded"], 2);
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["files"][2]["status"], "skipped");
    assert!(
        report["files"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("not a MIDI file")
    );
    let set = vgmake_stages::songs::SongSet::read(&encode).unwrap();
    let lines: Vec<String> = (0..set.len()).map(|i| set.line(i)).collect();
    assert_eq!(lines[0], lines[1], "RMID encodes like the SMF inside");

    let missing = run_standalone(
        kind("scrape"),
        &[("source", "nowhere".into())],
        &[],
        &tmp.path().join("x"),
        &work,
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    );
    let message = missing.unwrap_err().to_string();
    assert!(
        message.contains("nowhere") && message.contains("not a folder"),
        "{message}"
    );
}

/// The keys of the live memo entries under `dir` (one kind's memo folder).
fn memo_entries(dir: &Path) -> Vec<String> {
    let root = tempfile::tempdir().unwrap();
    // `entries` lists every kind under a root: give it this one alone.
    std::os::unix::fs::symlink(dir, root.path().join("encode")).unwrap();
    vgmake_engine::memo::entries(root.path())
        .into_iter()
        .filter(|e| !e.superseded())
        .map(|e| e.key())
        .collect()
}

#[test]
fn encode_memoizes_per_song() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, corpus) = (tmp.path().join("work"), tmp.path().join("corpus"));
    std::fs::create_dir_all(&corpus).unwrap();
    let demo = vgmake_stages::data::default_dir().join("demo/freedoom2");
    let mut files: Vec<_> = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    files.sort();
    for f in &files[..3] {
        std::fs::copy(f, corpus.join(f.file_name().unwrap())).unwrap();
    }
    let memo_dir = work.join("memo/encode");
    run(
        "encode",
        &[],
        &[input("scrape", &corpus)],
        &tmp.path().join("e1"),
        &work,
    );
    assert_eq!(memo_entries(&memo_dir).len(), 3);
    // One new file adds one entry.
    std::fs::copy(&files[3], corpus.join(files[3].file_name().unwrap())).unwrap();
    run(
        "encode",
        &[],
        &[input("scrape", &corpus)],
        &tmp.path().join("e2"),
        &work,
    );
    let entries = memo_entries(&memo_dir);
    assert_eq!(entries.len(), 4);
    // A valid entry is used as is: replace every entry by a marked outcome
    // (the memo's binary form: `E`, no warnings, codes of 8 bytes, the codes).
    let mut payload = b"E\0\0\0\0\x08".to_vec();
    for token in ["start", "tempo:1", "finish"] {
        let code = vgmake_stages::midi::tokens::Token::parse(token)
            .unwrap()
            .code();
        payload.extend_from_slice(&code.to_le_bytes());
    }
    let memo = vgmake_engine::memo::DirMemo::new(&memo_dir).unwrap();
    for key in &entries {
        memo.put(&blake3::Hash::from_hex(key).unwrap(), &payload)
            .unwrap();
    }
    drop(memo);
    let e3 = tmp.path().join("e3");
    run(
        "encode",
        &[("lines", true.into())],
        &[input("scrape", &corpus)],
        &e3,
        &work,
    );
    let tokens = std::fs::read_to_string(e3.join("tokens.txt")).unwrap();
    assert_eq!(tokens, "start tempo:1 finish\n".repeat(4));
    // Other options are other entries.
    run(
        "encode",
        &[("steps_per_beat", 8.into())],
        &[input("scrape", &corpus)],
        &tmp.path().join("e4"),
        &work,
    );
    assert_eq!(memo_entries(&memo_dir).len(), 8);
}

#[test]
fn a_min_count_that_leaves_only_unk_says_what_to_change() {
    let work = tempfile::tempdir().unwrap();
    let (scrape, encode, vocab) = (
        work.path().join("scrape"),
        work.path().join("encode"),
        work.path().join("vocab"),
    );
    run("scrape", &[], &[], &scrape, work.path());
    run(
        "encode",
        &[],
        &[input("scrape", &scrape)],
        &encode,
        work.path(),
    );
    let err = run_standalone(
        kind("vocab"),
        &[("min_count", Value::Integer(100_000_000))],
        &[input("encode", &encode)],
        &vocab,
        work.path(),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("turns every token into <unk>")
            && err.contains("lower `stages.vocab.min_count`"),
        "{err}"
    );
}
