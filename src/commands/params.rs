//! `vgmake params [KIND]`: the declared parameters of the stage kinds.

use std::process::ExitCode;

use vgmake_stages::registry;

use crate::commands::usage_error;
use crate::diagnostic::closest;

pub fn run(kind: Option<&str>) -> ExitCode {
    let kinds: Vec<_> = match kind {
        None => registry::kinds().collect(),
        Some(name) => match registry::find(name) {
            Some(k) => vec![k],
            None => {
                let hint = closest(name, registry::names())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                return usage_error(format!(
                    "no stage kind is named `{name}` (kinds: {}){hint}",
                    registry::names().join(", ")
                ));
            }
        },
    };
    for k in kinds {
        println!("{} (version {}): {}", k.name(), k.version(), k.doc());
        for p in k.params() {
            println!(
                "  {:<18} = {:<28} {} ({})",
                p.name,
                p.default.to_string(),
                p.doc,
                p.ty.describe()
            );
        }
        println!();
    }
    ExitCode::SUCCESS
}
