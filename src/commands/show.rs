//! `vgmake show STAGE`: where a stage's output is, what is in it, its
//! metrics and its log.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::usage_error;
use crate::executor::out_link;
use crate::lock::unix_now;
use crate::project::Project;
use crate::store::Store;

const SHOWN_FILES: usize = 25;
const SHOWN_LOG_LINES: usize = 15;

pub fn run(host: &'static crate::Host, common: &Common, stage: &str, full_log: bool) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(resolved) = project.resolved.stage(stage) else {
        let names: Vec<&str> = project
            .resolved
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let hint = crate::diagnostic::closest(stage, names.iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return usage_error(format!(
            "no stage is named `{stage}` (stages: {}){hint}",
            names.join(", ")
        ));
    };
    let variant = &project.resolved.variant;
    let record = Store::open_existing(&project.cache_dir).and_then(|store| {
        store
            .refs(variant)
            .get(stage)
            .and_then(|r| store.record(&r.key))
            .map(|rec| (store, rec))
    });
    let Some((store, record)) = record else {
        return usage_error(format!(
            "stage `{stage}` has not been built in variant `{variant}` yet (run `vgmake build {stage}`)"
        ));
    };
    let folder = store.output_dir(&record.output);
    let manifest = store.tree_manifest(&record.output).unwrap_or_default();
    let metrics = record.metrics.clone();
    if common.json {
        let obj = serde_json::json!({
            "name": stage,
            "kind": resolved.kind.name(),
            "variant": variant,
            "key": record.key,
            "output": record.output,
            "folder": folder,
            "link": out_link(&project.dir, variant, stage),
            "seconds": record.seconds,
            "finished": record.finished,
            "files": manifest.files,
            "metrics": metrics,
            "measurements": record.measurements,
            "ran_on": record.ran_on,
            "log": record.log,
        });
        println!("{}", serde_json::to_string_pretty(&obj).unwrap());
        return ExitCode::SUCCESS;
    }
    println!("{stage} ({}), variant {variant}", resolved.kind.name());
    println!("  key     {}", record.key);
    println!(
        "  output  {}",
        out_link(&project.dir, variant, stage).display()
    );
    println!("          -> {}", folder.display());
    println!(
        "  built   in {} ({})",
        crate::report::format_seconds(record.seconds),
        ago(record.finished)
    );
    if let Some(place) = &record.ran_on {
        println!("  ran on  {place}");
    }
    let files: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| !f.path.ends_with('/'))
        .collect();
    println!(
        "  files   {} ({})",
        files.len(),
        human_bytes(manifest.total_bytes())
    );
    for f in files.iter().take(SHOWN_FILES) {
        println!("          {:>10}  {}", human_bytes(f.size), f.path);
    }
    if files.len() > SHOWN_FILES {
        println!("          ... and {} more", files.len() - SHOWN_FILES);
    }
    if let Some(m) = metrics {
        println!("  metrics");
        print_metrics(&m, "          ");
    }
    if !record.measurements.is_empty() {
        println!("  measured (not part of the output)");
        for (name, value) in &record.measurements {
            println!("          {name}: {}", format_float(*value));
        }
    }
    let log_file = store.log_path(&record.key);
    if full_log && log_file.is_file() {
        println!("  log ({})", log_file.display());
        if let Ok(text) = std::fs::read(&log_file) {
            for line in String::from_utf8_lossy(&text).lines() {
                println!("          {line}");
            }
        }
    } else if !record.log.is_empty() {
        let skip = if full_log {
            0
        } else {
            record.log.len().saturating_sub(SHOWN_LOG_LINES)
        };
        println!(
            "  log{}",
            if skip > 0 {
                format!(
                    " (last {SHOWN_LOG_LINES} lines; --log for all, or {})",
                    log_file.display()
                )
            } else {
                String::new()
            }
        );
        for line in &record.log[skip..] {
            println!("          {line}");
        }
    }
    ExitCode::SUCCESS
}

/// Scalars one per line; nested objects indented; long arrays summarized.
fn print_metrics(value: &serde_json::Value, indent: &str) {
    let Some(obj) = value.as_object() else {
        println!("{indent}{value}");
        return;
    };
    for (k, v) in obj {
        match v {
            serde_json::Value::Object(_) => {
                println!("{indent}{k}:");
                print_metrics(v, &format!("{indent}  "));
            }
            serde_json::Value::Array(a) if a.len() > 8 => {
                println!("{indent}{k}: [{} items]", a.len())
            }
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => println!("{indent}{k}: {}", format_float(f)),
                _ => println!("{indent}{k}: {n}"),
            },
            _ => println!("{indent}{k}: {v}"),
        }
    }
}

fn format_float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) {
        format!("{f:.4e}")
    } else {
        format!("{f:.4}")
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "3 min ago".
pub fn ago(unix: u64) -> String {
    let s = unix_now().saturating_sub(unix);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}
