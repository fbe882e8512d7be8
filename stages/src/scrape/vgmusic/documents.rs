//! Small documents (robots.txt, listing pages) kept in the per-item memo
//! with their validators. A run trusts the stored copy unless the user asked
//! for a refresh; a refresh revalidates it with a conditional request, and
//! falls back to the stored copy (stale) if the site cannot be reached.

use serde::{Deserialize, Serialize};
use url::Url;

use super::http::{FetchError, Fetched, PoliteClient, Validators};
use crate::api::Memo;

/// Listing pages are ~1.7 MB at most; this leaves room to grow.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    url: String,
    /// 200, or the 4xx that said "not here" (robots.txt may be missing).
    status: u16,
    #[serde(flatten)]
    validators: Validators,
}

/// A document's content as last seen.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    Body(Vec<u8>),
    /// A final 4xx.
    Missing(u16),
}

/// Where the answer came from (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    Memo,
    Fetched,
    NotModified,
    /// Revalidation failed; the stored copy was used.
    Stale,
}

fn key(url: &Url) -> blake3::Hash {
    blake3::hash(format!("vgmusic document v1\n{url}").as_bytes())
}

fn load(memo: &dyn Memo, url: &Url) -> Option<(Header, Vec<u8>)> {
    let payload = memo.get(&key(url))?;
    let split = payload.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&payload[..split]).ok()?;
    (header.url == url.as_str()).then(|| (header, payload[split + 1..].to_vec()))
}

fn save(memo: &dyn Memo, header: &Header, body: &[u8]) -> std::io::Result<()> {
    let mut payload = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    payload.push(b'\n');
    payload.extend_from_slice(body);
    memo.put(
        &key(&Url::parse(&header.url).map_err(std::io::Error::other)?),
        &payload,
    )
}

fn as_document(header: &Header, body: Vec<u8>) -> Document {
    if header.status == 200 {
        Document::Body(body)
    } else {
        Document::Missing(header.status)
    }
}

/// The document at `url`: from the memo, or fetched (and stored). A final
/// 4xx is stored too when `keep_missing` (a missing robots.txt stays
/// missing until the next refresh).
pub fn fetch(
    client: &mut PoliteClient,
    memo: &dyn Memo,
    url: &Url,
    refresh: bool,
    keep_missing: bool,
) -> Result<(Document, Origin), FetchError> {
    let stored = load(memo, url);
    if let Some((header, body)) = &stored
        && !refresh
    {
        return Ok((as_document(header, body.clone()), Origin::Memo));
    }
    let validators = stored
        .as_ref()
        .filter(|(h, _)| h.status == 200 && !h.validators.is_empty())
        .map(|(h, _)| h.validators.clone());
    let mut body = Vec::new();
    match client.get(url, validators.as_ref(), MAX_DOCUMENT_BYTES, &mut body) {
        Ok(Fetched::NotModified) => {
            let (header, old) = stored.expect("validators come from a stored copy");
            Ok((as_document(&header, old), Origin::NotModified))
        }
        Ok(Fetched::Body { validators, .. }) => {
            let header = Header {
                url: url.to_string(),
                status: 200,
                validators,
            };
            // A memo write failure costs a refetch next time, nothing more.
            let _ = save(memo, &header, &body);
            Ok((Document::Body(body), Origin::Fetched))
        }
        Err(FetchError::Status(code)) if keep_missing => {
            let header = Header {
                url: url.to_string(),
                status: code,
                validators: Validators::default(),
            };
            let _ = save(memo, &header, &[]);
            Ok((Document::Missing(code), Origin::Fetched))
        }
        Err(FetchError::Cancelled) => Err(FetchError::Cancelled),
        // The site is unreachable for now: the stored copy still stands.
        Err(FetchError::Transient(_)) if stored.is_some() => {
            let (header, old) = stored.expect("checked above");
            Ok((as_document(&header, old), Origin::Stale))
        }
        Err(error) => Err(error),
    }
}
