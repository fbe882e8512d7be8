//! A polite HTTP client: one request at a time, a pause between requests to
//! one host, robots.txt obeyed (redirect targets included), retries with
//! exponential backoff on 429/5xx, timeouts and broken connections,
//! `Retry-After` honoured (capped), redirects followed on the same host
//! only, conditional requests for revalidation.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use url::Url;

use super::robots::Robots;

/// Longest `Retry-After` we wait; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub user_agent: String,
    pub timeout: Duration,
    /// Pause between the end of one request and the start of the next to
    /// the same host.
    pub delay: Duration,
    pub retries: u32,
    /// First backoff; doubles on every retry.
    pub backoff: Duration,
}

/// `ETag` / `Last-Modified` of a stored copy.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// Where a response body goes. `restart` is called before every attempt,
/// so a retried download never appends to a half-written one.
pub trait BodySink: Write {
    fn restart(&mut self) -> io::Result<()>;
}

impl BodySink for Vec<u8> {
    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

/// A successful exchange.
#[derive(Debug)]
pub enum Fetched {
    /// 2xx: the body went into the sink.
    Body {
        validators: Validators,
        content_type: Option<String>,
    },
    /// 304: the stored copy is still current.
    NotModified,
}

/// Why a fetch gave up.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// A final 4xx (404, 403, 410...): a dead link, never retried.
    Status(u16),
    /// robots.txt forbids the URL (or could not be fetched): the reason.
    Disallowed(String),
    /// A redirect to another host, or too many redirects.
    Redirect(String),
    /// The body grew past the size limit.
    TooLarge(u64),
    /// Not on the site (another host, port or scheme): never requested.
    Refused(String),
    /// Still failing after every retry (5xx, timeout, reset, truncated body).
    Transient(String),
    /// The user pressed Ctrl-C.
    Cancelled,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            FetchError::Status(code) => write!(f, "HTTP {code}"),
            FetchError::Disallowed(why) => write!(f, "{why}"),
            FetchError::Redirect(why) => write!(f, "redirect refused: {why}"),
            FetchError::TooLarge(limit) => write!(f, "body larger than {limit} bytes"),
            FetchError::Refused(why) => write!(f, "{why}"),
            FetchError::Transient(why) => write!(f, "{why}"),
            FetchError::Cancelled => write!(f, "cancelled"),
        }
    }
}

/// Counters of one run (for the log, not the output: they vary run to run).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub retries: u64,
    pub not_modified: u64,
    pub bytes: u64,
}

pub struct PoliteClient<'a> {
    inner: reqwest::blocking::Client,
    config: HttpConfig,
    robots: Robots,
    /// The only origin (scheme, host, port) requested, once set.
    site: Option<url::Origin>,
    /// When the last request to each host ended.
    last_request: HashMap<String, Instant>,
    cancel: &'a AtomicBool,
    pub stats: Stats,
}

/// One attempt's result, before the retry policy looks at it.
enum Attempt {
    Done(Fetched),
    Redirect(Url),
    Final(FetchError),
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
}

impl<'a> PoliteClient<'a> {
    pub fn new(config: HttpConfig, cancel: &'a AtomicBool) -> Result<Self, String> {
        let inner = reqwest::blocking::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(PoliteClient {
            inner,
            config,
            robots: Robots::allow_all(),
            site: None,
            last_request: HashMap::new(),
            cancel,
            stats: Stats::default(),
        })
    }

    pub fn user_agent(&self) -> &str {
        &self.config.user_agent
    }

    /// Applies the site's robots.txt to every later request (its
    /// `Crawl-delay` lengthens our delay, never shortens it).
    pub fn set_robots(&mut self, robots: Robots) {
        if let Some(delay) = robots.crawl_delay() {
            self.config.delay = self.config.delay.max(delay);
        }
        self.robots = robots;
    }

    /// Refuses, from now on, every URL whose scheme, host or port differ
    /// from `root`'s (same-host redirects are still followed).
    pub fn restrict_to(&mut self, root: &Url) {
        self.site = Some(root.origin());
    }

    /// Why robots.txt could not be fetched, when that is why nothing is
    /// allowed.
    pub fn robots_unreachable(&self) -> Option<&str> {
        self.robots.unreachable_reason()
    }

    pub fn allowed(&self, url: &Url) -> bool {
        url.path() == "/robots.txt" || self.robots.allows(&robots_path(url))
    }

    /// GETs `url` into `sink` (at most `max_bytes`), sending `validators`
    /// as a conditional request when given.
    pub fn get(
        &mut self,
        url: &Url,
        validators: Option<&Validators>,
        max_bytes: u64,
        sink: &mut dyn BodySink,
    ) -> Result<Fetched, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!(
                "{url}: only http and https URLs are fetched"
            )));
        }
        if let Some(site) = &self.site
            && url.origin() != *site
        {
            return Err(FetchError::Refused(format!(
                "{url} is not on {}: never fetched",
                site.ascii_serialization()
            )));
        }
        let mut current = url.clone();
        let mut redirects = 0;
        let mut attempt = 0u32;
        loop {
            if !self.allowed(&current) {
                return Err(FetchError::Disallowed(match self.robots_unreachable() {
                    Some(why) => format!(
                        "robots.txt could not be fetched ({why}), and RFC 9309 then allows \
                         nothing: {current} not requested"
                    ),
                    None => format!("robots.txt disallows {current}"),
                }));
            }
            self.wait_turn(&current)?;
            let result = self.attempt(&current, validators, max_bytes, sink);
            self.last_request.insert(host_key(&current), Instant::now());
            match result {
                Attempt::Done(fetched) => return Ok(fetched),
                Attempt::Final(error) => return Err(error),
                Attempt::Redirect(target) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(FetchError::Redirect(format!(
                            "more than {MAX_REDIRECTS} redirects from {url}"
                        )));
                    }
                    if !same_site_redirect(url, &target) {
                        return Err(FetchError::Redirect(format!(
                            "{current} redirects to another host: {target}"
                        )));
                    }
                    current = target;
                }
                Attempt::Retry { why, retry_after } => {
                    if attempt >= self.config.retries {
                        let tries = attempt + 1;
                        return Err(FetchError::Transient(format!(
                            "{why} (gave up after {tries} tries)"
                        )));
                    }
                    let backoff = self.config.backoff.saturating_mul(1 << attempt.min(16));
                    let pause = retry_after.map_or(backoff, |ra| ra.max(backoff));
                    attempt += 1;
                    self.stats.retries += 1;
                    self.sleep(pause)?;
                }
            }
        }
    }

    fn attempt(
        &mut self,
        url: &Url,
        validators: Option<&Validators>,
        max_bytes: u64,
        sink: &mut dyn BodySink,
    ) -> Attempt {
        self.stats.requests += 1;
        let mut request = self.inner.get(url.clone());
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = &v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        let mut response = match request.send() {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    why: describe(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && validators.is_some() {
            self.stats.not_modified += 1;
            return Attempt::Done(Fetched::NotModified);
        }
        if status.is_redirection() {
            let target = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| url.join(loc).ok());
            return match target {
                Some(target) => Attempt::Redirect(target),
                None => Attempt::Final(FetchError::Redirect(format!(
                    "HTTP {} without a usable Location",
                    status.as_u16()
                ))),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Attempt::Retry {
                why: format!("HTTP {}", status.as_u16()),
                retry_after: retry_after(response.headers()),
            };
        }
        if !status.is_success() {
            return Attempt::Final(FetchError::Status(status.as_u16()));
        }
        if let Err(e) = sink.restart() {
            return Attempt::Final(FetchError::Transient(format!("writing the body: {e}")));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let content_type = header(CONTENT_TYPE);
        match copy_limited(&mut response, sink, max_bytes) {
            Ok(bytes) => {
                self.stats.bytes += bytes;
                Attempt::Done(Fetched::Body {
                    validators,
                    content_type,
                })
            }
            Err(CopyError::TooLarge) => Attempt::Final(FetchError::TooLarge(max_bytes)),
            Err(CopyError::Write(e)) => {
                Attempt::Final(FetchError::Transient(format!("writing the body: {e}")))
            }
            Err(CopyError::Read(e)) => Attempt::Retry {
                why: format!("body cut short: {}", root_cause(&e)),
                retry_after: None,
            },
        }
    }

    /// Sleeps until `delay` has passed since the last request to the host.
    fn wait_turn(&self, url: &Url) -> Result<(), FetchError> {
        if let Some(last) = self.last_request.get(&host_key(url)) {
            let due = *last + self.config.delay;
            self.sleep(due.saturating_duration_since(Instant::now()))?;
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        Ok(())
    }

    /// Sleeps in short slices so that Ctrl-C is noticed at once.
    fn sleep(&self, total: Duration) -> Result<(), FetchError> {
        let end = Instant::now() + total;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// What robots.txt rules are matched against: path and query as sent.
fn robots_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Politeness and the same-host redirect rule go by host name, whatever the
/// scheme (an http -> https redirect stays on the host).
fn host_key(url: &Url) -> String {
    url.host_str().unwrap_or("").to_ascii_lowercase()
}

/// A redirect stays on the site: the same host and port, or an upgrade from
/// http to https on the default port.
fn same_site_redirect(from: &Url, to: &Url) -> bool {
    let upgrade = from.scheme() == "http" && to.scheme() == "https" && to.port().is_none();
    matches!(to.scheme(), "http" | "https")
        && host_key(to) == host_key(from)
        && (to.port_or_known_default() == from.port_or_known_default() || upgrade)
}

/// `Retry-After` in seconds (the HTTP-date form falls back to our backoff),
/// capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        root_cause(e)
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    TooLarge,
}

fn copy_limited(from: &mut dyn Read, to: &mut dyn Write, max: u64) -> Result<u64, CopyError> {
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total += n as u64;
        if total > max {
            return Err(CopyError::TooLarge);
        }
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
    to.flush().map_err(CopyError::Write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn redirects_stay_on_the_host_and_port() {
        let from = Url::parse("http://site:8080/a.mid").unwrap();
        let to = |s: &str| Url::parse(s).unwrap();
        assert!(same_site_redirect(&from, &to("http://SITE:8080/b.mid")));
        assert!(!same_site_redirect(&from, &to("http://site:6379/")));
        assert!(!same_site_redirect(&from, &to("http://other:8080/")));
        assert!(!same_site_redirect(&from, &to("file:///etc/passwd")));
        let plain = Url::parse("http://site/a.mid").unwrap();
        assert!(same_site_redirect(&plain, &to("https://site/a.mid")));
    }

    #[test]
    fn robots_paths_include_the_query() {
        let url = Url::parse("http://h/a%20b/c.mid?x=1").unwrap();
        assert_eq!(robots_path(&url), "/a%20b/c.mid?x=1");
    }

    #[test]
    fn copy_stops_past_the_limit() {
        let mut out = Vec::new();
        let mut body: &[u8] = &[7u8; 100];
        assert!(matches!(
            copy_limited(&mut body, &mut out, 99),
            Err(CopyError::TooLarge)
        ));
        let mut body: &[u8] = &[7u8; 100];
        assert_eq!(copy_limited(&mut body, &mut out, 100).ok(), Some(100));
    }
}
