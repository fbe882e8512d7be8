//! A small blocking S3 client: GET, HEAD and PUT (optionally create-only,
//! `If-None-Match: *`) of whole objects, with bounded timeouts and retries.
//! Requests are signed by `rusty-s3` (SigV4 presigned URLs) and sent with
//! `ureq`. No message this module returns contains a URL, a signature or a
//! credential: errors are built from status codes and error kinds, and
//! anything else passes through [`Client::redact`].

use std::io::{self, Read, Write};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// How long a signed URL stays valid (one request, retries included).
const SIGN_FOR: Duration = Duration::from_secs(3600);
/// Attempts per request (server errors and resets are retried with backoff).
const ATTEMPTS: u32 = 3;

pub struct Client {
    bucket: Bucket,
    credentials: Option<Credentials>,
    /// `prefix/` or empty.
    prefix: String,
    agent: ureq::Agent,
    /// Strings that must never appear in a message (key id, secret, token).
    secrets: Vec<String>,
}

/// A request that did not get an answer it could use.
#[derive(Debug, Clone)]
pub enum S3Error {
    /// The remote cannot be reached or keeps failing (connection refused,
    /// timeout, reset, 5xx after retries): the build goes on without it.
    Unreachable(String),
    /// The remote answered, but refuses (403, no such bucket, 400...).
    Refused(String),
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Error::Unreachable(m) | S3Error::Refused(m) => f.write_str(m),
        }
    }
}

/// What a create-only PUT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// Another writer was first (412): content-addressed, so the same bytes.
    AlreadyThere,
}

impl Client {
    pub fn new(
        endpoint: &str,
        path_style: bool,
        bucket: &str,
        region: &str,
        prefix: &str,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let url: url::Url = endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint `{endpoint}`: {e}"))?;
        let style = if path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, bucket.to_string(), region.to_string())
            .map_err(|e| format!("invalid endpoint or bucket name `{bucket}`: {e}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_resolve(Some(Duration::from_secs(3)))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            // Bodies may be model checkpoints: minutes, not seconds.
            .timeout_recv_body(Some(timeout * 30))
            .timeout_send_body(Some(timeout * 30))
            .max_idle_connections_per_host(16)
            .build()
            .into();
        let mut secrets = Vec::new();
        if let Some(c) = &credentials {
            secrets.push(c.key().to_string());
            secrets.push(c.secret().to_string());
            if let Some(t) = c.token() {
                secrets.push(t.to_string());
            }
        }
        secrets.retain(|s| s.len() >= 4);
        let prefix = prefix.trim_matches('/');
        Ok(Client {
            bucket,
            credentials,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            agent,
            secrets,
        })
    }

    /// `text` with every credential and every signed query string removed.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        // A signed URL: drop its query string.
        while let Some(at) = out.find("X-Amz-") {
            let end = out[at..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .map_or(out.len(), |e| at + e);
            out.replace_range(at..end, "<redacted>");
        }
        out
    }

    fn object(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn kind_of(&self, e: &ureq::Error, what: &str) -> S3Error {
        let msg = match e {
            ureq::Error::Timeout(t) => format!("{what}: timed out ({t:?})"),
            ureq::Error::Io(io) => format!("{what}: {}", io.kind()),
            ureq::Error::ConnectionFailed => format!("{what}: connection failed"),
            ureq::Error::HostNotFound => format!("{what}: host not found"),
            other => format!("{what}: {}", self.redact(&other.to_string())),
        };
        S3Error::Unreachable(msg)
    }

    /// Runs `attempt` up to [`ATTEMPTS`] times while it fails with a
    /// transient error (no answer, 5xx, 429), with backoff.
    fn retry<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        let mut last = None;
        for n in 0..ATTEMPTS {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(200 << n));
            }
            match attempt() {
                Ok(v) => return Ok(v),
                Err(S3Error::Refused(m)) => return Err(S3Error::Refused(m)),
                Err(e @ S3Error::Unreachable(_)) => {
                    // Nothing listens: retrying at once will not help.
                    let refused = matches!(&e, S3Error::Unreachable(m)
                        if m.to_ascii_lowercase().contains("refused") || m.ends_with("connection failed"));
                    last = Some(e);
                    if refused {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| S3Error::Unreachable(format!("{what}: no answer"))))
    }

    fn status_error(&self, what: &str, status: u16) -> S3Error {
        let bucket = self.bucket.name();
        match status {
            500..=599 | 429 | 408 => S3Error::Unreachable(format!("{what}: HTTP {status}")),
            403 => S3Error::Refused(format!(
                "{what}: access denied (HTTP 403) to bucket `{bucket}`; credentials are read from \
                 AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else AWS_PROFILE \
                 in AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials"
            )),
            _ => S3Error::Refused(format!("{what}: HTTP {status} from bucket `{bucket}`")),
        }
    }

    /// A signed GET of `object`: the response to read, `None` for 404.
    fn get_response(
        &self,
        object: &str,
        what: &str,
    ) -> Result<Option<ureq::http::Response<ureq::Body>>, S3Error> {
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), object)
            .sign(SIGN_FOR);
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| self.kind_of(&e, what))?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(resp)),
            status => Err(self.status_error(what, status)),
        }
    }

    /// The object's bytes, or `None` when it does not exist.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, S3Error> {
        let object = self.object(name);
        let what = format!("GET {name}");
        self.retry(&what, || {
            let Some(mut resp) = self.get_response(&object, &what)? else {
                return Ok(None);
            };
            let mut buf = Vec::new();
            resp.body_mut()
                .as_reader()
                .read_to_end(&mut buf)
                .map_err(|e| {
                    S3Error::Unreachable(format!("{what}: reading the body: {}", e.kind()))
                })?;
            Ok(Some(buf))
        })
    }

    /// Downloads the object into `file` (created), returning its blake3
    /// hash and size, or `None` when it does not exist. Stops reading past
    /// `max` bytes (the size returned then says so).
    pub fn get_to_file(
        &self,
        name: &str,
        file: &std::path::Path,
        max: u64,
    ) -> Result<Option<(blake3::Hash, u64)>, S3Error> {
        let object = self.object(name);
        let what = format!("GET {name}");
        self.retry(&what, || {
            let Some(mut resp) = self.get_response(&object, &what)? else {
                return Ok(None);
            };
            let local =
                |e: io::Error| S3Error::Refused(format!("{what}: writing {}: {e}", file.display()));
            let mut out =
                io::BufWriter::with_capacity(1 << 20, std::fs::File::create(file).map_err(local)?);
            let mut hasher = blake3::Hasher::new();
            let mut reader = resp.body_mut().as_reader();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = reader.read(&mut buf).map_err(|e| {
                    S3Error::Unreachable(format!("{what}: reading the body: {}", e.kind()))
                })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(local)?;
                size += n as u64;
                if size > max {
                    break; // longer than expected: not what the record says
                }
            }
            out.flush().map_err(local)?;
            Ok(Some((hasher.finalize(), size)))
        })
    }

    /// Whether the object exists.
    pub fn exists(&self, name: &str) -> Result<bool, S3Error> {
        let object = self.object(name);
        let what = format!("HEAD {name}");
        self.retry(&what, || {
            let url = self
                .bucket
                .head_object(self.credentials.as_ref(), &object)
                .sign(SIGN_FOR);
            let resp = self
                .agent
                .head(url.as_str())
                .call()
                .map_err(|e| self.kind_of(&e, &what))?;
            match resp.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                s => Err(self.status_error(&what, s)),
            }
        })
    }

    /// Uploads `body` as the object. With `create_only`, an existing
    /// object is left alone (`If-None-Match: *`).
    pub fn put(&self, name: &str, body: &[u8], create_only: bool) -> Result<Put, S3Error> {
        let object = self.object(name);
        let what = format!("PUT {name}");
        self.retry(&what, || {
            let url = self
                .bucket
                .put_object(self.credentials.as_ref(), &object)
                .sign(SIGN_FOR);
            let mut req = self.agent.put(url.as_str());
            if create_only {
                req = req.header("If-None-Match", "*");
            }
            let resp = req.send(body).map_err(|e| self.kind_of(&e, &what))?;
            match resp.status().as_u16() {
                200 | 201 | 204 => Ok(Put::Created),
                412 | 409 if create_only => Ok(Put::AlreadyThere),
                s => Err(self.status_error(&what, s)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_credentials_or_signatures() {
        let client = Client::new(
            "http://127.0.0.1:9",
            true,
            "bucket",
            "us-east-1",
            "p",
            Some(Credentials::new("AKIDEXAMPLE123", "wJalrXUtnFEMI/K7MDENG")),
            Duration::from_secs(1),
        )
        .unwrap();
        let url = client
            .bucket
            .get_object(client.credentials.as_ref(), "p/ac/x")
            .sign(SIGN_FOR);
        let text = format!("error fetching {url}: AKIDEXAMPLE123 wJalrXUtnFEMI/K7MDENG");
        let clean = client.redact(&text);
        assert!(!clean.contains("AKIDEXAMPLE123"), "{clean}");
        assert!(!clean.contains("wJalrXUtnFEMI"), "{clean}");
        assert!(!clean.contains("X-Amz-Signature"), "{clean}");
        // Nothing listens on port 9: an unreachable error, without the URL.
        match client.get("ac/x") {
            Err(S3Error::Unreachable(m)) => assert!(!m.contains("AKID") && !m.contains('?'), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
