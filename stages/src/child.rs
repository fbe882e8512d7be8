//! A command run by a stage: in its own process group, so that it and
//! everything it started can be stopped together; killed if vgmake dies
//! (a parent-death signal) or stops (Ctrl-C, SIGTERM, the stage ending);
//! its output read as bytes into capped lines.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use crate::api::{PGID_FILE, StageContext, StageError};

/// Longest line kept in the stage log; the rest of it is cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Starts `command` as the leader of a new process group that dies with
/// vgmake, and notes the group in `temp_dir` for the next build to stop it
/// if it outlives this one (vgmake killed with -9).
pub fn spawn(command: &mut Command, temp_dir: &Path) -> std::io::Result<Child> {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when the
    // thread that spawned the child exits.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command.spawn()?;
    let _ = std::fs::write(temp_dir.join(PGID_FILE), child.id().to_string());
    Ok(child)
}

/// Stops the whole group: SIGTERM, a moment, then SIGKILL.
pub fn kill_group(child: &mut Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill with a negative pid signals the group we created.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Waits for `child`, stopping its group on Ctrl-C; when it exits, what it
/// left running in the background is stopped too (it would hold the
/// output pipes open). A stop is `Cancelled` even where the child exited
/// on its own: a stop signal reaches its processes one by one (scancel
/// signals every process of the job), so `sleep 60; echo done > out` can
/// lose its sleep and still exit 0 before its shell is signalled; and on a
/// terminal Ctrl-C reaches the command too.
pub fn wait(child: &mut Child, ctx: &StageContext) -> Result<ExitStatus, StageError> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // SAFETY: as above; the group may be gone already.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                ctx.check_cancelled()?;
                return Ok(status);
            }
            Ok(None) if ctx.is_cancelled() => {
                kill_group(child);
                return Err(StageError::Cancelled);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(StageError::io("waiting for the command", e)),
        }
    }
}

/// Calls `line` for every line of `stream`: bytes, not necessarily UTF-8
/// (shown lossily), each cut at [`MAX_LINE_BYTES`], so that no output, not
/// even 300 MB without a newline, costs more than one line of memory.
pub fn read_lines(stream: impl Read, mut line: impl FnMut(String)) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut current: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        let room = MAX_LINE_BYTES.saturating_sub(current.len());
        current.extend_from_slice(&chunk[..chunk.len().min(room)]);
        cut |= chunk.len() > room;
        let used = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            line(finish(&mut current, &mut cut));
        }
    }
    if !current.is_empty() || cut {
        line(finish(&mut current, &mut cut));
    }
}

fn finish(current: &mut Vec<u8>, cut: &mut bool) -> String {
    let mut text = String::from_utf8_lossy(current).into_owned();
    if *cut {
        text.push_str(" [line cut at 4096 bytes]");
    }
    current.clear();
    *cut = false;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bytes_and_capped() {
        let mut input = b"plain\n\xff\xfebytes\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend(b"\nlast");
        let mut lines = Vec::new();
        read_lines(&input[..], |l| lines.push(l));
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "plain");
        assert_eq!(lines[1], "\u{fffd}\u{fffd}bytes");
        assert!(
            lines[2].len() < MAX_LINE_BYTES + 40 && lines[2].ends_with("[line cut at 4096 bytes]")
        );
        assert_eq!(lines[3], "last");
    }
}
