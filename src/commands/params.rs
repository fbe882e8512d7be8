//! `vgmake params [KIND]`: what the stage kinds declare: parameters (type,
//! default, doc), inputs and metrics.

use std::process::ExitCode;

use vgmake_api::{Inputs, StageKind};

use crate::Host;
use crate::commands::usage_error;
use crate::diagnostic::Diagnostic;

pub fn run(host: &'static Host, kind: Option<&str>, json: bool) -> ExitCode {
    let kinds: Vec<&dyn StageKind> = match kind {
        None => host.kinds.kinds().collect(),
        Some(name) => match host.kinds.find(name) {
            Some(k) => vec![k],
            None => {
                let names = host.kinds.names();
                let d = Diagnostic::new(
                    crate::diagnostic::Origin::CommandLine(format!("params {name}")),
                    "",
                    format!(
                        "no stage kind is named `{name}` (kinds: {})",
                        names.join(", ")
                    ),
                )
                .suggest(name, names.iter().copied());
                return usage_error(d);
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
                let metrics: Vec<serde_json::Value> = k
                    .metrics()
                    .iter()
                    .map(|m| serde_json::json!({"key": m.key, "label": m.label, "unit": m.unit}))
                    .collect();
                serde_json::json!({"kind": k.name(), "version": k.version(), "doc": k.doc(), "reads": reads(*k), "params": params, "metrics": metrics})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).unwrap());
        return ExitCode::SUCCESS;
    }
    for k in kinds {
        println!("{} (version {}): {}", k.name(), k.version(), k.doc());
        println!("  reads: {}", reads(k));
        for p in k.params() {
            println!(
                "  {:<18} = {:<28} {} ({})",
                p.name,
                p.default.to_string(),
                p.doc,
                p.ty.describe()
            );
        }
        let metrics: Vec<&str> = k.metrics().iter().map(|m| m.label).collect();
        if !metrics.is_empty() {
            println!("  metrics: {}", metrics.join(", "));
        }
        println!();
    }
    ExitCode::SUCCESS
}

/// What a kind reads from its `deps`, in words.
fn reads(kind: &dyn StageKind) -> String {
    match kind.inputs() {
        Inputs::Any => "any dependencies (their folders in $VGMAKE_IN_<DEP>)".into(),
        Inputs::Slots([]) => "nothing (a source stage: no deps)".into(),
        Inputs::Slots(slots) => slots
            .iter()
            .map(|s| {
                let optional = if s.optional { " (optional)" } else { "" };
                format!("{} from {}{optional}", s.what, s.kinds.join(" or "))
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}
