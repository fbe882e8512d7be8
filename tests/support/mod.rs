//! Helpers for integration tests: a project in a temp dir and the real
//! `vgmake` binary run inside it.

#![allow(dead_code)]

pub mod tiny;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stage name -> status from `--json` build output.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The stages with the given status, sorted.
    pub fn with_status(&self, status: &str) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|(_, s)| s == status)
            .map(|(n, _)| n)
            .collect()
    }
}

pub fn vgmake_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vgmake")
}

/// Runs `vgmake ARGS` in `dir` (outside any project), for the CLI tools.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(vgmake_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

impl Project {
    pub fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_pipeline(&self, text: &str) {
        std::fs::write(self.path().join("pipeline.toml"), text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(vgmake_bin());
        cmd.args(args).current_dir(self.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `vgmake build --json ARGS`, asserting success.
    pub fn build(&self, args: &[&str]) -> Run {
        let mut all = vec!["build", "--json"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        assert_eq!(
            run.code, 0,
            "build failed:\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        run
    }

    pub fn out(&self, variant: &str, stage: &str) -> PathBuf {
        self.path().join("out").join(variant).join(stage)
    }

    pub fn read_out(&self, stage: &str, file: &str) -> String {
        std::fs::read_to_string(self.out("default", stage).join(file)).unwrap()
    }
}
