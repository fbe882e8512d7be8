//! Reading input files into one buffer reused from file to file (the encode
//! stage reads every MIDI file of its input once): one open, one fstat and
//! one read per file, and no allocation once the buffer has grown.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::midi::MidiError;
use crate::midi::read::{MAX_FILE_BYTES, read_file};

/// Replaces `buf`'s contents with the bytes of the file at `path`, with
/// [`read_file`]'s rules and errors: regular files only, at most
/// [`MAX_FILE_BYTES`]. Opened without blocking, so a FIFO put in the
/// file's place since the folder was listed does not hang the read; what
/// is not a regular file, too large or unreadable goes through
/// [`read_file`] for its error.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), MidiError> {
    buf.clear();
    let opened = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|file| file.metadata().map(|meta| (file, meta)));
    if let Ok((file, meta)) = opened
        && meta.is_file()
        && meta.len() <= MAX_FILE_BYTES
    {
        // One byte more than the size: the read that finds the end needs no
        // second allocation.
        buf.reserve(meta.len() as usize + 1);
        if file.take(MAX_FILE_BYTES + 1).read_to_end(buf).is_ok()
            && buf.len() as u64 <= MAX_FILE_BYTES
        {
            return Ok(());
        }
    }
    *buf = read_file(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_into_one_buffer_and_names_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let (long, short) = (dir.path().join("long.mid"), dir.path().join("short.mid"));
        std::fs::write(&long, vec![7u8; 10_000]).unwrap();
        std::fs::write(&short, b"MThd").unwrap();
        let mut buf = Vec::new();
        read_into(&long, &mut buf).unwrap();
        assert_eq!(buf, vec![7u8; 10_000]);
        read_into(&short, &mut buf).unwrap();
        assert_eq!(buf, b"MThd");
        // A folder and a missing file: read_file's errors.
        for path in [dir.path().to_path_buf(), dir.path().join("gone.mid")] {
            let err = read_into(&path, &mut buf).unwrap_err();
            assert_eq!(err.to_string(), read_file(&path).unwrap_err().to_string());
        }
    }
}
