//! Local sources: the bundled demo corpus (`source = "demo"`) or any folder
//! of `.mid`/`.midi`/`.kar`/`.rmi` files (`source = "<path>"`, relative to
//! the project folder), read recursively.
//!
//! Output: the files at their relative paths, a `LICENSES/` folder when the
//! source has one beside its files (the demo corpus does), `index.json`
//! (each file's path, console and game when known, bytes, blake3) and
//! `report.json` (per console: listed, downloaded, dead_links, bad_files;
//! `skipped`: links, FIFOs, devices, names that are not UTF-8 and
//! unreadable files passed over, each with the reason).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::api::*;
use crate::dataset::write_json;
use crate::walk;

use super::CONSOLES;

/// The folder a local `source` names.
pub fn source_dir(params: &Params, project_dir: &Path, data_dir: &Path) -> PathBuf {
    match params.str("source") {
        "demo" => data_dir.join("demo"),
        path => project_dir.join(path),
    }
}

/// Checks a folder `source` before anything runs: not empty, not the file
/// system's root.
pub fn validate(source: &str) -> Result<(), String> {
    use std::path::Component;
    if source.trim().is_empty() {
        return Err(
            "`source` is empty: use \"demo\", \"vgmusic\" or a folder of MIDI files".into(),
        );
    }
    let path = Path::new(source);
    if path.has_root()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Err(format!(
            "`source = {source:?}` is the file system's root: name the folder that holds the MIDI files"
        ));
    }
    Ok(())
}

fn checked_source_dir(
    params: &Params,
    project_dir: &Path,
    data_dir: &Path,
) -> Result<PathBuf, StageError> {
    let source = params.str("source");
    validate(source).map_err(StageError::Config)?;
    let dir = source_dir(params, project_dir, data_dir);
    if !dir.is_dir() {
        return Err(StageError::Config(format!(
            "`source = \"{source}\"`: {} is not a folder (use \"demo\", \"vgmusic\" or a folder of MIDI files)",
            dir.display()
        )));
    }
    // The project folder holds the cache and the outputs: a corpus that
    // contains it would hash (and copy) the build's own files.
    let canonical = dir
        .canonicalize()
        .ctx(|| format!("resolving {}", dir.display()))?;
    let project = project_dir
        .canonicalize()
        .unwrap_or_else(|_| project_dir.to_path_buf());
    if canonical.parent().is_none() {
        return Err(StageError::Config(format!(
            "`source = \"{source}\"` is the file system's root: name the folder that holds the MIDI files"
        )));
    }
    if project.starts_with(&canonical) {
        return Err(StageError::Config(format!(
            "`source = \"{source}\"` is {}, the project folder{}: name a folder of MIDI files of its own (a sub-folder such as \"songs\")",
            canonical.display(),
            if project == canonical {
                ""
            } else {
                " or a folder above it"
            },
        )));
    }
    Ok(dir)
}

/// What enters the key: each MIDI file taken (hashed by the engine, through
/// its stat cache, so an unchanged corpus is never re-read), the licence
/// files copied beside them, and the list of names taken and skipped (the
/// output's layout and report). The folder is not handed over whole: a
/// link, FIFO or odd name in it would fail the hashing instead of being
/// skipped.
pub fn external_inputs(
    params: &Params,
    files: &ProjectFiles,
) -> Result<ExternalInputs, StageError> {
    let dir = checked_source_dir(params, files.project_dir, files.data_dir)?;
    let (mut paths, skipped) = walk::corpus_paths(&dir, files.folders)
        .ctx(|| format!("listing MIDI files in {}", dir.display()))?;
    // Hashed 64 KB at a time: blake3 is several times faster over long
    // inputs than over 120,000 small updates.
    const BLOCK: usize = 64 * 1024;
    let mut hasher = blake3::Hasher::new();
    let mut listing = Vec::with_capacity(BLOCK + 4096);
    for path in &paths {
        // The walk takes only UTF-8 names and joins them with `/`: the
        // bytes are `slash_path`'s.
        let rel = walk::relative(&dir, path);
        debug_assert!(std::str::from_utf8(rel).is_ok());
        listing.extend_from_slice(rel);
        listing.push(b'\n');
        if listing.len() >= BLOCK {
            hasher.update(&listing);
            listing.clear();
        }
    }
    for skip in &skipped {
        listing.extend_from_slice(format!("skipped {}: {}\n", skip.path, skip.reason).as_bytes());
    }
    paths.extend(license_files(&dir));
    let mut ext = ExternalInputs {
        paths,
        ..Default::default()
    };
    ext.values.insert(
        "source files".into(),
        hasher.update(&listing).finalize().to_hex().to_string(),
    );
    Ok(ext)
}

#[derive(Debug, Serialize)]
struct IndexEntry {
    path: String,
    console: Option<String>,
    game: Option<String>,
    bytes: u64,
    blake3: String,
}

#[derive(Debug, Default, Serialize)]
struct ConsoleReport {
    listed: usize,
    downloaded: usize,
    dead_links: usize,
    /// Files whose first bytes are not a MIDI header (copied anyway; encode
    /// reports why it skips them).
    bad_files: usize,
}

/// Console and game of a file, when its path tells: `<console>/...` for a
/// folder sorted by console; the demo corpus is PC games, one folder each.
fn console_and_game(rel: &Path, demo: bool) -> (Option<String>, Option<String>) {
    let first = rel
        .components()
        .next()
        .filter(|_| rel.components().count() > 1)
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    if demo {
        return (Some("pc".into()), first);
    }
    match first {
        Some(f) if CONSOLES.contains(&f.to_ascii_lowercase().as_str()) => {
            (Some(f.to_ascii_lowercase()), None)
        }
        _ => (None, None),
    }
}

fn looks_like_midi(bytes: &[u8]) -> bool {
    bytes.starts_with(b"MThd") || bytes.starts_with(b"RIFF")
}

pub fn run(ctx: &StageContext) -> Result<(), StageError> {
    let source = checked_source_dir(ctx.params, ctx.project_dir, ctx.data_dir)?;
    let demo = ctx.params.str("source") == "demo";
    let (files, mut skipped) = walk::corpus_files(&source, &ReadFolders)
        .ctx(|| format!("listing MIDI files in {}", source.display()))?;
    if files.is_empty() {
        return Err(StageError::Input(format!(
            "no MIDI files (.mid, .midi, .kar, .rmi) in {}{}",
            source.display(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} skipped: {})", skipped.len(), skipped[0].reason)
            }
        )));
    }
    ctx.progress.set_total(files.len() as u64);
    let mut index = Vec::with_capacity(files.len());
    let mut report: BTreeMap<String, ConsoleReport> = BTreeMap::new();
    for rel in &files {
        ctx.check_cancelled()?;
        let from = source.join(rel);
        let bytes = match fs::read(&from) {
            Ok(bytes) => bytes,
            Err(e) => {
                skipped.push(walk::Skipped {
                    path: walk::slash_path(rel),
                    reason: format!("cannot read the file: {e}"),
                });
                ctx.progress.advance(1);
                continue;
            }
        };
        let to = ctx.out_dir.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&to, &bytes).ctx(|| format!("writing {}", to.display()))?;
        let (console, game) = console_and_game(rel, demo);
        let entry = report
            .entry(console.clone().unwrap_or_else(|| "local".into()))
            .or_default();
        entry.listed += 1;
        entry.downloaded += 1;
        if !looks_like_midi(&bytes) {
            entry.bad_files += 1;
            ctx.progress
                .log(&format!("{}: not a MIDI header", walk::slash_path(rel)));
        }
        index.push(IndexEntry {
            path: walk::slash_path(rel),
            console,
            game,
            bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        });
        ctx.progress.advance(1);
    }
    copy_licenses(&source, ctx.out_dir)?;
    let out = ctx.out_dir;
    write_json(
        &out.join("index.json"),
        &serde_json::json!({ "source": ctx.params.str("source"), "files": index }),
    )
    .ctx(|| "writing index.json")?;
    for skip in &skipped {
        ctx.progress
            .log(&format!("{}: skipped: {}", skip.path, skip.reason));
    }
    let mut report = serde_json::to_value(&report).expect("plain data serializes");
    if !skipped.is_empty() {
        let list: Vec<_> = skipped
            .iter()
            .map(|s| serde_json::json!({ "path": s.path, "reason": s.reason }))
            .collect();
        report["skipped"] = serde_json::Value::from(list);
    }
    write_json(&out.join("report.json"), &report).ctx(|| "writing report.json")?;
    let total_bytes: u64 = index.iter().map(|e| e.bytes).sum();
    write_json(
        &out.join("metrics.json"),
        &serde_json::json!({ "files": index.len(), "bytes": total_bytes }),
    )
    .ctx(|| "writing metrics.json")?;
    Ok(())
}

/// The regular files of `LICENSES/` and a top-level `README.md` in the
/// source (no links), sorted.
fn license_files(source: &Path) -> Vec<PathBuf> {
    let regular = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let mut files: Vec<PathBuf> = fs::read_dir(source.join("LICENSES"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some())
        .map(|e| e.path())
        .filter(|p| regular(p))
        .collect();
    files.sort();
    let readme = source.join("README.md");
    if regular(&readme) {
        files.push(readme);
    }
    files
}

/// Copies `LICENSES/` (and a top-level README) from the source, so that
/// redistributable corpora keep their notices beside the files.
fn copy_licenses(source: &Path, out: &Path) -> Result<(), StageError> {
    for file in license_files(source) {
        let rel = file.strip_prefix(source).expect("listed under the source");
        let target = out.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(&file, &target).ctx(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}
