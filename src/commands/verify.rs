//! `vgmake verify`: check every cached output and memo entry against its hash.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::{EXIT_FAILED, usage_error};
use crate::project::Project;
use crate::store::Store;

pub fn run(host: &'static crate::Host, common: &Common) -> ExitCode {
    let project = match Project::load(host, common) {
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
    for entry in crate::memo::entries(&store.memo_root()) {
        if entry.verify() {
            good += 1;
        } else {
            bad.push(entry.payload.display().to_string());
        }
    }
    (good, bad)
}
