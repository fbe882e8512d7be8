//! vgmake: a content-hashed, make-style build tool for a video-game-music
//! ML pipeline. See README.md and DESIGN.md.

mod cli;
mod commands;
mod diagnostic;
mod executor;
mod fsutil;
mod graph;
mod hashing;
mod lock;
mod pipeline;
mod plan;
mod project;
mod report;
mod scheduler;
mod statcache;
mod store;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = &cli.common;
    match &cli.command {
        None => commands::build::run(common, &cli.build),
        Some(Command::Build(args)) => commands::build::run(common, args),
        Some(Command::Status { targets }) => commands::status::status(common, targets),
        Some(Command::Why { stage }) => commands::status::why(common, stage),
        Some(Command::Dag { format }) => commands::dag::run(common, *format),
        Some(Command::Show { stage, log }) => commands::show::run(common, stage, *log),
        Some(Command::Params { kind }) => commands::params::run(kind.as_deref(), common.json),
        Some(Command::Gc { dry_run, keep_last }) => commands::gc::run(common, *dry_run, *keep_last),
        Some(Command::Compare {
            variants,
            format,
            sort,
        }) => commands::compare::run(common, variants, *format, sort.as_deref()),
        Some(Command::Log { variant }) => commands::log::run(common, variant.as_deref()),
        Some(Command::Encode(args)) => commands::tools::encode(args),
        Some(Command::Decode {
            file,
            output,
            steps_per_beat,
        }) => commands::tools::decode(file, output, *steps_per_beat),
        Some(Command::Render { file, output }) => commands::tools::render(file, output),
        Some(Command::Roll { file, output }) => commands::tools::roll(file, output),
        Some(Command::Verify) => commands::verify::run(common),
    }
}
