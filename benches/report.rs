//! `vgmake report` over 20 built variants with 4 samples each (issue: under
//! 1 s, and under 1 MB of HTML without `--embed`), timed beside `vgmake
//! compare` over the same variants, the two alternated in one run.
//!
//! Builds a 5 x 4 sweep (train.lr x sample.seed) of the real stages with a
//! tiny model on the demo corpus (5 trainings, 20 samplings of 4 songs),
//! then times each command as a whole process, 9 runs each, and prints the
//! medians, the page's size and the load average.
//!
//! Run: `cargo bench --bench report`

use std::process::Command;
use std::time::Instant;

#[path = "../tests/support/tiny.rs"]
mod tiny;

fn main() {
    let bin = env!("CARGO_BIN_EXE_vgmake");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        tiny::pipeline(200, 4, 512),
    )
    .unwrap();
    let built = Command::new(bin)
        .args([
            "build",
            "--set",
            "train.lr=0.002,0.005,0.01,0.02,0.04",
            "--set",
            "sample.seed=1,2,3,4",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let load_before = load_average();
    let time = |args: &[&str]| {
        let start = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        start.elapsed().as_secs_f64() * 1000.0
    };
    let (mut report, mut compare) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        report.push(time(&["report"]));
        compare.push(time(&["compare"]));
    }
    let page = dir.path().join("out/report.html");
    let bytes = std::fs::metadata(&page).unwrap().len();
    let html = std::fs::read_to_string(&page).unwrap();
    let players = html.matches("<audio").count();
    let embedded_ms = time(&["report", "--embed", "-o", "embedded.html"]);
    let embedded = std::fs::metadata(dir.path().join("embedded.html"))
        .unwrap()
        .len();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (r, r_min, r_max) = median(&mut report);
    let (c, c_min, c_max) = median(&mut compare);
    println!(
        "vgmake report, 20 variants x 4 samples ({players} audio players): median {r:.1} ms (min {r_min:.1}, max {r_max:.1}), \
         {:.0} KB of HTML (targets < 1000 ms, < 1 MB); vgmake compare: median {c:.1} ms (min {c_min:.1}, max {c_max:.1}); \
         report/compare {:.1}x; --embed: {embedded_ms:.0} ms, {:.1} MB; 9 runs each, alternated; load average {load_before} before, {} after",
        bytes as f64 / 1000.0,
        r / c,
        embedded as f64 / 1e6,
        load_average()
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
