//! The `command` stage kind: a user's own step (an evaluation script, an
//! export) run by `sh -c` in the stage's staging folder.
//!
//! What enters the key: `cmd`, `params`, the contents of the files listed in
//! `inputs`, the values of the environment variables listed in `env`, and the
//! dependencies' output hashes. Nothing else from the environment does; the
//! command runs with a cleared environment holding only `PATH`, the
//! allow-listed variables and vgmake's own.

use std::process::{Command, Stdio};

use crate::api::*;
use crate::child;

pub struct CommandKind;

/// `VGMAKE_IN_<NAME>`: a stage or parameter name as an environment variable suffix.
pub fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl StageKind for CommandKind {
    fn name(&self) -> &'static str {
        "command"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "runs a shell command; dependency outputs in $VGMAKE_IN_<DEP>, output folder $VGMAKE_OUT"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                "cmd",
                ParamType::ANY_STR,
                "",
                "the command line, run by `sh -c` in the output folder",
            ),
            ParamSpec::new(
                "params",
                ParamType::Table,
                toml::Table::new(),
                "values passed as environment variables VGMAKE_PARAM_<NAME>",
            ),
            ParamSpec::new(
                "env",
                ParamType::StrList { choices: &[] },
                Vec::<Value>::new(),
                "environment variables passed through; their values enter the key",
            ),
            ParamSpec::new(
                "inputs",
                ParamType::StrList { choices: &[] },
                Vec::<Value>::new(),
                "project files or folders (scripts, configs) whose contents enter the key",
            ),
        ]
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        if params.str("cmd").trim().is_empty() {
            return Err("`cmd` must be set to the command line to run".into());
        }
        Ok(())
    }

    fn external_inputs(
        &self,
        params: &Params,
        files: &ProjectFiles,
    ) -> Result<ExternalInputs, StageError> {
        let mut ext = ExternalInputs::default();
        for rel in params.str_list("inputs") {
            let path = files.project_dir.join(&rel);
            if !path.exists() {
                return Err(StageError::Config(format!(
                    "`inputs` names {}, which does not exist",
                    path.display()
                )));
            }
            ext.paths.push(path);
        }
        for var in params.str_list("env") {
            // An unset variable and an empty one differ; both are recorded.
            let value = match std::env::var(&var) {
                Ok(v) => format!("set:{v}"),
                Err(_) => "unset".to_string(),
            };
            ext.values.insert(format!("env:{var}"), value);
        }
        Ok(ext)
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::every_output_number()]
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(ctx.params.str("cmd"))
            .current_dir(ctx.out_dir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("VGMAKE_OUT", ctx.out_dir)
            .env("VGMAKE_TMP", ctx.temp_dir)
            .env("VGMAKE_PROJECT", ctx.project_dir)
            .env("VGMAKE_STAGE", ctx.stage)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ctx.params.str_list("env") {
            if let Some(v) = std::env::var_os(&var) {
                command.env(&var, v);
            }
        }
        for input in ctx.inputs {
            command.env(
                format!("VGMAKE_IN_{}", env_suffix(&input.stage)),
                &input.dir,
            );
        }
        for (name, value) in ctx.params.table("params") {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            command.env(format!("VGMAKE_PARAM_{}", env_suffix(name)), text);
        }

        let mut child = child::spawn(&mut command, ctx.temp_dir).ctx(|| "starting `sh -c`")?;
        // Both streams go to the stage log, line by line, from two threads.
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let tail = std::sync::Mutex::new(std::collections::VecDeque::<String>::new());
        let status = std::thread::scope(|s| {
            for stream in [
                Box::new(out) as Box<dyn std::io::Read + Send>,
                Box::new(err),
            ] {
                let tail = &tail;
                s.spawn(move || {
                    child::read_lines(stream, |line| {
                        ctx.progress.log(&line);
                        let mut t = tail.lock().unwrap();
                        t.push_back(line);
                        if t.len() > 10 {
                            t.pop_front();
                        }
                    });
                });
            }
            // A stopped stage keeps no result, whatever the command's exit.
            child::wait(&mut child, ctx)
        })?;
        if status.success() {
            return Ok(());
        }
        let tail: Vec<String> = tail.into_inner().unwrap().into();
        let code = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_string(),
        };
        Err(StageError::Other(format!(
            "command `{}` failed with {code}{}",
            ctx.params.str("cmd"),
            if tail.is_empty() {
                String::new()
            } else {
                format!("; last output:\n  {}", tail.join("\n  "))
            }
        )))
    }
}
