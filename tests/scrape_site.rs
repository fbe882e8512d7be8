//! The vgmusic scraper through the real binary, against an imitation of
//! the site on 127.0.0.1: a `kill -9` half-way loses nothing and downloads
//! nothing twice; a later build makes no request; a refresh that finds
//! nothing new cuts the rebuild off below scrape.

mod support;

use std::time::{Duration, Instant};

use support::Project;
use vgmake_testsite::{Site, SiteConfig};

fn site() -> Site {
    let songs = vgmake_testsite::sample_songs();
    Site::start(SiteConfig {
        songs,
        robots_txt: Some("User-agent: *\nAllow: /\n".into()),
        ..Default::default()
    })
}

fn song_requests(site: &Site) -> Vec<(String, usize)> {
    site.requests_per_path()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".mid"))
        .collect()
}

#[test]
fn killed_scrape_resumes_without_downloading_twice_and_refresh_cuts_off() {
    let site = site();
    let p = Project::new(&format!(
        r#"
[stages.scrape]
source = "vgmusic"
base_url = "{}"
delay_ms = 25
timeout_s = 5
retries = 1
backoff_ms = 10

[stages.encode]
deps = ["scrape"]
"#,
        site.url()
    ));
    let listed = vgmake_testsite::sample_songs().len();

    // Start, let about a third of the songs arrive, then kill -9 the whole build.
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut cmd = p.command(&["build"]);
        cmd.process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while song_requests(&site).len() < listed / 3 {
        assert!(Instant::now() < deadline, "the scrape never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    let before_resume = song_requests(&site).len();
    assert!(
        before_resume < listed,
        "the scrape finished before the kill"
    );

    let resumed = p.build(&[]);
    assert_eq!(resumed.with_status("ran"), ["encode", "scrape"]);
    let requests = song_requests(&site);
    assert_eq!(requests.len(), listed, "every song fetched");
    // Finished downloads are never fetched again. The scraper makes one
    // request at a time per host, so at most the one in flight when the
    // kill landed (requested, not yet stored) is fetched a second time.
    let twice: Vec<_> = requests.iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| *n == 2),
        "songs downloaded again after the kill: {twice:?}"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.out("default", "scrape").join("report.json")).unwrap(),
    )
    .unwrap();
    let downloaded: u64 = report["consoles"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["downloaded"].as_u64().unwrap())
        .sum();
    assert_eq!(downloaded as usize, listed, "{report}");
    assert_eq!(p.run(&["verify"]).code, 0);

    // Same parameters: not a single request.
    let total = site.total_requests();
    assert!(p.build(&[]).with_status("ran").is_empty());
    assert_eq!(site.total_requests(), total);

    // A refresh revalidates everything; nothing changed, so encode is cut off.
    let refreshed = p.build(&["--refresh", "scrape"]);
    assert_eq!(refreshed.with_status("ran"), ["scrape"]);
    assert_eq!(refreshed.with_status("cutoff"), ["encode"]);
    assert!(
        site.seen().iter().any(|s| s.if_none_match.is_some()),
        "the refresh sent conditional requests"
    );
}
