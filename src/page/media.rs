//! How the page reaches a media file: a relative URL from the page's
//! folder (the page stays small; it and `out/` move together), or the
//! file's bytes as a `data:` URI (`--embed`: one file to send).

use std::path::{Component, Path, PathBuf};

use super::PageError;

pub enum MediaMode {
    /// Relative URLs from this folder (absolute, as the page's folder).
    Link {
        page_dir: PathBuf,
    },
    Embed,
}

impl MediaMode {
    /// The `src`/`href` of `file` (not yet HTML-escaped).
    pub fn source(&self, file: &Path) -> Result<String, PageError> {
        match self {
            MediaMode::Link { page_dir } => Ok(url_path(&relative(page_dir, file))),
            MediaMode::Embed => {
                let bytes = std::fs::read(file).map_err(|source| PageError::Read {
                    path: file.to_path_buf(),
                    source,
                })?;
                Ok(format!("data:{};base64,{}", mime(file), base64(&bytes)))
            }
        }
    }
}

/// `to` relative to the folder `from`; both absolute. Links in `to` are
/// kept (a path through `out/` stays one).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to_parts[common..] {
        out.push(part.as_os_str());
    }
    out
}

/// A relative path as a URL path: each segment percent-encoded outside
/// the unreserved characters.
fn url_path(path: &Path) -> String {
    let segments: Vec<String> = path
        .components()
        .map(|c| {
            let mut s = String::new();
            for b in c.as_os_str().as_encoded_bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                    s.push(*b as char);
                } else {
                    s.push_str(&format!("%{b:02X}"));
                }
            }
            s
        })
        .collect();
    segments.join("/")
}

fn mime(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mid" | "midi" => "audio/midi",
        "txt" | "csv" => "text/plain",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn relative_urls_climb_and_escape() {
        let from = Path::new("/p/out");
        assert_eq!(
            url_path(&relative(
                from,
                Path::new("/p/out/rate=1,depth=2/sample/s 1.wav")
            )),
            "rate%3D1%2Cdepth%3D2/sample/s%201.wav"
        );
        assert_eq!(
            url_path(&relative(
                Path::new("/p/docs/x"),
                Path::new("/p/out/a/b.png")
            )),
            "../../out/a/b.png"
        );
    }
}
