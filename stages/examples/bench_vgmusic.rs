//! Benchmarks of the vgmusic source on the full 2021 listing (15,430 songs):
//!
//! 1. parsing the full-size SNES page (6,705 songs), median of 15 runs;
//! 2. scraping the whole imitation site from loopback with `delay_ms = 0`
//!    (the site runs in a child process so that the peak RSS measured here,
//!    VmHWM, is the scraper's alone), then the same scrape again, all from
//!    the memo.
//!
//! `cargo run --release -p vgmake-stages --example bench_vgmusic`
//! Needs `shared/vgmusic/index-2021.jsonl.gz` (`$VGMAKE_SHARED`, or found
//! beside the checkout); skips with a message without it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{NoProgress, Value};
use vgmake_stages::scrape::ScrapeKind;
use vgmake_stages::scrape::vgmusic::parse_listing;
use vgmake_testsite::{Site, SiteConfig, SongSpec};

fn listing_file() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut candidates: Vec<PathBuf> = std::env::var_os("VGMAKE_SHARED")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(manifest.join("../../shared"));
    candidates
        .into_iter()
        .map(|dir| dir.join("vgmusic/index-2021.jsonl.gz"))
        .find(|p| p.is_file())
}

fn load_songs(path: &PathBuf) -> Vec<SongSpec> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open the listing"))
        .read_to_string(&mut text)
        .expect("read the listing");
    SongSpec::parse_jsonl(&text)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system) of this process so far, in ms (10 ms ticks):
/// less disturbed than wall time by other processes on a shared machine.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) * 10.0
}

fn main() {
    let Some(path) = listing_file() else {
        eprintln!(
            "bench_vgmusic: skipped: shared/vgmusic/index-2021.jsonl.gz not found \
             (set VGMAKE_SHARED to the shared folder)"
        );
        return;
    };
    let songs = load_songs(&path);
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        serve(songs);
        return;
    }
    println!("listing: {} songs from {}", songs.len(), path.display());
    bench_parse(&songs);
    bench_scrape();
}

/// Child mode: serve the full site until stdin closes.
fn serve(songs: Vec<SongSpec>) {
    let site = Site::start(SiteConfig {
        songs,
        robots_txt: Some("User-agent: *\nDisallow: /cgi-bin/\n".into()),
        omit_end_tags: true,
        ..SiteConfig::default()
    });
    println!("{}", site.url());
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn bench_parse(songs: &[SongSpec]) {
    let snes: Vec<&SongSpec> = songs.iter().filter(|s| s.console == "snes").collect();
    let page = url::Url::parse("https://www.vgmusic.com/music/console/nintendo/snes/").unwrap();
    for omit_end_tags in [false, true] {
        let html = vgmake_testsite::listing_html("snes", &snes, false, omit_end_tags);
        let mut times = Vec::new();
        let mut found = 0;
        let cpu_start = cpu_ms();
        for _ in 0..15 {
            let start = Instant::now();
            let listing = parse_listing(&html, &page);
            times.push(start.elapsed());
            found = listing.songs.len();
        }
        let cpu_per_parse = (cpu_ms() - cpu_start) / 15.0;
        assert_eq!(found, snes.len(), "every SNES song parsed");
        let tags = if omit_end_tags { "without" } else { "with" };
        println!(
            "parse SNES page ({tags} </td></tr>): {} songs, {:.2} MB: median {:.1} ms of 15 runs \
             (min {:.1}, max {:.1}; CPU {cpu_per_parse:.1} ms a parse)",
            found,
            html.len() as f64 / 1e6,
            median(times.clone()).as_secs_f64() * 1e3,
            times.iter().min().unwrap().as_secs_f64() * 1e3,
            times.iter().max().unwrap().as_secs_f64() * 1e3,
        );
    }
}

fn bench_scrape() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the imitation site");
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .expect("the site's URL");
    let url = url.trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let overrides: Vec<(&str, Value)> = vec![
        ("source", "vgmusic".into()),
        ("base_url", url.clone().into()),
        ("delay_ms", 0.into()),
        ("retries", 2.into()),
        ("timeout_s", 30.into()),
    ];
    for (label, out) in [
        ("scrape (network)", "out1"),
        ("rerun (all from memo)", "out2"),
    ] {
        let out = work.path().join(out);
        let start = Instant::now();
        let cpu_start = cpu_ms();
        run_standalone(
            &ScrapeKind,
            &overrides,
            &[],
            &out,
            work.path(),
            &vgmake_stages::data::default_dir(),
            &NoProgress,
        )
        .expect("the scrape runs");
        let secs = start.elapsed().as_secs_f64();
        let cpu_s = (cpu_ms() - cpu_start) / 1e3;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let files = index.as_array().unwrap().len();
        let bytes: u64 = index
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["size"].as_u64().unwrap())
            .sum();
        println!(
            "{label}: {files} files, {:.1} MB in {secs:.1} s = {:.0} files/s (scraper CPU {cpu_s:.1} s); \
             peak RSS so far {:.1} MB",
            bytes as f64 / 1e6,
            files as f64 / secs,
            peak_rss_mb()
        );
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
