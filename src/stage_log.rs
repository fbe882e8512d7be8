//! A stage's [`Progress`]: keeps its log lines for the action record and
//! forwards everything to the build's display.

use std::sync::{Arc, Mutex};

use vgmake_api::Progress;

use crate::report::Display;

/// A stage's [`Progress`]: keeps its log lines for the record and forwards
/// everything to the build's display.
pub struct StageLog {
    pub stage: String,
    lines: Mutex<Vec<String>>,
    sink: Arc<dyn Display>,
}

const MAX_LOG_LINES: usize = 2000;

impl StageLog {
    pub fn new(stage: &str, sink: Arc<dyn Display>) -> Self {
        StageLog {
            stage: stage.to_string(),
            lines: Default::default(),
            sink,
        }
    }
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
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
        let mut lines = self.lines.lock().unwrap();
        if lines.len() >= MAX_LOG_LINES {
            lines.remove(0);
        }
        lines.push(line.to_string());
        self.sink.log(&self.stage, line);
    }
}
