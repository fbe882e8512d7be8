//! `vgmake verify`: check every cached output and memo entry against its hash.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::{EXIT_FAILED, usage_error};
use crate::project::Project;
use crate::store::Store;

pub fn run(common: &Common) -> ExitCode {
    let project = match Project::load(common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        println!("no cache yet at {}", project.cache_dir.display());
        return ExitCode::SUCCESS;
    };
    let mut bad = 0usize;
    let records = store.records();
    for r in &records {
        if let Err(e) = store.verify_output(&r.output) {
            println!("BAD   record {} (stage {}): {e}", &r.key[..12], r.stage);
            bad += 1;
        }
    }
    let (memo_ok, memo_bad) = verify_memo(&store);
    for m in &memo_bad {
        println!("BAD   memo entry {m}");
    }
    bad += memo_bad.len();
    println!(
        "{} records, {} memo entries checked; {bad} damaged",
        records.len(),
        memo_ok + memo_bad.len()
    );
    if bad > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks every memo payload against its `.b3`; returns (good, bad paths).
fn verify_memo(store: &Store) -> (usize, Vec<String>) {
    let mut good = 0;
    let mut bad = Vec::new();
    for sum in crate::commands::gc::memo_entries(store) {
        let payload = sum.with_extension("");
        let expected = std::fs::read_to_string(&sum).unwrap_or_default();
        match vgmake_stages::memo::hash_file(&payload) {
            Ok(h) if h.to_hex().as_str() == expected.trim() => good += 1,
            _ => bad.push(payload.display().to_string()),
        }
    }
    (good, bad)
}
