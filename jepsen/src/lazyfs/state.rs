//! The filesystem's state behind the FUSE adapter: inode numbers mapped onto the backing
//! directory, each regular file's [`PageCache`] of unsynced data, the [`Journal`] of unsynced
//! directory changes, and the open handles.
//!
//! Invariant: the backing directory plus the page caches is what a process sees; the backing
//! directory minus the journal's changes plus the trash is what survives a crash. Inode
//! numbers are never reused, and a crash forgets every inode and handle, so a request that was
//! in flight at the crash cannot touch the state after it (its handle is unknown: `EBADF`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::journal::{Change, Journal};
use super::page_cache::PageCache;

pub const ROOT: u64 = 1;

/// Where an inode's backing entry is.
#[derive(Debug, Clone)]
enum Place {
    Root,
    Child {
        parent: u64,
        name: OsString,
    },
    /// Removed but still open (or its removal not yet durable): it waits in the trash.
    Trashed(PathBuf),
}

#[derive(Debug)]
struct Inode {
    place: Place,
    /// Opened on first use, read-write; kept while the inode lives, so a rename or removal
    /// of the backing entry does not lose it.
    file: Option<File>,
    /// Unsynced data; `None` when the file equals its backing file.
    cache: Option<PageCache>,
    /// Outside the model: written straight through (the harness's own log of the node).
    bypass: bool,
}

/// What a crash would drop right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Files with data not yet fsynced.
    pub dirty_files: usize,
    /// Cached bytes (whole pages) that a crash drops.
    pub dirty_bytes: u64,
    /// Creates, removals and renames whose directory was not fsynced since.
    pub dir_changes: usize,
}

pub struct State {
    backing: PathBuf,
    trash: PathBuf,
    bypass: Vec<OsString>,
    inodes: HashMap<u64, Inode>,
    names: HashMap<(u64, OsString), u64>,
    next_ino: u64,
    handles: HashMap<u64, u64>,
    next_fh: u64,
    next_trash: u64,
    journal: Journal,
}

pub type Result<T> = std::result::Result<T, io::Error>;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl State {
    pub fn new(backing: PathBuf, trash: PathBuf, bypass: Vec<OsString>) -> State {
        let mut state = State {
            backing,
            trash,
            bypass,
            inodes: HashMap::new(),
            names: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            next_trash: 0,
            journal: Journal::default(),
        };
        state.forget_all();
        state
    }

    fn forget_all(&mut self) {
        self.inodes.clear();
        self.names.clear();
        self.handles.clear();
        self.inodes.insert(
            ROOT,
            Inode {
                place: Place::Root,
                file: None,
                cache: None,
                bypass: false,
            },
        );
    }

    /// The backing path of `ino`, relative to the backing root.
    fn relative(&self, ino: u64) -> Result<PathBuf> {
        let mut parts = Vec::new();
        let mut at = ino;
        loop {
            match &self
                .inodes
                .get(&at)
                .ok_or_else(|| errno(libc::ENOENT))?
                .place
            {
                Place::Root => break,
                Place::Child { parent, name } => {
                    parts.push(name.clone());
                    at = *parent;
                }
                Place::Trashed(_) => return Err(errno(libc::ENOENT)),
            }
        }
        Ok(parts.iter().rev().collect())
    }

    /// The absolute backing path of `ino`, wherever it is (trash included).
    pub fn path(&self, ino: u64) -> Result<PathBuf> {
        match &self
            .inodes
            .get(&ino)
            .ok_or_else(|| errno(libc::ENOENT))?
            .place
        {
            Place::Trashed(path) => Ok(path.clone()),
            _ => Ok(self.backing.join(self.relative(ino)?)),
        }
    }

    fn child_relative(&self, parent: u64, name: &OsStr) -> Result<PathBuf> {
        Ok(self.relative(parent)?.join(name))
    }

    /// The inode of `parent`/`name`, given a number the first time it is seen.
    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<(u64, fs::Metadata)> {
        let path = self.backing.join(self.child_relative(parent, name)?);
        let meta = fs::symlink_metadata(&path)?;
        let key = (parent, name.to_os_string());
        let ino = match self.names.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                let bypass = parent == ROOT && self.bypass.iter().any(|b| b == name);
                self.inodes.insert(
                    ino,
                    Inode {
                        place: Place::Child {
                            parent,
                            name: name.to_os_string(),
                        },
                        file: None,
                        cache: None,
                        bypass,
                    },
                );
                self.names.insert(key, ino);
                ino
            }
        };
        Ok((ino, meta))
    }

    /// The metadata a process sees: the backing entry's, with the cached size.
    pub fn metadata(&mut self, ino: u64) -> Result<(fs::Metadata, Option<u64>)> {
        let meta = match self.inodes.get(&ino).and_then(|i| i.file.as_ref()) {
            Some(file) => file.metadata()?,
            None => fs::symlink_metadata(self.path(ino)?)?,
        };
        let size = self
            .inodes
            .get(&ino)
            .and_then(|i| i.cache.as_ref())
            .map(PageCache::size);
        Ok((meta, size))
    }

    /// The inode's backing file, opened (read-write) on first use, and its cache slot.
    fn opened(&mut self, ino: u64) -> Result<(&File, &mut Option<PageCache>)> {
        let path = self.path(ino)?;
        let inode = self
            .inodes
            .get_mut(&ino)
            .ok_or_else(|| errno(libc::ENOENT))?;
        let file = match inode.file.take() {
            Some(file) => file,
            None => OpenOptions::new().read(true).write(true).open(path)?,
        };
        Ok((inode.file.insert(file), &mut inode.cache))
    }

    /// The inode's backing file and its cache, the cache created on first use.
    fn cached(&mut self, ino: u64) -> Result<(&File, &mut PageCache)> {
        let (file, slot) = self.opened(ino)?;
        let cache = match slot {
            Some(cache) => cache,
            None => slot.insert(PageCache::new(file.metadata()?.len())),
        };
        Ok((file, cache))
    }

    fn is_bypass(&self, ino: u64) -> bool {
        self.inodes.get(&ino).is_some_and(|i| i.bypass)
    }

    pub fn open(&mut self, ino: u64) -> Result<u64> {
        if !self.inodes.contains_key(&ino) {
            return Err(errno(libc::ENOENT));
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// A handle from before the last crash is refused.
    pub fn check_handle(&self, fh: u64, ino: u64) -> Result<()> {
        match self.handles.get(&fh) {
            Some(&owner) if owner == ino => Ok(()),
            _ => Err(errno(libc::EBADF)),
        }
    }

    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    pub fn read(&mut self, ino: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (file, cache) = self.opened(ino)?;
        if let Some(cache) = cache {
            return cache.read(file, offset, len);
        }
        let mut out = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut out[got..], offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        out.truncate(got);
        Ok(out)
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        if self.is_bypass(ino) {
            return self.opened(ino)?.0.write_all_at(data, offset);
        }
        let (file, cache) = self.cached(ino)?;
        cache.write(file, offset, data)
    }

    pub fn truncate(&mut self, ino: u64, len: u64) -> Result<()> {
        if self.is_bypass(ino) {
            return self.opened(ino)?.0.set_len(len);
        }
        let (_, cache) = self.cached(ino)?;
        cache.truncate(len);
        Ok(())
    }

    /// `fallocate` without `FALLOC_FL_KEEP_SIZE` grows the file; allocation itself is not
    /// visible, so with it there is nothing to do.
    pub fn allocate(&mut self, ino: u64, end: u64, keep_size: bool) -> Result<()> {
        let (meta, cached_size) = self.metadata(ino)?;
        let size = cached_size.unwrap_or(meta.len());
        if keep_size || end <= size {
            return Ok(());
        }
        self.truncate(ino, end)
    }

    pub fn set_mode(&mut self, ino: u64, mode: u32) -> Result<()> {
        fs::set_permissions(self.path(ino)?, fs::Permissions::from_mode(mode & 0o7777))
    }

    /// fsync/fdatasync: the inode's cached data reaches the backing file, which is synced.
    pub fn fsync(&mut self, ino: u64, datasync: bool) -> Result<()> {
        let (file, slot) = self.opened(ino)?;
        if let Some(cache) = slot.take() {
            if let Err(e) = cache.flush(file) {
                // A failed flush keeps the data pending, as a failed fsync leaves it.
                *slot = Some(cache);
                return Err(e);
            }
        }
        if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        }
    }

    /// fsync of a directory: its entry changes (and every earlier one) become durable.
    pub fn fsync_dir(&mut self, ino: u64) -> Result<()> {
        self.journal.commit_through(ino)?;
        File::open(self.path(ino)?)?.sync_all()
    }

    fn journaled(&self, parent: u64, name: &OsStr) -> bool {
        !(parent == ROOT && self.bypass.iter().any(|b| b == name))
    }

    /// Creates a regular file (`dir == false`) or directory; returns its inode.
    pub fn create(&mut self, parent: u64, name: &OsStr, mode: u32, dir: bool) -> Result<u64> {
        let relative = self.child_relative(parent, name)?;
        let path = self.backing.join(&relative);
        if dir {
            fs::DirBuilder::new().mode(mode & 0o7777).create(&path)?;
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o7777)
                .open(&path)?;
        }
        if self.journaled(parent, name) {
            self.journal.record(Change::Created {
                path: relative,
                dirs: [parent],
            });
        }
        Ok(self.lookup(parent, name)?.0)
    }

    /// Moves `parent`/`name` into the trash (so its removal can be undone); returns where.
    fn move_to_trash(&mut self, parent: u64, name: &OsStr) -> Result<PathBuf> {
        let from = self.backing.join(self.child_relative(parent, name)?);
        let trashed = self.trash.join(self.next_trash.to_string());
        self.next_trash += 1;
        fs::rename(&from, &trashed)?;
        if let Some(ino) = self.names.remove(&(parent, name.to_os_string())) {
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.place = Place::Trashed(trashed.clone());
            }
        }
        Ok(trashed)
    }

    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
        let relative = self.child_relative(parent, name)?;
        let path = self.backing.join(&relative);
        let meta = fs::symlink_metadata(&path)?;
        match (dir, meta.is_dir()) {
            (true, false) => return Err(errno(libc::ENOTDIR)),
            (false, true) => return Err(errno(libc::EISDIR)),
            (true, true) if fs::read_dir(&path)?.next().is_some() => {
                return Err(errno(libc::ENOTEMPTY))
            }
            _ => {}
        }
        if !self.journaled(parent, name) {
            self.names.remove(&(parent, name.to_os_string()));
            return fs::remove_file(path);
        }
        let trashed = self.move_to_trash(parent, name)?;
        self.journal.record(Change::Removed {
            path: relative,
            trashed,
            dirs: [parent],
        });
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        let from = self.child_relative(parent, name)?;
        let to = self.child_relative(new_parent, new_name)?;
        let source = fs::symlink_metadata(self.backing.join(&from))?;
        let replaced = match fs::symlink_metadata(self.backing.join(&to)) {
            Ok(_) if no_replace => return Err(errno(libc::EEXIST)),
            Ok(target) => {
                match (source.is_dir(), target.is_dir()) {
                    (false, true) => return Err(errno(libc::EISDIR)),
                    (true, false) => return Err(errno(libc::ENOTDIR)),
                    (true, true) if fs::read_dir(self.backing.join(&to))?.next().is_some() => {
                        return Err(errno(libc::ENOTEMPTY))
                    }
                    _ => {}
                }
                Some(self.move_to_trash(new_parent, new_name)?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        fs::rename(self.backing.join(&from), self.backing.join(&to))?;
        if let Some(ino) = self.names.remove(&(parent, name.to_os_string())) {
            self.names
                .insert((new_parent, new_name.to_os_string()), ino);
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.place = Place::Child {
                    parent: new_parent,
                    name: new_name.to_os_string(),
                };
            }
        }
        self.journal.record(Change::Renamed {
            from,
            to,
            replaced,
            dirs: [parent, new_parent],
        });
        Ok(())
    }

    /// The entries of directory `ino` (without `.` and `..`), each with its inode and type.
    pub fn list(&mut self, ino: u64) -> Result<Vec<(u64, fs::FileType, OsString)>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.path(ino)?)? {
            let name = entry?.file_name();
            let (child, meta) = self.lookup(ino, &name)?;
            entries.push((child, meta.file_type(), name));
        }
        Ok(entries)
    }

    pub fn pending(&self) -> Pending {
        let caches = || self.inodes.values().filter_map(|i| i.cache.as_ref());
        Pending {
            dirty_files: caches().count(),
            dirty_bytes: caches().map(PageCache::dirty_bytes).sum(),
            dir_changes: self.journal.len(),
        }
    }

    /// Power loss: every unsynced byte and every undurable directory change is dropped, and
    /// every inode and handle forgotten. Returns what was dropped.
    pub fn crash(&mut self) -> Result<Pending> {
        let dropped = self.pending();
        self.journal.undo_all(&self.backing)?;
        self.forget_all();
        Ok(dropped)
    }

    /// A clean shutdown: every cached byte is written and synced, every change committed.
    pub fn sync_all(&mut self) -> Result<()> {
        let dirty: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, i)| i.cache.is_some())
            .map(|(ino, _)| *ino)
            .collect();
        for ino in dirty {
            match self.fsync(ino, false) {
                // Removed for good while dirty: nothing left to write to.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        self.journal.commit_all()?;
        Ok(())
    }

    pub fn backing(&self) -> &Path {
        &self.backing
    }
}
