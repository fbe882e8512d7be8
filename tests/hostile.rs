//! Faults an adversarial test run found in the engine (issue "Hardening"),
//! each kept fixed through the real binary. The stage-side ones (the
//! scraper, the MIDI reader) are in stages/tests/hostile.rs.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::Project;

const ONE: &str = "[stages.gen]\nkind = \"command\"\ncmd = \"echo hello > a.txt\"\n";

/// Processes whose environment names `project` (a command stage's).
fn processes_of(project: &Path) -> Vec<i32> {
    let marker = format!("VGMAKE_PROJECT={}", project.display());
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        })
        .collect()
}

/// `vgmake build` started in the background, its output discarded.
fn quiet_build(p: &Project) -> std::process::Child {
    p.command(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Within 5 s no process of the project's command stages is left.
fn assert_no_survivors(p: &Project) {
    assert!(
        eventually(Duration::from_secs(5), || processes_of(p.path()).is_empty()),
        "survivors: {:?}",
        processes_of(p.path())
    );
}

/// Waits (at most `limit`) until `done` holds.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn verify_rereads_what_the_stat_cache_vouches_for() {
    let p = Project::new(ONE);
    p.build(&[]);
    let file = p
        .out("default", "gen")
        .join("a.txt")
        .canonicalize()
        .unwrap();
    let mut perms = fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&file, perms).unwrap();
    fs::write(&file, "jello\n").unwrap();
    // Bit rot that keeps every stamp: make the stat cache vouch for the
    // new stamp with the old hash.
    // The file format is documented at the top of src/statcache.rs; an
    // adversary can write a consistent one, checksum included.
    let stats_path = p.path().join("cache/statcache.bin");
    let bytes = fs::read(&stats_path).unwrap();
    let mut out = bytes[..bytes.len() - 8].to_vec();
    let count = u64::from_le_bytes(out[8..16].try_into().unwrap()) as usize;
    let entries_end = out.len() - 4 * count;
    let meta = fs::metadata(&file).unwrap();
    let wanted = file.as_os_str().as_encoded_bytes();
    let mut at = 16;
    let mut found = false;
    while at < entries_end {
        let len = u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        if &out[at + 4..at + 4 + len] == wanted {
            found = true;
            // Same length: the offsets table stays right.
            let stamp = at + 4 + len;
            out[stamp..stamp + 8].copy_from_slice(&meta.len().to_le_bytes());
            let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
            let ctime = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
            out[stamp + 8..stamp + 16].copy_from_slice(&mtime.to_le_bytes());
            out[stamp + 16..stamp + 24].copy_from_slice(&ctime.to_le_bytes());
            out[stamp + 24..stamp + 32].copy_from_slice(&meta.ino().to_le_bytes());
        }
        at += 4 + len + 64;
    }
    assert!(found, "the output file is in the stat cache");
    let check = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&check.to_le_bytes());
    fs::write(&stats_path, out).unwrap();
    let verify = p.run(&["verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("BAD   output") && verify.stdout.contains("1 damaged"),
        "{}",
        verify.stdout
    );
    assert!(verify.stdout.contains(" read;"), "{}", verify.stdout);
    // verify forgot the stamps it caught lying: the next build rebuilds.
    let again = p.build(&[]);
    assert_eq!(again.with_status("ran"), ["gen"]);
    assert_eq!(p.read_out("gen", "a.txt"), "hello\n");
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn sweep_variant_names_stay_inside_the_project() {
    let p = Project::new(
        "[stages.eval]\nkind = \"command\"\ncmd = \"echo $VGMAKE_PARAM_X > x.txt\"\nparams = { x = 0 }\n",
    );
    let run = p.run(&["build", "--set", "eval.params.../../../ESCAPED=1,2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let parent = p.path().parent().unwrap();
    let escaped: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("ESCAPED"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    let variants: Vec<String> = fs::read_dir(p.path().join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(variants.len(), 2, "{variants:?}");
    assert!(
        variants
            .iter()
            .all(|v| !v.contains('/') && !v.starts_with('.')),
        "{variants:?}"
    );
}

#[test]
fn a_hard_link_out_of_a_command_stage_leaves_the_users_file_alone() {
    let p = Project::new(
        "[stages.gen]\nkind = \"command\"\ncmd = \"ln $VGMAKE_PROJECT/config.txt config.txt\"\n",
    );
    let config = p.path().join("config.txt");
    fs::write(&config, "mine\n").unwrap();
    p.build(&[]);
    let meta = fs::metadata(&config).unwrap();
    assert_eq!(meta.nlink(), 1, "the cache shares the user's inode");
    assert!(
        !meta.permissions().readonly(),
        "the user's file became read-only"
    );
    fs::write(&config, "still mine\n").unwrap();
    assert_eq!(p.read_out("gen", "config.txt"), "mine\n");
}

#[test]
fn sigint_to_vgmake_alone_stops_the_command_and_its_children() {
    let p = Project::new("[stages.wait]\nkind = \"command\"\ncmd = \"sleep 1000; echo never\"\n");
    let mut build = quiet_build(&p);
    assert!(eventually(Duration::from_secs(20), || processes_of(
        p.path()
    )
    .len()
        >= 2));
    // SAFETY: signals the child we started, not its group.
    unsafe { libc::kill(build.id() as i32, libc::SIGINT) };
    assert!(
        eventually(Duration::from_secs(20), || build
            .try_wait()
            .unwrap()
            .is_some()),
        "vgmake kept waiting"
    );
    assert_eq!(build.wait().unwrap().code(), Some(130));
    assert_no_survivors(&p);
}

#[test]
fn after_kill_9_the_next_build_stops_the_survivors_first() {
    let p = Project::new("[stages.wait]\nkind = \"command\"\ncmd = \"sleep 1000; echo never\"\n");
    let mut build = quiet_build(&p);
    assert!(eventually(Duration::from_secs(20), || processes_of(
        p.path()
    )
    .len()
        >= 2));
    build.kill().unwrap();
    build.wait().unwrap();
    // `sh` dies with vgmake (parent-death signal); its `sleep` outlives it.
    assert!(eventually(Duration::from_secs(5), || processes_of(
        p.path()
    )
    .len()
        == 1));
    p.write_pipeline("[stages.quick]\nkind = \"command\"\ncmd = \"true\"\n");
    let next = p.run(&["build"]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_no_survivors(&p);
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_build_in() {
    let p = Project::new("[stages.wait]\nkind = \"command\"\ncmd = \"sleep 3\"\n");
    let mut first = quiet_build(&p);
    assert!(eventually(Duration::from_secs(20), || !processes_of(
        p.path()
    )
    .is_empty()));
    fs::remove_file(p.path().join("cache/LOCK")).unwrap();
    let second = p.run(&["build", "--no-wait"]);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second.stderr.contains("locked by another build"),
        "{}",
        second.stderr
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
}

#[test]
fn gc_refuses_refs_it_cannot_read() {
    let p = Project::new(ONE);
    p.build(&[]);
    let refs = fs::read_dir(p.path().join("cache/refs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(refs.join("default.json"), "garbage").unwrap();
    fs::write(p.path().join("cache/builds.jsonl"), "").unwrap();
    let gc = p.run(&["gc", "--keep-last", "0"]);
    assert_eq!(gc.code, 2, "{}{}", gc.stdout, gc.stderr);
    assert!(
        gc.stderr.contains("cannot read") && gc.stderr.contains("default.json"),
        "{}",
        gc.stderr
    );
    assert!(
        p.out("default", "gen").join("a.txt").exists(),
        "gc removed a result"
    );
}

#[test]
fn two_projects_sharing_a_cache_keep_their_own_refs_and_results() {
    let a = Project::new("[stages.gen]\nkind = \"command\"\ncmd = \"echo a > a.txt\"\n");
    let b = Project::new("[stages.gen]\nkind = \"command\"\ncmd = \"echo b > b.txt\"\n");
    fs::create_dir_all(a.path().join("cache")).unwrap();
    std::os::unix::fs::symlink(a.path().join("cache"), b.path().join("cache")).unwrap();
    a.build(&[]);
    b.build(&[]);
    assert_eq!(a.read_out("gen", "a.txt"), "a\n");
    assert_eq!(b.read_out("gen", "b.txt"), "b\n");
    let gc = b.run(&["gc", "--keep-last", "1"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(
        a.build(&[]).with_status("ran").is_empty(),
        "gc in b removed a's result"
    );
    assert!(b.build(&[]).with_status("ran").is_empty());
}

#[test]
fn jobs_are_capped() {
    let p = Project::new(ONE);
    let run = p.run(&["build", "-j", "20000"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("-j 20000 is more than"),
        "{}",
        run.stderr
    );
}

#[test]
fn command_output_is_bytes_and_capped() {
    // Not UTF-8, then 20 MB without a newline, then a last line.
    let p = Project::new(
        "[stages.noisy]\nkind = \"command\"\ncmd = \"printf 'a\\\\377b\\\\n'; head -c 20000000 /dev/zero | tr '\\\\0' x; echo; echo done > done.txt; echo last\"\n",
    );
    p.build(&[]);
    assert_eq!(p.read_out("noisy", "done.txt"), "done\n");
    let show = p.run(&["show", "noisy", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let log: Vec<&str> = shown["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(log.contains(&"a\u{fffd}b"), "{log:?}");
    assert!(log.contains(&"last"), "{log:?}");
    let records = p.path().join("cache/actions");
    let biggest = fs::read_dir(records)
        .unwrap()
        .flatten()
        .flat_map(|shard| fs::read_dir(shard.path()).unwrap().flatten())
        .map(|f| f.metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(biggest < 100_000, "an action record of {biggest} bytes");
}

#[test]
fn a_real_folder_over_an_out_link_is_moved_aside() {
    let p = Project::new(ONE);
    p.build(&[]);
    let link = p.out("default", "gen");
    fs::remove_file(&link).unwrap();
    fs::create_dir_all(&link).unwrap();
    fs::write(link.join("a.txt"), "stale\n").unwrap();
    let run = p.run(&["build"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("was not vgmake's link; moved it to"),
        "{}",
        run.stderr
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(p.read_out("gen", "a.txt"), "hello\n");
}

#[test]
fn all_variants_leaves_out_a_variant_that_needs_the_network() {
    let p = Project::new(
        "[stages.scrape]\nsource = \"demo\"\n[variants.web]\nscrape.source = \"vgmusic\"\n[variants.other]\nscrape.max_files = 3\n",
    );
    let run = p.run(&["build", "--all-variants", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("leaves out variant `web`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("variant other") && !run.stdout.contains("variant web"),
        "{}",
        run.stdout
    );
}

#[test]
fn commands_run_from_a_subfolder_find_the_pipeline_and_blame_the_command_line() {
    let p = Project::new(
        "[stages.train]\nkind = \"command\"\ncmd = \"true\"\n[stages.vocab]\ndeps = [\"train\"]\n",
    );
    let sub = p.path().join("a/b");
    fs::create_dir_all(&sub).unwrap();
    let run = support::run_in(&sub, &["status"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Found the file above, and reports its shape problem before running.
    assert!(
        stderr.contains("pipeline.toml:") && stderr.contains("`stages.vocab.deps`"),
        "{stderr}"
    );
    assert_eq!(run.status.code(), Some(2));
    let p = Project::new(ONE);
    let run = p.run(&["status", "--variant", "shrot"]);
    assert!(
        run.stderr.contains("error: --variant shrot: "),
        "{}",
        run.stderr
    );
}

#[test]
fn why_sees_a_cut_off_from_a_build_of_several_variants() {
    let pipeline = |note: u32| {
        format!(
            "[stages.a]\nkind = \"command\"\ncmd = \"echo same > a.txt\"\nparams = {{ note = {note} }}\n\
             [stages.b]\nkind = \"command\"\ndeps = [\"a\"]\ncmd = \"cp $VGMAKE_IN_A/a.txt b.txt\"\n\
             [variants.v]\na.params.other = 1\n"
        )
    };
    let p = Project::new(&pipeline(1));
    p.build(&["--all-variants"]);
    p.write_pipeline(&pipeline(2));
    let run = p.build(&["--all-variants"]);
    assert!(run.stdout.contains("\"cutoff\""), "{}", run.stdout);
    let why = p.run(&["why", "b"]);
    assert!(why.stdout.contains("cut off"), "{}", why.stdout);
}

#[test]
fn the_record_keeps_the_last_lines_and_the_full_log_is_a_file() {
    let p = Project::new("[stages.chatty]\nkind = \"command\"\ncmd = \"seq 1 5000; touch done\"\n");
    p.build(&[]);
    let show = p.run(&["show", "chatty", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let log = shown["log"].as_array().unwrap();
    assert!(log.len() <= 200, "{} lines in the record", log.len());
    assert!(log.iter().any(|l| l.as_str() == Some("5000")), "{log:?}");
    let full = p.run(&["show", "chatty", "--log"]);
    assert!(
        full.stdout.contains("          1\n") && full.stdout.contains("          5000\n"),
        "{}",
        &full.stdout[..500.min(full.stdout.len())]
    );
    assert_eq!(
        full.stdout
            .lines()
            .filter(|l| l.trim().parse::<u32>().is_ok())
            .count(),
        5000
    );
}

/// A stat cache that cannot be written costs only its speed-up: the build
/// succeeds, the warning names the file, and the other caches are saved.
#[test]
fn an_unwritable_engine_cache_is_named_and_the_others_are_saved() {
    let p = Project::new(ONE);
    let stats = p.path().join("cache/statcache.bin");
    fs::create_dir_all(stats.join("in-the-way")).unwrap();
    let run = p.build(&[]);
    assert!(
        run.stderr.contains("cannot save") && run.stderr.contains("statcache.bin"),
        "{}",
        run.stderr
    );
    // The second build finds its result and remembers its key, though the
    // stat cache fails again.
    assert_eq!(p.build(&[]).with_status("cached"), ["gen"]);
    assert!(p.path().join("cache/keymemo.bin").is_file());
}

/// An output's manifest is written without an fsync (the output's own files
/// are not synced either): a power cut may tear it or lose it. Either way
/// `verify` reports the output damaged, and the next build that reads it
/// (here: a dependent stage whose parameter changed) rebuilds it first; it
/// is never trusted. Both cases, by hand: cut in half, then gone.
#[test]
fn a_torn_or_lost_output_manifest_is_damage_and_the_stage_runs_again() {
    let pipeline = |n: u32| {
        format!(
            "[stages.gen]\nkind = \"command\"\ncmd = \"echo hello > a.txt\"\n\
             [stages.use]\nkind = \"command\"\ndeps = [\"gen\"]\nparams = {{ n = {n} }}\n\
             cmd = \"cat $VGMAKE_IN_GEN/a.txt $VGMAKE_IN_GEN/a.txt > b.txt\"\n"
        )
    };
    let p = Project::new(&pipeline(0));
    p.build(&[]);
    for (round, cut) in [(1, true), (2, false)] {
        let output = p.out("default", "gen").canonicalize().unwrap();
        let name = output.file_name().unwrap().to_str().unwrap().to_string();
        let manifest = p.path().join(format!("cache/manifests/{name}.json"));
        if cut {
            let bytes = fs::read(&manifest).unwrap();
            fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
        } else {
            fs::remove_file(&manifest).unwrap();
        }
        let verify = p.run(&["verify"]);
        assert_eq!(verify.code, 1, "{}", verify.stdout);
        assert!(verify.stdout.contains("1 damaged"), "{}", verify.stdout);
        p.write_pipeline(&pipeline(round));
        let again = p.build(&[]);
        assert_eq!(again.with_status("ran"), ["gen", "use"], "{}", again.stderr);
        assert!(
            again.stderr.contains("input `gen` is damaged"),
            "{}",
            again.stderr
        );
        assert_eq!(p.read_out("use", "b.txt"), "hello\nhello\n");
        assert_eq!(p.run(&["verify"]).code, 0);
    }
}
