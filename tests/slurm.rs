//! The Slurm executor against a real single-node Slurm cluster
//! (`scripts/slurm-local.sh`: slurmctld, slurmd and munged on this
//! machine), through the real binary.

#[path = "support/seaweed.rs"]
mod seaweed;
#[path = "support/slurm.rs"]
mod slurm;
mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Project, Run};

/// The tiny pipeline of tests/support/tiny.rs (train in about a second,
/// 2 samples), with lines added to the train and sample tables.
fn pipeline(steps: usize, train_extra: &str, sample_extra: &str) -> String {
    support::tiny::pipeline(steps, 2, 200)
        .replace(
            "[stages.train]\n",
            &format!("[stages.train]\n{train_extra}\n"),
        )
        .replace(
            "[stages.sample]\n",
            &format!("[stages.sample]\n{sample_extra}\n"),
        )
}

fn show(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["show", "--json"];
    all.extend_from_slice(args);
    let r = p.run(&all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// (variant, stage, status) of each line of a `--json` build.
fn results(r: &Run) -> Vec<(String, String, String)> {
    r.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("variant"), s("name"), s("status"))
        })
        .collect()
}

#[test]
fn train_and_sample_run_as_jobs_and_train_gives_the_local_weights() {
    if !slurm::cluster() {
        return;
    }
    let text = pipeline(
        40,
        "executor = \"slurm\"\nslurm = { cpus = 2 }",
        "executor = \"slurm\"",
    );
    let on_cluster = Project::new(&text);
    let dry = on_cluster.run(&["build", "--dry-run"]);
    assert!(
        dry.stdout
            .lines()
            .any(|l| l.contains("train") && l.contains("(a Slurm job)")),
        "{}",
        dry.stdout
    );
    let r = on_cluster.build(&["-j", "2"]);
    assert_eq!(r.with_status("ran").len(), 6, "{}\n{}", r.stdout, r.stderr);
    for (stage, submitted) in [
        ("scrape", false),
        ("encode", false),
        ("limit", false),
        ("vocab", false),
        ("train", true),
        ("sample", true),
    ] {
        let ran_on = show(&on_cluster, &[stage])["ran_on"].clone();
        assert_eq!(
            ran_on.as_str().is_some_and(|s| s.starts_with("slurm job ")),
            submitted,
            "{stage}: {ran_on}"
        );
    }
    // The job's log reached the build's record.
    let log = show(&on_cluster, &["train"])["log"].to_string();
    assert!(log.contains("step 40"), "{log}");

    // Everything cached: nothing becomes a job, even with the cluster named.
    let again = on_cluster.build(&["-j", "2"]);
    assert_eq!(again.with_status("cached").len(), 6, "{}", again.stdout);
    let status = on_cluster.run(&["status"]);
    assert!(!status.stdout.contains("Slurm job"), "{}", status.stdout);

    let local = Project::new(&text);
    let r = local.build(&["-j", "2", "--executor", "local", "train"]);
    assert_eq!(r.with_status("ran").len(), 5, "{}", r.stdout);
    assert!(show(&local, &["train"])["ran_on"].is_null());
    assert_eq!(
        std::fs::read(on_cluster.out("default", "train").join("model.safetensors")).unwrap(),
        std::fs::read(local.out("default", "train").join("model.safetensors")).unwrap(),
        "the job's weights are the local run's"
    );
}

#[test]
fn a_two_by_two_sweep_is_one_array_of_four_tasks() {
    if !slurm::cluster() {
        return;
    }
    let p = Project::new(&pipeline(10, "executor = \"slurm\"", ""));
    // -j 8: the variants' cached upstream stages all finish at once, so
    // their trains are ready together, as on a quiet machine.
    let r = p.build(&[
        "train",
        "-j",
        "8",
        "--set",
        "train.lr=0.01,0.02",
        "--set",
        "train.d_model=32,48",
    ]);
    let results = results(&r);
    let ran = |stage: &str| {
        results
            .iter()
            .filter(|(_, s, status)| s == stage && status == "ran")
            .count()
    };
    for stage in ["scrape", "encode", "limit", "vocab"] {
        assert_eq!(
            ran(stage),
            1,
            "{stage} runs once for all four\n{}",
            r.stdout
        );
    }
    assert_eq!(ran("train"), 4, "{}", r.stdout);
    // Each train's action record says where it ran: "slurm job 12_3 on vm".
    let keys: Vec<String> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["name"] == "train")
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect();
    let mut arrays = BTreeSet::new();
    let mut tasks = BTreeSet::new();
    for key in &keys {
        let path = p
            .path()
            .join("cache/actions")
            .join(&key[..2])
            .join(format!("{key}.json"));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let ran_on = record["ran_on"].as_str().unwrap_or_default();
        let job = ran_on.split_whitespace().nth(2).unwrap_or_default();
        let (array, task) = job.split_once('_').unwrap_or((job, ""));
        arrays.insert(array.to_string());
        tasks.insert(task.to_string());
    }
    assert_eq!(arrays.len(), 1, "one array: {arrays:?}");
    assert_eq!(
        tasks,
        ["0", "1", "2", "3"].map(String::from).into(),
        "{tasks:?}"
    );
}

/// A slow stage on the cluster, what depends on it, and an independent
/// local branch.
fn slow_pipeline(stage: &str) -> String {
    format!(
        r#"
[stages.{stage}]
kind = "command"
cmd = "echo started; sleep 120; echo done > out.txt"
executor = "slurm"

[stages.after]
kind = "command"
deps = ["{stage}"]
cmd = "cat $VGMAKE_IN_{upper}/out.txt > copy.txt"

[stages.other]
kind = "command"
cmd = "sleep 1; echo independent > other.txt"
"#,
        upper = stage.to_uppercase()
    )
}

/// Waits until the stage's job runs; its id.
fn running_job(stage: &str) -> String {
    // Other tests' jobs may hold the node's 2 CPUs for a while.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some((id, _)) = slurm::jobs_of(stage)
            .into_iter()
            .find(|(_, state)| state == "RUNNING")
        {
            return id;
        }
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cancelled_job_fails_its_stage_and_skips_dependents_only() {
    if !slurm::cluster() {
        return;
    }
    let stage = &slurm::own_stage("slow_scancel");
    let p = Project::new(&slow_pipeline(stage));
    let child = p
        .command(&["build", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = running_job(stage);
    // Until the job has said something (its output lands in cache/jobs/).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(p.path().join("cache/jobs"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| {
            std::fs::read_to_string(d.path().join("0.out")).is_ok_and(|t| t.contains("started"))
        })
    {
        assert!(
            Instant::now() < deadline,
            "the job never started its command"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = std::process::Command::new("scancel")
        .arg(&job)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |name: &str| {
        results
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {stdout}"))
            .clone()
    };
    assert_eq!(of(stage)["status"], "failed", "{stdout}");
    let message = of(stage)["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("slurm job {job} ended CANCELLED")),
        "{message}"
    );
    assert!(
        message.contains("started"),
        "the job's last lines: {message}"
    );
    assert_eq!(of("after")["status"], "skipped");
    assert_eq!(of("other")["status"], "ran");
}

#[test]
fn ctrl_c_on_the_build_cancels_its_jobs() {
    if !slurm::cluster() {
        return;
    }
    let stage = &slurm::own_stage("slow_ctrl_c");
    let p = Project::new(&slow_pipeline(stage));
    let child = p
        .command(&["build", stage])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    running_job(stage);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = slurm::jobs_of(stage);
    assert!(left.is_empty(), "jobs left in the queue: {left:?}");
}

#[test]
fn a_dead_controller_or_no_slurm_is_a_clear_error_before_submitting() {
    if !slurm::cluster() {
        return;
    }
    let never = &slurm::own_stage("never_submitted");
    let p = Project::new(&slow_pipeline(never));
    // The cluster's configuration with the controller on a port where
    // nothing listens: what every command sees when slurmctld is down.
    let conf = std::fs::read_to_string("/etc/slurm/slurm.conf").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = p.path().join("dead-slurm.conf");
    std::fs::write(&dead, format!("{conf}\nSlurmctldPort={port}\n")).unwrap();
    let out = p
        .command(&["build", "--json"])
        .env("SLURM_CONF", &dead)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the Slurm controller is not answering"),
        "{stdout}"
    );
    assert!(stdout.contains("\"other\""), "{stdout}");
    assert!(slurm::jobs_of(never).is_empty());

    // No Slurm commands at all.
    let out = p
        .command(&["build", "--json", never])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Slurm is not installed here: `sbatch` is not on PATH"),
        "{stdout}"
    );
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    // Malformed: at parse time, with the line, cluster or not.
    let p = Project::new(
        "[executors.slurm]\ngres = \"gpu:0\"\ncpus = 0\n\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nexecutor = \"slrum\"\n",
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pipeline.toml:2:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`gpu:0` is not a gres request"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("executors.slurm.cpus"), "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown executor \"slrum\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("slurm"), "{}", r.stderr);
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let r = p.run(&["build", "--executor", "a=cloud"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown executor `cloud`"),
        "{}",
        r.stderr
    );

    if !slurm::cluster() {
        return;
    }
    // Well-formed but not on this cluster: before submitting.
    let p = Project::new(
        "[stages.a]\nkind = \"command\"\ncmd = \"true\"\nexecutor = \"slurm\"\nslurm = { partition = \"nosuch\" }\n\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\nexecutor = \"slurm\"\nslurm = { gres = \"gpu:1\" }\n",
    );
    let r = p.run(&["build", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("partition `nosuch` does not exist on this cluster (partitions: debug)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("no node of this cluster offers gres `gpu`"),
        "{}",
        r.stdout
    );
}

#[test]
fn without_a_shared_file_system_jobs_go_through_the_remote_cache() {
    if !slurm::cluster() {
        return;
    }
    let Some(server) = seaweed::Seaweed::start("jobs") else {
        return;
    };
    let node_cache = tempfile::tempdir().unwrap();
    let text = format!(
        "[cache]\nremote = \"s3://jobs/team\"\nendpoint = \"{}\"\npush = false\n\n[executors.slurm]\nshared_fs = false\nnode_cache = \"{}\"\n{}",
        server.endpoint(),
        node_cache.path().display(),
        pipeline(40, "executor = \"slurm\"", "")
    );
    let p = Project::new(&text);
    let out = p
        .command(&["build", "--json", "train"])
        .env("AWS_ACCESS_KEY_ID", "vgmake-test")
        .env("AWS_SECRET_ACCESS_KEY", "vgmake-test-secret")
        .env_remove("VGMAKE_REMOTE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = show(&p, &["train"]);
    assert!(
        shown["ran_on"].as_str().unwrap().starts_with("slurm job"),
        "{shown}"
    );
    // The job worked in its own cache: it fetched vocab (pushed for it,
    // although `push = false`) and pushed train back, where the build
    // fetched it from, every byte verified.
    assert!(
        shown["log"]
            .to_string()
            .contains("fetched from s3://jobs/team"),
        "{shown}"
    );
    assert!(node_cache.path().join("actions").is_dir());
    let keys = server.list("jobs", "team/ac/");
    assert_eq!(keys.len(), 2, "vocab and train on the remote: {keys:?}");
    // A stage that reads project files cannot go there.
    let p2 = Project::new(&text.replace(
        "[stages.scrape]",
        "[stages.script]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"pipeline.toml\"]\nexecutor = \"slurm\"\n\n[stages.scrape]",
    ));
    let out = p2
        .command(&["build", "--json", "script"])
        .env("AWS_ACCESS_KEY_ID", "vgmake-test")
        .env("AWS_SECRET_ACCESS_KEY", "vgmake-test-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("it reads files of the project folder"),
        "{stdout}"
    );
}

#[test]
fn a_requeued_train_job_resumes_from_its_checkpoint() {
    if !slurm::cluster() {
        return;
    }
    let train = &slurm::own_stage("train_rq");
    let text = pipeline(600, "executor = \"slurm\"\nslurm = { cpus = 2 }", "")
        .replace("eval_every = 10", "eval_every = 100")
        .replace("checkpoint_every = 600", "checkpoint_every = 50")
        // A name of its own: other tests' train jobs share the queue.
        .replace(
            "[stages.train]",
            &format!("[stages.{train}]\nkind = \"train\""),
        )
        .replace("deps = [\"train\", ", &format!("deps = [\"{train}\", "));
    let p = Project::new(&text);
    let child = p
        .command(&["build", "--json", "-j", "2", train])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = running_job(train);
    let output = || {
        std::fs::read_dir(p.path().join("cache/jobs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join("0.out")).ok())
            .collect::<String>()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !output().contains("step 100:") {
        assert!(Instant::now() < deadline, "no step 100: {}", output());
        std::thread::sleep(Duration::from_millis(50));
    }
    // What preemption does: the task gets SIGTERM and goes back to the
    // queue. Slurm holds a requeued job for a while; let it start now.
    let scontrol = |args: &[&str]| {
        let out = std::process::Command::new("scontrol")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    scontrol(&["requeue", &job]);
    let start_now = format!("jobid={job}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slurm::jobs_of(train)
        .iter()
        .any(|(id, state)| *id == job && state == "PENDING")
    {
        assert!(Instant::now() < deadline, "the requeued job never pended");
        std::thread::sleep(Duration::from_millis(50));
    }
    scontrol(&["update", &start_now, "StartTime=now"]);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", output());
    let shown = show(&p, &[train]);
    let resumed = shown["measurements"]["resumed_from_step"].as_f64().unwrap();
    assert!(resumed >= 100.0, "resumed from step {resumed}: {shown}");
    assert!(
        shown["log"].to_string().contains("resuming at step"),
        "{shown}"
    );

    let local = Project::new(&text);
    local.build(&["-j", "2", "--executor", "local", train]);
    assert_eq!(
        std::fs::read(p.out("default", train).join("model.safetensors")).unwrap(),
        std::fs::read(local.out("default", train).join("model.safetensors")).unwrap(),
        "resumed on the cluster = uninterrupted here"
    );
}
