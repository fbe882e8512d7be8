//! vgmake's engine: the pipeline file, the stage graph, the content-hashed
//! cache and the scheduler, and the commands over them. It knows stage
//! kinds only through the stage API (crate `vgmake-api`) and the [`Host`]
//! the binary hands it; it never links MIDI, tensors or HTTP.

mod cli;
mod commands;
mod diagnostic;
mod error;
mod executor;
mod fsutil;
mod graph;
mod hashing;
mod history;
mod keymemo;
mod listcache;
mod lock;
pub mod memo;
mod outcome;
mod page;
mod pipeline;
mod plan;
mod project;
mod remote;
mod report;
mod results;
mod run;
mod scheduler;
mod slurm;
mod stage_log;
mod statcache;
mod store;
mod survivor;

pub mod standalone;

#[cfg(test)]
mod build_test;
#[cfg(test)]
mod testkit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
pub use vgmake_api::Registry;

/// What the binary hands the engine: the stage kinds it offers and where
/// their bundled data lives.
pub struct Host {
    pub kinds: Registry,
    /// The folder of bundled data for a project in the given folder.
    pub data_dir: fn(&Path) -> PathBuf,
}

/// Runs one parsed command line; its exit code (0 = up to date, 1 = a stage
/// failed, 2 = bad pipeline, arguments or input, 130 = interrupted).
pub fn run(host: &'static Host, cli: &Cli) -> ExitCode {
    let common = &cli.common;
    match &cli.command {
        None => commands::build::run(host, common, &cli.build),
        Some(Command::Build(args)) => commands::build::run(host, common, args),
        Some(Command::Status { targets }) => commands::status::status(host, common, targets),
        Some(Command::Why { stage }) => commands::status::why(host, common, stage),
        Some(Command::Dag { format }) => commands::dag::run(host, common, *format),
        Some(Command::Show { stage, log }) => commands::show::run(host, common, stage, *log),
        Some(Command::Params { kind }) => commands::params::run(host, kind.as_deref(), common.json),
        Some(Command::Gc { dry_run, keep_last }) => {
            commands::gc::run(host, common, *dry_run, *keep_last)
        }
        Some(Command::Compare {
            variants,
            format,
            sort,
        }) => commands::compare::run(host, common, variants, *format, sort.as_deref()),
        Some(Command::Log { variant }) => commands::log::run(host, common, variant.as_deref()),
        Some(Command::Verify) => commands::verify::run(host, common),
        Some(Command::Push { targets }) => commands::push::run(host, common, targets),
        Some(Command::RunStage { spec }) => slurm::run_stage_command(host, spec),
        Some(Command::Report {
            variants,
            output,
            embed,
            open,
        }) => commands::report::run(
            host,
            common,
            &commands::report::Options {
                variants,
                output: output.as_deref(),
                embed: *embed,
                open: *open,
            },
        ),
    }
}
