//! The `[executors.slurm]` table of pipeline.toml and a stage's own
//! `slurm = { ... }` table over it: what a job asks the cluster for. None of
//! it enters a stage key: where a stage runs does not change its result.

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::pipeline::spans::Spans;

pub const OPTION_KEYS: &[&str] = &[
    "partition",
    "time",
    "cpus",
    "mem",
    "gres",
    "account",
    "extra_args",
    "shared_fs",
    "node_cache",
    "vgmake",
    "poll_seconds",
];

/// Job settings; `None` is "the cluster's default" (or vgmake's, below).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// `--time`: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
    pub time: Option<String>,
    /// `--cpus-per-task`; the stage runs with this many threads (default 1).
    pub cpus: Option<u32>,
    /// `--mem`: a number with an optional K, M, G or T suffix.
    pub mem: Option<String>,
    /// `--gres`, e.g. `gpu:1` or `gpu:h100:2`.
    pub gres: Option<String>,
    pub account: Option<String>,
    /// More sbatch arguments, passed as given.
    pub extra_args: Option<Vec<String>>,
    /// Whether the nodes see this project's folder (default true). Without
    /// it, jobs fetch their inputs from the remote cache and push back.
    pub shared_fs: Option<bool>,
    /// Without a shared file system: the node's own cache folder.
    pub node_cache: Option<String>,
    /// The vgmake binary as the nodes see it (default: this one's path).
    pub vgmake: Option<String>,
    /// Longest pause between two looks at the queue (default 2 s).
    pub poll_seconds: Option<f64>,
}

impl SlurmOptions {
    /// `self` with every setting of `over` that is set.
    pub fn merged(&self, over: &SlurmOptions) -> SlurmOptions {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        SlurmOptions {
            partition: pick(&self.partition, &over.partition),
            time: pick(&self.time, &over.time),
            cpus: pick(&self.cpus, &over.cpus),
            mem: pick(&self.mem, &over.mem),
            gres: pick(&self.gres, &over.gres),
            account: pick(&self.account, &over.account),
            extra_args: pick(&self.extra_args, &over.extra_args),
            shared_fs: pick(&self.shared_fs, &over.shared_fs),
            node_cache: pick(&self.node_cache, &over.node_cache),
            vgmake: pick(&self.vgmake, &over.vgmake),
            poll_seconds: pick(&self.poll_seconds, &over.poll_seconds),
        }
    }

    pub fn cpus(&self) -> u32 {
        self.cpus.unwrap_or(1)
    }

    pub fn shared_fs(&self) -> bool {
        self.shared_fs.unwrap_or(true)
    }

    /// The resource arguments of `sbatch` (the job array, output and script
    /// are the submitter's).
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = vec![format!("--cpus-per-task={}", self.cpus())];
        let mut add = |flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        add("partition", &self.partition);
        add("time", &self.time);
        add("mem", &self.mem);
        add("gres", &self.gres);
        add("account", &self.account);
        args.extend(self.extra_args.iter().flatten().cloned());
        args
    }
}

/// Reads a table of job settings at `path` (`executors.slurm` or
/// `stages.NAME.slurm`), reporting each problem at its line.
pub fn parse(
    table: &toml::Table,
    spans: &Spans,
    path: &[&str],
    errors: &mut Vec<Diagnostic>,
) -> SlurmOptions {
    let mut options = SlurmOptions::default();
    for (key, value) in table {
        let mut at = path.to_vec();
        at.push(key);
        let origin = spans.origin(&at);
        let dotted = at.join(".");
        let mut problem = |message: String| {
            errors.push(Diagnostic::new(origin.clone(), dotted.clone(), message));
        };
        let string = |problem: &mut dyn FnMut(String)| match value.as_str() {
            Some(s) if !s.trim().is_empty() => Some(s.to_string()),
            Some(_) => {
                problem("must not be empty".into());
                None
            }
            None => {
                problem(format!("must be a string, found {}", value.type_str()));
                None
            }
        };
        match key.as_str() {
            "partition" => options.partition = string(&mut problem),
            "account" => options.account = string(&mut problem),
            "node_cache" => options.node_cache = string(&mut problem),
            "vgmake" => options.vgmake = string(&mut problem),
            "time" => options.time = checked(string(&mut problem), check_time, &mut problem),
            "mem" => options.mem = checked(string(&mut problem), check_mem, &mut problem),
            "gres" => options.gres = checked(string(&mut problem), check_gres, &mut problem),
            "cpus" => match value.as_integer() {
                Some(n) if (1..=4096).contains(&n) => options.cpus = Some(n as u32),
                _ => problem("must be a whole number from 1 to 4096".into()),
            },
            "shared_fs" => match value.as_bool() {
                Some(b) => options.shared_fs = Some(b),
                None => problem("must be true or false".into()),
            },
            "poll_seconds" => match value.as_float().or(value.as_integer().map(|i| i as f64)) {
                Some(s) if (0.05..=600.0).contains(&s) => options.poll_seconds = Some(s),
                _ => problem("must be a number of seconds from 0.05 to 600".into()),
            },
            "extra_args" => match value.as_array() {
                Some(items) if items.iter().all(|i| i.is_str()) => {
                    options.extra_args = Some(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect(),
                    )
                }
                _ => problem("must be a list of strings (sbatch arguments)".into()),
            },
            _ => errors.push(
                Diagnostic::new(
                    origin.clone(),
                    dotted.clone(),
                    format!(
                        "unknown Slurm setting (settings: {})",
                        OPTION_KEYS.join(", ")
                    ),
                )
                .suggest(key, OPTION_KEYS.iter().copied()),
            ),
        }
    }
    options
}

/// `value` if `check` accepts it; otherwise its complaint goes to `problem`.
fn checked(
    value: Option<String>,
    check: fn(&str) -> Result<(), String>,
    problem: &mut dyn FnMut(String),
) -> Option<String> {
    let value = value?;
    match check(&value) {
        Ok(()) => Some(value),
        Err(why) => {
            problem(why);
            None
        }
    }
}

/// `--gres`: comma-separated `name[:type][:count]`, names and types made of
/// letters, digits, `_`, `-` and `.`, a count a positive number.
pub fn check_gres(gres: &str) -> Result<(), String> {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    for part in gres.split(',') {
        let fields: Vec<&str> = part.split(':').collect();
        let count_ok = |s: &str| s.parse::<u32>().is_ok_and(|n| n > 0);
        let ok = match fields.as_slice() {
            [name] => word(name),
            // `gpu:2` is a count, `gpu:a100` a type.
            [name, last] if last.chars().all(|c| c.is_ascii_digit()) => {
                word(name) && count_ok(last)
            }
            [name, kind] => word(name) && word(kind),
            [name, kind, count] => word(name) && word(kind) && count_ok(count),
            _ => false,
        } && !fields[0].chars().next().is_some_and(|c| c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "`{gres}` is not a gres request (expected `name[:type][:count]`, e.g. `gpu:1` or `gpu:a100:2`)"
            ));
        }
    }
    Ok(())
}

/// `--time` in one of Slurm's forms.
pub fn check_time(time: &str) -> Result<(), String> {
    let numbers = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    let ok = time == "UNLIMITED"
        || time == "INFINITE"
        || match time.split_once('-') {
            Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
            None => numbers(time, 3),
        };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{time}` is not a time limit (minutes, `MM:SS`, `HH:MM:SS`, `D-HH:MM:SS`)"
        ))
    }
}

/// `--mem`: a positive number with an optional unit.
pub fn check_mem(mem: &str) -> Result<(), String> {
    let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let unit_len = mem.len() - digits.len();
    if unit_len <= 1 && digits.parse::<u64>().is_ok_and(|n| n > 0) {
        Ok(())
    } else {
        Err(format!(
            "`{mem}` is not a memory size (a number with an optional K, M, G or T, e.g. `16G`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_forms() {
        for ok in ["gpu", "gpu:1", "gpu:a100:2", "gpu:1,mps:100", "gpu:h100"] {
            assert!(check_gres(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "gpu:",
            "gpu:0",
            ":1",
            "gpu:a:b:c",
            "gpu 1",
            "1gpu",
            "gpu:a100:x",
        ] {
            assert!(check_gres(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_and_mem_forms() {
        for ok in ["30", "10:00", "01:00:00", "2-00", "2-12:00:00", "UNLIMITED"] {
            assert!(check_time(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "a-1"] {
            assert!(check_time(bad).is_err(), "{bad}");
        }
        for ok in ["4000", "16G", "512M"] {
            assert!(check_mem(ok).is_ok(), "{ok}");
        }
        for bad in ["", "G", "16GB", "0", "-1G"] {
            assert!(check_mem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stage_table_overrides_the_executor_table() {
        let base = SlurmOptions {
            partition: Some("debug".into()),
            cpus: Some(2),
            ..Default::default()
        };
        let stage = SlurmOptions {
            gres: Some("gpu:1".into()),
            cpus: Some(8),
            ..Default::default()
        };
        let m = base.merged(&stage);
        assert_eq!(m.partition.as_deref(), Some("debug"));
        assert_eq!(m.cpus(), 8);
        assert_eq!(
            m.sbatch_args(),
            ["--cpus-per-task=8", "--partition=debug", "--gres=gpu:1"]
        );
    }
}
