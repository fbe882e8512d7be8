//! The Slurm commands vgmake uses, each with a deadline: `sbatch`,
//! `squeue`, `scontrol`, `scancel`, `sinfo`. Never `sacct`: many clusters
//! run without accounting, and a tool that polls it hangs there.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::SlurmError;
use super::options::SlurmOptions;

/// A Slurm client command that does not answer within this is a dead controller.
const DEADLINE: Duration = Duration::from_secs(30);

/// A job's place in the queue, as `squeue` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// PENDING, RUNNING, COMPLETING, REQUEUED, ...
    pub state: String,
    /// Why it pends, or the node it runs on.
    pub reason: String,
}

/// A job after it left the queue, as `scontrol show job` remembers it
/// (for `MinJobAge` seconds).
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub state: String,
    pub exit_code: String,
    pub reason: String,
}

/// Runs a Slurm command; its stdout, or why not.
fn run(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let command_line = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        // The user's squeue defaults (states, format, sort) must not change
        // what vgmake reads: SQUEUE_STATES=all would list finished jobs.
        .env_remove("SQUEUE_STATES")
        .env_remove("SQUEUE_FORMAT")
        .env_remove("SQUEUE_FORMAT2")
        .env_remove("SQUEUE_SORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SlurmError::NotInstalled {
                program: program.to_string(),
            },
            _ => SlurmError::NotAnswering {
                command: command_line(),
                detail: e.to_string(),
            },
        })?;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SlurmError::NotAnswering {
                    command: command_line(),
                    detail: format!("no answer in {} s", DEADLINE.as_secs()),
                });
            }
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let detail = err.trim().lines().last().unwrap_or("").to_string();
        Err(SlurmError::NotAnswering {
            command: command_line(),
            detail: if detail.is_empty() {
                status.to_string()
            } else {
                detail
            },
        })
    }
}

/// Everything a job needs is there and answering: the commands, the
/// controller, the partition and the gres asked for.
pub fn preflight(options: &SlurmOptions) -> Result<(), SlurmError> {
    for program in ["sbatch", "squeue", "scontrol", "scancel", "sinfo"] {
        if which(program).is_none() {
            return Err(SlurmError::NotInstalled {
                program: program.into(),
            });
        }
    }
    let ping = run("scontrol", &["ping"])?;
    // The exact query tracking uses (`--me` needs Slurm 20.11 or newer).
    queue()?;
    if !ping.contains("is UP") {
        return Err(SlurmError::NotAnswering {
            command: "scontrol ping".into(),
            detail: ping.trim().replace('\n', "; "),
        });
    }
    if let Some(partition) = &options.partition {
        let list = run("sinfo", &["-h", "-o", "%P"])?;
        let known: Vec<&str> = list
            .lines()
            .map(|l| l.trim().trim_end_matches('*'))
            .collect();
        if !known.contains(&partition.as_str()) {
            return Err(SlurmError::UnknownPartition {
                partition: partition.clone(),
                known: known.join(", "),
            });
        }
    }
    if let Some(gres) = &options.gres {
        let offered = run("sinfo", &["-h", "-o", "%G"])?;
        for wanted in gres.split(',') {
            let name = wanted.split(':').next().unwrap_or("");
            let has = offered
                .split([',', '\n'])
                .any(|g| g.trim().split([':', '(']).next() == Some(name));
            if !has {
                return Err(SlurmError::UnknownGres {
                    gres: gres.clone(),
                    name: name.to_string(),
                    known: offered_list(&offered),
                });
            }
        }
    }
    Ok(())
}

/// The gres of `sinfo -o %G`, for a message.
fn offered_list(sinfo: &str) -> String {
    let list: Vec<&str> = sinfo
        .lines()
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "(null)")
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Submits `script` as an array of `tasks` tasks; the array's job id.
pub fn submit(
    script: &Path,
    tasks: usize,
    output: &str,
    name: &str,
    options: &SlurmOptions,
) -> Result<String, SlurmError> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--array=0-{}", tasks - 1),
        format!("--job-name=vgmake-{name}"),
        format!("--output={output}"),
        // A preempted or failed node requeues the job; train resumes from its checkpoint.
        "--requeue".to_string(),
        // A requeued task appends to its output, so the build's tail goes on.
        "--open-mode=append".to_string(),
    ];
    args.extend(options.sbatch_args());
    args.push(script.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("sbatch", &refs).map_err(|e| match e {
        SlurmError::NotAnswering { detail, .. } => SlurmError::Submit { detail },
        other => other,
    })?;
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::Submit {
            detail: format!("unexpected answer `{}`", out.trim()),
        });
    }
    Ok(id)
}

/// This user's jobs in the queue, one entry per array task (`123_4`).
pub fn queue() -> Result<HashMap<String, Queued>, SlurmError> {
    let out = run("squeue", &["-h", "-r", "--me", "-o", "%i|%T|%R"])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '|');
            let id = parts.next()?.trim().to_string();
            let state = parts.next()?.trim().to_string();
            let reason = parts.next().unwrap_or("").trim().to_string();
            Some((id, Queued { state, reason }))
        })
        .collect())
}

/// What the controller remembers of a job that left the queue.
pub fn ended(job: &str) -> Option<Ended> {
    let out = run("scontrol", &["show", "job", "-o", job]).ok()?;
    let field = |name: &str| {
        out.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    Some(Ended {
        state: field("JobState="),
        exit_code: field("ExitCode="),
        reason: field("Reason="),
    })
}

/// Cancels a job or array task; a job already gone is not an error.
pub fn cancel(job: &str) -> Result<(), SlurmError> {
    match run("scancel", &[job]) {
        Err(SlurmError::NotAnswering { detail, .. }) if detail.contains("Invalid job id") => Ok(()),
        other => other.map(|_| ()),
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
