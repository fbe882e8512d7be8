//! An imitation of vgmusic.com on 127.0.0.1 for tests and benchmarks:
//! robots.txt, one listing page per console (the site's real layout, both
//! game-header styles, optionally without end tags), a generated MIDI body
//! per song whose MD5 and size the page lists, ETag / Last-Modified with
//! 304 answers, and faults injected per path. Counts every request.
//!
//! A dev-dependency of the stages crate (the scraper's own tests) and of
//! the binary (the scraper through the engine).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

/// One song of the listing (the fields of index-2021.jsonl).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SongSpec {
    pub console: String,
    pub game: String,
    pub title: String,
    pub author: String,
    /// The href on the page: relative, percent-encoded.
    pub file: String,
    /// Bump to serve a different body (and list its new MD5 and size).
    pub revision: u32,
}

impl SongSpec {
    /// Parses lines of `index-2021.jsonl` (other fields are ignored).
    pub fn parse_jsonl(text: &str) -> Vec<SongSpec> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
                SongSpec {
                    console: s("console"),
                    game: s("game"),
                    title: s("title"),
                    author: s("author"),
                    file: s("file"),
                    revision: 0,
                }
            })
            .collect()
    }
}

/// What to do instead of serving a path normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Always answer with this status (404, 403: dead links).
    Status(u16),
    /// Answer `status` (with `Retry-After: retry_after` when given) the
    /// first `times` requests, then serve normally.
    FailTimes {
        status: u16,
        times: u32,
        retry_after: Option<u64>,
    },
    /// Hold the first `times` requests for `hold` before answering.
    Stall { times: u32, hold: Duration },
    /// Announce the full length, send half the body, close.
    Truncate,
    /// 200 `audio/midi` with an HTML error page as the body.
    HtmlAsMidi,
    /// 302 to this location (a path on this server or an absolute URL);
    /// a path target serves the redirected song's body.
    Redirect(String),
    /// Serve the listed size, but one byte differs from what the MD5 names.
    WrongBody,
}

#[derive(Debug, Clone, Default)]
pub struct SiteConfig {
    pub songs: Vec<SongSpec>,
    /// `None`: robots.txt answers 404.
    pub robots_txt: Option<String>,
    /// Request path (e.g. `/music/console/nintendo/nes/a.mid`) -> fault.
    pub faults: BTreeMap<String, Fault>,
    /// Consoles whose page uses the newer `tr.gameheader` layout.
    pub new_layout: BTreeSet<String>,
    /// Leave out `</td>` and `</tr>` in song rows, as the site often does.
    pub omit_end_tags: bool,
}

/// The console -> listing path table of the real site.
pub const CONSOLE_PATHS: &[(&str, &str)] = &[
    ("nes", "/music/console/nintendo/nes/"),
    ("snes", "/music/console/nintendo/snes/"),
    ("gameboy", "/music/console/nintendo/gameboy/"),
    ("tg16", "/music/console/nec/tg16/"),
    ("genesis", "/music/console/sega/genesis/"),
];

pub fn console_path(console: &str) -> &'static str {
    CONSOLE_PATHS
        .iter()
        .find(|(c, _)| *c == console)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("unknown console {console}"))
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub at: Instant,
    pub if_none_match: Option<String>,
    pub user_agent: Option<String>,
}

struct Resource {
    body: Vec<u8>,
    content_type: &'static str,
    etag: String,
}

/// What the site serves; replaced whole by [`Site::update`].
struct Content {
    resources: HashMap<String, Resource>,
    faults: BTreeMap<String, Fault>,
    bodies: BTreeMap<(String, String), Vec<u8>>,
}

struct State {
    content: RwLock<Arc<Content>>,
    /// Requests per path, for FailTimes / Stall.
    hits: Mutex<HashMap<String, u32>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct Site {
    url: String,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const LAST_MODIFIED: &str = "Sat, 03 Jul 2021 10:00:00 GMT";

impl Site {
    /// Starts the site on a free port of 127.0.0.1.
    pub fn start(config: SiteConfig) -> Site {
        let state = Arc::new(State {
            content: RwLock::new(Arc::new(build(config))),
            hits: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(request)) => {
                            let state = state.clone();
                            // A thread per request: a stalled answer must not
                            // hold up the client's next connection.
                            std::thread::spawn(move || serve(&state, request));
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Site {
            url: format!("http://127.0.0.1:{port}/"),
            state,
            server,
            stop,
            thread: Some(thread),
        }
    }

    /// The site root, with a trailing slash: the scrape's `base_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request path of a song file.
    pub fn song_path(console: &str, file: &str) -> String {
        format!("{}{file}", console_path(console))
    }

    /// Requests seen for `path` so far.
    pub fn requests(&self, path: &str) -> usize {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests per path so far.
    pub fn requests_per_path(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in self.state.seen.lock().unwrap().iter() {
            *counts.entry(s.path.clone()).or_default() += 1;
        }
        counts
    }

    pub fn total_requests(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The body the site serves for a song (what a good download stores).
    pub fn body(&self, console: &str, file: &str) -> Vec<u8> {
        let content = self.state.content.read().unwrap().clone();
        content.bodies[&(console.to_string(), file.to_string())].clone()
    }

    /// Serves `config` from now on (a changed site); the request log and
    /// the fault counters carry on.
    pub fn update(&self, config: SiteConfig) {
        *self.state.content.write().unwrap() = Arc::new(build(config));
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A small, valid, deterministic MIDI file for a song: header, one track of
/// notes whose count and pitches come from a hash of the song's name.
pub fn midi_body(console: &str, file: &str, revision: u32) -> Vec<u8> {
    let seed = blake3::hash(format!("{console}/{file}#{revision}").as_bytes());
    let seed = seed.as_bytes();
    let notes = 20 + (u16::from_le_bytes([seed[0], seed[1]]) % 400) as usize;
    let mut track = Vec::new();
    for i in 0..notes {
        let pitch = 36 + seed[(i % 30) + 2] % 48;
        track.extend_from_slice(&[0x00, 0x90, pitch, 0x64]);
        track.extend_from_slice(&[0x60, 0x80, pitch, 0x00]);
    }
    track.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    let mut body = b"MThd\0\0\0\x06\0\0\0\x01\0\x60MTrk".to_vec();
    body.extend_from_slice(&(track.len() as u32).to_be_bytes());
    body.extend_from_slice(&track);
    body
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The listing page of `console` holding `songs` (in page order), with the
/// sizes and MD5s of their [`midi_body`].
pub fn listing_html(
    console: &str,
    songs: &[&SongSpec],
    new_layout: bool,
    omit_end_tags: bool,
) -> String {
    let mut html = String::from(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n\
         <html><head><meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n\
         <title>VGMusic - Imitation</title></head><body>\n<table width=\"100%\">\n\
         <tr><th class=\"header\">Song Title</th><th class=\"header\">File Size</th>\
         <th class=\"header\">Sequenced By</th><th class=\"header\">Comments</th></tr>\n\
         <tr><td colspan=\"4\"></td></tr>\n",
    );
    let (td_end, tr_end) = if omit_end_tags {
        ("", "")
    } else {
        ("</td>", "</tr>")
    };
    let mut game = None;
    for song in songs {
        let body = midi_body(console, &song.file, song.revision);
        if game != Some(&song.game) {
            game = Some(&song.game);
            let anchor: String = song
                .game
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            html.push_str("<tr><td colspan=\"4\"></td></tr>\n");
            let (row_class, colspan) = if new_layout {
                ("gameheader", 5)
            } else {
                ("header", 4)
            };
            html.push_str(&format!(
                "<tr class=\"{row_class}\"><td class=\"header\" colspan=\"{colspan}\"><a name=\"{anchor}\">{}</a></td></tr>\n",
                escape(&song.game)
            ));
        }
        html.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a>{td_end}<td align=\"right\">{}  bytes{td_end}\
             <td align=\"center\">{}{td_end}<td class=\"comments\" align=\"center\">\
             <a href=\"/file/{}.html\">Comments</a>{td_end}{tr_end}\n",
            escape(&song.file),
            escape(&song.title),
            body.len(),
            escape(&song.author),
            md5_hex(&body)
        ));
    }
    html.push_str("</table><address>imitation</address></body></html>\n");
    html
}

fn build(config: SiteConfig) -> Content {
    let mut resources = HashMap::new();
    let mut bodies = BTreeMap::new();
    let mut by_console: BTreeMap<&str, Vec<&SongSpec>> = BTreeMap::new();
    for song in &config.songs {
        by_console
            .entry(song.console.as_str())
            .or_default()
            .push(song);
    }
    for (console, songs) in &by_console {
        let new_layout = config.new_layout.contains(*console);
        let html = listing_html(console, songs, new_layout, config.omit_end_tags);
        for song in songs {
            let body = midi_body(console, &song.file, song.revision);
            let path = format!("{}{}", console_path(console), song.file);
            resources.insert(
                path,
                Resource {
                    etag: format!("\"{}\"", &md5_hex(&body)[..16]),
                    body: body.clone(),
                    content_type: "audio/midi",
                },
            );
            bodies.insert((console.to_string(), song.file.clone()), body);
        }
        let page = html.into_bytes();
        resources.insert(
            console_path(console).to_string(),
            Resource {
                etag: format!("\"{}\"", &md5_hex(&page)[..16]),
                body: page,
                content_type: "text/html; charset=utf-8",
            },
        );
    }
    if let Some(robots) = &config.robots_txt {
        resources.insert(
            "/robots.txt".into(),
            Resource {
                etag: "\"robots\"".into(),
                body: robots.clone().into_bytes(),
                content_type: "text/plain",
            },
        );
    }
    // A redirect target on this server serves the redirected song.
    for (from, fault) in &config.faults {
        if let Fault::Redirect(to) = fault
            && to.starts_with('/')
            && let Some(source) = resources.get(from)
        {
            let copy = Resource {
                body: source.body.clone(),
                content_type: source.content_type,
                etag: source.etag.clone(),
            };
            resources.insert(to.clone(), copy);
        }
    }
    Content {
        resources,
        faults: config.faults,
        bodies,
    }
}

/// Writes a whole response in one `write` call. tiny_http's own responder
/// writes the head and a body over 1 KB separately, and Nagle's algorithm
/// then holds the body until the client's delayed ACK (~40 ms a request).
fn respond(request: tiny_http::Request, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        304 => "Not Modified",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut raw = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    let length = if status == 304 { 0 } else { body.len() };
    raw.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(&body[..length]);
    let mut writer = request.into_writer();
    let _ = writer.write_all(&bytes);
    let _ = writer.flush();
}

fn serve(state: &State, request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let get = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let if_none_match = get("If-None-Match");
    state.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        at: Instant::now(),
        if_none_match: if_none_match.clone(),
        user_agent: get("User-Agent"),
    });
    let hit = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let content = state.content.read().unwrap().clone();
    let resource = content.resources.get(&path);
    match content.faults.get(&path) {
        Some(Fault::Status(code)) => {
            respond(request, *code, &[], b"");
            return;
        }
        Some(Fault::FailTimes {
            status,
            times,
            retry_after,
        }) if hit <= *times => {
            match retry_after {
                Some(secs) => respond(request, *status, &[("Retry-After", &secs.to_string())], b""),
                None => respond(request, *status, &[], b""),
            }
            return;
        }
        Some(Fault::Stall { times, hold }) if hit <= *times => std::thread::sleep(*hold),
        Some(Fault::Redirect(to)) => {
            respond(request, 302, &[("Location", to)], b"");
            return;
        }
        Some(Fault::HtmlAsMidi) => {
            let page = "<!DOCTYPE html><html><body><h1>Bandwidth exceeded</h1></body></html>";
            respond(
                request,
                200,
                &[("Content-Type", "audio/midi")],
                page.as_bytes(),
            );
            return;
        }
        Some(Fault::WrongBody) => {
            if let Some(resource) = resource {
                // Same size, one note changed: only the MD5 can tell.
                let mut body = resource.body.clone();
                let at = body.len() - 6;
                body[at] ^= 1;
                respond(request, 200, &[("Content-Type", "audio/midi")], &body);
                return;
            }
        }
        Some(Fault::Truncate) => {
            if let Some(resource) = resource {
                let mut writer = request.into_writer();
                let half = &resource.body[..resource.body.len() / 2];
                let _ = write!(
                    writer,
                    "HTTP/1.1 200 OK\r\nContent-Type: audio/midi\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    resource.body.len()
                );
                let _ = writer.write_all(half);
                let _ = writer.flush();
                return;
            }
        }
        _ => {}
    }
    let Some(resource) = resource else {
        respond(request, 404, &[], b"");
        return;
    };
    if if_none_match.as_deref() == Some(resource.etag.as_str()) {
        respond(request, 304, &[("ETag", &resource.etag)], b"");
        return;
    }
    let headers = [
        ("Content-Type", resource.content_type),
        ("ETag", resource.etag.as_str()),
        ("Last-Modified", LAST_MODIFIED),
    ];
    respond(request, 200, &headers, &resource.body);
}

/// A 64-song sample of the real 2021 listing (titles, file names, sizes).
pub fn sample_songs() -> Vec<SongSpec> {
    SongSpec::parse_jsonl(include_str!("../data/vgmusic-sample.jsonl"))
}
