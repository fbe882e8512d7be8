//! `vgmake compare` over 20 built variants (issue: under 100 ms).
//!
//! Builds a 20-point sweep of a 4-stage pipeline whose stages write metrics
//! (with 2,000-line logs, like real stages), then times `vgmake compare`
//! as a whole process, 15 runs, and prints the median.
//!
//! Run: `cargo bench --bench compare`

use std::process::Command;
use std::time::Instant;

const PIPELINE: &str = r#"
[stages.prepare]
kind = "command"
cmd = "seq 1 2000 > data.txt; seq 1 2000"

[stages.filter]
kind = "command"
deps = ["prepare"]
cmd = "head -n $VGMAKE_PARAM_KEEP $VGMAKE_IN_PREPARE/data.txt > kept.txt; echo \"{\\\"kept\\\": $VGMAKE_PARAM_KEEP}\" > metrics.json"
params = { keep = 1000 }

[stages.fit]
kind = "command"
deps = ["filter"]
cmd = "awk -v r=$VGMAKE_PARAM_RATE '{s += $1 * r} END {print \"{\\\"val_bits_per_token\\\": \" s/1e6 \", \\\"val_accuracy\\\": 0.5}\"}' $VGMAKE_IN_FILTER/kept.txt > metrics.json; seq 1 2000"
params = { rate = 1 }

[stages.sample]
kind = "command"
deps = ["fit"]
cmd = "echo '{\"validity\": 1.0, \"overlap_mean\": 0.7}' > metrics.json"
"#;

fn main() {
    let bin = env!("CARGO_BIN_EXE_vgmake");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), PIPELINE).unwrap();
    let status = Command::new(bin)
        .args([
            "build",
            "--set",
            "filter.params.keep=500,1000,1500,2000",
            "--set",
            "fit.params.rate=1,2,3,4,5",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut times = Vec::new();
    let mut lines = 0;
    for _ in 0..15 {
        let start = Instant::now();
        let out = Command::new(bin)
            .arg("compare")
            .current_dir(dir.path())
            .output()
            .unwrap();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success());
        lines = String::from_utf8_lossy(&out.stdout).lines().count();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "vgmake compare, 20 variants ({lines} lines of output): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (target < 100 ms)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}
