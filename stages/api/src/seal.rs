//! Sealed files: a file beside which its blake3 hash is written last, as
//! `<name>.b3`, so that a reader can tell a complete, undamaged file from a
//! torn or corrupted one. Stages seal what they keep in their state folder
//! (training checkpoints); `vgmake verify` checks every seal there.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The seal of `path`: `<path>.b3`.
pub fn seal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".b3");
    PathBuf::from(name)
}

/// Writes the seal of the complete file at `path` (atomically, last).
pub fn seal(path: &Path) -> io::Result<()> {
    let hash = hash(path)?;
    let seal = seal_path(path);
    let mut tmp = seal.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    fs::write(&tmp, hash.to_hex().as_bytes())?;
    fs::rename(&tmp, &seal)
}

/// Removes the seal first, so that a file being replaced never reads as
/// sealed with its old hash.
pub fn unseal(path: &Path) -> io::Result<()> {
    match fs::remove_file(seal_path(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What a check found wrong.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0} has no seal (.b3): written by an older vgmake or cut short")]
    Unsealed(String),
    #[error("{0} does not match its seal: damaged")]
    Mismatch(String),
    #[error("reading {0}: {1}")]
    Io(String, io::Error),
}

/// Re-reads the file and checks it against its seal.
pub fn check(path: &Path) -> Result<(), SealError> {
    let shown = path.display().to_string();
    let expected = match fs::read_to_string(seal_path(path)) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SealError::Unsealed(shown)),
        Err(e) => return Err(SealError::Io(shown, e)),
    };
    let actual = hash(path).map_err(|e| SealError::Io(shown.clone(), e))?;
    if actual.to_hex().as_str() == expected.trim() {
        Ok(())
    } else {
        Err(SealError::Mismatch(shown))
    }
}

fn hash(path: &Path) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_checks_until_it_changes() {
        let dir = std::env::temp_dir().join(format!("vgmake-seal-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("run-10.safetensors");
        fs::write(&file, b"weights").unwrap();
        assert!(matches!(check(&file), Err(SealError::Unsealed(_))));
        seal(&file).unwrap();
        check(&file).unwrap();
        fs::write(&file, b"weighs!").unwrap();
        assert!(matches!(check(&file), Err(SealError::Mismatch(_))));
        unseal(&file).unwrap();
        assert!(!seal_path(&file).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
