//! The engine driven in process with the fake kinds of `testkit`: the
//! scheduler, executor, store and pipeline rules, in milliseconds, without
//! the binary (ninja's build_test.cc in spirit). The binary's own contract
//! is tested end to end in tests/.

use std::fs;

use crate::diagnostic::Diagnostics;
use crate::outcome::Status;
use crate::pipeline::Pipeline;
use crate::testkit::{TestProject, host, status};

const CHAIN: &str = r#"
[stages.src]
kind = "source"
value = "a"

[stages.up]
kind = "transform"
deps = ["src"]
suffix = "b"

[stages.down]
kind = "transform"
deps = ["up"]
suffix = "c"
"#;

#[test]
fn a_second_build_runs_nothing() {
    let p = TestProject::new(CHAIN);
    let first = p.build();
    assert!(first.iter().all(|r| r.status == Status::Ran), "{first:?}");
    let second = p.build();
    assert!(
        second.iter().all(|r| r.status == Status::Cached),
        "{second:?}"
    );
    assert_eq!((p.runs("src"), p.runs("up"), p.runs("down")), (1, 1, 1));
    let down = second.iter().find(|r| r.name == "down").unwrap();
    let out = p.store().output_dir(down.output.as_ref().unwrap());
    assert_eq!(fs::read_to_string(out.join("value.txt")).unwrap(), "abc");
}

#[test]
fn same_bytes_upstream_cut_the_rebuild_off() {
    let p = TestProject::new(CHAIN);
    p.build();
    // `note` changes the source's key, not its output.
    let r = p.build_with(&["src.note=x"], &[], 4);
    assert_eq!(status(&r, "src"), Status::Ran);
    assert_eq!(status(&r, "up"), Status::Cutoff);
    assert_eq!(status(&r, "down"), Status::Cutoff);
    assert_eq!((p.runs("up"), p.runs("down")), (1, 1));
}

#[test]
fn a_failure_skips_dependents_and_independent_branches_finish() {
    let p = TestProject::new(&format!(
        "{CHAIN}\n[stages.side]\nkind = \"transform\"\ndeps = [\"src\"]\nsuffix = \"s\"\n"
    ));
    let r = p.build_with(&["up.mode=fail"], &[], 1);
    assert_eq!(status(&r, "up"), Status::Failed);
    assert_eq!(status(&r, "down"), Status::Skipped);
    assert_eq!(status(&r, "side"), Status::Ran);
    let failed = r.iter().find(|r| r.name == "up").unwrap();
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("bad input, as asked")
    );
    let r = p.build_with(&["up.mode=panic"], &[], 1);
    let failed = r.iter().find(|r| r.name == "up").unwrap();
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.contains("panic") && message.contains("boom"),
        "{message}"
    );
}

#[test]
fn shared_stages_of_a_sweep_run_once() {
    let p = TestProject::new(CHAIN);
    let r = p.build_with(&["down.suffix=x,y,z"], &[], 4);
    assert_eq!(r.len(), 9);
    assert_eq!((p.runs("src"), p.runs("up"), p.runs("down")), (1, 1, 3));
}

#[test]
fn different_keys_with_the_same_output_commit_in_parallel() {
    // Eight variants whose `note` differs: eight keys, one output, committed
    // at once (this raced into "Directory not empty" before).
    let p = TestProject::new("[stages.src]\nkind = \"source\"\nfiles = 300\n");
    let notes: Vec<String> = (1..=8).map(|i| format!("n{i}")).collect();
    let r = p.build_with(&[&format!("src.note={}", notes.join(","))], &[], 8);
    assert!(r.iter().all(|r| r.status == Status::Ran), "{r:?}");
    let outputs: std::collections::BTreeSet<_> = r.iter().map(|r| r.output.clone()).collect();
    assert_eq!(outputs.len(), 1);
}

#[test]
fn measurements_stay_beside_the_output_so_a_forced_rerun_cuts_off() {
    let p = TestProject::new(CHAIN);
    p.build();
    // `up` reruns: its measurement (runs in its state folder) changes, its
    // output does not, so `down` is cut off.
    let r = p.build_with(&[], &["up"], 4);
    assert_eq!(status(&r, "up"), Status::Ran);
    assert_eq!(status(&r, "down"), Status::Cutoff);
    assert_eq!(p.runs("down"), 1);
    let store = p.store();
    let key = r
        .iter()
        .find(|r| r.name == "up")
        .unwrap()
        .key
        .clone()
        .unwrap();
    let record = store.record(&key).unwrap();
    assert_eq!(record.measurements["runs_in_state"], 2.0);
    assert_eq!(record.metrics.unwrap()["length"], 2);
}

#[test]
fn runs_that_differ_only_in_ignored_parameters_share_state() {
    let p = TestProject::new(CHAIN);
    p.build();
    let store = p.store();
    let record_of = |r: &[crate::outcome::StageResult]| {
        store
            .record(
                r.iter()
                    .find(|r| r.name == "up")
                    .unwrap()
                    .key
                    .as_ref()
                    .unwrap(),
            )
            .unwrap()
    };
    // `steps` is ignored by the state: a new key, the same state folder.
    let r = p.build_with(&["up.steps=2"], &[], 4);
    assert_eq!(status(&r, "up"), Status::Ran);
    assert_eq!(record_of(&r).measurements["runs_in_state"], 2.0);
    // `suffix` is not: a fresh state folder.
    let r = p.build_with(&["up.suffix=q"], &[], 4);
    assert_eq!(record_of(&r).measurements["runs_in_state"], 1.0);
}

#[test]
fn what_a_crash_leaves_behind_is_cleaned_or_rebuilt() {
    let p = TestProject::new(CHAIN);
    let r = p.build();
    let store = p.store();
    // A staging folder of a dead build, an output without its record, and
    // a record whose output is gone.
    fs::create_dir_all(store.tmp_dir().join("up-dead-1/out")).unwrap();
    let up = r.iter().find(|r| r.name == "up").unwrap();
    let down = r.iter().find(|r| r.name == "down").unwrap();
    store.remove_record(up.key.as_ref().unwrap());
    crate::fsutil::remove_tree(&store.output_dir(down.output.as_ref().unwrap())).unwrap();
    assert_eq!(store.clean_tmp().unwrap(), 1);
    let r = p.build();
    assert_eq!(status(&r, "src"), Status::Cached);
    assert_eq!(status(&r, "up"), Status::Ran);
    assert_eq!(status(&r, "down"), Status::Ran);
    for r in &r {
        store.verify_output(r.output.as_ref().unwrap()).unwrap();
    }
}

#[test]
fn a_modified_cached_output_is_rebuilt() {
    let p = TestProject::new(CHAIN);
    let r = p.build();
    let store = p.store();
    let down = r.iter().find(|r| r.name == "down").unwrap();
    let file = store
        .output_dir(down.output.as_ref().unwrap())
        .join("value.txt");
    let mut perms = fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&file, perms).unwrap();
    fs::write(&file, "tampered").unwrap();
    let r = p.build();
    assert_eq!(status(&r, "down"), Status::Ran);
    let out = store.output_dir(
        r.iter()
            .find(|r| r.name == "down")
            .unwrap()
            .output
            .as_ref()
            .unwrap(),
    );
    assert_eq!(fs::read_to_string(out.join("value.txt")).unwrap(), "abc");
}

/// Makes `file` (read-only in the cache) writable and overwrites it.
fn tamper(file: &std::path::Path, with: &str) {
    let mut perms = fs::metadata(file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(file, perms).unwrap();
    fs::write(file, with).unwrap();
}

#[test]
fn a_damaged_intermediate_is_verified_when_read_and_rebuilt_first() {
    let p = TestProject::new(CHAIN);
    let r = p.build();
    let store = p.store();
    let up = r.iter().find(|r| r.name == "up").unwrap();
    let up_file = store
        .output_dir(up.output.as_ref().unwrap())
        .join("value.txt");
    tamper(&up_file, "tampered");
    // Nothing reads `up` while `down` is cached: a no-op does not re-stat it.
    let r = p.build();
    assert!(r.iter().all(|r| r.status == Status::Cached), "{r:?}");
    assert_eq!(p.runs("up"), 1);
    // `down` must run now: it reads `up`, finds it damaged, and `up` is
    // rebuilt before `down` reads a byte of it.
    let r = p.build_with(&["down.suffix=d"], &[], 4);
    assert_eq!(status(&r, "up"), Status::Ran, "{r:?}");
    assert_eq!(status(&r, "down"), Status::Ran, "{r:?}");
    assert_eq!(r.iter().filter(|r| r.name == "up").count(), 1, "{r:?}");
    assert_eq!((p.runs("up"), p.runs("down")), (2, 2));
    let down = r.iter().find(|r| r.name == "down").unwrap();
    let out = store.output_dir(down.output.as_ref().unwrap());
    assert_eq!(fs::read_to_string(out.join("value.txt")).unwrap(), "abd");
    // A named target is handed over: its hit is verified at once.
    let up = r.iter().find(|r| r.name == "up").unwrap();
    tamper(
        &store
            .output_dir(up.output.as_ref().unwrap())
            .join("value.txt"),
        "again",
    );
    let r = p.build_targets(&["up"]);
    assert_eq!(status(&r, "up"), Status::Ran, "{r:?}");
    assert_eq!(p.runs("up"), 3);
}

#[test]
fn two_readers_of_a_damaged_intermediate_both_wait_for_its_rebuild() {
    let p = TestProject::new(&format!(
        "{CHAIN}\n[stages.other]\nkind = \"transform\"\ndeps = [\"up\"]\nsuffix = \"o\"\n"
    ));
    let r = p.build();
    let up = r.iter().find(|r| r.name == "up").unwrap();
    let up_file = p
        .store()
        .output_dir(up.output.as_ref().unwrap())
        .join("value.txt");
    for jobs in [1, 4] {
        tamper(&up_file, "tampered");
        let suffix = if jobs == 1 { "x" } else { "y" };
        let sets = [
            format!("down.suffix={suffix}"),
            format!("other.suffix=o{suffix}"),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let r = p.build_with(&sets, &[], jobs);
        assert_eq!(status(&r, "down"), Status::Ran, "{r:?}");
        assert_eq!(status(&r, "other"), Status::Ran, "{r:?}");
    }
    assert_eq!(p.runs("up"), 3, "rebuilt once per build");
}

#[test]
fn the_key_memo_never_answers_for_a_changed_input() {
    let p = TestProject::new(&CHAIN.replace("value = \"a\"", "value = \"a\"\nreads = \"in.txt\""));
    let input = p.path().join("in.txt");
    let value = |r: &[crate::outcome::StageResult]| {
        let down = r.iter().find(|r| r.name == "down").unwrap();
        let out = p.store().output_dir(down.output.as_ref().unwrap());
        fs::read_to_string(out.join("value.txt")).unwrap()
    };
    fs::write(&input, "1").unwrap();
    let first = p.build();
    assert_eq!(value(&first), "a1bc");
    // Remembered now: the next no-op takes the key from the memo.
    let again = p.build();
    assert!(
        again.iter().all(|r| r.status == Status::Cached),
        "{again:?}"
    );
    assert_eq!(p.store().keys.len(), 3, "one per stage");
    // New content (of another size: a write within the file system's clock
    // tick keeps the mtime, as for any stat cache): the memo misses.
    fs::write(&input, "22").unwrap();
    let changed = p.build();
    assert_eq!(status(&changed, "src"), Status::Ran);
    assert_eq!(value(&changed), "a22bc");
    // Back to the first content: the first key, found without the memo.
    fs::write(&input, "1").unwrap();
    let back = p.build();
    assert_eq!(status(&back, "src"), Status::Cached, "{back:?}");
    assert_eq!(value(&back), "a1bc");
    // A forced rerun rewrites the record; the memo then re-reads it.
    let forced = p.build_with(&[], &["src"], 4);
    assert_eq!(status(&forced, "src"), Status::Ran);
    let after = p.build();
    assert!(
        after.iter().all(|r| r.status == Status::Cached),
        "{after:?}"
    );
    assert_eq!(p.runs("src"), 3);
}

#[test]
fn cancel_stops_running_stages_and_skips_the_rest() {
    let p = TestProject::new(CHAIN);
    let canceller = {
        let cancel = p.cancel.clone();
        let runs = p.path().join("runs.log");
        std::thread::spawn(move || {
            // Once `up` runs (however loaded the machine), not after a delay.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !fs::read_to_string(&runs).is_ok_and(|r| r.lines().any(|l| l == "up"))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let r = p.build_with(&["up.mode=wait"], &[], 4);
    canceller.join().unwrap();
    assert_eq!(status(&r, "src"), Status::Ran);
    assert_eq!(status(&r, "up"), Status::Failed);
    assert!(
        r.iter()
            .find(|r| r.name == "up")
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("cancelled")
    );
    assert_eq!(status(&r, "down"), Status::Skipped);
}

fn parse(text: &str) -> Result<Pipeline, String> {
    Pipeline::parse(std::path::Path::new("pipeline.toml"), text, &host().kinds)
        .map_err(|d: Diagnostics| d.to_string())
}

trait ErrText {
    fn err_text(self) -> String;
}
impl ErrText for Result<Pipeline, String> {
    fn err_text(self) -> String {
        match self {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}

#[test]
fn dependency_shapes_are_checked_when_the_file_is_parsed() {
    let missing =
        parse("[stages.src]\nkind = \"source\"\n[stages.t]\nkind = \"transform\"\n").err_text();
    assert!(
        missing.contains("pipeline.toml:3:9: `stages.t.deps`: stage kind `transform` reads a value from a stage of kind `source` or `transform`, and none is in `deps`; add `src` to `deps`"),
        "{missing}"
    );
    let extra = parse("[stages.a]\nkind = \"source\"\n[stages.b]\nkind = \"source\"\n[stages.t]\nkind = \"transform\"\ndeps = [\"a\", \"b\"]\n").err_text();
    assert!(extra.contains("pipeline.toml:7:1: `stages.t.deps`: `b` (kind `source`) is not an input of stage kind `transform`"), "{extra}");
    let source =
        parse("[stages.a]\nkind = \"source\"\n[stages.b]\nkind = \"source\"\ndeps = [\"a\"]\n")
            .err_text();
    assert!(
        source.contains("stage kind `source` is a source and takes no dependencies, but lists `a`"),
        "{source}"
    );
}

#[test]
fn unknown_parameters_and_types_name_the_line_and_suggest() {
    let err = parse("[stages.src]\nkind = \"source\"\nvalu = 3\nfiles = \"many\"\n").err_text();
    assert!(
        err.contains("pipeline.toml:3:1: `stages.src.valu`: unknown parameter"),
        "{err}"
    );
    assert!(err.contains("did you mean `value`?"), "{err}");
    assert!(
        err.contains("pipeline.toml:4:1: `stages.src.files`: expected an integer"),
        "{err}"
    );
    let err = parse("[stages.b]\nkind = \"sorce\"\n").err_text();
    assert!(
        err.contains("unknown stage kind `sorce`") && err.contains("did you mean `source`?"),
        "{err}"
    );
    let err = parse("[stages.src]\nkind = \"source\"\n[variants.v]\nsrc.filez = 5\n").err_text();
    assert!(
        err.contains("pipeline.toml:4:5") && err.contains("did you mean `files`?"),
        "{err}"
    );
    let err =
        parse("[stages.src]\nkind = \"source\"\n[variants.v]\nsrc.files = \"x\"\n").err_text();
    assert!(
        err.contains("`variants.v.src.files`: expected an integer"),
        "{err}"
    );
}

#[test]
fn cycles_empty_files_and_duplicates() {
    let err = parse("[stages.a]\nkind = \"transform\"\ndeps = [\"b\"]\n[stages.b]\nkind = \"transform\"\ndeps = [\"a\"]\n").err_text();
    assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
    assert!(parse("").err_text().contains("declares no stages"));
    let err = parse("[stages.src]\n[stages.src]\n").err_text();
    assert!(
        err.contains("pipeline.toml:2:") && err.contains("invalid TOML"),
        "{err}"
    );
    let long = "x".repeat(250);
    let err = parse(&format!("[stages.{long}]\nkind = \"source\"\n")).err_text();
    assert!(err.contains("at most 100"), "{err}");
}

#[test]
fn overrides_apply_in_order_and_blame_the_command_line() {
    use crate::pipeline::BuildVariants;
    let p = parse("[stages.src]\nkind = \"source\"\nfiles = 1\n[variants.more]\nsrc.files = 5\n")
        .unwrap();
    let files = |variant: Option<&str>, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        BuildVariants::new(&p, variant, &sets, false)
            .map(|v| v.main.stage("src").unwrap().params.int("files"))
            .map_err(|d| d.to_string())
    };
    assert_eq!(files(None, &[]), Ok(1));
    assert_eq!(files(Some("more"), &[]), Ok(5));
    assert_eq!(files(Some("more"), &["src.files=7"]), Ok(7));
    let err = files(Some("mor"), &[]).unwrap_err();
    assert!(
        err.starts_with("--variant mor: ") && err.contains("did you mean `more`?"),
        "{err}"
    );
    let err = files(None, &["src.filez=1"]).unwrap_err();
    assert!(
        err.starts_with("--set src.filez=1: `src.filez`") && err.contains("did you mean `files`?"),
        "{err}"
    );
    // A problem across parameters caused by --set is blamed on the --set.
    let err = files(None, &["src.lo=50", "src.hi=20"]).unwrap_err();
    assert!(
        err.starts_with("--set src.hi=20: `stages.src`: `lo` must not exceed `hi`"),
        "{err}"
    );
}
