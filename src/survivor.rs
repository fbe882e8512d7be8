//! Processes that outlived the build that started them: a `command` stage's
//! process group after vgmake was killed with -9. The next build stops such
//! a group before it removes the staging folder, so that it never races a
//! survivor writing into `cache/tmp/`.

use std::fs;
use std::path::Path;

use vgmake_api::PGID_FILE;

/// Stops the process group noted in `temp_dir` (a staging folder's `tmp/`)
/// if it still runs and is really that stage's: its leader's environment
/// names this `temp_dir` (a recycled group id is left alone).
pub fn stop(temp_dir: &Path) {
    let Some(pgid) = fs::read_to_string(temp_dir.join(PGID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 1)
    else {
        return;
    };
    let marker = format!("VGMAKE_TMP={}", temp_dir.display());
    let members = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // Field 5 of /proc/PID/stat is the process group (after "comm").
            let group: i32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()?;
            (group == pgid).then_some(pid)
        });
    let ours = members.into_iter().any(|pid| {
        fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
    });
    if ours {
        // SAFETY: signals the group verified above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
