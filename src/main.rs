//! The `vgmake` binary: the engine (crate `vgmake-engine`) with the built-in
//! stage kinds and the MIDI tools (crate `vgmake-stages`). See README.md.

use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use vgmake_engine::{Cli, Host};
use vgmake_stages::tools::Tool;

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host {
        kinds: vgmake_stages::kinds::registry(),
        data_dir: vgmake_stages::data::dir_for_project,
    })
}

fn main() -> ExitCode {
    // Training allocates and frees large tensor buffers on every step, from
    // several threads: tuned malloc settings pay there (BENCHMARKS.md). They
    // are process-wide, so the binary decides, before any thread allocates.
    vgmake_stages::train::memory::tune_allocator();
    // Like every Unix filter: `vgmake show train | head` ends quietly when
    // the reader goes away, instead of panicking on a write to a closed pipe.
    // SAFETY: called before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }

    let command = Tool::augment_subcommands(Cli::command());
    let matches = command.get_matches();
    if let Ok(tool) = Tool::from_arg_matches(&matches) {
        return vgmake_stages::tools::run(&tool);
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    vgmake_engine::run(host(), &cli)
}
