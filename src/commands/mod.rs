//! One file per subcommand.

pub mod build;
pub mod compare;
pub mod dag;
pub mod gc;
pub mod log;
pub mod params;
pub mod push;
pub mod show;
pub mod status;
pub mod verify;

use std::process::ExitCode;

/// Exit codes: 0 = everything requested is up to date; 1 = a stage failed;
/// 2 = bad pipeline, arguments or input; 130 = interrupted.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Prints `err` and returns the usage exit code.
pub fn usage_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_USAGE)
}
