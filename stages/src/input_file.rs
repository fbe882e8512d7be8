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
        && read_sized(file, meta.len() as usize, buf).is_ok()
        && buf.len() as u64 <= MAX_FILE_BYTES
    {
        return Ok(());
    }
    *buf = read_file(path)?;
    Ok(())
}

/// Reads `file`, `size` bytes long by its metadata, into `buf`: one read
/// asking for a byte more than the size, which a regular file answers with
/// the whole file (std's `read_to_end` reads in growing pieces and then
/// once more to see the end: 3.6 reads a file on the corpus). A file that
/// grew since its metadata is read on to its end. Stopping at the
/// metadata's size trusts a regular file to answer a read in full up to
/// its end; where one did not, the bytes would differ from the build's
/// hash of the file, which encode checks before anything is memoized
/// (every file a stage of the build made has one).
fn read_sized(mut file: File, size: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.resize(size + 1, 0);
    let mut filled = 0;
    loop {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                // The size the metadata gave, in a read that asked for
                // more: the end. The whole buffer: the file grew.
                if filled == size || filled == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    if filled > size {
        file.take(MAX_FILE_BYTES + 1 - filled as u64)
            .read_to_end(buf)?;
    }
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
        // An empty file.
        let empty = dir.path().join("empty.mid");
        std::fs::write(&empty, b"").unwrap();
        read_into(&empty, &mut buf).unwrap();
        assert!(buf.is_empty());
    }

    #[test]
    fn a_file_that_grew_or_shrank_since_its_metadata_is_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("song.mid");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut buf = b"left from the file before".to_vec();
        // Sizes as stale metadata would give them: smaller, larger, exact.
        for size in [0, 4, 9_999, 10_001, 50_000, 10_000] {
            buf.clear();
            read_sized(File::open(&path).unwrap(), size, &mut buf).unwrap();
            assert_eq!(buf, bytes, "metadata size {size}");
        }
    }
}
