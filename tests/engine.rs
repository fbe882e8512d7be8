//! The engine's contract, tested through the real binary on pipelines of
//! `command` stages (fast, and every byte they write is known).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::Project;

const PIPELINE: &str = r#"
# A small diamond: source -> upper -> count -> report, and source -> side.
[stages.source]
kind = "command"
cmd = "printf 'alpha\nbeta\n' > words.txt"

[stages.upper]
kind = "command"
deps = ["source"]
cmd = "tr a-z A-Z < $VGMAKE_IN_SOURCE/words.txt > words.txt; echo $VGMAKE_PARAM_SUFFIX >> words.txt"
params = { suffix = "x", note = "unused" }

[stages.count]
kind = "command"
deps = ["upper"]
cmd = "wc -l < $VGMAKE_IN_UPPER/words.txt | tr -d ' ' > count.txt"

[stages.report]
kind = "command"
deps = ["count"]
cmd = "echo lines: $(cat $VGMAKE_IN_COUNT/count.txt) > report.txt"

[stages.side]
kind = "command"
deps = ["source"]
cmd = "cp $VGMAKE_IN_SOURCE/words.txt copy.txt"

[variants.loud]
upper.params = { suffix = "LOUD", note = "unused" }
"#;

fn all() -> Vec<String> {
    ["count", "report", "side", "source", "upper"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn first_build_runs_everything_and_second_runs_nothing() {
    let p = Project::new(PIPELINE);
    let first = p.build(&[]);
    assert_eq!(first.with_status("ran"), all());
    assert_eq!(p.read_out("upper", "words.txt"), "ALPHA\nBETA\nx\n");
    assert_eq!(p.read_out("report", "report.txt"), "lines: 3\n");
    let second = p.build(&[]);
    assert_eq!(second.with_status("cached"), all());
}

#[test]
fn changing_a_middle_parameter_reruns_exactly_it_and_its_dependents() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    let run = p.build(&["--set", "upper.params.suffix=y"]);
    assert_eq!(run.with_status("ran"), ["count", "upper"]);
    // count reran on new input and wrote the same bytes: report is cut off.
    assert_eq!(run.with_status("cutoff"), ["report"]);
    assert_eq!(run.with_status("cached"), ["side", "source"]);
    assert_eq!(p.read_out("upper", "words.txt"), "ALPHA\nBETA\ny\n");
}

#[test]
fn identical_output_stops_the_rebuild_there() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    // `note` reaches upper's key but not its output.
    let run = p.build(&["--set", "upper.params.note=changed"]);
    assert_eq!(run.with_status("ran"), ["upper"]);
    assert_eq!(run.with_status("cutoff"), ["count", "report"]);
    let why = p.run(&["why", "count", "--set", "upper.params.note=changed"]);
    assert!(why.stdout.contains("cut off"), "{}", why.stdout);
}

#[test]
fn reordering_keys_comments_and_white_space_rerun_nothing() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    p.build(&["--variant", "loud"]);
    p.write_pipeline(&reformatted());
    assert_eq!(p.build(&[]).with_status("cached"), all());
    assert_eq!(p.build(&["--variant", "loud"]).with_status("cached"), all());
}

/// PIPELINE, reordered and recommented by hand.
fn reformatted() -> String {
    r#"
[variants.loud]
upper.params = {note="unused",suffix="LOUD"}
[stages.side]
deps = [ "source" ]     # comment
cmd  = "cp $VGMAKE_IN_SOURCE/words.txt copy.txt"
kind = "command"
[stages.report]
cmd = "echo lines: $(cat $VGMAKE_IN_COUNT/count.txt) > report.txt"
deps = ["count"]
kind = "command"
[stages.count]
kind = "command"

cmd = "wc -l < $VGMAKE_IN_UPPER/words.txt | tr -d ' ' > count.txt"
deps = ["upper"]
[stages.upper]
params = { note = "unused", suffix = "x" }
cmd = "tr a-z A-Z < $VGMAKE_IN_SOURCE/words.txt > words.txt; echo $VGMAKE_PARAM_SUFFIX >> words.txt"
deps = ["source"]
kind = "command"
[stages.source]
   cmd = "printf 'alpha\nbeta\n' > words.txt"
kind="command"
"#
    .to_string()
}

#[test]
fn reverting_a_parameter_or_switching_variants_restores_from_the_cache() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    p.build(&["--set", "upper.params.suffix=y"]);
    let back = p.build(&[]);
    assert!(back.with_status("ran").is_empty(), "{:?}", back.statuses());
    assert_eq!(p.read_out("upper", "words.txt"), "ALPHA\nBETA\nx\n");

    let loud = p.build(&["--variant", "loud"]);
    assert_eq!(loud.with_status("ran"), ["count", "upper"]);
    assert_eq!(
        std::fs::read_to_string(p.out("loud", "upper").join("words.txt")).unwrap(),
        "ALPHA\nBETA\nLOUD\n"
    );
    for _ in 0..2 {
        assert!(p.build(&[]).with_status("ran").is_empty());
        assert!(
            p.build(&["--variant", "loud"])
                .with_status("ran")
                .is_empty()
        );
    }
}

#[test]
fn failing_stage_skips_dependents_and_lets_other_branches_finish() {
    let p = Project::new(&PIPELINE.replace("wc -l <", "echo counting failed >&2; exit 3; wc -l <"));
    let run = p.run(&["build", "--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.with_status("failed"), ["count"]);
    assert_eq!(run.with_status("skipped"), ["report"]);
    assert_eq!(run.with_status("ran"), ["side", "source", "upper"]);
    let failed = run
        .stdout
        .lines()
        .find(|l| l.contains("\"failed\""))
        .unwrap();
    assert!(
        failed.contains("exit status 3") && failed.contains("counting failed"),
        "{failed}"
    );
}

#[test]
fn targets_select_a_subgraph() {
    let p = Project::new(PIPELINE);
    let run = p.build(&["side"]);
    assert_eq!(run.with_status("ran"), ["side", "source"]);
    let bad = p.run(&["build", "sid"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("did you mean `side`?"),
        "{}",
        bad.stderr
    );
}

#[test]
fn bad_pipelines_are_reported_with_file_line_key_and_suggestion() {
    let cases = [
        (
            "[stages.scrape]\nmax_file = 3\n",
            "pipeline.toml:2:1: `stages.scrape.max_file`: unknown parameter",
        ),
        (
            "[stages.scrape]\ndelay_ms = \"soon\"\n",
            "`stages.scrape.delay_ms`: expected an integer",
        ),
        ("[stages.a]\nkind = \"comand\"\n", "did you mean `command`?"),
        (
            "[stages.scrape]\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\ndeps = [\"scrap\"]\n",
            "unknown stage `scrap`; did you mean `scrape`?",
        ),
        (
            "[stages.a]\nkind = \"command\"\ncmd = \"true\"\ndeps = [\"a\"]\n",
            "dependency cycle: a -> a",
        ),
        ("# nothing\n", "declares no stages"),
        (
            "[stages.scrape]\nsource = \"demo\"\nsource = \"demo\"\n",
            "pipeline.toml:3:1",
        ),
        (
            "[stages.scrape]\n[variants.v]\nscrape.sourse = \"x\"\n",
            "did you mean `source`?",
        ),
        ("[stages.scrape\n", "invalid TOML"),
    ];
    for (text, expected) in cases {
        let p = Project::new(text);
        let run = p.run(&["build"]);
        assert_eq!(run.code, 2, "{text}");
        assert!(
            run.stderr.contains(expected),
            "for {text:?} expected {expected:?} in:\n{}",
            run.stderr
        );
    }
    let p = Project::new(PIPELINE);
    let run = p.run(&["build", "--set", "upper.param.suffix=1"]);
    assert!(
        run.stderr.contains("--set upper.param.suffix=1")
            && run.stderr.contains("did you mean `params`?"),
        "{}",
        run.stderr
    );
    let run = p.run(&["build", "--variant", "lod"]);
    assert!(
        run.stderr.contains("did you mean `loud`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn status_why_dag_and_show_describe_the_build() {
    let p = Project::new(PIPELINE);
    let status = p.run(&["status"]);
    assert!(
        status.stdout.contains("not built before"),
        "{}",
        status.stdout
    );
    p.build(&[]);
    let why = p.run(&["why", "upper", "--set", "upper.params.suffix=z"]);
    assert!(
        why.stdout
            .contains(r#"param upper.params.suffix "x" -> "z""#),
        "{}",
        why.stdout
    );
    let why = p.run(&["why", "report", "--set", "upper.params.suffix=z"]);
    assert!(
        why.stdout.contains("upstream `count` will run"),
        "{}",
        why.stdout
    );
    let dot = p.run(&["dag", "--format", "dot"]);
    assert!(
        dot.stdout.contains("\"source\" -> \"upper\";"),
        "{}",
        dot.stdout
    );
    let mermaid = p.run(&["dag", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.contains("count --> report"),
        "{}",
        mermaid.stdout
    );
    let show = p.run(&["show", "upper"]);
    assert!(
        show.stdout.contains("words.txt") && show.stdout.contains("out/default/upper"),
        "{}",
        show.stdout
    );
}

#[test]
fn gc_keeps_referenced_results_and_frees_the_rest() {
    let p = Project::new(PIPELINE);
    p.build(&[]);
    for i in 0..12 {
        p.build(&["--set", &format!("upper.params.suffix=s{i}")]);
    }
    let outputs = || {
        std::fs::read_dir(p.path().join("cache/outputs"))
            .unwrap()
            .count()
    };
    let before = outputs();
    let dry = p.run(&["gc", "--dry-run"]);
    assert!(dry.stdout.contains("would remove"), "{}", dry.stdout);
    assert_eq!(outputs(), before);
    let gc = p.run(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(outputs() < before, "{}", gc.stdout);
    // What the default variant points at survives and is still cached.
    assert_eq!(p.run(&["verify"]).code, 0);
    let last = p.build(&["--set", "upper.params.suffix=s11"]);
    assert!(last.with_status("ran").is_empty(), "{:?}", last.statuses());
}

/// A pipeline whose stages write several files slowly, to be killed mid-way.
const SLOW: &str = r#"
[stages.one]
kind = "command"
cmd = "for i in 1 2 3 4 5; do echo one$i > f$i.txt; sleep 0.04; done"

[stages.two]
kind = "command"
deps = ["one"]
cmd = "for i in 1 2 3 4 5; do cat $VGMAKE_IN_ONE/f$i.txt > g$i.txt; echo two >> g$i.txt; sleep 0.04; done"

[stages.three]
kind = "command"
deps = ["two"]
cmd = "cat $VGMAKE_IN_TWO/g*.txt > all.txt; sleep 0.1"
"#;

fn spawn_in_own_group(p: &Project, args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = p.command(args);
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn kill_group(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

#[test]
fn kill_9_at_any_point_leaves_a_valid_cache_and_the_next_build_completes() {
    let p = Project::new(SLOW);
    for delay_ms in [5, 60, 120, 200, 280, 360, 450, 550] {
        let mut child = spawn_in_own_group(&p, &["build"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill_group(&mut child);
        let verify = p.run(&["verify"]);
        assert_eq!(
            verify.code, 0,
            "after kill at {delay_ms} ms: {}",
            verify.stdout
        );
        // Start over from scratch each time the last kill came too late.
        if p.out("default", "three").exists() {
            std::fs::remove_dir_all(p.path().join("cache")).unwrap();
            std::fs::remove_dir_all(p.path().join("out")).unwrap();
        }
    }
    let mut child = spawn_in_own_group(&p, &["build"]);
    std::thread::sleep(Duration::from_millis(150));
    kill_group(&mut child);
    let done = p.build(&[]);
    assert!(done.with_status("failed").is_empty());
    let all = p.read_out("three", "all.txt");
    assert_eq!(all.lines().count(), 10, "{all}");
    assert_eq!(p.run(&["verify"]).code, 0);
    assert!(p.build(&[]).with_status("ran").is_empty());
}

const SLEEPY: &str = r#"
[stages.nap]
kind = "command"
cmd = "sleep 1; echo rested > nap.txt"
"#;

#[test]
fn two_builds_at_once_wait_for_each_other_without_corruption() {
    let p = Project::new(SLEEPY);
    let first = p
        .command(&["build", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock_holder(&p);
    let locked = p.run(&["build", "--no-wait"]);
    assert_eq!(locked.code, 2);
    assert!(
        locked.stderr.contains("locked by another build") && locked.stderr.contains("pid"),
        "{}",
        locked.stderr
    );
    let second = p.run(&["build", "--json"]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("waiting for another build"),
        "{}",
        second.stderr
    );
    // The second found the first's result instead of running again.
    assert_eq!(second.with_status("cached"), ["nap"]);
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn a_lock_left_by_a_dead_build_is_broken() {
    let p = Project::new(SLEEPY);
    let mut child = spawn_in_own_group(&p, &["build"]);
    wait_for_lock_holder(&p);
    kill_group(&mut child);
    let started = Instant::now();
    let run = p.run(&["build", "--no-wait"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("broke a stale lock"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(p.read_out("nap", "nap.txt"), "rested\n");
}

fn wait_for_lock_holder(p: &Project) {
    let lock = p.path().join("cache/LOCK");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the build never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn command_stage_keys_only_allow_listed_environment_and_declared_inputs() {
    let p = Project::new(
        r#"
[stages.tool]
kind = "command"
cmd = "sh $VGMAKE_PROJECT/script.sh > out.txt"
env = ["VGMAKE_TEST_LEVEL"]
inputs = ["script.sh"]
"#,
    );
    std::fs::write(
        p.path().join("script.sh"),
        "echo level=$VGMAKE_TEST_LEVEL other=$VGMAKE_TEST_OTHER\n",
    )
    .unwrap();
    let build = |level: &str, other: &str| {
        let mut cmd = p.command(&["build", "--json"]);
        cmd.env("VGMAKE_TEST_LEVEL", level)
            .env("VGMAKE_TEST_OTHER", other);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        v["status"].as_str().unwrap().to_string()
    };
    assert_eq!(build("1", "a"), "ran");
    // Not on the allow-list: neither enters the key nor reaches the command.
    assert_eq!(build("1", "b"), "cached");
    assert_eq!(p.read_out("tool", "out.txt"), "level=1 other=\n");
    assert_eq!(build("2", "b"), "ran");
    assert_eq!(build("1", "b"), "cached");
    std::fs::write(p.path().join("script.sh"), "echo changed\n").unwrap();
    assert_eq!(build("1", "b"), "ran");
    assert_eq!(p.read_out("tool", "out.txt"), "changed\n");
    let why = p.run(&["status"]);
    assert!(
        why.stdout.contains("will-run") && why.stdout.contains("VGMAKE_TEST_LEVEL"),
        "{}",
        why.stdout
    );
}

#[test]
fn ctrl_c_stops_the_build_cleanly_and_the_next_build_continues() {
    let p = Project::new(SLOW);
    let child = p
        .command(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(120));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupt"), "{stderr}");
    assert_eq!(p.run(&["verify"]).code, 0);
    let done = p.build(&[]);
    assert!(done.with_status("failed").is_empty());
    assert_eq!(p.read_out("three", "all.txt").lines().count(), 10);
}

/// The binary grows its heap at start and marks it for transparent huge
/// pages (`train::memory::tune_allocator`): a command stage, a child of the
/// build, reads the build's own mappings.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_build_reserves_its_heap_in_huge_pages() {
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        eprintln!("SKIPPED: this kernel has no transparent huge pages");
        return;
    }
    let p = Project::new(
        r#"
[stages.maps]
kind = "command"
cmd = "cat /proc/$PPID/smaps > smaps.txt"
"#,
    );
    p.build(&[]);
    let smaps = p.read_out("maps", "smaps.txt");
    // A mapping's header line (its address range first), then its fields;
    // `VmFlags` comes last.
    let range = |line: &str| {
        let (a, b) = line.split_whitespace().next()?.split_once('-')?;
        Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
    };
    let (mut in_heap, mut heap_bytes, mut marked) = (false, 0u64, false);
    for line in smaps.lines() {
        if let Some(bytes) = range(line) {
            in_heap = line.ends_with("[heap]");
            if in_heap {
                heap_bytes += bytes;
            }
        } else if in_heap && line.starts_with("VmFlags:") {
            marked |= line.split_whitespace().any(|w| w == "hg");
        }
    }
    assert!(
        heap_bytes >= 64 << 20,
        "heap of {heap_bytes} bytes:\n{smaps}"
    );
    assert!(marked, "no [heap] mapping marked hg:\n{smaps}");
}
