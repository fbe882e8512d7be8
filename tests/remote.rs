//! The remote cache against a real S3 server (SeaweedFS on 127.0.0.1),
//! through the real binary: project clones in temp dirs sharing a bucket.

#[path = "support/seaweed.rs"]
mod seaweed;
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use seaweed::Seaweed;
use support::{Project, Run};

const BUCKET: &str = "vgmake-test";
const KEY_ID: &str = "AKIDVGMAKETESTKEY0001";
const SECRET: &str = "s3cr3t-vgmake-test-VALUE-do-not-print";

fn pipeline(endpoint: &str, stages: &str) -> String {
    format!(
        "[cache]\nremote = \"s3://{BUCKET}/team\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\n{stages}"
    )
}

const STAGES: &str = r#"
[stages.source]
kind = "command"
cmd = "mkdir -p sub; printf 'alpha\nbeta\n' > words.txt; echo nested > sub/n.txt; : > empty.txt; head -c 300000 /dev/zero | tr '\\0' 'z' > big.txt"

[stages.upper]
kind = "command"
deps = ["source"]
cmd = "tr a-z A-Z < $VGMAKE_IN_SOURCE/words.txt > words.txt; echo $VGMAKE_PARAM_SUFFIX >> words.txt"
params = { suffix = "x" }

[stages.count]
kind = "command"
deps = ["upper"]
cmd = "wc -l < $VGMAKE_IN_UPPER/words.txt | tr -d ' ' > count.txt"
"#;

/// Runs vgmake with the test's credentials in the environment.
fn run(p: &Project, args: &[&str]) -> Run {
    let out = p
        .command(args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("VGMAKE_REMOTE")
        .env("VGMAKE_REMOTE_TIMEOUT", "5")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(KEY_ID) && !text.contains(SECRET) && !text.contains("X-Amz-Signature"),
            "a credential leaked into the output:\n{text}"
        );
    }
    run
}

fn build(p: &Project, args: &[&str]) -> Run {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let r = run(p, &all);
    assert_eq!(r.code, 0, "build failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Every file under `dir` (following the out/ links): relative path -> bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(format!("{rel}/"), vec![]);
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn outputs(p: &Project, stages: &[&str]) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    stages
        .iter()
        .map(|s| {
            (
                s.to_string(),
                tree(&p.out("default", s).canonicalize().unwrap()),
            )
        })
        .collect()
}

/// No credential in any file under `dir`.
fn assert_no_secret_under(dir: &Path) {
    for (path, bytes) in tree(dir) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(KEY_ID) && !text.contains(SECRET),
            "a credential leaked into {path}"
        );
    }
}

#[test]
fn a_second_clone_fetches_everything_byte_identical_and_builds_nothing() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let text = pipeline(&server.endpoint(), STAGES);
    let a = Project::new(&text);
    let first = build(&a, &[]);
    assert_eq!(first.with_status("ran").len(), 3, "{}", first.stdout);

    let b = Project::new(&text);
    // status and why say the results are available remotely.
    let status = run(&b, &["status"]);
    assert_eq!(
        status
            .stdout
            .lines()
            .filter(|l| l.starts_with("remote "))
            .count(),
        3,
        "{}",
        status.stdout
    );
    let why = run(&b, &["why", "count"]);
    assert!(why.stdout.contains("available remotely"), "{}", why.stdout);

    let second = build(&b, &[]);
    assert_eq!(
        second.with_status("fetched"),
        vec!["count", "source", "upper"],
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    assert_eq!(
        outputs(&a, &["source", "upper", "count"]),
        outputs(&b, &["source", "upper", "count"])
    );
    // Fetched results are local cache hits from now on, and verify.
    assert_eq!(build(&b, &[]).with_status("cached").len(), 3);
    assert_eq!(run(&b, &["verify"]).code, 0);
    // `--no-remote` (and VGMAKE_REMOTE=none) make a clone local-only.
    let c = Project::new(&text);
    assert_eq!(build(&c, &["--no-remote"]).with_status("ran").len(), 3);

    // A change on B: the changed stages run there and are pushed; A fetches them.
    let text_y = text.replace("suffix = \"x\"", "suffix = \"y\"");
    b.write_pipeline(&text_y);
    a.write_pipeline(&text_y);
    let changed = build(&b, &[]);
    assert_eq!(
        changed.with_status("ran"),
        vec!["count", "upper"],
        "{}",
        changed.stdout
    );
    let fetched = build(&a, &[]);
    assert_eq!(
        fetched.with_status("fetched"),
        vec!["count", "upper"],
        "{}",
        fetched.stdout
    );
    assert_eq!(fetched.with_status("cached"), vec!["source"]);

    // Layout: blobs under cas/, records under ac/, nothing else; every
    // record's blobs are there; no credential in any object or file.
    let keys = server.list(BUCKET, "team/");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("team/cas/") || k.starts_with("team/ac/")),
        "{keys:?}"
    );
    for k in keys.iter().filter(|k| k.starts_with("team/ac/")) {
        let (_, body) = server
            .http("GET", &format!("/{BUCKET}/{k}"), b"", &[])
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(KEY_ID) && !text.contains(SECRET));
        let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for f in record["tree"]["files"].as_array().unwrap() {
            let hash = f["hash"].as_str().unwrap();
            if !hash.is_empty() {
                assert!(
                    keys.contains(&format!("team/cas/{hash}")),
                    "{k} points at a missing blob"
                );
            }
        }
    }
    assert_no_secret_under(&a.path().join("cache"));
    assert_no_secret_under(&b.path().join("cache"));
}

#[test]
fn a_corrupt_blob_on_the_remote_is_detected_reported_and_rebuilt() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let text = pipeline(&server.endpoint(), STAGES);
    let a = Project::new(&text);
    build(&a, &[]);
    // Flip a byte of upper's words.txt, through the S3 API.
    let good = std::fs::read(a.out("default", "upper").join("words.txt")).unwrap();
    let hash = blake3::hash(&good).to_hex().to_string();
    let mut bad = good.clone();
    bad[0] ^= 1;
    let (status, _) = server
        .http("PUT", &format!("/{BUCKET}/team/cas/{hash}"), &bad, &[])
        .unwrap();
    assert_eq!(status, 200);

    let b = Project::new(&text);
    let r = build(&b, &[]);
    assert_eq!(
        r.with_status("ran"),
        vec!["upper"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // count's key depends only on upper's output, which B rebuilt identical.
    assert_eq!(
        r.with_status("fetched"),
        vec!["count", "source"],
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!("cas/{hash}")) && r.stderr.contains("corrupt"),
        "the bad blob is reported:\n{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(b.out("default", "upper").join("words.txt")).unwrap(),
        good
    );
    // B's push replaced the bad blob: a third clone fetches everything.
    let c = Project::new(&text);
    let r = build(&c, &[]);
    assert_eq!(
        r.with_status("fetched").len(),
        3,
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(outputs(&a, &["upper"]), outputs(&c, &["upper"]));
}

#[test]
fn a_dead_remote_never_fails_a_build_and_unfinished_pushes_complete_later() {
    let Some(mut server) = Seaweed::start(BUCKET) else {
        return;
    };
    // Killed in the middle of the build: the rest finishes locally, with
    // one warning, and the pushes it could not make stay pending.
    let stages = format!(
        r#"
[stages.first]
kind = "command"
cmd = "echo one > one.txt"

[stages.killer]
kind = "command"
deps = ["first"]
cmd = "sleep 0.5; kill -9 {pid}; sleep 0.3; echo two > two.txt"

[stages.after]
kind = "command"
deps = ["killer"]
cmd = "cat $VGMAKE_IN_KILLER/two.txt > three.txt"
"#,
        pid = server.pid()
    );
    let a = Project::new(&pipeline(&server.endpoint(), &stages));
    let r = build(&a, &[]);
    assert_eq!(r.with_status("ran").len(), 3, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr.matches("warning: remote cache").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("unpushed"), "{}", r.stderr);
    server.kill();

    // Nothing listens at the endpoint at all: the same, at once.
    let started = std::time::Instant::now();
    let r = build(&a, &["--force", "after"]);
    assert!(
        started.elapsed().as_secs() < 20,
        "a dead remote must not stall the build"
    );
    assert_eq!(
        r.stderr.matches("warning: remote cache").count(),
        1,
        "{}",
        r.stderr
    );

    // A new server at a new address: the next build pushes what was left.
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let text = pipeline(&server.endpoint(), &stages);
    a.write_pipeline(&text);
    let r = build(&a, &[]);
    assert_eq!(r.with_status("cached").len(), 3, "{}", r.stdout);
    assert!(
        r.stderr.contains("pushed ") && !r.stderr.contains("unpushed"),
        "{}",
        r.stderr
    );
    // What the killed build left is there now (`first` went to the old server).
    let b = Project::new(&text);
    let r = build(&b, &[]);
    assert_eq!(
        r.with_status("fetched"),
        vec!["after", "killer"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn bad_remote_settings_are_reported_with_file_line_and_column() {
    let p = Project::new(
        "[cache]\nremote = \"http://not-s3/x\"\npush = \"yes\"\nsecret_access_key = \"x\"\n\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let r = run(&p, &["build"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("pipeline.toml:2:1: `cache.remote`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pipeline.toml:3:1: `cache.push`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "pipeline.toml:4:1: `cache.secret_access_key`: credentials never go in pipeline.toml"
        ),
        "{}",
        r.stderr
    );
    let ok = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let r = run(&ok, &["build", "--remote", "s3://Bad_Bucket"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--remote") && r.stderr.contains("Bad_Bucket"),
        "{}",
        r.stderr
    );
    // The [cache] table enters no key: adding it reruns nothing.
    build(&ok, &["--no-remote"]);
    ok.write_pipeline("[cache]\nremote = \"s3://some-bucket\"\npush = false\n\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let r = build(&ok, &["--no-remote"]);
    assert_eq!(r.with_status("cached"), vec!["a"]);
}

#[test]
fn two_clones_building_one_key_at_once_both_succeed_with_one_record() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let text = pipeline(
        &server.endpoint(),
        "[stages.slow]\nkind = \"command\"\ncmd = \"sleep 1; echo same > out.txt\"\n",
    );
    let a = Project::new(&text);
    let b = Project::new(&text);
    let spawn = |p: &Project| {
        p.command(&["build", "--json"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env_remove("VGMAKE_REMOTE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for c in [ca, cb] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let records: Vec<_> = server.list(BUCKET, "team/ac/");
    assert_eq!(records.len(), 1, "{records:?}");
    let c = Project::new(&text);
    assert_eq!(build(&c, &[]).with_status("fetched"), vec!["slow"]);
}

/// The real stages: a machine with one new corpus file encodes only it,
/// the other songs' encodings come from the remote memo.
#[test]
fn a_new_corpus_file_on_another_machine_encodes_only_that_file() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo/freedm");
    let mut songs: Vec<_> = std::fs::read_dir(&demo)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    songs.sort();
    let stages = "[stages.scrape]\nsource = \"corpus\"\n\n[stages.encode]\ndeps = [\"scrape\"]\n";
    let text = pipeline(&server.endpoint(), stages);
    let a = Project::new(&text);
    let b = Project::new(&text);
    for p in [&a, &b] {
        std::fs::create_dir(p.path().join("corpus")).unwrap();
        for s in &songs[..6] {
            std::fs::copy(s, p.path().join("corpus").join(s.file_name().unwrap())).unwrap();
        }
    }
    let new = &songs[6];
    std::fs::copy(new, b.path().join("corpus").join(new.file_name().unwrap())).unwrap();
    let r = build(&a, &[]);
    assert_eq!(
        r.with_status("ran"),
        vec!["encode", "scrape"],
        "{}",
        r.stdout
    );
    let r = build(&b, &[]);
    assert_eq!(
        r.with_status("ran"),
        vec!["encode", "scrape"],
        "{}",
        r.stdout
    );
    let log = run(&b, &["show", "encode", "--log"]);
    assert!(
        log.stdout
            .contains("memo: 6 item(s) fetched from the remote cache, 1 computed here"),
        "{}",
        log.stdout
    );
    let memo = server.list(BUCKET, "team/memo/encode-");
    assert_eq!(memo.len(), 7, "{memo:?}");
}

/// `push_state = true`: a training run's checkpoints go to the remote, so
/// a longer run on another machine resumes where this one stopped.
#[test]
fn training_state_is_shared_so_another_machine_resumes_it() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo");
    let stages = format!(
        r#"
[stages.scrape]
source = "{data}"

[stages.encode]
deps = ["scrape"]
instrument_groups = "chip"
note_off_velocity = false

[stages.limit]
deps = ["encode"]
max_events = 6000

[stages.vocab]
deps = ["limit"]

[stages.train]
deps = ["vocab"]
d_model = 32
layers = 1
heads = 2
context = 64
batch = 8
steps = 20
warmup = 5
lr = 0.01
eval_every = 10
eval_tokens = 2048
checkpoint_every = 5
"#
    );
    let text = pipeline(&server.endpoint(), &stages).replace("region", "push_state = true\nregion");
    let a = Project::new(&text);
    build(&a, &[]);
    assert!(
        !server.list(BUCKET, "team/state/train/").is_empty(),
        "the state was pushed"
    );
    let b = Project::new(&text.replace("steps = 20", "steps = 30"));
    let r = build(&b, &[]);
    assert_eq!(
        r.with_status("ran"),
        vec!["train"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.with_status("fetched").len(), 4, "{}", r.stdout);
    let show = run(&b, &["show", "train", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        shown["measurements"]["resumed_from_step"], 20.0,
        "{}",
        show.stdout
    );
}

/// Results built without the remote are pushed by `vgmake push`.
#[test]
fn push_sends_what_was_built_locally() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    let text = pipeline(&server.endpoint(), STAGES);
    let a = Project::new(&text);
    assert_eq!(build(&a, &["--no-remote"]).with_status("ran").len(), 3);
    assert!(server.list(BUCKET, "team/ac/").is_empty());
    let r = run(&a, &["push", "upper"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("pushed 2 result(s)"), "{}", r.stdout);
    let r = run(&a, &["push"]);
    assert!(r.stdout.contains("pushed 3 result(s)"), "{}", r.stdout);
    let b = Project::new(&text);
    assert_eq!(build(&b, &[]).with_status("fetched").len(), 3);
    // Without any remote it says so (exit 2).
    let r = run(&a, &["push", "--no-remote"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `kill -9` of vgmake while its background push is in flight: no record
/// on the remote points at a missing blob, and the next build finishes the
/// push, so a second clone fetches everything byte-identical.
#[test]
fn a_push_killed_midway_leaves_no_dangling_record_and_the_next_build_finishes_it() {
    let Some(server) = Seaweed::start(BUCKET) else {
        return;
    };
    // Many files and one larger one: the push takes a while.
    let stages = r#"
[stages.many]
kind = "command"
cmd = "mkdir d; awk 'BEGIN { for (i = 0; i < 2500; i++) { f = \"d/f\" i \".txt\"; for (j = 0; j < 60; j++) print i, j, \"abcdefghijklmnopqrstuvwxyz0123456789\" > f; close(f) } }'; head -c 30000000 /dev/urandom > big.bin"

[stages.after]
kind = "command"
deps = ["many"]
cmd = "ls $VGMAKE_IN_MANY/d | wc -l > n.txt"
"#;
    let text = pipeline(&server.endpoint(), stages);
    let a = Project::new(&text);
    let pending = a.path().join("cache/remote-pending");
    let mut child = a
        .command(&["build", "--json"])
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("VGMAKE_REMOTE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as a push is pending (bounded: 120 s, or its exit).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut killed = false;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let in_flight = std::fs::read_dir(&pending)
            .map(|d| d.flatten().next().is_some())
            .unwrap_or(false);
        if in_flight {
            std::thread::sleep(std::time::Duration::from_millis(30));
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if !killed {
        let _ = child.kill();
    }
    child.wait().unwrap();
    assert!(killed, "the build ended before its push could be caught");

    // Every record on the remote points at blobs that are all there.
    let check_records = || {
        let records = server.list(BUCKET, "team/ac/");
        for k in &records {
            let (status, body) = server
                .http("GET", &format!("/{BUCKET}/{k}"), b"", &[])
                .unwrap();
            assert_eq!(status, 200, "{k}");
            let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for f in record["tree"]["files"].as_array().unwrap() {
                let hash = f["hash"].as_str().unwrap();
                if !hash.is_empty() {
                    let (status, _) = server
                        .http("HEAD", &format!("/{BUCKET}/team/cas/{hash}"), b"", &[])
                        .unwrap();
                    assert_eq!(status, 200, "{k} points at a missing blob {hash}");
                }
            }
        }
        records.len()
    };
    check_records();
    assert!(
        std::fs::read_dir(&pending)
            .unwrap()
            .flatten()
            .next()
            .is_some(),
        "the killed push left its note"
    );

    // The next build finishes the push (and whatever the kill stopped).
    let r = build(&a, &[]);
    assert!(!r.stderr.contains("unpushed"), "{}", r.stderr);
    assert!(
        std::fs::read_dir(&pending)
            .unwrap()
            .flatten()
            .next()
            .is_none(),
        "{}",
        r.stderr
    );
    assert_eq!(check_records(), 2);
    let b = Project::new(&text);
    let r = build(&b, &[]);
    assert_eq!(
        r.with_status("fetched"),
        vec!["after", "many"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        outputs(&a, &["many", "after"]),
        outputs(&b, &["many", "after"])
    );
}
