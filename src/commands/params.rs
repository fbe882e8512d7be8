//! `vgmake params [KIND]`: the declared parameters of the stage kinds.

use std::process::ExitCode;

use vgmake_stages::registry;

use crate::commands::usage_error;
use crate::diagnostic::closest;

pub fn run(kind: Option<&str>, json: bool) -> ExitCode {
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
    if json {
        let list: Vec<serde_json::Value> = kinds
            .iter()
            .map(|k| {
                let params: Vec<serde_json::Value> = k
                    .params()
                    .iter()
                    .map(|p| serde_json::json!({"name": p.name, "default": p.default.to_string(), "type": p.ty.describe(), "doc": p.doc}))
                    .collect();
                serde_json::json!({"kind": k.name(), "version": k.version(), "doc": k.doc(), "params": params})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).unwrap());
        return ExitCode::SUCCESS;
    }
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
