//! One writer per project: an exclusive `flock` on `cache/LOCK`.
//!
//! The kernel releases the lock when its holder dies, even by `kill -9`, so a
//! lock left by a dead process is broken by construction. The file also holds
//! the holder's pid, start time and command, to tell a waiting user who has it;
//! a clean exit empties it, so finding it non-empty on acquiring means the last
//! holder died, which is reported.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Context, Error};

pub struct ProjectLock {
    file: File,
}

/// How `acquire` behaves when another build holds the lock.
pub enum Wait {
    /// Block until it is free, after calling the callback once with who holds it.
    Block(Box<dyn FnOnce(&str)>),
    /// Fail at once with a message naming the holder.
    NoWait,
}

impl ProjectLock {
    /// Takes the lock of the cache at `cache_dir`. Returns the lock and, when
    /// the previous holder died without releasing it, a line saying so.
    pub fn acquire(cache_dir: &Path, wait: Wait) -> Result<(ProjectLock, Option<String>), Error> {
        let path = cache_dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("cannot open {}", path.display()))?;
        if !try_flock(&file).context(|| format!("cannot lock {}", path.display()))? {
            let holder = describe_holder(&mut file);
            match wait {
                Wait::NoWait => return Err(Error::Locked { holder }),
                Wait::Block(notify) => {
                    notify(&holder);
                    flock_blocking(&file).context(|| format!("cannot lock {}", path.display()))?;
                }
            }
        }
        let mut previous = String::new();
        file.rewind()
            .and_then(|_| file.read_to_string(&mut previous))
            .ok();
        let stale = (!previous.trim().is_empty()).then(|| {
            format!(
                "broke a stale lock left by a build that died ({})",
                previous.trim()
            )
        });
        let me = format!(
            "pid {} started {} ({})",
            std::process::id(),
            unix_now(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()))
            .ok();
        Ok((ProjectLock { file }, stale))
    }
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        // Empty the file before the kernel drops the lock with the descriptor.
        let _ = self.file.set_len(0);
    }
}

fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, open descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

fn flock_blocking(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: as above.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    file.rewind()
        .and_then(|_| file.read_to_string(&mut text))
        .ok();
    if text.trim().is_empty() {
        "holder unknown".to_string()
    } else {
        text.trim().to_string()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
