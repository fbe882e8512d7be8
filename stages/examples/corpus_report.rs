//! Encodes a folder with the encode stage and prints its skips and warnings
//! (a quick look at what real files contain).
//!
//! cargo run --release -p vgmake-stages --example corpus_report [-- DIR]

use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"),
        |s| s.as_str(),
    ));
    let tmp = std::env::temp_dir().join(format!("vgmake-corpus-report-{}", std::process::id()));
    let out = tmp.join("encode");
    let input = Input {
        slot: None,
        stage: "scrape".into(),
        kind: "scrape".into(),
        dir,
        hashes: Default::default(),
    };
    let kind = vgmake_stages::kinds::find("encode").expect("encode is registered");
    let start = std::time::Instant::now();
    run_standalone(
        kind,
        &[],
        &[input],
        &out,
        &tmp.join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .expect("encode");
    let seconds = start.elapsed().as_secs_f64();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    println!(
        "encoded {}, skipped {} in {seconds:.2} s (stage run: reads, hashes, memo writes)",
        report["encoded"], report["skipped"]
    );
    for file in report["files"].as_array().unwrap() {
        if file["status"] == "skipped" || file.get("warnings").is_some() {
            println!(
                "{}: {} {} {}",
                file["path"], file["status"], file["reason"], file["warnings"]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
