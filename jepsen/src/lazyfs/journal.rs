//! Directory changes not yet made durable: creates, removals and renames since the last fsync
//! of the directories they touched, and how to undo them at a crash.
//!
//! Invariant: changes are applied to the backing directory at once (so every path lookup is a
//! plain lookup in it) and recorded here in order; nothing removed is really deleted while its
//! removal can still be undone — it waits in the trash directory. Undoing runs newest first,
//! so every change is undone against exactly the tree it was made in. An fsync of a directory
//! commits every change up to the newest one that touched it: metadata becomes durable in
//! order, as in a journalling filesystem, so no undo ever depends on a committed change.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A directory, named by its inode number (stable across renames, unlike its path).
pub type DirId = u64;

#[derive(Debug)]
pub enum Change {
    /// `path` was created (a file or an empty directory).
    Created { path: PathBuf, dirs: [DirId; 1] },
    /// `path` was removed; its entry waits at `trashed`.
    Removed {
        path: PathBuf,
        trashed: PathBuf,
        dirs: [DirId; 1],
    },
    /// `from` was renamed to `to`; what `to` named before waits at `replaced`.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
        dirs: [DirId; 2],
    },
}

impl Change {
    fn dirs(&self) -> &[DirId] {
        match self {
            Change::Created { dirs, .. } | Change::Removed { dirs, .. } => dirs,
            Change::Renamed { dirs, .. } => dirs,
        }
    }

    /// Puts the tree back as it was before this change. Paths are relative to `root`.
    fn undo(&self, root: &Path) -> io::Result<()> {
        match self {
            Change::Created { path, .. } => {
                let path = root.join(path);
                if fs::symlink_metadata(&path)?.is_dir() {
                    // Whatever was created inside it was undone first (newest first).
                    fs::remove_dir(path)
                } else {
                    fs::remove_file(path)
                }
            }
            Change::Removed { path, trashed, .. } => fs::rename(trashed, root.join(path)),
            Change::Renamed {
                from, to, replaced, ..
            } => {
                fs::rename(root.join(to), root.join(from))?;
                match replaced {
                    Some(trashed) => fs::rename(trashed, root.join(to)),
                    None => Ok(()),
                }
            }
        }
    }

    /// Deletes for good what this change removed or replaced.
    fn commit(self) -> io::Result<()> {
        let trashed = match self {
            Change::Removed { trashed, .. } => trashed,
            Change::Renamed {
                replaced: Some(trashed),
                ..
            } => trashed,
            _ => return Ok(()),
        };
        if fs::symlink_metadata(&trashed)?.is_dir() {
            fs::remove_dir_all(trashed)
        } else {
            fs::remove_file(trashed)
        }
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    changes: Vec<Change>,
}

impl Journal {
    pub fn record(&mut self, change: Change) {
        self.changes.push(change);
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The fsync of directory `dir`: commits every change up to the newest that touched it.
    pub fn commit_through(&mut self, dir: DirId) -> io::Result<usize> {
        match self.changes.iter().rposition(|c| c.dirs().contains(&dir)) {
            Some(last) => self.commit_prefix(last + 1),
            None => Ok(0),
        }
    }

    /// A clean unmount: everything becomes durable.
    pub fn commit_all(&mut self) -> io::Result<usize> {
        self.commit_prefix(self.changes.len())
    }

    fn commit_prefix(&mut self, n: usize) -> io::Result<usize> {
        for change in self.changes.drain(..n) {
            change.commit()?;
        }
        Ok(n)
    }

    /// The crash: undoes every uncommitted change, newest first. Returns how many.
    pub fn undo_all(&mut self, root: &Path) -> io::Result<usize> {
        let n = self.changes.len();
        while let Some(change) = self.changes.pop() {
            change.undo(root)?;
        }
        Ok(n)
    }
}
