//! Folder listings, as the engine hands them to a kind that finds its
//! inputs by walking a folder tree (scrape's local corpus).
//!
//! The engine answers from its listing cache while a folder is unchanged
//! (a folder's mtime moves whenever an entry is added, removed or renamed),
//! so a no-op over a corpus of thousands of files reads no folder: git's
//! untracked cache, ninja's and Bazel's stat logs do the same.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a folder entry is, as `readdir` (or `lstat`) says: a symbolic link
/// is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    File = 0,
    Folder = 1,
    Symlink = 2,
    Fifo = 3,
    Socket = 4,
    CharDevice = 5,
    BlockDevice = 6,
    Other = 7,
}

impl EntryKind {
    pub fn of(kind: fs::FileType) -> EntryKind {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_file() {
            EntryKind::File
        } else if kind.is_dir() {
            EntryKind::Folder
        } else if kind.is_symlink() {
            EntryKind::Symlink
        } else if kind.is_fifo() {
            EntryKind::Fifo
        } else if kind.is_socket() {
            EntryKind::Socket
        } else if kind.is_char_device() {
            EntryKind::CharDevice
        } else if kind.is_block_device() {
            EntryKind::BlockDevice
        } else {
            EntryKind::Other
        }
    }

    /// The kind stored as [`EntryKind::code`], `None` for any other byte.
    pub fn from_code(code: u8) -> Option<EntryKind> {
        use EntryKind::*;
        [
            File,
            Folder,
            Symlink,
            Fifo,
            Socket,
            CharDevice,
            BlockDevice,
            Other,
        ]
        .get(usize::from(code))
        .copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// In words ("FIFO", "character device"), for reports.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Folder => "folder",
            EntryKind::Symlink => "symbolic link",
            EntryKind::Fifo => "FIFO",
            EntryKind::Socket => "socket",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
            EntryKind::Other => "special file",
        }
    }
}

/// One folder's entries (without `.` and `..`), sorted by the bytes of
/// their names: the names in one buffer, so a cached listing of 500 files
/// is two allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    names: Vec<u8>,
    /// (end of the name in `names`, kind), in name order.
    entries: Vec<(u32, EntryKind)>,
}

impl Listing {
    /// A listing of `entries` in any order (sorted here).
    pub fn from_entries(mut entries: Vec<(Vec<u8>, EntryKind)>) -> Listing {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut listing = Listing::default();
        for (name, kind) in entries {
            listing.push(&name, kind);
        }
        listing
    }

    /// Appends an entry; the caller keeps the name order (a listing read
    /// back from the engine's cache file, which stores it sorted).
    pub fn push(&mut self, name: &[u8], kind: EntryKind) {
        self.names.extend_from_slice(name);
        self.entries.push((self.names.len() as u32, kind));
    }

    /// Reads `dir` from the disk.
    pub fn read(dir: &Path) -> io::Result<Listing> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let kind = EntryKind::of(entry.file_type()?);
            entries.push((entry.file_name().into_encoded_bytes(), kind));
        }
        Ok(Listing::from_entries(entries))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, EntryKind)> {
        let mut start = 0;
        self.entries.iter().map(move |&(end, kind)| {
            let name = &self.names[start..end as usize];
            start = end as usize;
            (OsStr::from_bytes(name), kind)
        })
    }
}

/// Lists folders for a kind. The engine's answers come from its listing
/// cache while a folder is unchanged; [`ReadFolders`] reads every time.
pub trait Folders: Send + Sync {
    fn list(&self, dir: &Path) -> io::Result<Listing>;
}

/// Lists every folder from the disk (tools, tests, a stage's own run).
pub struct ReadFolders;

impl Folders for ReadFolders {
    fn list(&self, dir: &Path) -> io::Result<Listing> {
        Listing::read(dir)
    }
}

/// Where a kind finds what it reads from outside the cache (see
/// [`crate::StageKind::external_inputs`]).
pub struct ProjectFiles<'a> {
    /// The folder holding pipeline.toml.
    pub project_dir: &'a Path,
    /// The bundled data (the demo corpus).
    pub data_dir: &'a Path,
    pub folders: &'a dyn Folders,
}

impl<'a> ProjectFiles<'a> {
    /// Folders listed from the disk every time.
    pub fn reading(project_dir: &'a Path, data_dir: &'a Path) -> ProjectFiles<'a> {
        ProjectFiles {
            project_dir,
            data_dir,
            folders: &ReadFolders,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_sorted_by_name_bytes_and_keeps_kinds() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("a.mid"), b"").unwrap();
        fs::write(dir.path().join("B.mid"), b"").unwrap();
        std::os::unix::fs::symlink("a.mid", dir.path().join("c")).unwrap();
        let listing = Listing::read(dir.path()).unwrap();
        let got: Vec<(String, EntryKind)> = listing
            .iter()
            .map(|(n, k)| (n.to_string_lossy().into_owned(), k))
            .collect();
        assert_eq!(
            got,
            [
                ("B.mid".to_string(), EntryKind::File),
                ("a.mid".to_string(), EntryKind::File),
                ("b".to_string(), EntryKind::Folder),
                ("c".to_string(), EntryKind::Symlink),
            ]
        );
        for code in 0..=8u8 {
            let kind = EntryKind::from_code(code);
            assert_eq!(kind.map(EntryKind::code), (code < 8).then_some(code));
        }
    }
}
