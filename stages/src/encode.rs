//! The `encode` stage kind: every MIDI file of its input to one token line,
//! in parallel, memoized per song (key: blake3 of the file's bytes, the
//! encode options and the codec version), so one new file encodes one file.
//!
//! Output: the song set (token table, ids, offsets, `songs.json`,
//! `codec.json`, see [`crate::songs`]), `report.json` (every file, encoded
//! or skipped and why) and `metrics.json`; with `lines = true` also
//! `tokens.txt` (the same songs as readable lines, which `vgmake lines`
//! prints from the song set on demand: written by default it was most of
//! the stage's output bytes, three times the ids, hashed again at commit).

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::api::*;
use crate::dataset::write_json;
use crate::input_file;
use crate::midi::encoder::Interned;
use crate::midi::{self, EncodeOptions, InstrumentGroups, NoteFormat, Transpose};
use crate::songs::{CodecInfo, SongInfo, SongSet};
use crate::walk;

pub struct EncodeKind;

/// What the memo stores per song.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Encoded {
        /// The tokens, interned: distinct [`crate::midi::tokens::Token::code`]s
        /// and an index into them per token.
        song: Interned,
        warnings: Vec<String>,
    },
    Skipped {
        reason: String,
    },
}

impl Outcome {
    /// Writes the memo's bytes into `out` (replacing what it held): `I`,
    /// the number of warnings (u32 LE), each as its length (u32 LE) and
    /// UTF-8 bytes, the number of distinct codes (u32 LE) and each as a u64
    /// LE, then the tokens to the end: `2` and each as a u16 LE index into
    /// the codes (when they number at most 65,536), or `4` and each as a u32
    /// LE. Or `S` and the reason (UTF-8).
    ///
    /// Entries of the form before (`E`, the warnings, then `4` and every
    /// token's code narrowed to a u32 LE, or `8` and each as its u64 LE)
    /// are still read.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Outcome::Encoded { song, warnings } => {
                let width = if song.codes.len() <= 1 << 16 { 2 } else { 4 };
                out.push(b'I');
                out.extend_from_slice(&(warnings.len() as u32).to_le_bytes());
                for w in warnings {
                    out.extend_from_slice(&(w.len() as u32).to_le_bytes());
                    out.extend_from_slice(w.as_bytes());
                }
                out.extend_from_slice(&(song.codes.len() as u32).to_le_bytes());
                // Sized first, then filled in place: the copies vectorize
                // (a push per token cost ~1.5 ms a corpus).
                let at = out.len();
                out.resize(at + song.codes.len() * 8, 0);
                for (bytes, c) in out[at..].chunks_exact_mut(8).zip(&song.codes) {
                    bytes.copy_from_slice(&c.to_le_bytes());
                }
                out.push(width as u8);
                let at = out.len();
                out.resize(at + song.ids.len() * width, 0);
                let ids = out[at..].chunks_exact_mut(width).zip(&song.ids);
                if width == 2 {
                    ids.for_each(|(bytes, &i)| bytes.copy_from_slice(&(i as u16).to_le_bytes()));
                } else {
                    ids.for_each(|(bytes, i)| bytes.copy_from_slice(&i.to_le_bytes()));
                }
            }
            Outcome::Skipped { reason } => {
                out.push(b'S');
                out.extend_from_slice(reason.as_bytes());
            }
        }
    }

    /// The outcome of memo bytes; `None` when they are not one (a miss).
    fn from_bytes(bytes: &[u8]) -> Option<Outcome> {
        let (&tag, mut rest) = bytes.split_first()?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        match tag {
            b'E' | b'I' => {
                let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
                let mut warnings = Vec::new();
                for _ in 0..count {
                    let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
                    warnings.push(String::from_utf8(take(len as usize)?.to_vec()).ok()?);
                }
                let song = if tag == b'I' {
                    let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                    let codes: Vec<u64> = take(n.checked_mul(8)?)?
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    let width = take(1)?[0] as usize;
                    if !matches!(width, 2 | 4) || rest.len() % width != 0 || rest.is_empty() {
                        return None;
                    }
                    let ids: Vec<u32> = if width == 2 {
                        rest.chunks_exact(2)
                            .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as u32)
                            .collect()
                    } else {
                        rest.chunks_exact(4)
                            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                            .collect()
                    };
                    if ids.iter().any(|&i| i as usize >= n) {
                        return None;
                    }
                    Interned { codes, ids }
                } else {
                    let width = take(1)?[0] as usize;
                    if !matches!(width, 4 | 8) || rest.len() % width != 0 || rest.is_empty() {
                        return None;
                    }
                    let codes: Vec<u64> = if width == 4 {
                        rest.chunks_exact(4)
                            .map(|c| widen(u32::from_le_bytes(c.try_into().unwrap())))
                            .collect()
                    } else {
                        rest.chunks_exact(8)
                            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                            .collect()
                    };
                    Interned::from_codes(&codes)
                };
                Some(Outcome::Encoded { song, warnings })
            }
            b'S' => Some(Outcome::Skipped {
                reason: String::from_utf8(rest.to_vec()).ok()?,
            }),
            _ => None,
        }
    }
}

/// One line of `report.json`'s `files`.
#[derive(Debug, Clone, Serialize)]
struct FileReport {
    path: String,
    status: &'static str,
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Report {
    encoded: usize,
    skipped: usize,
    /// Skipped files per reason kind ("not a MIDI file", "no notes", ...).
    skipped_by_reason: std::collections::BTreeMap<String, usize>,
    files: Vec<FileReport>,
}

/// The options from the stage's parameters.
pub fn options_from(params: &Params) -> EncodeOptions {
    EncodeOptions {
        steps_per_beat: params.int("steps_per_beat") as u32,
        velocity_step: params.int("velocity_step") as u8,
        tempo_step: params.int("tempo_step") as u32,
        note_off_velocity: params.bool("note_off_velocity"),
        instrument_groups: InstrumentGroups::parse(params.str("instrument_groups"))
            .unwrap_or_default(),
        transpose: Transpose::parse(params.str("transpose")).unwrap_or_default(),
    }
}

/// The note format from the stage's parameters.
pub fn note_format_from(params: &Params) -> NoteFormat {
    NoteFormat::parse(params.str("note_format")).unwrap_or_default()
}

impl StageKind for EncodeKind {
    fn name(&self) -> &'static str {
        "encode"
    }
    fn version(&self) -> u32 {
        // What it writes changes with either.
        midi::CODEC_VERSION * 100 + crate::songs::SONG_SET_VERSION
    }
    fn doc(&self) -> &'static str {
        "encodes every MIDI file into one line of MuseNet-style tokens"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                "steps_per_beat",
                ParamType::Int { min: 1, max: 960 },
                16,
                "grid steps per quarter note (onsets and lengths round to the grid)",
            ),
            ParamSpec::new(
                "velocity_step",
                ParamType::Int { min: 1, max: 127 },
                10,
                "velocities round to multiples of this (1 keeps them all)",
            ),
            ParamSpec::new(
                "tempo_step",
                ParamType::Int { min: 1, max: 100 },
                10,
                "tempos (bpm) round to multiples of this",
            ),
            ParamSpec::new(
                "note_off_velocity",
                ParamType::Bool,
                true,
                "end tokens repeat the note's velocity (false: end:i{program}:{pitch})",
            ),
            ParamSpec::new(
                "instrument_groups",
                ParamType::Str {
                    choices: &["none", "family", "chip"],
                },
                "none",
                "programs grouped: none, the 16 GM families, or chip roles (lead/harmony/bass/drums)",
            ),
            ParamSpec::new(
                "transpose",
                ParamType::Str {
                    choices: &["none", "c"],
                },
                "none",
                "\"c\": move each song to C major / A minor (estimated key, smallest shift)",
            ),
            ParamSpec::new(
                "note_format",
                ParamType::Str {
                    choices: &["on_off", "duration"],
                },
                "on_off",
                "on_off: start and end tokens; duration: a start then its length (d:N steps, long notes tied by bars), no end tokens",
            ),
            ParamSpec::new(
                "lines",
                ParamType::Bool,
                false,
                "also write tokens.txt, one readable line per song (`vgmake lines out/default/encode` prints the same from the song set)",
            ),
        ]
    }

    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[Slot {
            name: "songs",
            kinds: &["scrape", "command"],
            what: "a folder of MIDI files",
            optional: false,
        }])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::output("encoded", "songs encoded").decimals(0)]
    }

    fn report(&self) -> ReportSpec {
        ReportSpec {
            summaries: vec![SummarySpec {
                title: "MIDI files encoded",
                file: "report.json",
                facts: vec![
                    Fact::Number {
                        pointer: "/encoded",
                        label: "songs encoded",
                    },
                    Fact::Number {
                        pointer: "/skipped",
                        label: "files skipped",
                    },
                    Fact::Counts {
                        pointer: "/skipped_by_reason",
                        label: "skipped, by reason",
                    },
                ],
            }],
            ..ReportSpec::default()
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let input = ctx.input("songs")?;
        let options = options_from(ctx.params);
        let format = note_format_from(ctx.params);
        let files = walk::midi_files(&input.dir)
            .ctx(|| format!("listing MIDI files in {}", input.dir.display()))?;
        if files.is_empty() {
            return Err(StageError::Input(format!(
                "no MIDI files (.mid, .midi, .kar, .rmi) in {}",
                input.dir.display()
            )));
        }
        ctx.progress.set_total(files.len() as u64);
        let fingerprint = options.fingerprint_as(format);
        let cancelled = AtomicBool::new(false);
        // Each worker reads files and writes memo entries through buffers of
        // its own, reused from song to song.
        let buffers = || (Vec::new(), Vec::new());
        let encode_one = |(bytes, entry): &mut (Vec<u8>, Vec<u8>),
                          rel: &std::path::PathBuf|
         -> Option<Result<(SongInfo, Outcome), StageError>> {
            if ctx.is_cancelled() {
                cancelled.store(true, Ordering::Relaxed);
                return None;
            }
            let path = input.dir.join(rel);
            let name = walk::slash_path(rel);
            // At most midi::read::MAX_FILE_BYTES, regular files only.
            let result = match input_file::read_into(&path, bytes) {
                Ok(()) => {
                    // The engine's hash of the file, when it has one (the
                    // bytes read are then checked against it on a memo miss).
                    let verified = input.hashes.get(&name);
                    let hash = verified.unwrap_or_else(|| blake3::hash(bytes));
                    let outcome = encode_memoized(
                        ctx.memo,
                        &fingerprint,
                        (&hash, verified.is_some()),
                        bytes,
                        &options,
                        format,
                        entry,
                    );
                    match outcome {
                        Ok(outcome) => (hash.to_hex().to_string(), outcome),
                        Err(ChangedSinceVerified { now }) => {
                            return Some(Err(StageError::Input(format!(
                                "{}: changed while encode ran (the build verified blake3 {}, \
                                 the bytes read hash to {}); build again",
                                path.display(),
                                &hash.to_hex()[..16],
                                &now.to_hex()[..16]
                            ))));
                        }
                    }
                }
                Err(e) => (
                    String::new(),
                    Outcome::Skipped {
                        reason: e.to_string(),
                    },
                ),
            };
            ctx.progress.advance(1);
            Some(Ok((
                SongInfo {
                    path: name,
                    blake3: result.0,
                },
                result.1,
            )))
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
            .map_err(|e| StageError::Other(format!("starting worker threads: {e}")))?;
        let started = std::time::Instant::now();
        let results: Vec<Option<Result<(SongInfo, Outcome), StageError>>> =
            pool.install(|| files.par_iter().map_init(buffers, encode_one).collect());
        if cancelled.load(Ordering::Relaxed) {
            return Err(StageError::Cancelled);
        }
        let encoded = started.elapsed().as_secs_f64();
        let results: Vec<(SongInfo, Outcome)> =
            results.into_iter().flatten().collect::<Result<_, _>>()?;
        write_outputs(
            ctx,
            &options,
            format,
            ctx.params.bool("lines"),
            &results,
            &pool,
        )?;
        ctx.progress.log(&format!(
            "read and encoded {} files in {encoded:.3} s ({} threads), wrote the outputs in {:.3} s",
            files.len(),
            ctx.threads.max(1),
            started.elapsed().as_secs_f64() - encoded
        ));
        Ok(())
    }
}

/// A code of the old memo form (kind in the top 3 bits, fields in the 29
/// below) as a token code (kind in the top byte, fields in the low 32 bits).
fn widen(code: u32) -> u64 {
    ((code >> 29) as u64) << 56 | (code & ((1 << 29) - 1)) as u64
}

/// The bytes a stage read are not those the build verified (the file
/// changed after the check): nothing may be memoized for them.
#[derive(Debug, PartialEq)]
struct ChangedSinceVerified {
    /// The hash of the bytes read.
    now: blake3::Hash,
}

/// Encodes one file, or returns its memoized outcome; `entry` is the
/// buffer a new memo entry is written through. `file_hash` is the file's
/// hash and whether it came from the build's verification rather than from
/// `bytes`: a hit is then right by its key, and a miss first checks that
/// `bytes` are what was verified, so no entry is ever stored under a hash
/// its bytes do not have (the memo outlives the run, and is shared).
fn encode_memoized(
    memo: &dyn Memo,
    fingerprint: &str,
    (file_hash, verified): (&blake3::Hash, bool),
    bytes: &[u8],
    options: &EncodeOptions,
    format: NoteFormat,
    entry: &mut Vec<u8>,
) -> Result<Outcome, ChangedSinceVerified> {
    let mut hasher = blake3::Hasher::new();
    // "-codes": entries hold token codes in a binary form (older ones held
    // JSON with the token line; they are not looked up).
    hasher.update(b"vgmake-encode-codes\0");
    hasher.update(fingerprint.as_bytes());
    hasher.update(b"\0");
    hasher.update(file_hash.as_bytes());
    let key = hasher.finalize();
    if let Some(stored) = memo.get(&key)
        && let Some(outcome) = Outcome::from_bytes(&stored)
    {
        return Ok(outcome);
    }
    if verified {
        let now = blake3::hash(bytes);
        if now != *file_hash {
            return Err(ChangedSinceVerified { now });
        }
    }
    let outcome = match midi::read_song(bytes) {
        Ok(song) => Outcome::Encoded {
            song: midi::encoder::encode_song_interned(&song, options, format),
            warnings: song.warnings,
        },
        Err(e) => Outcome::Skipped {
            reason: e.to_string(),
        },
    };
    // A memo that cannot be written costs only speed next time.
    outcome.write_to(entry);
    let _ = memo.put(&key, entry);
    Ok(outcome)
}

/// The kind of a skip reason, for the totals ("malformed MIDI: ..." ->
/// "malformed MIDI").
fn reason_kind(reason: &str) -> String {
    let kind = reason.split([':', '(']).next().unwrap_or(reason).trim();
    kind.to_string()
}

fn write_outputs(
    ctx: &StageContext,
    options: &EncodeOptions,
    format: NoteFormat,
    lines: bool,
    results: &[(SongInfo, Outcome)],
    pool: &rayon::ThreadPool,
) -> Result<(), StageError> {
    let mut files = Vec::with_capacity(results.len());
    let mut skipped_by_reason = std::collections::BTreeMap::new();
    let mut songs: Vec<&Interned> = Vec::new();
    let mut infos: Vec<SongInfo> = Vec::new();
    let mut total_tokens = 0usize;
    for (info, outcome) in results {
        match outcome {
            Outcome::Encoded { song, warnings } => {
                let count = song.ids.len();
                total_tokens += count;
                songs.push(song);
                infos.push(info.clone());
                files.push(FileReport {
                    path: info.path.clone(),
                    status: "encoded",
                    reason: None,
                    warnings: warnings.clone(),
                    tokens: Some(count),
                });
            }
            Outcome::Skipped { reason } => {
                ctx.progress
                    .log(&format!("skipped {}: {reason}", info.path));
                *skipped_by_reason.entry(reason_kind(reason)).or_insert(0) += 1;
                files.push(FileReport {
                    path: info.path.clone(),
                    status: "skipped",
                    reason: Some(reason.clone()),
                    warnings: Vec::new(),
                    tokens: None,
                });
            }
        }
    }
    let report = Report {
        encoded: songs.len(),
        skipped: results.len() - songs.len(),
        skipped_by_reason,
        files,
    };
    let out = ctx.out_dir;
    write_json(&out.join("report.json"), &report).ctx(|| "writing report.json")?;
    if songs.is_empty() {
        let first: Vec<String> = report
            .files
            .iter()
            .take(5)
            .map(|f| format!("{}: {}", f.path, f.reason.as_deref().unwrap_or("")))
            .collect();
        return Err(StageError::Input(format!(
            "none of the {} MIDI files could be encoded; first reasons:\n  {}",
            results.len(),
            first.join("\n  ")
        )));
    }
    let metrics = serde_json::json!({
        "encoded": report.encoded,
        "skipped": report.skipped,
        "tokens": total_tokens,
        "tokens_per_song": total_tokens as f64 / songs.len() as f64,
    });
    write_json(&out.join("metrics.json"), &metrics).ctx(|| "writing metrics.json")?;
    let codec = CodecInfo::from_options(options).with_format(format);
    if lines {
        let set = pool.install(|| SongSet::from_interned(&songs, infos, codec));
        set.write_lines(out)?;
        set.write(out)?;
    } else {
        pool.install(|| SongSet::write_interned(out, &songs, &infos, &codec))?;
    }
    ctx.progress.message(&format!(
        "{} encoded, {} skipped",
        report.encoded, report.skipped
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_bytes(outcome: &Outcome) -> Vec<u8> {
        let mut out = b"left from the entry before".to_vec();
        outcome.write_to(&mut out);
        out
    }

    /// A memo in memory.
    #[derive(Default)]
    struct MapMemo(std::sync::Mutex<std::collections::HashMap<blake3::Hash, Vec<u8>>>);

    impl Memo for MapMemo {
        fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
            self.0.lock().unwrap().get(key).cloned()
        }
        fn put(&self, key: &blake3::Hash, value: &[u8]) -> std::io::Result<()> {
            self.0.lock().unwrap().insert(*key, value.to_vec());
            Ok(())
        }
        fn put_file(&self, _: &blake3::Hash, _: &std::path::Path) -> std::io::Result<()> {
            unimplemented!("encode stores bytes")
        }
        fn path(&self, _: &blake3::Hash) -> Option<std::path::PathBuf> {
            None
        }
    }

    #[test]
    fn bytes_that_are_not_the_verified_ones_are_refused_and_never_memoized() {
        let body = [
            0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let song = crate::midi::testing::smf(96, &[&body]);
        let mut changed = song.clone();
        changed[23] = 62; // another pitch
        let (verified, now) = (blake3::hash(&song), blake3::hash(&changed));
        let memo = MapMemo::default();
        let options = EncodeOptions::default();
        let mut entry = Vec::new();
        let mut encode = |hash: &blake3::Hash, from_build: bool, bytes: &[u8]| {
            encode_memoized(
                &memo,
                "f",
                (hash, from_build),
                bytes,
                &options,
                NoteFormat::OnOff,
                &mut entry,
            )
        };
        // The file changed after the build verified it: refused, nothing stored.
        assert_eq!(
            encode(&verified, true, &changed),
            Err(ChangedSinceVerified { now })
        );
        assert!(memo.0.lock().unwrap().is_empty());
        // The verified bytes: encoded and stored under their hash.
        let first = encode(&verified, true, &song).unwrap();
        assert!(matches!(first, Outcome::Encoded { .. }));
        assert_eq!(memo.0.lock().unwrap().len(), 1);
        // A hit is right by its key: the bytes are not looked at.
        assert_eq!(encode(&verified, true, &changed), Ok(first));
        // A hash taken from the bytes themselves needs no check.
        assert!(encode(&now, false, &changed).is_ok());
        assert_eq!(memo.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn memo_bytes_round_trip_and_damage_is_a_miss() {
        let codes = [0, 3 << 56 | 8, 3 << 56 | 8, 1 << 56];
        let encoded = Outcome::Encoded {
            song: Interned::from_codes(&codes),
            warnings: vec![
                "track 1: malformed meta event skipped at byte 9".into(),
                String::new(),
            ],
        };
        let wide = Outcome::Encoded {
            song: Interned {
                codes: (0..70_000).map(|i| 3 << 56 | i).collect(),
                ids: vec![0, 69_999, 5],
            },
            warnings: Vec::new(),
        };
        // 3 distinct codes of 8 bytes, 4 tokens of 2.
        assert_eq!(
            to_bytes(&encoded).len(),
            1 + 4 + 4 + 47 + 4 + 4 + 3 * 8 + 1 + 4 * 2
        );
        assert_eq!(to_bytes(&wide).len(), 1 + 4 + 4 + 70_000 * 8 + 1 + 3 * 4);
        let skipped = Outcome::Skipped {
            reason: "no notes".into(),
        };
        for outcome in [&encoded, &wide, &skipped] {
            assert_eq!(
                Outcome::from_bytes(&to_bytes(outcome)).as_ref(),
                Some(outcome)
            );
        }
        let Outcome::Encoded { song, .. } = &encoded else {
            unreachable!()
        };
        assert_eq!(song.to_codes(), codes);
        let bytes = to_bytes(&encoded);
        assert_eq!(Outcome::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Outcome::from_bytes(&bytes[..6]), None);
        assert_eq!(Outcome::from_bytes(b""), None);
        assert_eq!(Outcome::from_bytes(b"{\"Encoded\":{}}"), None);
        // An index past the codes is a miss, not a panic later.
        let mut bad = bytes.clone();
        let last = bad.len() - 2;
        bad[last] = 3;
        assert_eq!(Outcome::from_bytes(&bad), None);
        // The form before (every token's code) still reads: narrow and wide.
        let mut old = b"E\0\0\0\0\x04".to_vec();
        for c in [0u32, 3 << 29 | 8, 3 << 29 | 8, 1 << 29] {
            old.extend_from_slice(&c.to_le_bytes());
        }
        let mut old_wide = b"E\0\0\0\0\x08".to_vec();
        for c in codes {
            old_wide.extend_from_slice(&c.to_le_bytes());
        }
        for old in [old, old_wide] {
            let Some(Outcome::Encoded { song, warnings }) = Outcome::from_bytes(&old) else {
                panic!("the old form is read")
            };
            assert_eq!(song.to_codes(), codes);
            assert!(warnings.is_empty());
        }
    }
}
