//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "vgmake",
    version,
    about = "Content-hashed, make-style builds of a video-game-music ML pipeline",
    after_help = "Without a command, `vgmake [STAGE...]` builds. To build a stage whose name is also a command \
                  (encode, decode), say `vgmake build encode`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// Flags every command accepts.
#[derive(Args, Clone)]
pub struct Common {
    /// The pipeline file (default: pipeline.toml here or in the nearest folder above).
    #[arg(short = 'f', long = "pipeline", global = true, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Apply the `[variants.NAME]` table.
    #[arg(long, global = true)]
    pub variant: Option<String>,
    /// Override a parameter for this command: `stage.key=value` (value read as TOML; a bare word is a string).
    #[arg(long = "set", global = true, value_name = "STAGE.KEY=VALUE")]
    pub sets: Vec<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Use this remote cache (`s3://bucket/prefix`) instead of `[cache] remote` and VGMAKE_REMOTE.
    #[arg(long, global = true, value_name = "URL", conflicts_with = "no_remote")]
    pub remote: Option<String>,
    /// Use no remote cache for this command (local only).
    #[arg(long, global = true)]
    pub no_remote: bool,
    /// Where stages run: `slurm` or `local` for every stage, or `STAGE=slurm` for one (repeatable).
    #[arg(long = "executor", global = true, value_name = "[STAGE=]EXECUTOR")]
    pub executors: Vec<String>,
}

#[derive(Args, Clone, Default)]
pub struct BuildArgs {
    /// Stages to build (with their dependencies); default: all.
    pub targets: Vec<String>,
    /// Stages to run at once, and threads per stage (default: cores).
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Show what would run and why, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run this stage even when it is cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Rerun this source stage, revalidating what it fetched (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub refresh: Vec<String>,
    /// Print stage log lines as they come.
    #[arg(short, long)]
    pub verbose: bool,
    /// Build the default pipeline and every `[variants.NAME]`; shared stages run once.
    #[arg(long)]
    pub all_variants: bool,
    /// Fail at once if another build holds the project lock, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build the targets (default: every stage) and their dependencies.
    Build(BuildArgs),
    /// Each stage: cached, or will run and why.
    Status {
        /// Stages to report (default: all).
        targets: Vec<String>,
    },
    /// The exact reason a stage will run (or why it did not).
    Why { stage: String },
    /// The stage graph.
    Dag {
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
    },
    /// A stage's output folder, files, metrics and log.
    Show {
        stage: String,
        /// Print the whole log, not its last lines.
        #[arg(long)]
        log: bool,
    },
    /// The parameters of a stage kind (all kinds when none is named).
    Params { kind: Option<String> },
    /// Drop cache entries no variant of the pipeline references.
    Gc {
        /// List what would be removed and how many bytes, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also keep the results of this many most recent builds.
        #[arg(long, value_name = "N", default_value_t = 10)]
        keep_last: usize,
    },
    /// Check every cached output and memo entry against its hash.
    Verify,
    /// Push what the variant last built to the remote cache (a build pushes by itself).
    Push {
        /// Stages to push (with their dependencies; default: all).
        targets: Vec<String>,
    },
    /// Built variants side by side: the parameters that differ and key metrics.
    Compare {
        /// Variants to compare (default: every built one).
        variants: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: CompareFormat,
        /// Sort by this metric (its label or metrics.json key), ascending.
        #[arg(long, value_name = "METRIC")]
        sort: Option<String>,
    },
    /// The history of builds: when, which variant and overrides, what ran, how long.
    Log { variant: Option<String> },
    /// One HTML page comparing built variants: table, curves, samples to hear and see, corpus, provenance.
    Report {
        /// Variants to show (default: every built one).
        variants: Vec<String>,
        /// Where to write the page (default: out/report.html in the project).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Put the audio and images inside the page (data: URIs) instead of linking into out/.
        #[arg(long)]
        embed: bool,
        /// Open the page in a browser afterwards, where one exists.
        #[arg(long)]
        open: bool,
    },
    /// Run one stage of a build from its job spec (what a Slurm job runs on its node).
    #[command(hide = true)]
    RunStage {
        /// The job spec (JSON); `-` reads it from standard input.
        #[arg(long)]
        spec: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy)]
pub enum CompareFormat {
    Table,
    Markdown,
    Csv,
    Json,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}
