//! The dataset the `vocab` stage writes and `train`/`sample` read, in formats
//! numpy and PyTorch read directly:
//!
//! - `vocab.json`: `{"tokens": [...], "counts": [...]}`; a token's id is its
//!   index. Id 0 is `<pad>`, id 1 is `<unk>`, then tokens by falling
//!   frequency, ties by name.
//! - `train.npy`, `val.npy`: 1-D little-endian `u32` arrays, every song's ids
//!   concatenated (each song runs from `start` to `finish`).
//! - `train_offsets.npy`, `val_offsets.npy`: 1-D little-endian `u64` arrays of
//!   `songs + 1` offsets: song `i` is `ids[offsets[i]..offsets[i+1]]`.
//!
//! In Python: `ids = np.load("train.npy"); off = np.load("train_offsets.npy")`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";
pub const PAD_ID: u32 = 0;
pub const UNK_ID: u32 = 1;

/// The vocabulary: `tokens[id]`, with each token's count in the training split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub counts: Vec<u64>,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// A map from token text to id.
    pub fn index(&self) -> std::collections::HashMap<&str, u32> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect()
    }
}

/// Songs as id sequences: `ids[offsets[i]..offsets[i + 1]]` is song `i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub ids: Vec<u32>,
    pub offsets: Vec<u64>,
}

impl Split {
    pub fn new() -> Self {
        Split {
            ids: Vec::new(),
            offsets: vec![0],
        }
    }
    pub fn push_song(&mut self, song: &[u32]) {
        self.ids.extend_from_slice(song);
        self.offsets.push(self.ids.len() as u64);
    }
    pub fn songs(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    pub fn song(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// A loaded dataset: the vocabulary and both splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub vocab: Vocab,
    pub train: Split,
    pub val: Split,
}

impl Dataset {
    /// Reads the dataset from a `vocab` stage's output folder.
    pub fn load(dir: &Path) -> io::Result<Dataset> {
        let vocab_path = dir.join("vocab.json");
        let vocab: Vocab = serde_json::from_slice(&fs::read(&vocab_path)?).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", vocab_path.display()),
            )
        })?;
        let split = |name: &str| -> io::Result<Split> {
            let ids = read_npy_u32(&dir.join(format!("{name}.npy")))?;
            let offsets = read_npy_u64(&dir.join(format!("{name}_offsets.npy")))?;
            let valid = offsets.first() == Some(&0)
                && offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last() == Some(&(ids.len() as u64))
                && ids.iter().all(|&id| (id as usize) < vocab.len());
            if !valid {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: offsets or ids do not match the vocabulary",
                        dir.join(name).display()
                    ),
                ));
            }
            Ok(Split { ids, offsets })
        };
        Ok(Dataset {
            train: split("train")?,
            val: split("val")?,
            vocab,
        })
    }

    /// Writes `vocab.json` and the four arrays into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        fs::write(
            dir.join("vocab.json"),
            serde_json::to_vec_pretty(&self.vocab)?,
        )?;
        for (name, split) in [("train", &self.train), ("val", &self.val)] {
            write_npy_u32(&dir.join(format!("{name}.npy")), &split.ids)?;
            write_npy_u64(&dir.join(format!("{name}_offsets.npy")), &split.offsets)?;
        }
        Ok(())
    }
}

/// Writes a 1-D `<u4` .npy file (format version 1.0).
pub fn write_npy_u32(path: &Path, data: &[u32]) -> io::Result<()> {
    write_npy(
        path,
        "<u4",
        data.len(),
        data.chunks(CHUNK / 4),
        |chunk, out| {
            chunk
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
        },
    )
}

/// Writes a 1-D `<u8` .npy file (format version 1.0).
pub fn write_npy_u64(path: &Path, data: &[u64]) -> io::Result<()> {
    write_npy(
        path,
        "<u8",
        data.len(),
        data.chunks(CHUNK / 8),
        |chunk, out| {
            chunk
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
        },
    )
}

pub fn read_npy_u32(path: &Path) -> io::Result<Vec<u32>> {
    read_npy(path, &["<u4"], |_, bytes, out: &mut Vec<u32>| {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
        )
    })
}

/// Reads token ids written by [`write_npy_ids`]: a `<u2` or `<u4` array,
/// as u32s.
pub fn read_npy_ids(path: &Path) -> io::Result<Vec<u32>> {
    read_npy(path, &["<u2", "<u4"], |width, bytes, out: &mut Vec<u32>| {
        if width == 2 {
            out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as u32),
            )
        } else {
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
            )
        }
    })
}

pub fn read_npy_u64(path: &Path) -> io::Result<Vec<u64>> {
    read_npy(path, &["<u8"], |_, bytes, out: &mut Vec<u64>| {
        out.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        )
    })
}

/// The width of token ids in a song set's `ids.npy`: 2 bytes (`<u2`) when
/// the table has at most 65,536 tokens (half the bytes to write, hash and
/// read), else 4 (`<u4`).
pub fn id_width(tokens: usize) -> usize {
    if tokens <= 1 << 16 { 2 } else { 4 }
}

fn id_descr(width: usize) -> &'static str {
    if width == 2 { "<u2" } else { "<u4" }
}

/// Writes token ids as a 1-D .npy file of `width` bytes each ([`id_width`]),
/// read back by [`read_npy_ids`].
pub fn write_npy_ids(path: &Path, ids: &[u32], width: usize) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(&npy_header(id_descr(width), ids.len()))?;
    let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK);
    for part in ids.chunks(CHUNK / 4) {
        buffer.clear();
        put_ids(&mut buffer, part.iter().copied(), part.len(), width);
        file.write_all(&buffer)?;
    }
    Ok(())
}

/// Appends `n` ids to `buffer`, `width` bytes each (little-endian), sized
/// first and filled in place.
fn put_ids(buffer: &mut Vec<u8>, ids: impl Iterator<Item = u32>, n: usize, width: usize) {
    let at = buffer.len();
    buffer.resize(at + n * width, 0);
    let slots = buffer[at..].chunks_exact_mut(width).zip(ids);
    if width == 2 {
        slots.for_each(|(out, id)| out.copy_from_slice(&(id as u16).to_le_bytes()));
    } else {
        slots.for_each(|(out, id)| out.copy_from_slice(&id.to_le_bytes()));
    }
}

/// Writes token ids as [`write_npy_ids`] does, `len` of them given as
/// pieces, each a list of indices into its own map (an interned song: its
/// token indices and their ids): the values are mapped into the file's
/// buffer, never gathered into one array. An error if the pieces do not
/// hold `len`.
pub fn write_npy_ids_mapped<'a>(
    path: &Path,
    len: usize,
    width: usize,
    pieces: impl Iterator<Item = (&'a [u32], &'a [u32])>,
) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(&npy_header(id_descr(width), len))?;
    let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut written = 0usize;
    for (indices, map) in pieces {
        for part in indices.chunks(CHUNK / width) {
            put_ids(
                &mut buffer,
                part.iter().map(|&i| map[i as usize]),
                part.len(),
                width,
            );
            written += part.len();
            if buffer.len() >= CHUNK {
                file.write_all(&buffer)?;
                buffer.clear();
            }
        }
    }
    file.write_all(&buffer)?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {written} values for an array of {len}", path.display()),
        ));
    }
    Ok(())
}

/// Arrays are converted to and from bytes through a buffer of this size,
/// never as one second copy of a 100 MB array.
const CHUNK: usize = 1 << 20;

fn write_npy<'a, T: 'a>(
    path: &Path,
    descr: &str,
    len: usize,
    chunks: impl Iterator<Item = &'a [T]>,
    to_bytes: impl Fn(&[T], &mut Vec<u8>),
) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(&npy_header(descr, len))?;
    let mut buffer = Vec::with_capacity(CHUNK);
    for chunk in chunks {
        buffer.clear();
        to_bytes(chunk, &mut buffer);
        file.write_all(&buffer)?;
    }
    Ok(())
}

fn npy_header(descr: &str, len: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({len},), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n',
    // padded so that the data starts at a multiple of 64 bytes.
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(10 + header_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out
}

/// Reads a 1-D .npy file of one of the dtypes `descrs` (`<u2`, `<u4`,
/// `<u8`); `from_bytes` gets the file's value width with each chunk.
fn read_npy<T>(
    path: &Path,
    descrs: &[&str],
    from_bytes: impl Fn(usize, &[u8], &mut Vec<T>),
) -> io::Result<Vec<T>> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut file = io::BufReader::with_capacity(CHUNK, fs::File::open(path)?);
    let mut magic = [0u8; 10];
    file.read_exact(&mut magic)
        .map_err(|_| bad("not a .npy file"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let header_len = match magic[6] {
        1 => u16::from_le_bytes([magic[8], magic[9]]) as usize,
        2 | 3 => {
            let mut rest = [0u8; 2];
            file.read_exact(&mut rest)
                .map_err(|_| bad("truncated header"))?;
            u32::from_le_bytes([magic[8], magic[9], rest[0], rest[1]]) as usize
        }
        _ => return Err(bad("unsupported .npy version")),
    };
    let mut header = vec![0u8; header_len];
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated header"))?;
    let header = String::from_utf8_lossy(&header);
    let descr = descrs
        .iter()
        .find(|d| header.contains(&format!("'descr': '{d}'")))
        .filter(|_| !header.contains("'fortran_order': True"))
        .ok_or_else(|| {
            bad(&format!(
                "expected a 1-D array of dtype {}, header is {}",
                descrs.join(" or "),
                header.trim()
            ))
        })?;
    // The dtype's last digit: its bytes per value.
    let width = (descr.as_bytes()[descr.len() - 1] - b'0') as usize;
    let len: usize = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split([',', ')']).next())
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| bad("cannot read the shape"))?;
    let expected = len
        .checked_mul(width)
        .ok_or_else(|| bad("shape too large"))?;
    let preamble = if magic[6] == 1 { 10 } else { 12 } + header_len;
    let actual = (file.get_ref().metadata()?.len() as usize).saturating_sub(preamble);
    if actual != expected {
        return Err(bad(&format!(
            "expected {expected} data bytes, found {actual}"
        )));
    }
    let mut out = Vec::with_capacity(len);
    let mut buffer = vec![0u8; CHUNK];
    let mut left = expected;
    while left > 0 {
        let n = left.min(CHUNK);
        file.read_exact(&mut buffer[..n])?;
        from_bytes(width, &buffer[..n], &mut out);
        left -= n;
    }
    Ok(out)
}

/// Writes `value` as pretty JSON into `path` (a small helper every stage uses
/// for reports and metrics).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    // Buffered: serde writes a pretty report token by token (9,000 write
    // calls for encode's report of 186 songs, unbuffered).
    let mut file = io::BufWriter::new(fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut file, value)?;
    file.write_all(b"\n")?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_u32(&p, &[1, 2, 3, u32::MAX]).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!(
            (bytes.len() - 16) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        assert_eq!(read_npy_u32(&p).unwrap(), vec![1, 2, 3, u32::MAX]);
        let q = dir.path().join("b.npy");
        write_npy_u64(&q, &[]).unwrap();
        assert!(read_npy_u64(&q).unwrap().is_empty());
        assert!(read_npy_u64(&p).is_err(), "dtype mismatch is an error");
        // Token ids: 2 or 4 bytes each, read back as u32s either way.
        for (width, ids) in [(2, vec![0, 7, 65_535]), (4, vec![0, 65_536, u32::MAX])] {
            write_npy_ids(&p, &ids, width).unwrap();
            let data = fs::metadata(&p).unwrap().len() - 3 * width as u64;
            assert_eq!(data % 64, 0, "{width}-byte ids start on a 64-byte boundary");
            assert_eq!(read_npy_ids(&p).unwrap(), ids);
        }
        assert!(read_npy_u32(&p).is_ok(), "4-byte ids are a <u4 array");
        write_npy_ids(&p, &[1, 2], 2).unwrap();
        assert!(read_npy_u32(&p).is_err(), "2-byte ids are not");
        assert_eq!(id_width(1 << 16), 2);
        assert_eq!(id_width((1 << 16) + 1), 4);
    }

    #[test]
    fn dataset_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = Vocab {
            tokens: vec![PAD.into(), UNK.into(), "start".into(), "finish".into()],
            counts: vec![0, 0, 2, 2],
        };
        let mut train = Split::new();
        train.push_song(&[2, 1, 3]);
        train.push_song(&[2, 3]);
        let mut val = Split::new();
        val.push_song(&[2, 3]);
        let ds = Dataset { vocab, train, val };
        ds.write(dir.path()).unwrap();
        let back = Dataset::load(dir.path()).unwrap();
        assert_eq!(back.train, ds.train);
        assert_eq!(back.train.song(1), &[2, 3]);
        assert_eq!(back.vocab, ds.vocab);
        write_npy_u32(&dir.path().join("val.npy"), &[2, 9]).unwrap();
        assert!(
            Dataset::load(dir.path()).is_err(),
            "an id outside the vocabulary is rejected"
        );
    }
}
