//! Variants, sweeps, compare and log, through the real binary.

mod support;

use support::Project;

/// prepare -> fit -> score; `fit` and `score` have parameters to vary.
const PIPELINE: &str = r#"
[stages.prepare]
kind = "command"
cmd = "seq 1 20 > data.txt"

[stages.fit]
kind = "command"
deps = ["prepare"]
cmd = "awk -v r=$VGMAKE_PARAM_RATE -v d=$VGMAKE_PARAM_DEPTH '{s += $1 * r * d} END {print s}' $VGMAKE_IN_PREPARE/data.txt > model.txt; echo \"{\\\"val_bits_per_token\\\": $(cat model.txt)}\" > metrics.json"
params = { rate = 1, depth = 1 }

[stages.score]
kind = "command"
deps = ["fit"]
cmd = "cp $VGMAKE_IN_FIT/model.txt score.txt"

[variants.fast]
fit.params = { rate = 2, depth = 1 }
"#;

#[test]
fn all_variants_share_their_common_stages() {
    let p = Project::new(PIPELINE);
    let run = p.build(&["--all-variants"]);
    let ran: Vec<(String, String)> = json_lines(&run.stdout)
        .iter()
        .filter(|v| v["status"] == "ran")
        .map(|v| {
            (
                v["variant"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let count = |stage: &str| ran.iter().filter(|(_, s)| s == stage).count();
    assert_eq!(
        (count("prepare"), count("fit"), count("score")),
        (1, 2, 2),
        "{ran:?}"
    );
    assert_eq!(p.read_out("fit", "model.txt"), "210\n");
    assert_eq!(
        std::fs::read_to_string(p.out("fast", "fit").join("model.txt")).unwrap(),
        "420\n"
    );
    assert!(p.build(&["--all-variants"]).with_status("ran").is_empty());
}

#[test]
fn a_two_by_two_sweep_runs_four_fits_and_one_of_everything_upstream() {
    let p = Project::new(PIPELINE);
    let run = p.build(&[
        "--set",
        "fit.params.rate=1,3",
        "--set",
        "fit.params.depth=1,2",
    ]);
    let lines = json_lines(&run.stdout);
    let ran = |stage: &str| {
        lines
            .iter()
            .filter(|v| v["status"] == "ran" && v["name"] == stage)
            .count()
    };
    assert_eq!((ran("prepare"), ran("fit"), ran("score")), (1, 4, 4));
    let variants: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|v| v["variant"].as_str().unwrap())
        .collect();
    assert_eq!(
        variants.into_iter().collect::<Vec<_>>(),
        [
            "rate=1,depth=1",
            "rate=1,depth=2",
            "rate=3,depth=1",
            "rate=3,depth=2"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(p.out("rate=3,depth=2", "fit").join("model.txt")).unwrap(),
        "1260\n"
    );

    // compare: exactly the differing parameters, and the metric (a command
    // stage declares none, so its numbers are labelled `stage.key`).
    let csv = p.run(&[
        "compare",
        "--format",
        "csv",
        "--sort",
        "fit.val_bits_per_token",
    ]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let header = csv.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("variant,fit.params.depth,fit.params.rate,fit.val_bits_per_token,"),
        "{header}"
    );
    let rows: Vec<&str> = csv.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 4);
    assert!(
        rows[0].starts_with("\"rate=1,depth=1\",1,1,210,"),
        "{}",
        csv.stdout
    );
    assert!(
        rows[3].starts_with("\"rate=3,depth=2\",2,3,1260,"),
        "{}",
        csv.stdout
    );
    let json = p.run(&["compare", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 4);
    assert_eq!(parsed[3]["fit.val_bits_per_token"], 1260.0);
    let table = p.run(&["compare", "rate=1,depth=1", "rate=3,depth=2"]);
    assert!(
        table.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("params.")
            && table.stdout.contains("rate")
            && table.stdout.contains("rate=3,depth=2"),
        "{}",
        table.stdout
    );
    let md = p.run(&["compare", "--format", "markdown"]);
    assert!(
        md.stdout
            .starts_with("| variant | fit.params.depth | fit.params.rate |"),
        "{}",
        md.stdout
    );
}

#[test]
fn log_lists_builds_with_what_ran() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    p.build(&["--set", "fit.params.rate=5"]);
    let log = p.run(&["log"]);
    let lines: Vec<&str> = log.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", log.stdout);
    assert!(
        lines[0].contains("ran fit, prepare, score")
            || lines[0].contains("ran prepare, fit, score"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("ran fit, score") && lines[1].contains("--set fit.params.rate=5"),
        "{}",
        lines[1]
    );
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
