//! lazyfs: a FUSE passthrough filesystem that keeps everything not yet fsynced in memory and
//! drops it on command — a power loss for one node's data directory, in the manner of LazyFS.
//!
//! The model (see jepsen/README.md for its limits):
//! - writes, truncations and size-growing `fallocate`s go to a per-inode page cache
//!   ([`page_cache`]); reads see it over the backing file; `fsync`/`fdatasync` on any handle of
//!   the inode writes that inode's cache to the backing file and syncs it. `close` syncs
//!   nothing.
//! - creates, removals and renames are applied to the backing directory at once and journaled
//!   ([`journal`]); an fsync of a directory makes every change up to the newest one touching
//!   that directory durable (in order, like a journalling filesystem). fsyncing a file does not
//!   make its directory entry durable.
//! - [`LazyFs::crash`] drops every cache and undoes every journaled change; only fsynced data
//!   and entries remain. [`LazyFs::pending`] says what a crash would drop now.
//! - Files named in `bypass` at the root (the harness's `node.log`) are outside the model:
//!   written and created straight through.
//!
//! Invariant: the backing directory never holds an unsynced byte, so after a crash it is
//! exactly what survived. A crash must only be called while no process uses the mount (the
//! node was killed and reaped): the kernel waits for each request's answer before a killed
//! process exits, and requests on handles from before the crash fail with `EBADF`.
//!
//! The filesystem runs in the harness's process, one FUSE thread per mount: a crash is a
//! function call on shared state, with no protocol to get wrong, and the mount lives exactly
//! as long as its [`LazyFs`] value (dropping it unmounts).

mod fuse;
mod journal;
mod page_cache;
mod state;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::{BackgroundSession, Config, MountOption};

pub use state::Pending;
use state::State;

#[derive(Debug, thiserror::Error)]
pub enum LazyFsError {
    #[error("cannot prepare lazyfs store {}: {source}", path.display())]
    Store { path: PathBuf, source: io::Error },
    #[error(
        "cannot mount lazyfs on {}: {source} (needs root, or fusermount3 from the fuse3 \
         package, and /dev/fuse)",
        mountpoint.display()
    )]
    Mount {
        mountpoint: PathBuf,
        source: io::Error,
    },
    #[error("lazyfs on {}: crash failed: {source}", mountpoint.display())]
    Crash {
        mountpoint: PathBuf,
        source: io::Error,
    },
    #[error("lazyfs on {}: clean unmount failed: {source}", mountpoint.display())]
    Unmount {
        mountpoint: PathBuf,
        source: io::Error,
    },
}

/// A mounted lazyfs. Dropping it syncs everything and unmounts (best effort); [`unmount`]
/// does the same and reports failures.
///
/// [`unmount`]: LazyFs::unmount
pub struct LazyFs {
    mountpoint: PathBuf,
    store: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
}

impl LazyFs {
    /// Mounts a lazyfs at `mountpoint` (created if missing), backed by `store/data`, with
    /// removed entries kept in `store/trash` until their removal is durable. A fresh `store`
    /// starts empty; an existing one is mounted as it was left.
    pub fn mount(mountpoint: &Path, store: &Path, bypass: &[&str]) -> Result<LazyFs, LazyFsError> {
        let data = store.join("data");
        let trash = store.join("trash");
        for dir in [&data, &trash, &mountpoint.to_path_buf()] {
            fs::create_dir_all(dir).map_err(|source| LazyFsError::Store {
                path: dir.clone(),
                source,
            })?;
        }
        let state = Arc::new(Mutex::new(State::new(
            data,
            trash,
            bypass.iter().map(OsString::from).collect(),
        )));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("arbiter-lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
        ];
        let filesystem = fuse::LazyFuse {
            state: state.clone(),
        };
        let session = fuser::spawn_mount(filesystem, mountpoint, &config).map_err(|source| {
            LazyFsError::Mount {
                mountpoint: mountpoint.to_path_buf(),
                source,
            }
        })?;
        Ok(LazyFs {
            mountpoint: mountpoint.to_path_buf(),
            store: store.to_path_buf(),
            state,
            session: Some(session),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // See `fuse::LazyFuse::state`: a poisoned lock still guards consistent-enough state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a crash would drop now.
    pub fn pending(&self) -> Pending {
        self.state().pending()
    }

    /// Power loss: drops every unsynced byte and undoes every directory change not made
    /// durable. Call it only once every process using the mount has exited. Returns what was
    /// dropped.
    pub fn crash(&self) -> Result<Pending, LazyFsError> {
        self.state().crash().map_err(|source| LazyFsError::Crash {
            mountpoint: self.mountpoint.clone(),
            source,
        })
    }

    /// A clean shutdown: syncs everything, unmounts, and moves the backing data to the mount
    /// point, so the directory holds afterwards what the filesystem held.
    pub fn unmount(mut self) -> Result<(), LazyFsError> {
        let error = |source| LazyFsError::Unmount {
            mountpoint: self.mountpoint.clone(),
            source,
        };
        self.state().sync_all().map_err(error)?;
        if let Some(session) = self.session.take() {
            session.umount_and_join().map_err(error)?;
        }
        let data = self.state().backing().to_path_buf();
        fs::remove_dir(&self.mountpoint)
            .and_then(|()| fs::rename(&data, &self.mountpoint))
            .and_then(|()| fs::remove_dir_all(&self.store))
            .map_err(error)
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Best effort on an error path: what can be synced is, and the mount goes away.
            let _ = self.state().sync_all();
            drop(session);
        }
    }
}
