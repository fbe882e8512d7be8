//! The vgmusic.com source: robots.txt, one listing page per console, then
//! every song, one polite request at a time. Each stored song is memoized,
//! so an interrupted scrape resumes where it stopped; `--refresh`
//! revalidates pages and songs with conditional requests.
//!
//! Output: `<console>/<game>/<file>` for every song that passed its checks,
//! `index.json` (their metadata, sorted by path) and `report.json`.

mod checked_file;
mod consoles;
mod documents;
mod download;
mod http;
mod listing;
mod naming;
mod progress;
mod report;
mod robots;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use url::Url;

use crate::api::*;
use documents::{Document, Origin};
use download::{SongFetcher, SongOutcome};
use http::{FetchError, HttpConfig, PoliteClient};
use report::{ConsoleReport, IndexEntry, Problem, Report};

pub use consoles::CONSOLE_PATHS;
/// Public for the benchmark of the listing parser.
pub use listing::{ListedSong, Listing, parse as parse_listing};

/// One console's page, read.
struct ConsolePage {
    console: String,
    songs: Vec<ListedSong>,
}

/// Checks across the vgmusic parameters, before anything runs.
pub fn validate(params: &Params) -> Result<(), String> {
    consoles::site_root(params.str("base_url"))?;
    if params.str_list("consoles").is_empty() {
        return Err("`consoles` is empty: name at least one console to scrape".into());
    }
    if params.str("user_agent").trim().is_empty() {
        return Err("`user_agent` is empty: the site should know who is asking".into());
    }
    Ok(())
}

pub fn run(ctx: &StageContext) -> Result<(), StageError> {
    let params = ctx.params;
    let root = consoles::site_root(params.str("base_url")).map_err(StageError::Config)?;
    let config = HttpConfig {
        user_agent: params.str("user_agent").to_string(),
        timeout: Duration::from_secs(params.int("timeout_s").max(1) as u64),
        delay: Duration::from_millis(params.int("delay_ms").max(0) as u64),
        retries: params.int("retries").clamp(0, 20) as u32,
        backoff: Duration::from_millis(params.int("backoff_ms").max(0) as u64),
    };
    let mut client = PoliteClient::new(config, ctx.cancel).map_err(StageError::Other)?;
    client.restrict_to(&root);
    let started = Instant::now();

    load_robots(ctx, &mut client, &root)?;

    let mut report = Report {
        source: "vgmusic".into(),
        base_url: root.to_string(),
        ..Report::default()
    };
    let pages = read_pages(ctx, &mut client, &root, &mut report)?;

    let total: u64 = pages.iter().map(|p| p.songs.len() as u64).sum();
    let mut tally = Tally {
        out_dir: ctx.out_dir,
        progress: progress::ScrapeProgress::new(ctx.progress, total),
        report,
        index: Vec::new(),
        from_memo: 0,
    };
    let mut namer = naming::Namer::default();
    for page in &pages {
        let console = page.console.as_str();
        // Names are handed out for every selected song, stored or not, so a
        // song that fails today does not rename the others.
        let names: Vec<String> = page
            .songs
            .iter()
            .map(|s| namer.assign(console, &s.game, &s.url))
            .collect();
        for (i, (song, name)) in page.songs.iter().zip(&names).enumerate() {
            ctx.check_cancelled()?;
            let mut fetcher = SongFetcher {
                client: &mut client,
                memo: ctx.memo,
                temp_dir: ctx.temp_dir,
                refresh: ctx.refresh,
            };
            // `fetch` fails only when cancelled; what it finished stays memoized.
            let outcome = fetcher.fetch(song).map_err(|_| StageError::Cancelled)?;
            tally.record(console, song, name, outcome)?;
            let done = i as u64 + 1;
            tally
                .progress
                .advance(console, done, page.songs.len() as u64);
        }
    }

    let Tally {
        mut index,
        mut report,
        from_memo,
        ..
    } = tally;
    report.downloaded = report.consoles.values().map(|c| c.downloaded).sum();
    index.sort_by(|a, b| a.path.cmp(&b.path));
    write(ctx.out_dir, "index.json", &report::to_json(&index))?;
    write(ctx.out_dir, "report.json", &report::to_json(&report))?;
    log_summary(ctx, &client, &report, from_memo, started.elapsed());
    Ok(())
}

/// What the run has made so far.
struct Tally<'a> {
    out_dir: &'a Path,
    progress: progress::ScrapeProgress<'a>,
    report: Report,
    index: Vec<IndexEntry>,
    from_memo: u64,
}

impl Tally<'_> {
    /// Places a stored song in the output, or reports why there is none.
    fn record(
        &mut self,
        console: &str,
        song: &ListedSong,
        name: &str,
        outcome: SongOutcome,
    ) -> Result<(), StageError> {
        let report = &mut self.report;
        let counts = report.consoles.entry(console.to_string()).or_default();
        let (list, why) = match outcome {
            SongOutcome::Stored {
                path,
                size,
                md5,
                origin,
            } => {
                place(&path, &self.out_dir.join(name))?;
                self.from_memo += u64::from(origin == Origin::Memo);
                counts.downloaded += 1;
                counts.bytes += size;
                self.progress.bytes += size;
                self.index.push(IndexEntry {
                    path: name.to_string(),
                    console: console.to_string(),
                    game: song.game.clone(),
                    title: song.title.clone(),
                    sequencer: song.sequencer.clone(),
                    url: song.url.to_string(),
                    size,
                    md5,
                });
                return Ok(());
            }
            SongOutcome::DeadLink(why) => {
                counts.dead_links += 1;
                (&mut report.dead_links, why)
            }
            SongOutcome::BadFile(why) => {
                counts.bad_files += 1;
                (&mut report.bad_files, why)
            }
            SongOutcome::Failed(why) => {
                counts.failed += 1;
                (&mut report.failed, why)
            }
            SongOutcome::Disallowed(why) => {
                counts.disallowed += 1;
                (&mut report.disallowed, why)
            }
        };
        list.push(Problem::new(console, song, why));
        self.progress.failures += 1;
        Ok(())
    }
}

/// Fetches robots.txt and hands its rules to the client. Missing (4xx):
/// everything allowed; unreachable (5xx, network): nothing allowed, as
/// RFC 9309 asks.
fn load_robots(
    ctx: &StageContext,
    client: &mut PoliteClient,
    root: &Url,
) -> Result<(), StageError> {
    let url = root
        .join("/robots.txt")
        .expect("a root URL joins an absolute path");
    let robots = match documents::fetch(client, ctx.memo, &url, ctx.refresh, true) {
        Ok((Document::Body(text), _)) => {
            robots::Robots::parse(&String::from_utf8_lossy(&text), client.user_agent())
        }
        Ok((Document::Missing(_), _)) => robots::Robots::allow_all(),
        Err(FetchError::Cancelled) => return Err(StageError::Cancelled),
        Err(e) => {
            ctx.progress.log(&format!(
                "{url} could not be fetched: {e}; RFC 9309 then allows nothing on the site"
            ));
            robots::Robots::unreachable(e.to_string())
        }
    };
    client.set_robots(robots);
    Ok(())
}

/// Reads every console page. A page that cannot be read is reported in its
/// console's entry; only when none can be read does the stage fail.
fn read_pages(
    ctx: &StageContext,
    client: &mut PoliteClient,
    root: &Url,
    report: &mut Report,
) -> Result<Vec<ConsolePage>, StageError> {
    let max_files = ctx.params.usize("max_files");
    let mut seen_consoles = HashSet::new();
    let mut pages = Vec::new();
    let mut errors = Vec::new();
    for console in ctx.params.str_list("consoles") {
        if !seen_consoles.insert(console.clone()) {
            continue;
        }
        let mut counts = ConsoleReport::default();
        let Some(url) = consoles::listing_url(root, &console) else {
            return Err(StageError::Config(format!(
                "`consoles`: no listing page known for {console:?}"
            )));
        };
        ctx.progress
            .message(&format!("reading the {console} listing"));
        let page = match documents::fetch(client, ctx.memo, &url, ctx.refresh, false) {
            Ok((Document::Body(html), origin)) => {
                if origin == Origin::Stale {
                    ctx.progress
                        .log(&format!("{url}: unreachable, using the stored copy"));
                }
                Ok(html)
            }
            Ok((Document::Missing(code), _)) => Err(format!("HTTP {code}")),
            Err(FetchError::Cancelled) => return Err(StageError::Cancelled),
            Err(e) => Err(e.to_string()),
        };
        let html = match page {
            Ok(html) => html,
            Err(why) => {
                ctx.progress
                    .log(&format!("cannot read the {console} listing {url}: {why}"));
                errors.push(format!("{console} ({url}): {why}"));
                counts.page_error = Some(why);
                report.consoles.insert(console, counts);
                continue;
            }
        };
        let listing = listing::parse(&String::from_utf8_lossy(&html), &url);
        for problem in &listing.problems {
            report.listing_problems.push(format!("{url}: {problem}"));
        }
        // The same file listed twice is fetched and stored once.
        let mut seen_urls = HashSet::new();
        let unique: Vec<ListedSong> = listing
            .songs
            .into_iter()
            .filter(|s| seen_urls.insert(s.url.clone()))
            .collect();
        counts.listed = unique.len() as u64;
        // Only the site at `base_url` is ever asked: a link elsewhere (a
        // tampered page pointing at an internal address, a `file:` URL) is
        // reported, not fetched.
        let (unique, elsewhere): (Vec<ListedSong>, Vec<ListedSong>) = unique
            .into_iter()
            .partition(|s| off_site(root, &s.url).is_none());
        for song in &elsewhere {
            let why = off_site(root, &song.url).unwrap_or_default();
            ctx.progress.log(&format!("{}: {why}", song.url));
            report.skipped.push(Problem::new(&console, song, why));
        }
        counts.skipped = elsewhere.len() as u64;
        let take = if max_files == 0 {
            unique.len()
        } else {
            max_files
        };
        let songs: Vec<ListedSong> = unique.into_iter().take(take).collect();
        counts.selected = songs.len() as u64;
        report.consoles.insert(console.clone(), counts);
        pages.push(ConsolePage { console, songs });
    }
    if pages.is_empty()
        && let Some(why) = client.robots_unreachable()
    {
        return Err(StageError::Input(format!(
            "{} could not be fetched ({why}); RFC 9309 then allows nothing, so no listing \
             page was requested (is the site reachable? check the network and `base_url`)",
            root.join("/robots.txt")
                .expect("a root URL joins an absolute path")
        )));
    }
    if pages.is_empty() {
        return Err(StageError::Input(format!(
            "no vgmusic listing page could be read: {}",
            errors.join("; ")
        )));
    }
    Ok(pages)
}

/// Why `url` is not fetched, when it is not on the site at `root` (same
/// scheme, host and port).
fn off_site(root: &Url, url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "a `{}:` link is never fetched: only links to {} are",
            url.scheme(),
            root.origin().ascii_serialization()
        ));
    }
    (url.origin() != root.origin()).then(|| {
        format!(
            "a link to another site ({}) is never fetched: only links to {} are",
            url.origin().ascii_serialization(),
            root.origin().ascii_serialization()
        )
    })
}

/// Puts the memo's copy at `dest`: a hard link where possible (no copy of
/// the bytes), else a copy.
fn place(stored: &Path, dest: &Path) -> Result<(), StageError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    if fs::hard_link(stored, dest).is_ok() {
        return Ok(());
    }
    fs::copy(stored, dest)
        .map(|_| ())
        .ctx(|| format!("copying {} to {}", stored.display(), dest.display()))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StageError> {
    let path = dir.join(name);
    fs::write(&path, bytes).ctx(|| format!("writing {}", path.display()))
}

/// Run-to-run numbers (retries, requests, revalidations) go to the log, not
/// the output.
fn log_summary(
    ctx: &StageContext,
    client: &PoliteClient,
    report: &Report,
    from_memo: u64,
    elapsed: Duration,
) {
    let stats = &client.stats;
    ctx.progress.log(&format!(
        "vgmusic: {} songs stored ({} from the memo), {} dead links, {} bad files, \
         {} failed, {} disallowed; {} requests, {} retries, {} not modified, {} downloaded \
         in {:.1} s",
        report.downloaded,
        from_memo,
        report.dead_links.len(),
        report.bad_files.len(),
        report.failed.len(),
        report.disallowed.len(),
        stats.requests,
        stats.retries,
        stats.not_modified,
        progress::human_bytes(stats.bytes),
        elapsed.as_secs_f64()
    ));
    for problem in report
        .dead_links
        .iter()
        .chain(&report.bad_files)
        .chain(&report.failed)
    {
        ctx.progress.log(&format!(
            "{} ({}): {}",
            problem.url, problem.console, problem.reason
        ));
    }
}
