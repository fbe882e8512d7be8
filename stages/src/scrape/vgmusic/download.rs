//! Fetches one song: from the memo when it has it (unless refreshing), else
//! from the site into a temp file that is checked (MIDI magic, size, MD5)
//! and moved into the memo. The memo key is blake3(url, listed md5), so a
//! file the listing says has changed is fetched again.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};

use super::checked_file::{self, CheckedFile};
use super::documents::Origin;
use super::http::{FetchError, Fetched, PoliteClient, Validators};
use super::listing::ListedSong;
use crate::api::Memo;

/// No MIDI file on the site comes near this; a bigger body is not a song.
pub const MAX_SONG_BYTES: u64 = 16 * 1024 * 1024;

/// What became of one song.
#[derive(Debug)]
pub enum SongOutcome {
    /// A checked copy sits in the memo at `path`.
    Stored {
        path: PathBuf,
        size: u64,
        md5: String,
        origin: Origin,
    },
    /// 404, 403, a refused redirect: reported, never retried.
    DeadLink(String),
    /// Arrived, but is not what the listing promised.
    BadFile(String),
    /// Could not be fetched whole after every retry.
    Failed(String),
    /// robots.txt forbids it (or could not be fetched): the reason.
    Disallowed(String),
}

pub struct SongFetcher<'a, 'c> {
    pub client: &'a mut PoliteClient<'c>,
    pub memo: &'a dyn Memo,
    pub temp_dir: &'a Path,
    pub refresh: bool,
}

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

fn memo_key(song: &ListedSong) -> blake3::Hash {
    let md5 = song.md5.as_deref().unwrap_or("");
    blake3::hash(format!("{}\n{md5}", song.url).as_bytes())
}

fn validators_key(song: &ListedSong) -> blake3::Hash {
    let md5 = song.md5.as_deref().unwrap_or("");
    blake3::hash(format!("vgmusic validators v1\n{}\n{md5}", song.url).as_bytes())
}

impl SongFetcher<'_, '_> {
    /// `Err` only when cancelled.
    pub fn fetch(&mut self, song: &ListedSong) -> Result<SongOutcome, FetchError> {
        let key = memo_key(song);
        let stored = self.memo.path(&key);
        if let Some(path) = &stored
            && !self.refresh
        {
            return stored_outcome(song, path.clone(), Origin::Memo);
        }
        if !self.client.allowed(&song.url) {
            return Ok(SongOutcome::Disallowed(self.disallowed_reason()));
        }
        let validators = stored
            .as_ref()
            .and_then(|_| self.memo.get(&validators_key(song)))
            .and_then(|bytes| serde_json::from_slice::<Validators>(&bytes).ok())
            .filter(|v| !v.is_empty());
        let part = self.temp_dir.join(format!(
            "song-{}.part",
            PART_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.download(song, &key, validators.as_ref(), &part);
        let _ = fs::remove_file(&part);
        match result {
            Err(FetchError::Cancelled) => Err(FetchError::Cancelled),
            Ok(Some(outcome)) => Ok(outcome),
            // 304: the stored copy is current.
            Ok(None) => {
                stored_outcome(song, stored.expect("conditional only"), Origin::NotModified)
            }
            // Unreachable while refreshing: keep the stored copy.
            Err(FetchError::Transient(_)) if stored.is_some() => {
                stored_outcome(song, stored.expect("checked"), Origin::Stale)
            }
            Err(FetchError::Transient(why)) => Ok(SongOutcome::Failed(why)),
            Err(FetchError::Disallowed(_)) => Ok(SongOutcome::Disallowed(self.disallowed_reason())),
            Err(FetchError::TooLarge(limit)) => Ok(SongOutcome::BadFile(format!(
                "larger than {limit} bytes: not a MIDI file"
            ))),
            Err(e @ (FetchError::Status(_) | FetchError::Redirect(_) | FetchError::Refused(_))) => {
                Ok(SongOutcome::DeadLink(e.to_string()))
            }
        }
    }

    fn disallowed_reason(&self) -> String {
        match self.client.robots_unreachable() {
            Some(why) => {
                format!("robots.txt could not be fetched ({why}), and RFC 9309 then allows nothing")
            }
            None => "robots.txt disallows it".into(),
        }
    }

    /// Downloads into `part`; `Ok(None)` on 304.
    fn download(
        &mut self,
        song: &ListedSong,
        key: &blake3::Hash,
        validators: Option<&Validators>,
        part: &Path,
    ) -> Result<Option<SongOutcome>, FetchError> {
        let local = |e: std::io::Error| FetchError::Transient(format!("temp file: {e}"));
        let mut file = CheckedFile::create(part).map_err(local)?;
        let fetched = self
            .client
            .get(&song.url, validators, MAX_SONG_BYTES, &mut file)?;
        let Fetched::Body {
            validators,
            content_type,
            ..
        } = fetched
        else {
            return Ok(None);
        };
        let summary = file.finish().map_err(local)?;
        if let Some(why) = checked_file::problem(
            &summary,
            content_type.as_deref(),
            song.md5.as_deref(),
            song.declared_size,
        ) {
            return Ok(Some(SongOutcome::BadFile(why)));
        }
        self.memo.put_file(key, part).map_err(local)?;
        if !validators.is_empty()
            && let Ok(json) = serde_json::to_vec(&validators)
        {
            let _ = self.memo.put(&validators_key(song), &json);
        }
        let path = self
            .memo
            .path(key)
            .ok_or_else(|| FetchError::Transient("memo entry vanished".into()))?;
        Ok(Some(SongOutcome::Stored {
            path,
            size: summary.size,
            md5: summary.md5,
            origin: Origin::Fetched,
        }))
    }
}

fn stored_outcome(
    song: &ListedSong,
    path: PathBuf,
    origin: Origin,
) -> Result<SongOutcome, FetchError> {
    let failed = |e: std::io::Error| {
        Ok(SongOutcome::Failed(format!(
            "reading the stored copy {}: {e}",
            path.display()
        )))
    };
    let size = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => return failed(e),
    };
    // The memo verified the bytes; the listing's md5 was checked when they
    // were stored. Without one in the listing, hash the copy.
    let md5 = match &song.md5 {
        Some(md5) => md5.clone(),
        None => match md5_of(&path) {
            Ok(md5) => md5,
            Err(e) => return failed(e),
        },
    };
    Ok(SongOutcome::Stored {
        path,
        size,
        md5,
        origin,
    })
}

fn md5_of(path: &Path) -> std::io::Result<String> {
    let mut hasher = Md5::new();
    let mut file = fs::File::open(path)?;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
