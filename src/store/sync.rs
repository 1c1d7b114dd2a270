//! The one switch between durable and unsafe storage: every fsync/fdatasync the stores issue
//! goes through a [`SyncPolicy`].
//!
//! Invariant: with [`SyncPolicy::Durable`] (the only production setting) each call reaches the
//! disk before it returns; [`SyncPolicy::UnsafeNoFsync`] turns every one of them into a no-op.
//! The unsafe policy exists only as the negative control for crash tests that drop unsynced
//! writes, which must then catch lost acknowledged data.

use std::fs::File;
use std::io;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fdatasync/fsync data and directories before anything is acknowledged.
    #[default]
    Durable,
    /// Skip every sync: acknowledged writes can be lost on power loss or a crash of the host.
    UnsafeNoFsync,
}

impl SyncPolicy {
    /// Flushes a file's data and the metadata needed to read it back (size, allocation).
    pub fn sync_data(self, file: &File) -> io::Result<()> {
        match self {
            SyncPolicy::Durable => file.sync_data(),
            SyncPolicy::UnsafeNoFsync => Ok(()),
        }
    }

    /// Flushes a file's data and all its metadata.
    pub fn sync_all(self, file: &File) -> io::Result<()> {
        match self {
            SyncPolicy::Durable => file.sync_all(),
            SyncPolicy::UnsafeNoFsync => Ok(()),
        }
    }

    /// Makes the creation, rename or removal of entries in `dir` durable.
    pub fn sync_dir(self, dir: &Path) -> io::Result<()> {
        match self {
            SyncPolicy::Durable => File::open(dir)?.sync_all(),
            SyncPolicy::UnsafeNoFsync => Ok(()),
        }
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old file or the whole new
    /// one: write `<path>.tmp`, sync it, rename it over `path`, sync the directory (the rename
    /// lives in the directory's data). With [`SyncPolicy::Durable`] it returns only once the new
    /// file is on stable storage. On failure, says which step failed.
    pub fn replace_file(self, path: &Path, bytes: &[u8]) -> Result<(), (&'static str, io::Error)> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut file = File::create(&tmp).map_err(|e| ("create", e))?;
        file.write_all(bytes).map_err(|e| ("write", e))?;
        self.sync_all(&file).map_err(|e| ("fsync", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| ("rename", e))?;
        self.sync_dir(dir)
            .map_err(|e| ("fsync the directory of", e))
    }
}
