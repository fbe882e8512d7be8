//! The Slurm executor: stages with `executor = "slurm"` run as batch jobs
//! on a cluster, with the same result as a local run of the same key.
//!
//! ```text
//! build (login node)                         job (compute node)
//! ------------------                         ------------------
//! key computed; local cache, remote cache    (a cached key never becomes a job)
//! preflight once: scontrol ping, sinfo       (missing Slurm, dead controller,
//!                                             unknown partition or gres: an
//!                                             error before any sbatch)
//! without a shared FS: inputs pushed to the
//!   remote cache, synchronously
//! gather: stages of one name and settings
//!   ready within a moment form one array
//! sbatch --parsable --array=0-N  ------->    job.sh: `vgmake run-stage` with
//!   output cache/jobs/<dir>/<task>.out        its JobSpec (JSON, in the script)
//! poll squeue (never sacct); tail the        shared FS: the project's cache,
//!   task's output into the stage log and       same staging + commit protocol
//!   progress line                            no shared FS: a node cache; inputs
//!                                              fetched by key and verified;
//!                                              output + record pushed back
//! task gone from the queue: the record       exit 0 once the record is written
//!   (local, or fetched and verified from
//!   the remote) is the result; none ->
//!   fail with scontrol's state + the log
//! Ctrl-C: scancel, wait until gone           SIGTERM (scancel, preemption):
//!                                              the stage stops at its next
//!                                              item, state kept; a requeued
//!                                              train resumes from its checkpoint
//! ```
//!
//! The job's stdout carries its progress as [`protocol`] lines. The build
//! holds the project lock while its jobs run, so a job never takes it.

mod cluster;
mod error;
mod job;
pub mod options;
mod protocol;
mod submit;

pub use error::SlurmError;
pub use job::{JobRemote, run_stage_command};
pub use options::SlurmOptions;
pub use submit::{Slurm, cancel_all};

/// Removes the job folders (`cache/jobs/`) of earlier builds: a build holds
/// the project lock while its jobs run, so every folder there is finished
/// with (a job of a killed build still running keeps its open output file).
pub fn clean_jobs(store_root: &std::path::Path) {
    let _ = crate::fsutil::remove_tree(&store_root.join("jobs"));
}
