//! A stage's [`Progress`]: forwards everything to the build's display,
//! keeps the last lines for the action record, and writes every line to a
//! log file that is kept beside the record (`cache/logs/<key>.log`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vgmake_api::Progress;

use crate::report::Display;

/// Lines kept in the action record (`vgmake show` prints them; `--log`
/// prints the whole file). Each line is already capped by the stage
/// (a command's lines at 4 KiB), so a record stays small.
const RECORD_LINES: usize = 200;
/// The full log file stops growing here, with a line saying so.
const FULL_LOG_MAX_BYTES: u64 = 256 << 20;

pub struct StageLog {
    pub stage: String,
    lines: Mutex<VecDeque<String>>,
    full: Mutex<Option<FullLog>>,
    sink: Arc<dyn Display>,
}

struct FullLog {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
}

impl StageLog {
    pub fn new(stage: &str, sink: Arc<dyn Display>) -> Self {
        StageLog {
            stage: stage.to_string(),
            lines: Default::default(),
            full: Mutex::new(None),
            sink,
        }
    }

    /// The last lines, for the action record.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().iter().cloned().collect()
    }

    /// Starts writing every line to `path` (in the staging folder).
    pub fn keep_full_log(&self, path: &Path) -> io::Result<()> {
        let file = BufWriter::new(File::create(path)?);
        *self.full.lock().unwrap() = Some(FullLog {
            path: path.to_path_buf(),
            file,
            bytes: 0,
        });
        Ok(())
    }

    /// Closes the full log; its path, when one was kept.
    pub fn finish_full_log(&self) -> Option<PathBuf> {
        let mut full = self.full.lock().unwrap().take()?;
        full.file.flush().ok()?;
        Some(full.path)
    }
}

impl Progress for StageLog {
    fn set_total(&self, total: u64) {
        self.sink.set_total(&self.stage, total);
    }
    fn advance(&self, n: u64) {
        self.sink.advance(&self.stage, n);
    }
    fn message(&self, msg: &str) {
        self.sink.message(&self.stage, msg);
    }
    fn log(&self, line: &str) {
        {
            let mut lines = self.lines.lock().unwrap();
            if lines.len() >= RECORD_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
        if let Some(full) = self.full.lock().unwrap().as_mut()
            && full.bytes < FULL_LOG_MAX_BYTES
        {
            full.bytes += line.len() as u64 + 1;
            let _ = writeln!(full.file, "{line}");
            if full.bytes >= FULL_LOG_MAX_BYTES {
                let _ = writeln!(full.file, "[log cut at {} MiB]", FULL_LOG_MAX_BYTES >> 20);
            }
        }
        self.sink.log(&self.stage, line);
    }
}
