//! `vgmake gc`: drop cache entries that nothing references.
//!
//! Kept: the results each variant of pipeline.toml (and `default`) last
//! built, the results of the last builds in the history, the outputs and memo
//! entries those results were made from. Everything else goes. gc takes the
//! project lock, so it never removes what a running build uses.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::show::human_bytes;
use crate::commands::usage_error;
use crate::fsutil::{remove_tree, tree_size};
use crate::lock::{ProjectLock, Wait};
use crate::memo::MemoEntry;
use crate::pipeline::DEFAULT_VARIANT;
use crate::project::Project;
use crate::store::Store;

pub fn run(
    host: &'static crate::Host,
    common: &Common,
    dry_run: bool,
    keep_last: usize,
) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        println!("no cache yet at {}", project.cache_dir.display());
        return ExitCode::SUCCESS;
    };
    let wait = Wait::Block(Box::new(|holder: &str| {
        eprintln!("waiting for a running build to finish ({holder})")
    }));
    let _lock = match ProjectLock::acquire(&store.root, wait) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };

    let mut variants: BTreeSet<String> = project.pipeline.variants.keys().cloned().collect();
    variants.insert(DEFAULT_VARIANT.to_string());
    let mut keep_keys: BTreeSet<String> = BTreeSet::new();
    // Refs it cannot read would make gc drop what they protect: stop.
    let refs = match store.all_refs() {
        Ok(r) => r,
        Err(e) => {
            return usage_error(format!(
                "{e}; gc cannot tell what to keep (fix or move the file aside, then run `vgmake build` to write it again)"
            ));
        }
    };
    for (project, variant, stage_refs) in refs {
        // This project's variants that left pipeline.toml are let go; every
        // variant of another project sharing this cache is kept.
        if project != store.project_id() || variants.contains(&variant) {
            keep_keys.extend(stage_refs.into_values().map(|r| r.key));
        }
    }
    let history = match store.history() {
        Ok(h) => h,
        Err(e) => {
            return usage_error(format!(
                "cannot read the build history, so gc cannot tell what to keep: {e} (move the file aside to start a new history)"
            ));
        }
    };
    for build in history.iter().rev().take(keep_last) {
        keep_keys.extend(build.stages.iter().filter_map(|s| s.key.clone()));
    }

    let records = store.records();
    let mut keep_outputs = BTreeSet::new();
    let mut keep_memo = BTreeSet::new();
    let mut keep_state = BTreeSet::new();
    let mut drop_records = Vec::new();
    for r in records {
        if keep_keys.contains(&r.key) {
            keep_outputs.insert(r.output.clone());
            keep_memo.extend(r.memo_keys.iter().cloned());
            keep_state.extend(r.state.clone());
        } else {
            drop_records.push(r);
        }
    }
    // State no kept result was built from goes too, unless it is younger
    // than the oldest build kept: an interrupted run resumes from it.
    let since = history
        .iter()
        .rev()
        .take(keep_last.max(1))
        .map(|b| b.finished.saturating_sub(b.seconds as u64))
        .min()
        .unwrap_or(u64::MAX);
    let drop_state: Vec<PathBuf> = list(&store.root.join("state"))
        .iter()
        .flat_map(|kind| list(kind))
        .filter(|dir| {
            let id = format!("{}/{}", file_name(dir.parent().unwrap()), file_name(dir));
            !keep_state.contains(&id) && modified(dir) < since
        })
        .collect();
    let drop_outputs: Vec<PathBuf> = list(&store.root.join("outputs"))
        .into_iter()
        .filter(|p| !keep_outputs.contains(&file_name(p)))
        .collect();
    let drop_manifests: Vec<PathBuf> = list(&store.root.join("manifests"))
        .into_iter()
        .filter(|p| !keep_outputs.contains(file_name(p).trim_end_matches(".json")))
        .collect();
    let drop_memo: Vec<MemoEntry> = crate::memo::entries(&store.memo_root())
        .into_iter()
        .filter(|entry| entry.superseded() || !keep_memo.contains(&entry.key()))
        .collect();
    let drop_refs: Vec<PathBuf> = store
        .ref_variants()
        .into_iter()
        .filter(|v| !variants.contains(v))
        .map(|v| store.refs_path(&v))
        .collect();

    let output_bytes: u64 = drop_outputs.iter().map(|p| tree_size(p)).sum();
    let memo_bytes: u64 = drop_memo.iter().map(MemoEntry::payload_bytes).sum();
    let state_bytes: u64 = drop_state.iter().map(|p| tree_size(p)).sum();
    let verb = if dry_run { "would remove" } else { "removed" };
    if dry_run {
        for r in &drop_records {
            println!(
                "result  {} (stage {}, output {})",
                &r.key[..12],
                r.stage,
                &r.output[..12]
            );
        }
        for p in &drop_outputs {
            println!("output  {} ({})", file_name(p), human_bytes(tree_size(p)));
        }
        for p in &drop_refs {
            println!("refs    {}", p.display());
        }
        for p in &drop_state {
            println!("state   {} ({})", p.display(), human_bytes(tree_size(p)));
        }
    } else {
        for r in &drop_records {
            store.remove_record(&r.key);
        }
        for p in drop_outputs
            .iter()
            .chain(&drop_manifests)
            .chain(&drop_refs)
            .chain(&drop_state)
        {
            let _ = if p.is_dir() {
                remove_tree(p)
            } else {
                std::fs::remove_file(p)
            };
        }
        crate::memo::remove(&drop_memo);
        let _ = store.clean_tmp();
        let _ = store.stats.save();
    }
    println!(
        "{verb} {} results, {} outputs ({}), {} memo entries ({}), {} state folders ({}); kept {} results of {} variants and the last {} builds",
        drop_records.len(),
        drop_outputs.len(),
        human_bytes(output_bytes),
        drop_memo.len(),
        human_bytes(memo_bytes),
        drop_state.len(),
        human_bytes(state_bytes),
        keep_keys.len(),
        variants.len(),
        keep_last,
    );
    ExitCode::SUCCESS
}

fn list(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The newest modification time in a folder (Unix seconds).
fn modified(dir: &std::path::Path) -> u64 {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    list(dir)
        .iter()
        .map(|p| stamp(p))
        .chain([stamp(dir)])
        .max()
        .unwrap_or(0)
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
