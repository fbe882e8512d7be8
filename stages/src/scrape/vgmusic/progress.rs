//! The progress line: files done / total on the current console, bytes,
//! failures, ETA (from the pace of network fetches so far).

use std::time::{Duration, Instant};

use crate::api::Progress;

pub struct ScrapeProgress<'a> {
    sink: &'a dyn Progress,
    start: Instant,
    last_message: Option<Instant>,
    done: u64,
    total: u64,
    pub bytes: u64,
    pub failures: u64,
}

impl<'a> ScrapeProgress<'a> {
    pub fn new(sink: &'a dyn Progress, total: u64) -> Self {
        sink.set_total(total);
        ScrapeProgress {
            sink,
            start: Instant::now(),
            last_message: None,
            done: 0,
            total,
            bytes: 0,
            failures: 0,
        }
    }

    /// One more song finished (stored or not).
    pub fn advance(&mut self, console: &str, console_done: u64, console_total: u64) {
        self.done += 1;
        self.sink.advance(1);
        // A few messages a second are plenty.
        let now = Instant::now();
        let due = self
            .last_message
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200));
        if due || self.done == self.total {
            self.last_message = Some(now);
            self.sink.message(&format!(
                "{console} {console_done}/{console_total}, {}, {} failed, ETA {}",
                human_bytes(self.bytes),
                self.failures,
                self.eta()
            ));
        }
    }

    fn eta(&self) -> String {
        if self.done == 0 {
            return "?".into();
        }
        let per_item = self.start.elapsed().as_secs_f64() / self.done as f64;
        let left = per_item * (self.total - self.done.min(self.total)) as f64;
        human_duration(Duration::from_secs_f64(left))
    }
}

pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b} B"),
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MB");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m");
        assert_eq!(human_duration(Duration::from_secs(75)), "1m15s");
    }
}
