//! `vgmake log [VARIANT]`: the history of builds.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::usage_error;
use crate::project::Project;
use crate::report::format_seconds;
use crate::store::Store;

pub fn run(common: &Common, variant: Option<&str>) -> ExitCode {
    let project = match Project::load(common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        println!("no builds yet");
        return ExitCode::SUCCESS;
    };
    let history: Vec<serde_json::Value> = store
        .history()
        .into_iter()
        .filter(|h| {
            variant.is_none_or(|v| {
                h["variant"]
                    .as_str()
                    .is_some_and(|hv| hv.split(' ').any(|x| x == v))
            })
        })
        .collect();
    if common.json {
        for h in &history {
            println!("{h}");
        }
        return ExitCode::SUCCESS;
    }
    for h in &history {
        let stages = h["stages"].as_array().cloned().unwrap_or_default();
        let with = |status: &str| -> Vec<String> {
            stages
                .iter()
                .filter(|s| s["status"] == status)
                .map(|s| s["name"].as_str().unwrap_or("?").to_string())
                .collect()
        };
        let ran = with("ran");
        let sets: Vec<String> = h["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .map(|s| format!("--set {s}"))
            .collect();
        let mut line = format!(
            "{}  {:<12} {:>8}  ran {}",
            utc(h["finished"].as_u64().unwrap_or(0)),
            h["variant"].as_str().unwrap_or("?"),
            format_seconds(h["seconds"].as_f64().unwrap_or(0.0)),
            if ran.is_empty() {
                "nothing".to_string()
            } else {
                ran.join(", ")
            },
        );
        let cached = with("cached").len() + with("cutoff").len();
        if cached > 0 {
            line.push_str(&format!("; {cached} cached"));
        }
        let failed = with("failed");
        if !failed.is_empty() {
            line.push_str(&format!("; FAILED {}", failed.join(", ")));
        }
        if !sets.is_empty() {
            line.push_str(&format!("  [{}]", sets.join(" ")));
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn utc(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_608_000), "2026-11-25 12:00:00");
    }
}
