//! `vgmake encode` / `vgmake decode` / `vgmake lines` on real files.

mod support;

use std::path::PathBuf;

fn demo_file() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/demo/freedoom2");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn encode_then_decode_round_trips_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| support::run_in(tmp.path(), args);
    let file = demo_file();
    let first = run(&[
        "encode",
        file.to_str().unwrap(),
        "--instrument-groups",
        "chip",
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line = String::from_utf8(first.stdout).unwrap();
    assert!(
        line.starts_with("start tempo:") && line.trim_end().ends_with("finish"),
        "{line}"
    );
    std::fs::write(tmp.path().join("song.txt"), &line).unwrap();
    let decoded = run(&["decode", "song.txt", "-o", "song.mid"]);
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let again = run(&["encode", "song.mid"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), line);
}

#[test]
fn lines_prints_a_song_set_as_the_encode_stage_would_write_it() {
    use vgmake_stages::midi::EncodeOptions;
    use vgmake_stages::songs::{CodecInfo, SongInfo, SongSet};
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| support::run_in(tmp.path(), args);
    let encoded = run(&["encode", demo_file().to_str().unwrap()]);
    let line = String::from_utf8(encoded.stdout).unwrap();
    let line = line.trim_end();
    let info = SongInfo {
        path: "a.mid".into(),
        blake3: String::new(),
    };
    let set = SongSet::from_lines(
        &[line, "start tempo:120 finish"],
        vec![info.clone(), info],
        CodecInfo::from_options(&EncodeOptions::default()),
    );
    std::fs::create_dir(tmp.path().join("set")).unwrap();
    set.write(&tmp.path().join("set")).unwrap();
    let out = run(&["lines", "set"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{line}\nstart tempo:120 finish\n")
    );
    let out = run(&["lines", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn tools_report_bad_input_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("fake.mid"), "<html>not midi</html>").unwrap();
    std::fs::write(
        tmp.path().join("bad.txt"),
        "start tempo:120 i1:v80:60 wait:4 bogus finish",
    )
    .unwrap();
    let run = |args: &[&str]| support::run_in(tmp.path(), args);
    let out = run(&["encode", "fake.mid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fake.mid: not a MIDI file"));
    let out = run(&["decode", "bad.txt", "-o", "x.mid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.txt: token 4 `bogus`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["encode", "missing.mid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.mid"));
}

#[test]
fn render_and_roll_any_midi_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| support::run_in(tmp.path(), args);
    let file = demo_file();
    let out = run(&["render", file.to_str().unwrap(), "-o", "song.wav"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wav = std::fs::read(tmp.path().join("song.wav")).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert!(
        wav.len() > 44_100 * 2 * 10,
        "at least ten seconds of 16-bit audio"
    );
    assert!(wav[44..].iter().any(|&b| b != 0), "not silent");
    let out = run(&["roll", file.to_str().unwrap(), "-o", "song.png"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        &std::fs::read(tmp.path().join("song.png")).unwrap()[1..4],
        b"PNG"
    );
    std::fs::write(tmp.path().join("fake.mid"), "not midi").unwrap();
    let out = run(&["render", "fake.mid", "-o", "x.wav"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fake.mid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn encode_into_a_closed_pipe_exits_quietly_like_a_unix_filter() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(support::vgmake_bin())
        .args(["encode", demo_file().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before vgmake writes (`| head -c 0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Success, or the end by SIGPIPE every Unix filter (cat, grep) meets.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("pipeline.toml"),
        "[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    )
    .unwrap();
    let mut child = Command::new(support::vgmake_bin())
        .args(["params"])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
