//! Hostile and careless inputs to the stage kinds (issue #11): each test
//! failed before its fix. Bounded in time, memory and threads: nothing here
//! allocates more than a few tens of MB, and the HTTP cases run against
//! servers on 127.0.0.1 started by the test.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use vgmake_engine::standalone::run as standalone_run;
use vgmake_stages::api::Params;
use vgmake_stages::api::{NoProgress, ProjectFiles, StageError, StageKind, Value};
use vgmake_stages::kinds as registry;
use vgmake_stages::midi::{self, EncodeOptions, MidiError};
use vgmake_testsite::{Fault, Site, SiteConfig, SongSpec};

fn kind(name: &str) -> &'static dyn StageKind {
    registry::find(name).unwrap_or_else(|| panic!("kind {name} is registered"))
}

fn json(path: &Path) -> Json {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn scrape(params: &[(&str, Value)], out: &Path, work: &Path) -> Result<(), StageError> {
    standalone_run(
        kind("scrape"),
        params,
        &[],
        out,
        work,
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .map(|_| ())
}

/// vgmusic parameters for a site on 127.0.0.1: no delay, short timeouts.
fn vgmusic_params(base_url: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("source", "vgmusic".into()),
        ("base_url", base_url.into()),
        ("consoles", Value::Array(vec!["nes".into()])),
        ("delay_ms", 0.into()),
        ("timeout_s", 2.into()),
        ("retries", 0.into()),
        ("backoff_ms", 10.into()),
    ]
}

fn song(file: &str) -> SongSpec {
    SongSpec {
        console: "nes".into(),
        game: "Game".into(),
        title: file.into(),
        author: "someone".into(),
        file: file.into(),
        revision: 0,
    }
}

// ---- Item 1: listing links to other hosts ----

#[test]
fn listing_links_to_other_sites_are_reported_and_never_requested() {
    let elsewhere = Site::start(SiteConfig {
        robots_txt: Some(String::new()),
        ..SiteConfig::default()
    });
    let port = elsewhere
        .url()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let links = [
        format!("http://localhost:{port}/internal.mid"),
        format!("http://127.0.0.1:{port}/admin.mid"),
        "file:///etc/passwd".to_string(),
    ];
    let mut songs = vec![song("good.mid")];
    songs.extend(links.iter().map(|l| song(l)));
    let site = Site::start(SiteConfig {
        songs,
        robots_txt: Some(String::new()),
        ..SiteConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut params = vgmusic_params(site.url());
    // A `file:` link that were retried would wait 2 + 4 s.
    params.push(("retries", 2.into()));
    params.push(("backoff_ms", 2000.into()));
    let started = Instant::now();
    scrape(&params, &out, tmp.path()).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "refused links are not retried: {:?}",
        started.elapsed()
    );
    assert_eq!(elsewhere.total_requests(), 0, "{:?}", elsewhere.seen());
    let report = json(&out.join("report.json"));
    assert_eq!(report["consoles"]["nes"]["downloaded"], 1);
    assert_eq!(report["consoles"]["nes"]["skipped"], 3);
    let skipped = report["skipped"].as_array().unwrap();
    let urls: Vec<&str> = skipped.iter().map(|s| s["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 3, "{report}");
    for link in &links {
        assert!(urls.iter().any(|u| u == link), "{link} in {urls:?}");
    }
    for s in skipped {
        let reason = s["reason"].as_str().unwrap();
        assert!(reason.contains("never fetched"), "{reason}");
        assert!(
            reason.contains(site.url().trim_end_matches('/')),
            "{reason}"
        );
    }
    assert!(report["dead_links"].as_array().unwrap().is_empty());
    assert!(report["failed"].as_array().unwrap().is_empty());
}

// ---- Item 18: robots.txt unreachable ----

#[test]
fn an_unreachable_robots_txt_is_named_not_reported_as_disallowing() {
    // Nothing listens on this port once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let err = scrape(
        &vgmusic_params(&format!("http://127.0.0.1:{port}/")),
        &tmp.path().join("out"),
        tmp.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("robots.txt could not be fetched"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("robots.txt disallows"), "{err}");

    // A robots.txt that answers 500: said so, and nothing else requested.
    let mut faults = std::collections::BTreeMap::new();
    faults.insert("/robots.txt".to_string(), Fault::Status(500));
    let site = Site::start(SiteConfig {
        songs: vec![song("a.mid")],
        robots_txt: Some(String::new()),
        faults,
        ..SiteConfig::default()
    });
    let err = scrape(
        &vgmusic_params(site.url()),
        &tmp.path().join("out2"),
        &tmp.path().join("w2"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("robots.txt could not be fetched") && err.contains("HTTP 500"),
        "{err}"
    );
    assert_eq!(site.total_requests(), 1, "{:?}", site.requests_per_path());
}

// ---- Item 12: a listing of a million links ----

#[test]
fn a_listing_with_too_many_links_is_cut_and_said_so() {
    use vgmake_stages::scrape::vgmusic::parse_listing;
    let cap = 50_000;
    let mut html = String::from("<table><tr class=header><td class=header>G\n");
    for i in 0..cap + 7 {
        html.push_str(&format!(
            "<tr><td><a href=\"s{i}.mid\">{i}</a><td>1 bytes\n"
        ));
    }
    html.push_str("</table>");
    let page = url::Url::parse("http://site/c/").unwrap();
    let listing = parse_listing(&html, &page);
    assert_eq!(listing.songs.len(), cap);
    assert!(
        listing
            .problems
            .iter()
            .any(|p| p.contains("more than 50000 songs") && p.contains("7 more")),
        "{:?}",
        listing.problems
    );
}

// ---- Item 15: links, FIFOs and odd names in a local corpus ----

fn demo_song() -> Vec<u8> {
    let demo = vgmake_stages::data::default_dir().join("demo/freedoom1");
    let first = fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .min()
        .unwrap();
    fs::read(first).unwrap()
}

#[test]
fn links_fifos_and_odd_names_in_a_local_corpus_are_skipped_with_reasons() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("project");
    let corpus = work.join("songs");
    fs::create_dir_all(corpus.join("sub")).unwrap();
    fs::write(corpus.join("a.mid"), demo_song()).unwrap();
    fs::write(tmp.path().join("outside.mid"), demo_song()).unwrap();
    symlink(corpus.join("a.mid"), corpus.join("sub/link.mid")).unwrap();
    symlink(tmp.path().join("outside.mid"), corpus.join("out.mid")).unwrap();
    symlink(corpus.join("gone.mid"), corpus.join("broken.mid")).unwrap();
    symlink(corpus.join("sub"), corpus.join("loop")).unwrap();
    let fifo = std::ffi::CString::new(corpus.join("pipe.mid").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let odd = std::ffi::OsStr::from_bytes(b"odd\xff.mid");
    fs::write(corpus.join(odd), demo_song()).unwrap();

    // What enters the key: only regular files (the engine hashes each).
    let params = Params::with(kind("scrape"), &[("source", "songs".into())]).unwrap();
    let ext = kind("scrape")
        .external_inputs(
            &params,
            &ProjectFiles::reading(&work, &vgmake_stages::data::default_dir()),
        )
        .unwrap();
    assert_eq!(ext.paths.len(), 2, "{:?}", ext.paths);
    for path in &ext.paths {
        assert!(fs::metadata(path).unwrap().is_file(), "{}", path.display());
    }
    assert!(ext.values.contains_key("source files"));

    let out = tmp.path().join("out");
    scrape(&[("source", "songs".into())], &out, &work).unwrap();
    let index = json(&out.join("index.json"));
    let paths: Vec<&str> = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.mid", "sub/link.mid"]);
    assert_eq!(fs::read(out.join("sub/link.mid")).unwrap(), demo_song());
    let report = json(&out.join("report.json"));
    let skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |path: &str| {
        skipped
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{path} not in {skipped:?}"))
    };
    assert!(reason("broken.mid").contains("broken link"));
    assert!(reason("loop").contains("folder"));
    assert!(reason("out.mid").contains("outside the source folder"));
    assert!(reason("pipe.mid").contains("FIFO"));
    assert!(reason("odd\u{fffd}.mid").contains("UTF-8"));
    assert_eq!(skipped.len(), 5, "{skipped:?}");
}

// ---- Item 14: a source that is empty, the root, or the project ----

#[test]
fn a_source_that_is_empty_the_root_or_the_project_is_refused() {
    let scrape_kind = kind("scrape");
    let err = Params::with(scrape_kind, &[("source", "".into())]).unwrap_err();
    assert!(err.contains("`source` is empty"), "{err}");
    for root in ["/", "//", "/."] {
        let err = Params::with(scrape_kind, &[("source", root.into())]).unwrap_err();
        assert!(err.contains("root"), "{root}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("project");
    fs::create_dir_all(work.join("songs")).unwrap();
    fs::write(work.join("songs/a.mid"), demo_song()).unwrap();
    let data = vgmake_stages::data::default_dir();
    for (source, says) in [(".", "the project folder"), ("..", "above it")] {
        let params = Params::with(scrape_kind, &[("source", source.into())]).unwrap();
        let err = scrape_kind
            .external_inputs(&params, &ProjectFiles::reading(&work, &data))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{source}: {err}");
        let err = scrape(&[("source", source.into())], &tmp.path().join("o"), &work)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{source}: {err}");
    }
    scrape(&[("source", "songs".into())], &tmp.path().join("ok"), &work).unwrap();
}

// ---- Items 12 and 16: devices, huge files, millions of events ----

fn smf(tracks: &[&[u8]]) -> Vec<u8> {
    let mut out = b"MThd\0\0\0\x06\0\x01".to_vec();
    out.extend_from_slice(&(tracks.len() as u16).to_be_bytes());
    out.extend_from_slice(&96u16.to_be_bytes());
    for body in tracks {
        out.extend_from_slice(b"MTrk");
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[test]
fn devices_and_fifos_are_refused_not_read() {
    let started = Instant::now();
    let err = midi::encode_file(Path::new("/dev/zero"), &EncodeOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MidiError::Io(m) if m.contains("character device")),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let fifo_path = tmp.path().join("pipe.mid");
    let fifo = std::ffi::CString::new(fifo_path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let err = midi::encode_file(&fifo_path, &EncodeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    let err =
        vgmake_stages::sample::render_midi_file(Path::new("/dev/zero"), &tmp.path().join("x.wav"))
            .unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_file_past_the_size_limit_is_skipped_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("scrape");
    fs::create_dir_all(&input).unwrap();
    fs::write(input.join("a.mid"), demo_song()).unwrap();
    // A sparse file: no disk and no memory spent on its zeros.
    let big = input.join("big.mid");
    fs::write(&big, smf(&[&[0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0]])).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&big).unwrap();
    file.set_len(midi::read::MAX_FILE_BYTES + 1).unwrap();
    drop(file);
    let err = midi::encode_file(&big, &EncodeOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MidiError::TooBig(m) if m.contains("file too large")),
        "{err}"
    );
    let out = tmp.path().join("encode");
    let inputs = [vgmake_stages::api::Input {
        slot: None,
        stage: "scrape".into(),
        kind: "scrape".into(),
        dir: input,
        hashes: Default::default(),
    }];
    standalone_run(
        kind("encode"),
        &[],
        &inputs,
        &out,
        tmp.path(),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap();
    let report = json(&out.join("report.json"));
    assert_eq!(report["encoded"], 1);
    let files = report["files"].as_array().unwrap();
    let big = files.iter().find(|f| f["path"] == "big.mid").unwrap();
    assert_eq!(big["status"], "skipped");
    assert!(
        big["reason"].as_str().unwrap().contains("file too large"),
        "{big}"
    );
}

#[test]
fn a_song_of_millions_of_events_is_refused() {
    // Running status: 3 bytes per event, 6 MB for 2 million events.
    let pairs = midi::read::MAX_EVENTS / 2 + 1;
    let mut body = vec![0x00, 0x90, 60, 100, 0x01, 60, 0];
    for _ in 1..pairs {
        body.extend_from_slice(&[0x00, 60, 100, 0x01, 60, 0]);
    }
    body.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    let err = midi::read_song(&smf(&[&body])).unwrap_err();
    assert!(
        matches!(&err, MidiError::TooBig(m) if m.contains("too many events")),
        "{err}"
    );
}

// ---- Item 9: waits of years ----

/// A 5 KB file: 400 notes, each after a delta-time of 0x0FFFFFFF ticks.
fn years_long_midi() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..400u32 {
        body.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F, 0x90, 60 + (i % 12) as u8, 100]);
        body.extend_from_slice(&[0x10, 0x80, 60 + (i % 12) as u8, 0]);
    }
    body.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    smf(&[&body])
}

#[test]
fn a_song_lasting_years_is_refused_by_the_reader_and_the_tools() {
    let bytes = years_long_midi();
    assert!(bytes.len() < 6000);
    let err = midi::read_song(&bytes).unwrap_err();
    assert!(
        matches!(&err, MidiError::TooBig(m) if m.contains("song too long")),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("years.mid");
    fs::write(&file, &bytes).unwrap();
    let started = Instant::now();
    let err = midi::encode_file(&file, &EncodeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("song too long"), "{err}");
    let err =
        vgmake_stages::sample::render_midi_file(&file, &tmp.path().join("y.wav")).unwrap_err();
    assert!(err.contains("song too long"), "{err}");
    let err = vgmake_stages::sample::piano_roll_file(&file, &tmp.path().join("y.png")).unwrap_err();
    assert!(err.contains("song too long"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn render_refuses_a_song_longer_than_its_limit() {
    // 100 beats at the slowest tempo MIDI can say (16.8 s a beat): 28 minutes.
    let body = [
        0x00, 0xFF, 0x51, 0x03, 0xFF, 0xFF, 0xFF, // tempo
        0x00, 0x90, 60, 100, 0xCB, 0x00, 0x80, 60, 0, // 9600 ticks
        0x00, 0xFF, 0x2F, 0x00,
    ];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("slow.mid");
    fs::write(&file, smf(&[&body])).unwrap();
    let err =
        vgmake_stages::sample::render_midi_file(&file, &tmp.path().join("s.wav")).unwrap_err();
    assert!(err.contains("longer than the 1200 s"), "{err}");
    assert!(!tmp.path().join("s.wav").exists());
    // The piano roll has no such limit: a long song is drawn narrower.
    vgmake_stages::sample::piano_roll_file(&file, &tmp.path().join("s.png")).unwrap();
}

#[test]
fn metrics_and_piano_rolls_of_generated_songs_of_years_stay_small_and_fast() {
    use vgmake_stages::midi::encoder::{GridNote, MAX_STEP};
    use vgmake_stages::sample::metrics::measure;
    use vgmake_stages::sample::roll::draw;
    use vgmake_stages::sample::score::{BeatNote, Score};
    let started = Instant::now();
    let note = |start, end| GridNote {
        program: 0,
        pitch: 60,
        start,
        end,
        velocity: 100,
    };
    // A note at the start and one at the end of the grid (2^40 steps).
    let m = measure(&[note(0, 16), note(MAX_STEP - 16, MAX_STEP)], 16, true);
    let empty = m.empty_beat_rate.unwrap();
    assert!(empty > 0.999 && empty < 1.0, "{empty}");
    assert!(m.groove_consistency.unwrap() > 0.999);
    let score = Score {
        notes: vec![
            BeatNote {
                start: 0.0,
                end: 1.0,
                program: 0,
                pitch: 60,
                velocity: 100,
            },
            BeatNote {
                start: 1e12,
                end: 1e12 + 1.0,
                program: 0,
                pitch: 64,
                velocity: 100,
            },
        ],
        tempos: vec![],
    };
    let canvas = draw(&score);
    // The plot is at most 1,600 px wide whatever the length.
    assert!(canvas.width < 2000, "{}", canvas.width);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The metrics that used an array per step, as they were: the new ones give
/// the same numbers on ordinary songs.
#[test]
fn empty_beats_and_groove_match_the_array_definitions() {
    use vgmake_stages::midi::encoder::GridNote;
    use vgmake_stages::sample::metrics::{BEATS_PER_BAR, measure};
    fn dense(notes: &[GridNote], spb: u64) -> (f64, Option<f64>) {
        let end = notes.iter().map(|n| n.end).max().unwrap_or(0);
        let beats = end.div_ceil(spb);
        let mut busy = vec![false; beats as usize];
        for n in notes {
            for b in n.start / spb..=((n.end - 1) / spb).min(beats.saturating_sub(1)) {
                busy[b as usize] = true;
            }
        }
        let empty = busy.iter().filter(|&&b| !b).count() as f64 / beats.max(1) as f64;
        let width = (spb * BEATS_PER_BAR) as usize;
        let bars = end.div_ceil(width as u64) as usize;
        let groove = (bars >= 2).then(|| {
            let mut onsets = vec![false; bars * width];
            for n in notes {
                onsets[n.start as usize] = true;
            }
            let distance: usize = (1..bars)
                .map(|b| {
                    (0..width)
                        .filter(|&i| onsets[(b - 1) * width + i] != onsets[b * width + i])
                        .count()
                })
                .sum();
            1.0 - distance as f64 / ((bars - 1) * width) as f64
        });
        (empty, groove)
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for round in 0..300 {
        let spb = [1, 3, 4, 16][round % 4];
        let count = next(40) as usize;
        let notes: Vec<GridNote> = (0..count)
            .map(|_| {
                let start = next(400);
                GridNote {
                    program: next(3) as u8,
                    pitch: 40 + next(40) as u8,
                    start,
                    end: start + 1 + next(40),
                    velocity: 90,
                }
            })
            .collect();
        let m = measure(&notes, spb as u32, true);
        let (empty, groove) = dense(&notes, spb);
        if !notes.is_empty() {
            assert_eq!(m.empty_beat_rate, Some(empty), "round {round}");
        }
        assert_eq!(m.groove_consistency, groove, "round {round}");
    }
}

// ---- Item 9: a training step of terabytes ----

#[test]
fn a_training_step_too_big_for_the_machine_is_refused_before_allocating() {
    let train = kind("train");
    let err = Params::with(train, &[("batch", 4096.into()), ("context", 8192.into())]).unwrap_err();
    assert!(
        err.contains("`batch` = 4096") && err.contains("`context` = 8192") && err.contains("GiB"),
        "{err}"
    );
    Params::with(train, &[]).unwrap();
}
