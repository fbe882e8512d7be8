//! `vgmake log [VARIANT]`: the history of builds.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::usage_error;
use crate::history::HistoryEntry;
use crate::outcome::Status;
use crate::project::Project;
use crate::report::format_seconds;
use crate::store::Store;

pub fn run(host: &'static crate::Host, common: &Common, variant: Option<&str>) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        println!("no builds yet");
        return ExitCode::SUCCESS;
    };
    let history = match store.history() {
        Ok(h) => h,
        Err(e) => return usage_error(format!("cannot read the build history: {e}")),
    };
    let history: Vec<HistoryEntry> = history
        .into_iter()
        .filter(|h| variant.is_none_or(|v| h.variants.iter().any(|x| x == v)))
        .collect();
    if common.json {
        for h in &history {
            println!("{}", serde_json::to_string(h).unwrap());
        }
        return ExitCode::SUCCESS;
    }
    for h in &history {
        let with = |status: Status| -> Vec<&str> {
            h.stages
                .iter()
                .filter(|s| s.status == status)
                .map(|s| s.name.as_str())
                .collect()
        };
        let ran = with(Status::Ran);
        let sets: Vec<String> = h.sets.iter().map(|s| format!("--set {s}")).collect();
        let mut line = format!(
            "{}  {:<12} {:>8}  ran {}",
            utc(h.finished),
            h.variants.join(" "),
            format_seconds(h.seconds),
            if ran.is_empty() {
                "nothing".to_string()
            } else {
                ran.join(", ")
            },
        );
        let cached =
            with(Status::Cached).len() + with(Status::Cutoff).len() + with(Status::Fetched).len();
        if cached > 0 {
            line.push_str(&format!("; {cached} cached"));
        }
        let failed = with(Status::Failed);
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
