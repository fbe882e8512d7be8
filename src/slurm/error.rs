//! What can go wrong with the cluster, each naming what to do about it.

#[derive(Debug, Clone, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "Slurm is not installed here: `{program}` is not on PATH (install slurm-wlm, or try `scripts/slurm-local.sh`; `--executor local` runs the stage here)"
    )]
    NotInstalled { program: String },
    #[error(
        "the Slurm controller is not answering (`{command}`: {detail}); start it (`scripts/slurm-local.sh` for a local one) or run with `--executor local`"
    )]
    NotAnswering { command: String, detail: String },
    #[error("partition `{partition}` does not exist on this cluster (partitions: {known})")]
    UnknownPartition { partition: String, known: String },
    #[error("no node of this cluster offers gres `{name}` (asked `{gres}`; nodes offer: {known})")]
    UnknownGres {
        gres: String,
        name: String,
        known: String,
    },
    #[error("sbatch refused the job: {detail}")]
    Submit { detail: String },
    #[error("slurm job {job} ended {state} (exit code {exit_code}{reason}) without a result{log}")]
    JobFailed {
        job: String,
        state: String,
        exit_code: String,
        reason: String,
        log: String,
    },
    #[error(
        "lost track of slurm job {job}: {detail}; it may still run (`squeue -j {job}`, `scancel {job}`)"
    )]
    Lost { job: String, detail: String },
    #[error(
        "`shared_fs = false` needs a remote cache for jobs to fetch inputs from and push results to (set `[cache] remote`)"
    )]
    NeedsRemote,
    #[error(
        "without a shared file system this stage cannot run on Slurm: it reads files of the project folder ({path}); run it locally (`executor = \"local\"`)"
    )]
    ReadsProjectFiles { path: String },
    #[error("pushing input `{stage}` to the remote cache for the job: {detail}")]
    PushInput { stage: String, detail: String },
    #[error("cancelled before it was submitted")]
    Cancelled,
}
