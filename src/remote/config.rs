//! The `[cache]` table of pipeline.toml, the `--remote` / `--no-remote`
//! flags and `VGMAKE_REMOTE`, and where credentials come from. Nothing here
//! enters a stage key.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::pipeline::spans::Spans;

pub const CACHE_KEYS: &[&str] = &["remote", "endpoint", "region", "push", "push_state"];

/// The `[cache]` table as written (all optional).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheConfig {
    /// `s3://bucket/prefix`, already checked.
    pub remote: Option<RemoteUrl>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub push: Option<bool>,
    pub push_state: Option<bool>,
}

/// A parsed `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteUrl {
    pub bucket: String,
    pub prefix: String,
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Reads `s3://bucket[/prefix]`.
pub fn parse_url(text: &str) -> Result<RemoteUrl, String> {
    let rest = text.strip_prefix("s3://").ok_or_else(|| {
        format!("`{text}` is not a remote cache URL (expected `s3://bucket/prefix`)")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "`{text}`: `{bucket}` is not a valid bucket name (3-63 lower-case letters, digits, `-`, `.`)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|part| part == "." || part == ".." || (part.is_empty() && !prefix.is_empty()))
        || prefix
            .chars()
            .any(|c| c.is_control() || c == '?' || c == '#')
    {
        return Err(format!("`{text}`: `{prefix}` is not a valid key prefix"));
    }
    Ok(RemoteUrl {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Reads the `[cache]` table, reporting problems at their line.
pub fn parse(root: &toml::Table, spans: &Spans, errors: &mut Vec<Diagnostic>) -> CacheConfig {
    let mut config = CacheConfig::default();
    let Some(value) = root.get("cache") else {
        return config;
    };
    let Some(table) = value.as_table() else {
        errors.push(Diagnostic::new(
            spans.origin(&["cache"]),
            "cache",
            "must be a table (`[cache]`)",
        ));
        return config;
    };
    for (key, value) in table {
        let origin = spans.origin(&["cache", key]);
        let path = format!("cache.{key}");
        let want_str = |errors: &mut Vec<Diagnostic>| -> Option<String> {
            match value.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errors.push(Diagnostic::new(
                        origin.clone(),
                        path.clone(),
                        "must be a string",
                    ));
                    None
                }
            }
        };
        let want_bool = |errors: &mut Vec<Diagnostic>| -> Option<bool> {
            match value.as_bool() {
                Some(b) => Some(b),
                None => {
                    errors.push(Diagnostic::new(
                        origin.clone(),
                        path.clone(),
                        "must be true or false",
                    ));
                    None
                }
            }
        };
        match key.as_str() {
            "remote" => {
                if let Some(s) = want_str(errors) {
                    match parse_url(&s) {
                        Ok(u) => config.remote = Some(u),
                        Err(m) => errors.push(Diagnostic::new(origin.clone(), path.clone(), m)),
                    }
                }
            }
            "endpoint" => {
                if let Some(s) = want_str(errors) {
                    if !(s.starts_with("http://") || s.starts_with("https://"))
                        || s.parse::<url::Url>().is_err()
                    {
                        errors.push(Diagnostic::new(
                            origin.clone(),
                            path.clone(),
                            format!("`{s}` is not an http:// or https:// URL"),
                        ));
                    } else {
                        config.endpoint = Some(s);
                    }
                }
            }
            "region" => config.region = want_str(errors),
            "push" => config.push = want_bool(errors),
            "push_state" => config.push_state = want_bool(errors),
            "access_key_id" | "secret_access_key" | "session_token" | "credentials" | "profile" => {
                errors.push(Diagnostic::new(
                    origin.clone(),
                    path.clone(),
                    "credentials never go in pipeline.toml: set AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/credentials)",
                ));
            }
            _ => errors.push(
                Diagnostic::new(origin.clone(), path.clone(), "unknown key of `[cache]`")
                    .suggest(key, CACHE_KEYS.iter().copied()),
            ),
        }
    }
    config
}

/// Where the remote comes from, for messages.
#[derive(Debug, Clone)]
pub enum Source {
    Flag,
    Env,
    File,
}

/// The remote a command uses: `--no-remote` > `--remote URL` >
/// `VGMAKE_REMOTE` (empty or `none`: no remote) > `[cache] remote`.
pub fn choose(
    file: &CacheConfig,
    flag: Option<&str>,
    no_remote: bool,
) -> Result<Option<(RemoteUrl, Source)>, String> {
    if no_remote {
        return Ok(None);
    }
    if let Some(text) = flag {
        return parse_url(text)
            .map(|u| Some((u, Source::Flag)))
            .map_err(|m| format!("--remote: {m}"));
    }
    if let Ok(text) = std::env::var("VGMAKE_REMOTE") {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(None);
        }
        return parse_url(text)
            .map(|u| Some((u, Source::Env)))
            .map_err(|m| format!("VGMAKE_REMOTE: {m}"));
    }
    Ok(file.remote.clone().map(|u| (u, Source::File)))
}

/// Credentials from the standard AWS variables, else the profile file.
/// Returns also which places were looked at, for messages.
pub fn credentials() -> Option<rusty_s3::Credentials> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Some(match var("AWS_SESSION_TOKEN") {
            Some(token) => rusty_s3::Credentials::new_with_token(key, secret, token),
            None => rusty_s3::Credentials::new(key, secret),
        });
    }
    let file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".aws").join("credentials")))?;
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    profile_credentials(&std::fs::read_to_string(file).ok()?, &profile)
}

/// The `[profile]` section of an AWS credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<rusty_s3::Credentials> {
    let mut in_section = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_section = name == profile || name.strip_prefix("profile ") == Some(profile);
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (key, secret, token) {
        (Some(k), Some(s), Some(t)) => Some(rusty_s3::Credentials::new_with_token(k, s, t)),
        (Some(k), Some(s), None) => Some(rusty_s3::Credentials::new(k, s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://vg-cache/team/a").unwrap(),
            RemoteUrl {
                bucket: "vg-cache".into(),
                prefix: "team/a".into()
            }
        );
        assert_eq!(parse_url("s3://vg-cache").unwrap().prefix, "");
        assert!(parse_url("http://x/y").is_err());
        assert!(parse_url("s3://UPPER/x").is_err());
        assert!(parse_url("s3://ok-bucket/../x").is_err());
    }

    #[test]
    fn profile_file() {
        let text = "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n[profile ci]\naws_access_key_id=A2\naws_secret_access_key=S2\n";
        assert_eq!(profile_credentials(text, "default").unwrap().key(), "A1");
        assert_eq!(profile_credentials(text, "ci").unwrap().secret(), "S2");
        assert!(profile_credentials(text, "other").is_none());
    }
}
