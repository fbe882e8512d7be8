//! `vgmake verify`: re-read every cached output, memo entry and sealed
//! state file (training checkpoints) and check it against its hash. The
//! stat cache, a speed-up for builds, is not trusted here.

use std::process::ExitCode;

use vgmake_api::seal::{self, SealError};

use crate::cli::Common;
use crate::commands::show::human_bytes;
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
    let mut bytes = 0u64;
    let records = store.records();
    let mut outputs: Vec<&str> = records.iter().map(|r| r.output.as_str()).collect();
    outputs.sort_unstable();
    outputs.dedup();
    for output in &outputs {
        match store.verify_output_fully(output) {
            Ok(read) => bytes += read,
            Err(e) => {
                let stages: Vec<&str> = records
                    .iter()
                    .filter(|r| r.output == *output)
                    .map(|r| r.stage.as_str())
                    .collect();
                println!(
                    "BAD   output {} (stage {}): {e}",
                    &output[..12],
                    stages.join(", ")
                );
                bad += 1;
            }
        }
    }
    let memo = crate::memo::entries(&store.memo_root());
    for entry in memo.iter().filter(|e| !e.superseded()) {
        if entry.verify() {
            bytes += entry.payload_bytes();
        } else {
            println!("BAD   memo entry {}", entry.describe());
            bad += 1;
        }
    }
    let (mut sealed, mut unsealed) = (0usize, 0usize);
    for file in store.state_files() {
        match seal::check(&file) {
            Ok(()) => {
                sealed += 1;
                bytes += std::fs::metadata(&file).map_or(0, |m| m.len());
            }
            // A file being written right now, or left by an older vgmake:
            // nothing resumes from it, so it is not damage.
            Err(SealError::Unsealed(_)) => unsealed += 1,
            Err(e) => {
                println!("BAD   state file: {e}");
                bad += 1;
            }
        }
    }
    let _ = store.stats.save();
    println!(
        "{} outputs of {} records, {} memo entries, {sealed} state files checked ({unsealed} unsealed, not used); {} read; {bad} damaged",
        outputs.len(),
        records.len(),
        memo.iter().filter(|e| !e.superseded()).count(),
        human_bytes(bytes),
    );
    if bad > 0 {
        println!(
            "a damaged output or memo entry is rebuilt by the next build that needs it; a damaged checkpoint is dropped"
        );
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
