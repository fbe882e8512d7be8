//! The song-set layout that encode writes and limit, vocab (and sample) read:
//!
//! - `token_table.txt`: the distinct tokens, one per line, sorted by name;
//!   a token's local id is its line number (from 0);
//! - `ids.npy`: the local ids of every song, concatenated: `u16` (`<u2`)
//!   when the table has at most 65,536 tokens, else `u32` (`<u4`); sets
//!   written before this rule hold `u32` and still read;
//! - `offsets.npy`: `u64`, songs + 1 entries: song `i` is
//!   `ids[offsets[i]..offsets[i+1]]`;
//! - `songs.json`: `[{"path": ..., "blake3": ...}, ...]`, one per song: the
//!   source file (relative to the scrape output) and the blake3 of its bytes;
//! - `codec.json`: the encode options (decode needs `steps_per_beat`).
//!
//! The same songs as readable lines, one per song (`tokens.txt`): `vgmake
//! lines DIR` prints them from any song set folder ([`SongSet::write_lines_to`]);
//! encode writes the file itself only with `lines = true`.
//!
//! Why ids and not text: on 10,000 songs (tens of millions of tokens) the
//! text is hundreds of MB and limit would spend its time copying it. With
//! ids, limit reads a song's event count from the offsets and its longest
//! wait from a per-id table, and vocab counts with an array instead of a hash
//! map. numpy reads the arrays directly.

use std::fs;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::api::{IoContext, StageError};
use crate::dataset::{
    id_width, read_npy_ids, read_npy_u64, write_npy_ids, write_npy_ids_mapped, write_npy_u64,
};
use crate::midi::encoder::Interned;
use crate::midi::radix;
use crate::midi::tokens::{Token, name_key};
use crate::midi::{CODEC_VERSION, EncodeOptions, InstrumentGroups, NoteFormat, Transpose};

/// The layout's version: 2 since `ids.npy` holds `u16` ids where they fit.
/// Part of the version of each kind that writes song sets (encode, limit):
/// a cache shared with an older vgmake never hands it a set it cannot read.
pub const SONG_SET_VERSION: u32 = 2;

pub const TABLE_FILE: &str = "token_table.txt";
pub const IDS_FILE: &str = "ids.npy";
pub const OFFSETS_FILE: &str = "offsets.npy";
pub const SONGS_FILE: &str = "songs.json";
pub const CODEC_FILE: &str = "codec.json";
pub const TOKENS_FILE: &str = "tokens.txt";

/// One song's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SongInfo {
    pub path: String,
    /// blake3 of the source file's bytes (hex): the train/validation split
    /// hashes it, so it does not move when encode options or filters change.
    pub blake3: String,
}

/// The encode options as stored in `codec.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecInfo {
    pub codec_version: u32,
    pub steps_per_beat: u32,
    pub velocity_step: u8,
    pub tempo_step: u32,
    pub note_off_velocity: bool,
    pub instrument_groups: String,
    pub transpose: String,
    /// "on_off" (absent in files written before the duration format) or
    /// "duration".
    #[serde(default = "on_off", skip_serializing_if = "is_on_off")]
    pub note_format: String,
}

fn on_off() -> String {
    NoteFormat::OnOff.name().into()
}

fn is_on_off(format: &str) -> bool {
    format == NoteFormat::OnOff.name()
}

impl CodecInfo {
    pub fn from_options(options: &EncodeOptions) -> Self {
        CodecInfo {
            codec_version: CODEC_VERSION,
            steps_per_beat: options.steps_per_beat,
            velocity_step: options.velocity_step,
            tempo_step: options.tempo_step,
            note_off_velocity: options.note_off_velocity,
            instrument_groups: options.instrument_groups.name().into(),
            transpose: options.transpose.name().into(),
            note_format: on_off(),
        }
    }

    /// The same with a note format.
    pub fn with_format(mut self, format: NoteFormat) -> Self {
        self.note_format = format.name().into();
        self
    }

    pub fn note_format(&self) -> NoteFormat {
        NoteFormat::parse(&self.note_format).unwrap_or_default()
    }

    pub fn options(&self) -> EncodeOptions {
        EncodeOptions {
            steps_per_beat: self.steps_per_beat,
            velocity_step: self.velocity_step,
            tempo_step: self.tempo_step,
            note_off_velocity: self.note_off_velocity,
            instrument_groups: InstrumentGroups::parse(&self.instrument_groups).unwrap_or_default(),
            transpose: Transpose::parse(&self.transpose).unwrap_or_default(),
        }
    }
}

/// Songs as local token ids over a table of distinct tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SongSet {
    pub table: Vec<String>,
    pub ids: Vec<u32>,
    pub offsets: Vec<u64>,
    pub infos: Vec<SongInfo>,
    pub codec: CodecInfo,
}

impl SongSet {
    pub fn len(&self) -> usize {
        self.infos.len()
    }
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Song `i`'s local ids.
    pub fn song(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Song `i` as a token line.
    pub fn line(&self, i: usize) -> String {
        let tokens: Vec<&str> = self
            .song(i)
            .iter()
            .map(|&id| self.table[id as usize].as_str())
            .collect();
        tokens.join(" ")
    }

    /// Interns token lines (in parallel); the table comes out sorted by
    /// name, so the result does not depend on the thread count.
    pub fn from_lines(lines: &[&str], infos: Vec<SongInfo>, codec: CodecInfo) -> SongSet {
        let per_chunk = lines.len().div_ceil(64).max(16);
        let chunks: Vec<(Vec<&str>, Vec<u32>, Vec<usize>)> = lines
            .par_chunks(per_chunk)
            .map(|chunk| {
                let mut local: FxHashMap<&str, u32> = FxHashMap::default();
                let mut names = Vec::new();
                let mut ids = Vec::new();
                let mut lengths = Vec::with_capacity(chunk.len());
                for line in chunk {
                    let before = ids.len();
                    for token in line.split_ascii_whitespace() {
                        let id = *local.entry(token).or_insert_with(|| {
                            names.push(token);
                            names.len() as u32 - 1
                        });
                        ids.push(id);
                    }
                    lengths.push(ids.len() - before);
                }
                (names, ids, lengths)
            })
            .collect();
        let mut table: Vec<&str> = chunks.iter().flat_map(|c| c.0.iter().copied()).collect();
        table.par_sort_unstable();
        table.dedup();
        let index: FxHashMap<&str, u32> = table
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i as u32))
            .collect();
        let mut ids = Vec::with_capacity(chunks.iter().map(|c| c.1.len()).sum());
        let mut offsets = Vec::with_capacity(lines.len() + 1);
        offsets.push(0u64);
        for (names, local_ids, lengths) in &chunks {
            let remap: Vec<u32> = names.iter().map(|n| index[n]).collect();
            ids.extend(local_ids.iter().map(|&l| remap[l as usize]));
            for len in lengths {
                offsets.push(offsets.last().copied().unwrap_or(0) + *len as u64);
            }
        }
        SongSet {
            table: table.into_iter().map(String::from).collect(),
            ids,
            offsets,
            infos,
            codec,
        }
    }

    /// Interns songs given as [`Token::code`]s: the same set as
    /// [`SongSet::from_lines`] on their lines (through [`Interned`] songs).
    pub fn from_codes(songs: &[&[u64]], infos: Vec<SongInfo>, codec: CodecInfo) -> SongSet {
        let interned: Vec<Interned> = songs.par_iter().map(|s| Interned::from_codes(s)).collect();
        let refs: Vec<&Interned> = interned.iter().collect();
        SongSet::from_interned(&refs, infos, codec)
    }

    /// The song set of songs interned one by one (the encode stage's form):
    /// see [`InternedTable`]; each song's tokens go through its own few
    /// hundred codes' ids (no lookup per token).
    pub fn from_interned(songs: &[&Interned], infos: Vec<SongInfo>, codec: CodecInfo) -> SongSet {
        let table = InternedTable::new(songs);
        let mut ids = Vec::with_capacity(songs.iter().map(|s| s.ids.len()).sum());
        for (i, song) in songs.iter().enumerate() {
            let map = table.map(i);
            ids.extend(song.ids.iter().map(|&l| map[l as usize]));
        }
        SongSet {
            table: table
                .names()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect(),
            ids,
            offsets: interned_offsets(songs),
            infos,
            codec,
        }
    }

    /// Writes the song set of interned songs into `dir`: the same bytes as
    /// [`SongSet::from_interned`] then [`SongSet::write`], without the set
    /// in memory (each song's ids are mapped straight into the file's
    /// buffer: no second array of every token, no pass to copy it).
    pub fn write_interned(
        dir: &Path,
        songs: &[&Interned],
        infos: &[SongInfo],
        codec: &CodecInfo,
    ) -> Result<(), StageError> {
        let table = InternedTable::new(songs);
        let io = |name: &str| format!("writing {}", dir.join(name).display());
        fs::write(dir.join(TABLE_FILE), &table.lines).ctx(|| io(TABLE_FILE))?;
        let total = songs.iter().map(|s| s.ids.len()).sum();
        let pieces = songs
            .iter()
            .enumerate()
            .map(|(i, song)| (song.ids.as_slice(), table.map(i)));
        let width = id_width(table.len);
        write_npy_ids_mapped(&dir.join(IDS_FILE), total, width, pieces).ctx(|| io(IDS_FILE))?;
        write_npy_u64(&dir.join(OFFSETS_FILE), &interned_offsets(songs))
            .ctx(|| io(OFFSETS_FILE))?;
        write_infos(dir, infos, codec)
    }

    /// Writes the songs as `tokens.txt`, one line each (what
    /// [`write_lines`] writes for their lines).
    pub fn write_lines(&self, dir: &Path) -> Result<(), StageError> {
        let path = dir.join(TOKENS_FILE);
        fs::File::create(&path)
            .and_then(|file| self.write_lines_to(file))
            .ctx(|| format!("writing {}", path.display()))
    }

    /// Writes the songs to `out`, one line each (the bytes of
    /// `tokens.txt`), through a buffer: `vgmake lines` prints them.
    pub fn write_lines_to(&self, mut file: impl Write) -> std::io::Result<()> {
        const FLUSH: usize = 1 << 18;
        // Each token's text after a space, padded: one fixed-size copy per
        // token (then cut back to its length).
        let padded: Vec<([u8; 32], usize)> = self
            .table
            .iter()
            .map(|t| {
                let mut bytes = [0u8; 32];
                let len = (t.len() + 1).min(32);
                bytes[0] = b' ';
                bytes[1..len].copy_from_slice(&t.as_bytes()[..len - 1]);
                (bytes, len)
            })
            .collect();
        let long = self.table.iter().any(|t| t.len() >= 32);
        {
            let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + (1 << 16));
            for i in 0..self.len() {
                let Some((&first, rest)) = self.song(i).split_first() else {
                    buf.push(b'\n');
                    continue;
                };
                buf.extend_from_slice(self.table[first as usize].as_bytes());
                for &id in rest {
                    if long {
                        buf.push(b' ');
                        buf.extend_from_slice(self.table[id as usize].as_bytes());
                    } else {
                        let (bytes, len) = &padded[id as usize];
                        let at = buf.len();
                        buf.extend_from_slice(bytes);
                        buf.truncate(at + len);
                    }
                }
                buf.push(b'\n');
                if buf.len() >= FLUSH {
                    file.write_all(&buf)?;
                    buf.clear();
                }
            }
            file.write_all(&buf)?;
            file.flush()
        }
    }

    /// The songs at `keep` (in that order), sharing this set's table.
    pub fn subset(&self, keep: &[usize]) -> SongSet {
        let mut ids = Vec::with_capacity(keep.iter().map(|&i| self.song(i).len()).sum());
        let mut offsets = vec![0u64];
        for &i in keep {
            ids.extend_from_slice(self.song(i));
            offsets.push(ids.len() as u64);
        }
        SongSet {
            table: self.table.clone(),
            ids,
            offsets,
            infos: keep.iter().map(|&i| self.infos[i].clone()).collect(),
            codec: self.codec.clone(),
        }
    }

    /// Reads a song set from `dir`, checking that its files agree.
    pub fn read(dir: &Path) -> Result<SongSet, StageError> {
        let path = |name: &str| dir.join(name);
        let bad = |name: &str, what: String| {
            StageError::Input(format!("{}: {what}", path(name).display()))
        };
        let table_text = fs::read_to_string(path(TABLE_FILE))
            .ctx(|| format!("reading {}", path(TABLE_FILE).display()))?;
        let table: Vec<String> = table_text.lines().map(String::from).collect();
        let ids = read_npy_ids(&path(IDS_FILE))
            .ctx(|| format!("reading {}", path(IDS_FILE).display()))?;
        let offsets = read_npy_u64(&path(OFFSETS_FILE))
            .ctx(|| format!("reading {}", path(OFFSETS_FILE).display()))?;
        let json = |name: &str| -> Result<Vec<u8>, StageError> {
            fs::read(path(name)).ctx(|| format!("reading {}", path(name).display()))
        };
        let infos: Vec<SongInfo> = serde_json::from_slice(&json(SONGS_FILE)?)
            .map_err(|e| bad(SONGS_FILE, e.to_string()))?;
        let codec: CodecInfo = serde_json::from_slice(&json(CODEC_FILE)?)
            .map_err(|e| bad(CODEC_FILE, e.to_string()))?;
        let offsets_ok = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last() == Some(&(ids.len() as u64));
        if !offsets_ok || offsets.len() != infos.len() + 1 {
            return Err(bad(
                OFFSETS_FILE,
                format!(
                    "{} offsets do not describe {} songs over {} ids",
                    offsets.len(),
                    infos.len(),
                    ids.len()
                ),
            ));
        }
        if let Some(&id) = ids.par_iter().find_any(|&&id| id as usize >= table.len()) {
            return Err(bad(
                IDS_FILE,
                format!("id {id} is outside the table of {} tokens", table.len()),
            ));
        }
        Ok(SongSet {
            table,
            ids,
            offsets,
            infos,
            codec,
        })
    }

    /// Writes the song set into `dir` (not `tokens.txt`: see [`write_lines`]).
    pub fn write(&self, dir: &Path) -> Result<(), StageError> {
        let io = |name: &str| format!("writing {}", dir.join(name).display());
        let mut table = String::new();
        for token in &self.table {
            table.push_str(token);
            table.push('\n');
        }
        fs::write(dir.join(TABLE_FILE), table).ctx(|| io(TABLE_FILE))?;
        let width = id_width(self.table.len());
        write_npy_ids(&dir.join(IDS_FILE), &self.ids, width).ctx(|| io(IDS_FILE))?;
        write_npy_u64(&dir.join(OFFSETS_FILE), &self.offsets).ctx(|| io(OFFSETS_FILE))?;
        write_infos(dir, &self.infos, &self.codec)
    }
}

/// `songs.json` and `codec.json`.
fn write_infos(dir: &Path, infos: &[SongInfo], codec: &CodecInfo) -> Result<(), StageError> {
    let io = |name: &str| format!("writing {}", dir.join(name).display());
    let json = |v: serde_json::Result<Vec<u8>>| v.map_err(|e| StageError::Other(e.to_string()));
    fs::write(
        dir.join(SONGS_FILE),
        json(serde_json::to_vec_pretty(infos))?,
    )
    .ctx(|| io(SONGS_FILE))?;
    fs::write(
        dir.join(CODEC_FILE),
        json(serde_json::to_vec_pretty(codec))?,
    )
    .ctx(|| io(CODEC_FILE))?;
    Ok(())
}

/// The token table of interned songs: every distinct code of all songs
/// named once and ordered by name, which gives each its id; and each
/// song's codes' ids.
///
/// One radix sort: all songs' codes (a few hundred per song) with their
/// [`name_key`]s, which order them as their names do, so sorting them
/// dedups the codes, ranks each song's codes and orders the table at once;
/// only the distinct codes are then named. Codes that are no token have
/// no key and an empty name: they come first, by code. On the corpus
/// (26,000 distinct codes of 60,000) that replaced a sort by code and two
/// sorts of the names' first 16 bytes (BENCHMARKS.md, #18, session 11).
struct InternedTable {
    /// The names in id order, each followed by a newline (the bytes of
    /// `token_table.txt`).
    lines: Vec<u8>,
    len: usize,
    /// Every song's codes' ids, one song after another (song `i`'s from
    /// `starts[i]`): the song's index -> id map.
    ids: Vec<u32>,
    starts: Vec<usize>,
}

impl InternedTable {
    fn new(songs: &[&Interned]) -> InternedTable {
        let total = songs.iter().map(|s| s.codes.len()).sum();
        let mut starts = Vec::with_capacity(songs.len() + 1);
        let mut all: Vec<u64> = Vec::with_capacity(total);
        for song in songs {
            starts.push(all.len());
            all.extend_from_slice(&song.codes);
        }
        starts.push(all.len());
        // (key, index into `all`): sorted in place, no key looked up
        // through an index.
        let mut keyed: Vec<(u64, u32)> = all
            .iter()
            .enumerate()
            .map(|(i, &code)| (name_key(code).unwrap_or(0), i as u32))
            .collect();
        radix::radix_sort_by_key(&mut keyed, |&(key, _)| key);
        let nameless = keyed.iter().take_while(|k| k.0 == 0).count();
        keyed[..nameless].sort_by_key(|&(_, i)| all[i as usize]);
        let mut lines: Vec<u8> = Vec::with_capacity(total * 8);
        let mut len = 0;
        let mut ids = vec![0u32; all.len()];
        let mut last = None;
        for &(_, i) in &keyed {
            let code = all[i as usize];
            if last != Some(code) {
                if let Some(token) = Token::from_code(code) {
                    token.write_to(&mut lines);
                }
                lines.push(b'\n');
                len += 1;
                last = Some(code);
            }
            ids[i as usize] = len as u32 - 1;
        }
        InternedTable {
            lines,
            len,
            ids,
            starts,
        }
    }

    /// The names, in id order.
    fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.split(|&b| b == b'\n').take(self.len)
    }

    /// Song `i`'s codes' ids (its index -> id map).
    fn map(&self, i: usize) -> &[u32] {
        &self.ids[self.starts[i]..self.starts[i + 1]]
    }
}

fn interned_offsets(songs: &[&Interned]) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(songs.len() + 1);
    offsets.push(0u64);
    for song in songs {
        offsets.push(offsets.last().copied().unwrap_or(0) + song.ids.len() as u64);
    }
    offsets
}

/// Writes token lines as `tokens.txt`, one song per line.
pub fn write_lines(dir: &Path, lines: &[&str]) -> Result<(), StageError> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(dir.join(TOKENS_FILE), text)
        .ctx(|| format!("writing {}", dir.join(TOKENS_FILE).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(i: usize) -> SongInfo {
        SongInfo {
            path: format!("s{i}.mid"),
            blake3: String::new(),
        }
    }

    #[test]
    fn interned_lines_read_back_and_subset() {
        let lines = [
            "start b a wait:4 finish",
            "start a finish",
            "start c finish",
        ];
        let codec = CodecInfo::from_options(&EncodeOptions::default());
        let set = SongSet::from_lines(&lines, (0..3).map(info).collect(), codec);
        assert_eq!(set.table, ["a", "b", "c", "finish", "start", "wait:4"]);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(set.line(i), *line);
        }
        let dir = tempfile::tempdir().unwrap();
        set.write(dir.path()).unwrap();
        let back = SongSet::read(dir.path()).unwrap();
        assert_eq!(back, set);
        let sub = set.subset(&[2, 0]);
        assert_eq!(sub.line(0), lines[2]);
        assert_eq!(sub.line(1), lines[0]);
        assert_eq!(sub.infos[0].path, "s2.mid");
        // From token codes: the same set as from the lines, and the same text.
        let real = [
            "start tempo:120 i33:v60:64 wait:4 end:i33:v60:64 finish",
            "start i128:v100:36 wait:1 end:i128:36 wait:12 finish",
        ];
        let codes: Vec<Vec<u64>> = real
            .iter()
            .map(|l| {
                l.split(' ')
                    .map(|t| Token::parse(t).unwrap().code())
                    .collect()
            })
            .collect();
        let refs: Vec<&[u64]> = codes.iter().map(|c| c.as_slice()).collect();
        let codec = CodecInfo::from_options(&EncodeOptions::default());
        let from_codes = SongSet::from_codes(&refs, (0..2).map(info).collect(), codec.clone());
        assert_eq!(
            from_codes,
            SongSet::from_lines(&real, (0..2).map(info).collect(), codec)
        );
        // Written from the interned songs without the set: the same files.
        let interned: Vec<Interned> = codes.iter().map(|c| Interned::from_codes(c)).collect();
        let interned: Vec<&Interned> = interned.iter().collect();
        let (whole, streamed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        from_codes.write(whole.path()).unwrap();
        SongSet::write_interned(
            streamed.path(),
            &interned,
            &from_codes.infos,
            &from_codes.codec,
        )
        .unwrap();
        for name in [TABLE_FILE, IDS_FILE, OFFSETS_FILE, SONGS_FILE, CODEC_FILE] {
            assert_eq!(
                fs::read(whole.path().join(name)).unwrap(),
                fs::read(streamed.path().join(name)).unwrap(),
                "{name}"
            );
        }
        let text_dir = tempfile::tempdir().unwrap();
        from_codes.write_lines(text_dir.path()).unwrap();
        write_lines(dir.path(), &real).unwrap();
        assert_eq!(
            fs::read(text_dir.path().join(TOKENS_FILE)).unwrap(),
            fs::read(dir.path().join(TOKENS_FILE)).unwrap()
        );
        // Disagreeing files are an error naming the file.
        write_npy_u64(&dir.path().join(OFFSETS_FILE), &[0, 2]).unwrap();
        let err = SongSet::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("offsets.npy"), "{err}");
    }

    /// The table's radix sort by name keys against a plain sort of the
    /// names (then codes), on songs whose names often share a long prefix
    /// ("end:i128:v100:10" / "end:i128:v100:100"), and with codes that are
    /// no token (empty names, ordered by code), over 64 songs.
    #[test]
    fn the_interned_table_orders_like_a_sort_of_the_names() {
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let songs: Vec<Interned> = (0..64)
            .map(|_| {
                let codes: Vec<u64> = (0..300)
                    .map(|_| match next(10) {
                        // Codes of no token (kind 7 and up): empty names.
                        0 => (7 + next(2)) << 56 | next(5),
                        1 => Token::Wait(next(2000) as u32).code(),
                        _ => Token::NoteOff {
                            program: 120 + next(9) as u8,
                            velocity: Some(90 + 10 * next(4) as u8),
                            pitch: next(128) as u8,
                        }
                        .code(),
                    })
                    .collect();
                Interned::from_codes(&codes)
            })
            .collect();
        let refs: Vec<&Interned> = songs.iter().collect();
        let table = InternedTable::new(&refs);
        let name = |code: u64| Token::from_code(code).map_or(String::new(), |t| t.to_string());
        let mut expected: Vec<u64> = songs.iter().flat_map(|s| s.codes.clone()).collect();
        expected.sort_by(|&a, &b| name(a).cmp(&name(b)).then(a.cmp(&b)));
        expected.dedup();
        let names: Vec<&[u8]> = table.names().collect();
        assert_eq!(names.len(), expected.len());
        for (got, &code) in names.iter().zip(&expected) {
            assert_eq!(*got, name(code).as_bytes());
        }
        assert!(names.iter().any(|n| n.len() > 16) && names.contains(&&b""[..]));
        // Each song's map sends its codes to their ids.
        for (i, song) in songs.iter().enumerate() {
            for (&code, &id) in song.codes.iter().zip(table.map(i)) {
                assert_eq!(expected[id as usize], code);
            }
        }
    }
}
