//! The vgmusic source against an imitation of the site on 127.0.0.1: real
//! titles and file names (a 64-song sample of the 2021 listing), generated
//! MIDI bodies, and faults on chosen URLs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use vgmake_engine::standalone::Standalone;
use vgmake_stages::api::{Progress, StageError, Value};
use vgmake_stages::scrape::ScrapeKind;
use vgmake_testsite::{Fault, Site, SiteConfig, SongSpec};

fn sample_songs() -> Vec<SongSpec> {
    vgmake_testsite::sample_songs()
}

/// Cancels the run after `cancel_after` finished songs (0 = never).
struct CancelAfter {
    cancel: Arc<AtomicBool>,
    cancel_after: u64,
    done: AtomicU64,
}

impl Progress for CancelAfter {
    fn set_total(&self, _: u64) {}
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        if self.cancel_after > 0 && done >= self.cancel_after {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
    fn message(&self, _: &str) {}
    fn log(&self, _: &str) {}
}

/// One scrape run with a memo under `work` kept across runs.
struct Run<'a> {
    site: &'a Site,
    work: &'a Path,
    refresh: bool,
    cancel_after: u64,
    overrides: Vec<(&'static str, Value)>,
}

impl<'a> Run<'a> {
    fn new(site: &'a Site, work: &'a Path) -> Self {
        Run {
            site,
            work,
            refresh: false,
            cancel_after: 0,
            overrides: Vec::new(),
        }
    }

    fn go(&self, out: &Path) -> Result<(), StageError> {
        let mut overrides: Vec<(&str, Value)> = vec![
            ("source", "vgmusic".into()),
            ("base_url", self.site.url().into()),
            ("delay_ms", 0.into()),
            ("timeout_s", 1.into()),
            ("retries", 2.into()),
            ("backoff_ms", 10.into()),
        ];
        overrides.extend(self.overrides.iter().cloned());
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = CancelAfter {
            cancel: cancel.clone(),
            cancel_after: self.cancel_after,
            done: AtomicU64::new(0),
        };
        Standalone {
            kind: &ScrapeKind,
            overrides: &overrides,
            inputs: &[],
            out_dir: out,
            work_dir: self.work,
            data_dir: self.work,
            progress: &progress,
            cancel: &cancel,
            refresh: self.refresh,
            threads: 1,
        }
        .run()
        .map(|_| ())
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` (relative path -> bytes).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn problem_urls(report: &serde_json::Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn faults_are_reported_and_every_good_song_is_stored_once() {
    let songs = sample_songs();
    let path = |console: &str, file: &str| Site::song_path(console, file);
    // Songs that get a fault, by console and file.
    let dead_404 = path("nes", "freddy%21.mid");
    let dead_403 = path(
        "nes",
        &songs
            .iter()
            .filter(|s| s.console == "nes")
            .nth(1)
            .unwrap()
            .file,
    );
    let disallowed = path("nes", "wakeup%21%21.mid");
    let snes: Vec<&SongSpec> = songs.iter().filter(|s| s.console == "snes").collect();
    let flaky_500 = path("snes", &snes[0].file);
    let busy_503 = path("snes", &snes[1].file);
    let gameboy: Vec<&SongSpec> = songs.iter().filter(|s| s.console == "gameboy").collect();
    let stalled = path("gameboy", &gameboy[0].file);
    let truncated = path("gameboy", &gameboy[1].file);
    let genesis: Vec<&SongSpec> = songs.iter().filter(|s| s.console == "genesis").collect();
    let html = path("genesis", &genesis[0].file);
    let moved = path("genesis", &genesis[1].file);
    let off_site = path("genesis", &genesis[2].file);
    let wrong_body = path("snes", &snes[2].file);
    let looping = path("snes", &snes[3].file);

    let mut faults = BTreeMap::new();
    faults.insert(dead_404.clone(), Fault::Status(404));
    faults.insert(dead_403.clone(), Fault::Status(403));
    faults.insert(
        flaky_500.clone(),
        Fault::FailTimes {
            status: 500,
            times: 1,
            retry_after: None,
        },
    );
    faults.insert(
        busy_503.clone(),
        Fault::FailTimes {
            status: 503,
            times: 1,
            retry_after: Some(1),
        },
    );
    faults.insert(
        stalled.clone(),
        Fault::Stall {
            times: 1,
            hold: Duration::from_secs(3),
        },
    );
    faults.insert(truncated.clone(), Fault::Truncate);
    faults.insert(html.clone(), Fault::HtmlAsMidi);
    faults.insert(
        moved.clone(),
        Fault::Redirect("/music/console/sega/genesis/moved/x.mid".into()),
    );
    faults.insert(
        off_site.clone(),
        Fault::Redirect("http://elsewhere.invalid/x.mid".into()),
    );
    faults.insert(wrong_body.clone(), Fault::WrongBody);
    faults.insert(looping.clone(), Fault::Redirect("/loop".into()));
    faults.insert("/loop".into(), Fault::Redirect(looping.clone()));
    let site = Site::start(SiteConfig {
        songs: songs.clone(),
        robots_txt: Some(format!(
            "User-agent: *\nDisallow: /music/console/nec/\nDisallow: {disallowed}\n"
        )),
        faults,
        new_layout: ["snes".to_string(), "genesis".to_string()].into(),
        omit_end_tags: true,
    });
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    Run::new(&site, work.path()).go(&out).unwrap();

    let report = read_json(&out.join("report.json"));
    let index = read_json(&out.join("index.json"));
    let count = |console: &str| songs.iter().filter(|s| s.console == console).count() as u64;
    let c = &report["consoles"];
    // nes: one 404, one 403, one disallowed by robots.txt.
    assert_eq!(c["nes"]["listed"], count("nes"));
    assert_eq!(c["nes"]["dead_links"], 2);
    assert_eq!(c["nes"]["disallowed"], 1);
    assert_eq!(c["nes"]["downloaded"], count("nes") - 3);
    // snes: the 500 and the 503 succeed on retry; the wrong body is refused;
    // a redirect loop is cut after 5 redirects.
    assert_eq!(c["snes"]["downloaded"], count("snes") - 2);
    assert_eq!(c["snes"]["bad_files"], 1);
    assert_eq!(c["snes"]["dead_links"], 1);
    // gameboy: the stalled song succeeds on retry, the truncated one fails.
    assert_eq!(c["gameboy"]["downloaded"], count("gameboy") - 1);
    assert_eq!(c["gameboy"]["failed"], 1);
    // genesis: the HTML page is refused, the same-host redirect is followed,
    // the off-site one is a dead link.
    assert_eq!(c["genesis"]["downloaded"], count("genesis") - 2);
    assert_eq!(c["genesis"]["bad_files"], 1);
    assert_eq!(c["genesis"]["dead_links"], 1);
    // tg16: the whole folder is disallowed, so its page is never fetched.
    assert_eq!(c["tg16"]["downloaded"], 0);
    assert!(
        c["tg16"]["page_error"]
            .as_str()
            .unwrap()
            .contains("robots.txt")
    );
    assert!(
        site.seen()
            .iter()
            .all(|s| !s.path.starts_with("/music/console/nec/"))
    );
    assert_eq!(site.requests(&disallowed), 0);

    let url = |p: &str| format!("{}{}", site.url().trim_end_matches('/'), p);
    let dead = problem_urls(&report, "dead_links");
    assert!(dead.contains(&url(&dead_404)) && dead.contains(&url(&dead_403)));
    assert!(dead.contains(&url(&off_site)) && dead.contains(&url(&looping)));
    assert_eq!(
        site.requests(&looping) + site.requests("/loop"),
        6,
        "1 + 5 redirects"
    );
    let bad = problem_urls(&report, "bad_files");
    assert!(bad.contains(&url(&html)) && bad.contains(&url(&wrong_body)));
    let reasons: Vec<&str> = report["bad_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a MIDI file")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("md5 mismatch")),
        "{reasons:?}"
    );
    assert_eq!(problem_urls(&report, "failed"), vec![url(&truncated)]);
    let why = report["failed"][0]["reason"].as_str().unwrap();
    assert!(why.contains("gave up after 3 tries"), "{why}");

    // Dead links are asked once; retried faults as often as they need.
    assert_eq!(site.requests(&dead_404), 1);
    assert_eq!(site.requests(&dead_403), 1);
    assert_eq!(site.requests(&flaky_500), 2);
    assert_eq!(site.requests(&busy_503), 2);
    assert_eq!(site.requests(&stalled), 2);
    assert_eq!(site.requests(&truncated), 3, "1 try + 2 retries");
    assert_eq!(site.requests("/music/console/sega/genesis/moved/x.mid"), 1);
    // Retry-After: 1 was honoured.
    let seen = site.seen();
    let times: Vec<_> = seen
        .iter()
        .filter(|s| s.path == busy_503)
        .map(|s| s.at)
        .collect();
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "{:?}",
        times[1] - times[0]
    );
    assert!(
        seen.iter()
            .all(|s| s.user_agent.as_deref().unwrap_or("").starts_with("vgmake/"))
    );

    // Every stored file is the site's body, named as index.json says; every
    // good song was fetched exactly once.
    let entries = index.as_array().unwrap();
    let stored = tree(&out);
    assert_eq!(
        entries.len() + 2,
        stored.len(),
        "songs + index.json + report.json"
    );
    let mut paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let sorted = {
        let mut p = paths.clone();
        p.sort();
        p
    };
    assert_eq!(paths, sorted, "index.json is sorted by path");
    for entry in entries {
        let console = entry["console"].as_str().unwrap();
        let href = entry["url"].as_str().unwrap().rsplit('/').next().unwrap();
        let body = site.body(console, href);
        assert_eq!(stored[Path::new(entry["path"].as_str().unwrap())], body);
        assert_eq!(entry["size"], body.len());
        let request_path = Site::song_path(console, href);
        if !site_faulted(&request_path, &[&flaky_500, &busy_503, &stalled]) {
            assert_eq!(site.requests(&request_path), 1, "{request_path}");
        }
    }
    // Real names: a case collision keeps both, a percent-encoded name is decoded.
    paths.retain(|p| p.starts_with("genesis/Shining_Force_2/"));
    assert_eq!(
        paths,
        vec![
            "genesis/Shining_Force_2/ShF2-Castle~2.mid",
            "genesis/Shining_Force_2/shf2-castle.mid"
        ]
    );
    let ballad = entries
        .iter()
        .find(|e| {
            e["url"]
                .as_str()
                .unwrap()
                .ends_with("AandCForever_%28Ballad%29_V1-1.mid")
        })
        .unwrap();
    assert_eq!(
        ballad["path"],
        "snes/Breath_of_Fire/AandCForever_(Ballad)_V1-1.mid"
    );
    assert_eq!(ballad["title"], "Alan and Cerl Forever (3) (v1.1)");
    let pokemon = entries
        .iter()
        .find(|e| e["game"] == "Pokémon (Gold, Silver)")
        .unwrap();
    assert_eq!(
        pokemon["path"],
        "gameboy/Pok_mon_(Gold_Silver)/pkgsc_azalea.mid"
    );
    assert_eq!(pokemon["sequencer"], "Katsumi No");
}

fn site_faulted(path: &str, faulted: &[&String]) -> bool {
    faulted.iter().any(|f| f.as_str() == path)
}

#[test]
fn a_cancelled_scrape_resumes_without_fetching_anything_twice() {
    let songs = sample_songs();
    let site = Site::start(SiteConfig {
        songs: songs.clone(),
        robots_txt: None,
        ..SiteConfig::default()
    });
    let work = tempfile::tempdir().unwrap();
    let mut run = Run::new(&site, work.path());
    run.cancel_after = 25;
    let first = run.go(&work.path().join("out1"));
    assert!(matches!(first, Err(StageError::Cancelled)), "{first:?}");
    let fetched_before = site.total_requests();
    assert!(
        fetched_before < songs.len(),
        "stopped half-way: {fetched_before}"
    );

    run.cancel_after = 0;
    let out = work.path().join("out2");
    run.go(&out).unwrap();
    for (path, n) in site.requests_per_path() {
        assert_eq!(n, 1, "{path} requested {n} times");
    }
    // robots.txt (404), 5 pages, every song.
    assert_eq!(site.total_requests(), 1 + 5 + songs.len());
    let index = read_json(&out.join("index.json"));
    assert_eq!(index.as_array().unwrap().len(), songs.len());

    // Unchanged parameters, no refresh: nothing to fetch at all.
    run.go(&work.path().join("out3")).unwrap();
    assert_eq!(site.total_requests(), 1 + 5 + songs.len());
    assert_eq!(tree(&out), tree(&work.path().join("out3")));
}

#[test]
fn a_refresh_revalidates_and_leaves_the_output_byte_identical() {
    let songs = sample_songs();
    let site = Site::start(SiteConfig {
        songs: songs.clone(),
        robots_txt: Some("User-agent: *\nDisallow: /cgi-bin/\n".into()),
        ..SiteConfig::default()
    });
    let work = tempfile::tempdir().unwrap();
    let mut run = Run::new(&site, work.path());
    let first = work.path().join("first");
    run.go(&first).unwrap();
    let after_first = site.total_requests();

    run.refresh = true;
    let second = work.path().join("second");
    run.go(&second).unwrap();
    assert_eq!(tree(&first), tree(&second));
    let revalidations: Vec<_> = site.seen().into_iter().skip(after_first).collect();
    assert_eq!(
        revalidations.len(),
        after_first,
        "every page and song asked again"
    );
    // Pages and songs carry their ETag (robots.txt too).
    assert!(
        revalidations.iter().all(|s| s.if_none_match.is_some()),
        "{revalidations:?}"
    );
}

#[test]
fn max_files_takes_the_first_songs_per_console_with_the_delay_between_requests() {
    let songs = sample_songs();
    let site = Site::start(SiteConfig {
        songs: songs.clone(),
        ..SiteConfig::default()
    });
    let work = tempfile::tempdir().unwrap();
    let mut run = Run::new(&site, work.path());
    run.overrides = vec![
        ("max_files", 2.into()),
        ("delay_ms", 60.into()),
        ("consoles", Value::Array(vec!["tg16".into(), "nes".into()])),
    ];
    let out = work.path().join("out");
    run.go(&out).unwrap();
    let index = read_json(&out.join("index.json"));
    let mut got: Vec<String> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = ["tg16", "nes"]
        .iter()
        .flat_map(|c| songs.iter().filter(move |s| s.console == *c).take(2))
        .map(|s| s.file.clone())
        .collect();
    want.sort();
    assert_eq!(got, want);
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["consoles"]["nes"]["selected"], 2);
    assert!(report["consoles"].get("snes").is_none());
    let seen = site.seen();
    assert_eq!(seen.len(), 1 + 2 + 4);
    for pair in seen.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(55),
            "{pair:?}"
        );
    }
}

#[test]
fn the_stage_fails_only_when_no_listing_page_can_be_read() {
    let site = Site::start(SiteConfig::default());
    let work = tempfile::tempdir().unwrap();
    let err = Run::new(&site, work.path())
        .go(&work.path().join("out"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no vgmusic listing page could be read"),
        "{msg}"
    );
    assert!(msg.contains("HTTP 404"), "{msg}");

    // An unreachable robots.txt (5xx) forbids the whole site.
    let mut faults = BTreeMap::new();
    faults.insert("/robots.txt".to_string(), Fault::Status(503));
    let site = Site::start(SiteConfig {
        songs: sample_songs(),
        faults,
        ..SiteConfig::default()
    });
    let work = tempfile::tempdir().unwrap();
    let err = Run::new(&site, work.path())
        .go(&work.path().join("out"))
        .unwrap_err();
    assert!(err.to_string().contains("robots.txt"), "{err}");
    assert_eq!(
        site.total_requests(),
        3,
        "robots.txt: 1 try + 2 retries, no page"
    );
}

#[test]
fn a_refresh_fetches_only_what_changed_on_the_site() {
    let mut songs = sample_songs();
    songs.retain(|s| s.console == "nes" || s.console == "tg16");
    let config = |songs: Vec<SongSpec>| SiteConfig {
        songs,
        ..SiteConfig::default()
    };
    let site = Site::start(config(songs.clone()));
    let work = tempfile::tempdir().unwrap();
    let mut run = Run::new(&site, work.path());
    run.overrides = vec![("consoles", Value::Array(vec!["nes".into(), "tg16".into()]))];
    let first = work.path().join("first");
    run.go(&first).unwrap();

    // One song re-sequenced (new body, new MD5 on the page), one song added.
    let changed = songs[3].clone();
    songs[3].revision = 1;
    let added = SongSpec {
        file: "Brand_New_%28Remix%29.mid".into(),
        title: "Brand New (Remix)".into(),
        ..songs[4].clone()
    };
    songs.insert(5, added.clone());
    site.update(config(songs.clone()));
    let before = site.total_requests();
    run.refresh = true;
    let second = work.path().join("second");
    run.go(&second).unwrap();

    let new_requests: Vec<_> = site.seen().into_iter().skip(before).collect();
    let fetched_whole: Vec<&str> = new_requests
        .iter()
        .filter(|s| s.if_none_match.is_none())
        .map(|s| s.path.as_str())
        .collect();
    // robots.txt is missing (404: nothing to revalidate); the pages changed.
    let changed_path = Site::song_path(&changed.console, &changed.file);
    let added_path = Site::song_path(&added.console, &added.file);
    assert_eq!(
        fetched_whole,
        vec!["/robots.txt", changed_path.as_str(), added_path.as_str()]
    );
    assert_eq!(new_requests.len(), 1 + 2 + songs.len());

    let index = read_json(&second.join("index.json"));
    let entries = index.as_array().unwrap();
    assert_eq!(entries.len(), songs.len());
    for entry in entries {
        let console = entry["console"].as_str().unwrap();
        let href = entry["url"].as_str().unwrap().rsplit('/').next().unwrap();
        let stored = fs::read(second.join(entry["path"].as_str().unwrap())).unwrap();
        assert_eq!(stored, site.body(console, href));
    }
    let changed_entry = entries
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with(&changed.file))
        .unwrap();
    let name = changed_entry["path"].as_str().unwrap();
    assert_ne!(
        fs::read(first.join(name)).unwrap(),
        fs::read(second.join(name)).unwrap()
    );
}
