//! What a build shows: progress bars on a terminal, plain lines otherwise,
//! one JSON object per stage under `--json`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

pub use crate::outcome::{StageResult, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives build events; implementations draw them.
pub trait Display: Send + Sync {
    fn started(&self, stage: &str);
    fn set_total(&self, stage: &str, total: u64);
    fn advance(&self, stage: &str, n: u64);
    fn message(&self, stage: &str, msg: &str);
    fn log(&self, stage: &str, line: &str);
    fn finished(&self, result: &StageResult);
    /// A line about the build as a whole.
    fn note(&self, line: &str);
}

/// Picks the display: JSON, bars on a terminal, plain lines otherwise.
pub fn display(json: bool, verbose: bool) -> std::sync::Arc<dyn Display> {
    if json {
        std::sync::Arc::new(JsonDisplay)
    } else if std::io::stderr().is_terminal() {
        std::sync::Arc::new(BarDisplay::new(verbose))
    } else {
        std::sync::Arc::new(PlainDisplay { verbose })
    }
}

pub fn human_line(r: &StageResult) -> String {
    let short = r
        .output
        .as_deref()
        .map(|o| &o[..o.len().min(12)])
        .unwrap_or("");
    let mut line = format!(
        "{:<8} {:<12} {:>8}  {short}",
        r.status.word(),
        r.name,
        format_seconds(r.seconds)
    );
    if let Some(m) = &r.message {
        line.push_str(&format!("  ({m})"));
    }
    line.trim_end().to_string()
}

pub fn format_seconds(s: f64) -> String {
    if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.2}s")
    }
}

/// Plain lines on stderr: for logs, CI and pipes.
pub struct PlainDisplay {
    verbose: bool,
}

impl Display for PlainDisplay {
    fn started(&self, stage: &str) {
        eprintln!("running  {stage}");
    }
    fn set_total(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn message(&self, _: &str, _: &str) {}
    fn log(&self, stage: &str, line: &str) {
        if self.verbose {
            eprintln!("  [{stage}] {line}");
        }
    }
    fn finished(&self, r: &StageResult) {
        eprintln!("{}", human_line(r));
    }
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// One JSON object per stage on stdout; notes go to stderr.
pub struct JsonDisplay;

impl Display for JsonDisplay {
    fn started(&self, _: &str) {}
    fn set_total(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn message(&self, _: &str, _: &str) {}
    fn log(&self, _: &str, _: &str) {}
    fn finished(&self, r: &StageResult) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap());
        let _ = out.flush();
    }
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// indicatif bars, one per running stage.
pub struct BarDisplay {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verbose: bool,
}

impl BarDisplay {
    fn new(verbose: bool) -> Self {
        BarDisplay {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Default::default(),
            verbose,
        }
    }
    fn with_bar(&self, stage: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bars.lock().unwrap().get(stage) {
            f(bar);
        }
    }
}

impl Display for BarDisplay {
    fn started(&self, stage: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<12} {elapsed:>4} {wide_msg}").unwrap(),
        );
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.bars.lock().unwrap().insert(stage.to_string(), bar);
    }
    fn set_total(&self, stage: &str, total: u64) {
        self.with_bar(stage, |bar| {
            bar.set_length(total);
            let style =
                "{spinner} {prefix:<12} [{bar:30}] {pos}/{len} {elapsed:>4} eta {eta} {wide_msg}";
            bar.set_style(
                ProgressStyle::with_template(style)
                    .unwrap()
                    .progress_chars("=> "),
            );
        });
    }
    fn advance(&self, stage: &str, n: u64) {
        self.with_bar(stage, |bar| bar.inc(n));
    }
    fn message(&self, stage: &str, msg: &str) {
        self.with_bar(stage, |bar| bar.set_message(msg.to_string()));
    }
    fn log(&self, stage: &str, line: &str) {
        if self.verbose {
            let _ = self.multi.println(format!("  [{stage}] {line}"));
        }
    }
    fn finished(&self, r: &StageResult) {
        if let Some(bar) = self.bars.lock().unwrap().remove(&r.label) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(human_line(r));
    }
    fn note(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}
