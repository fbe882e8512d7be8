//! One file per subcommand.

pub mod build;
pub mod compare;
pub mod dag;
pub mod gc;
pub mod log;
pub mod params;
pub mod push;
pub mod report;
pub mod show;
pub mod status;
pub mod verify;

use std::process::ExitCode;

/// Exit codes: 0 = everything requested is up to date; 1 = a stage failed;
/// 2 = bad pipeline, arguments or input; 130 = interrupted.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The variants `names` (every built one when empty), each checked to be
/// built: a name that is not gets the closest built one suggested.
pub fn built_variants(
    store: &crate::store::Store,
    names: &[String],
    command: &str,
) -> Result<Vec<String>, crate::diagnostic::Diagnostic> {
    let available = store.ref_variants();
    for name in names {
        if !available.contains(name) {
            return Err(crate::diagnostic::Diagnostic::new(
                crate::diagnostic::Origin::CommandLine(format!("{command} {name}")),
                "",
                format!(
                    "variant `{name}` has not been built (built: {})",
                    available.join(", ")
                ),
            )
            .suggest(name, available.iter().map(String::as_str)));
        }
    }
    Ok(if names.is_empty() {
        available
    } else {
        names.to_vec()
    })
}

/// Prints `err` and returns the usage exit code.
pub fn usage_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_USAGE)
}
