//! A downloaded body streamed to a temp file while its MD5, size and first
//! bytes are taken, and the checks that decide whether it is kept: MIDI
//! magic (`MThd`, or a RIFF RMID wrapper), the listing's MD5 and size.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use md5::{Digest, Md5};

use super::http::BodySink;

const HEAD_LEN: usize = 16;

pub struct CheckedFile {
    file: BufWriter<File>,
    md5: Md5,
    size: u64,
    head: Vec<u8>,
}

impl CheckedFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(CheckedFile {
            file: BufWriter::with_capacity(64 * 1024, File::create(path)?),
            md5: Md5::new(),
            size: 0,
            head: Vec::with_capacity(HEAD_LEN),
        })
    }

    /// Closes the file; returns the lower-case hex MD5 of what was written.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.file.flush()?;
        let digest = self.md5.finalize();
        Ok(Summary {
            md5: digest.iter().map(|b| format!("{b:02x}")).collect(),
            size: self.size,
            head: self.head,
        })
    }
}

impl Write for CheckedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.md5.update(&buf[..n]);
        self.size += n as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BodySink for CheckedFile {
    fn restart(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let file = self.file.get_mut();
        file.set_len(0)?;
        file.rewind()?;
        self.md5 = Md5::new();
        self.size = 0;
        self.head.clear();
        Ok(())
    }
}

/// What was downloaded, for the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub md5: String,
    pub size: u64,
    pub head: Vec<u8>,
}

/// Why a body is not kept, or `None` when it passes.
pub fn problem(
    summary: &Summary,
    content_type: Option<&str>,
    expected_md5: Option<&str>,
    declared_size: Option<u64>,
) -> Option<String> {
    if !is_midi(&summary.head) {
        let shown = String::from_utf8_lossy(&summary.head[..summary.head.len().min(12)])
            .replace(|c: char| c.is_control(), "?");
        let served_as = content_type.map_or(String::new(), |t| format!(", served as {t}"));
        return Some(format!("not a MIDI file: starts with {shown:?}{served_as}"));
    }
    if let Some(declared) = declared_size
        && declared != summary.size
    {
        return Some(format!(
            "size mismatch: listing says {declared} bytes, got {}",
            summary.size
        ));
    }
    if let Some(expected) = expected_md5
        && expected != summary.md5
    {
        return Some(format!(
            "md5 mismatch: listing says {expected}, got {}",
            summary.md5
        ));
    }
    None
}

/// A Standard MIDI File, bare or in a RIFF RMID wrapper.
pub fn is_midi(head: &[u8]) -> bool {
    head.starts_with(b"MThd")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"RMID")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(bytes: &[u8]) -> Summary {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CheckedFile::create(&dir.path().join("x.part")).unwrap();
        file.write_all(b"garbage from a failed attempt").unwrap();
        file.restart().unwrap();
        file.write_all(bytes).unwrap();
        let summary = file.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("x.part")).unwrap(), bytes);
        summary
    }

    #[test]
    fn md5_size_and_head_follow_the_last_attempt() {
        let s = summary_of(b"MThd\0\0\0\x06\0\0\0\x01\0\x60");
        assert_eq!(s.size, 14);
        // md5 of the 14 bytes above, computed independently.
        assert_eq!(
            s.md5,
            format!("{:x}", Md5::digest(b"MThd\0\0\0\x06\0\0\0\x01\0\x60"))
        );
        assert_eq!(problem(&s, None, Some(&s.md5.clone()), Some(14)), None);
    }

    #[test]
    fn html_pages_wrong_md5_and_wrong_size_are_problems() {
        let html = summary_of(b"<!DOCTYPE html><html>Not found</html>");
        let why = problem(&html, Some("audio/midi"), None, None).unwrap();
        assert!(
            why.contains("not a MIDI file") && why.contains("audio/midi"),
            "{why}"
        );
        let midi = summary_of(b"MThd\0\0\0\x06\0\0\0\x01\0\x60");
        assert!(
            problem(&midi, None, None, Some(15))
                .unwrap()
                .contains("size mismatch")
        );
        let wrong = "0".repeat(32);
        assert!(
            problem(&midi, None, Some(&wrong), None)
                .unwrap()
                .contains("md5 mismatch")
        );
    }

    #[test]
    fn rmid_wrappers_are_midi() {
        assert!(is_midi(b"RIFF\x10\0\0\0RMIDdata"));
        assert!(!is_midi(b"RIFF\x10\0\0\0WAVEfmt "));
        assert!(!is_midi(b"MTh"));
    }
}
