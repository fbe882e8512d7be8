//! One writer per project: an exclusive `flock` on the `cache/` folder
//! itself, so that deleting a file (a natural reaction to "waiting...")
//! cannot let a second writer in.
//!
//! The kernel releases the lock when its holder dies, even by `kill -9`, so a
//! lock left by a dead process is broken by construction. `cache/LOCK` holds
//! the holder's pid, start time and command, to tell a waiting user who has
//! it; a clean exit empties it, so finding it non-empty on acquiring means
//! the last holder died, which is reported.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error};

pub struct ProjectLock {
    /// The cache folder itself, flock'ed: deleting `LOCK` cannot undo it.
    _dir: File,
    info: PathBuf,
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
        let dir =
            File::open(cache_dir).context(|| format!("cannot open {}", cache_dir.display()))?;
        let info = cache_dir.join("LOCK");
        if !try_flock(&dir).context(|| format!("cannot lock {}", cache_dir.display()))? {
            let holder = describe_holder(&info);
            match wait {
                Wait::NoWait => return Err(Error::Locked { holder }),
                Wait::Block(notify) => {
                    notify(&holder);
                    flock_blocking(&dir)
                        .context(|| format!("cannot lock {}", cache_dir.display()))?;
                }
            }
        }
        let previous = fs::read_to_string(&info).unwrap_or_default();
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
        let _ = fs::write(&info, me);
        Ok((ProjectLock { _dir: dir, info }, stale))
    }
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        // Empty the holder note before the kernel drops the lock with the descriptor.
        let _ = fs::write(&self.info, "");
    }
}

/// An exclusive `flock` on `path` (created if missing), held until the
/// returned file is dropped: for the short critical sections several
/// processes share (a build and its Slurm jobs committing into one cache).
pub fn exclusive(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    flock_blocking(&file)?;
    Ok(file)
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

fn describe_holder(info: &Path) -> String {
    let text = fs::read_to_string(info).unwrap_or_default();
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
