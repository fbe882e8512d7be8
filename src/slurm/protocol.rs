//! How a job's progress reaches the build: `vgmake run-stage` writes one
//! line per event to its stdout (the job's output file), and the build,
//! tailing that file, replays them into the stage's log and progress line.
//!
//! ```text
//! @vgmake total 4000        Progress::set_total
//! @vgmake advance 25        Progress::advance
//! @vgmake message step 40   Progress::message
//! @vgmake log <line>        Progress::log
//! anything else             a log line (Slurm's own, a crash's)
//! ```

use std::io::Write;

use vgmake_api::Progress;

const PREFIX: &str = "@vgmake ";

/// One event of a job, read back from its output.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Total(u64),
    Advance(u64),
    Message(&'a str),
    Log(&'a str),
}

impl<'a> Event<'a> {
    pub fn parse(line: &'a str) -> Event<'a> {
        let Some(rest) = line.strip_prefix(PREFIX) else {
            return Event::Log(line);
        };
        let (verb, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match verb {
            "total" => arg.parse().map_or(Event::Log(line), Event::Total),
            "advance" => arg.parse().map_or(Event::Log(line), Event::Advance),
            "message" => Event::Message(arg),
            "log" => Event::Log(arg),
            _ => Event::Log(line),
        }
    }

    pub fn replay(&self, progress: &dyn Progress) {
        match *self {
            Event::Total(n) => progress.set_total(n),
            Event::Advance(n) => progress.advance(n),
            Event::Message(m) => progress.message(m),
            Event::Log(l) => progress.log(l),
        }
    }
}

/// The job side: writes events to stdout, one line each (newlines in a
/// message become spaces so a line stays one event).
pub struct JobProgress;

impl JobProgress {
    fn emit(&self, verb: &str, arg: &str) {
        let arg = arg.replace(['\n', '\r'], " ");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{verb} {arg}");
        let _ = out.flush();
    }
}

impl crate::report::Display for JobProgress {
    fn started(&self, _stage: &str) {}
    fn set_total(&self, _stage: &str, total: u64) {
        self.emit("total", &total.to_string());
    }
    fn advance(&self, _stage: &str, n: u64) {
        self.emit("advance", &n.to_string());
    }
    fn message(&self, _stage: &str, msg: &str) {
        self.emit("message", msg);
    }
    fn log(&self, _stage: &str, line: &str) {
        self.emit("log", line);
    }
    fn finished(&self, _result: &crate::report::StageResult) {}
    fn note(&self, line: &str) {
        self.emit("log", line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back() {
        assert_eq!(Event::parse("@vgmake total 40"), Event::Total(40));
        assert_eq!(Event::parse("@vgmake advance 3"), Event::Advance(3));
        assert_eq!(
            Event::parse("@vgmake message step 4"),
            Event::Message("step 4")
        );
        assert_eq!(Event::parse("@vgmake log a b"), Event::Log("a b"));
        assert_eq!(
            Event::parse("@vgmake total x"),
            Event::Log("@vgmake total x")
        );
        assert_eq!(
            Event::parse("slurmstepd: error: *** JOB 7 CANCELLED ***"),
            Event::Log("slurmstepd: error: *** JOB 7 CANCELLED ***")
        );
    }
}
