//! The db-agent's memory of the newest controller action it obeyed, so that a deposed leader
//! cannot replay an older promotion or traffic shift.
//!
//! Invariant: an action is obeyed only if its `(epoch, leader term)` is at least the stored
//! high-water mark (lexicographically: a newer decision, or the same decision resumed by the
//! same or a newer leader), and the mark is on stable storage — file fsynced, renamed into
//! place, directory fsynced — *before* the action is carried out, so a crash between the two
//! cannot let an older action through after a restart.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file under the agent's state dir.
pub const HIGH_WATER_FILE: &str = "obeyed-action.json";

/// The `(epoch, leader term)` of a controller action: the fencing epoch of the decision
/// (`DriverCall::epoch`) and the Raft term of the leader that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionStamp {
    pub epoch: u64,
    pub leader_term: u64,
}

impl std::fmt::Display for ActionStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {} term {}", self.epoch, self.leader_term)
    }
}

/// An action older than the last obeyed one: refused, nothing done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("action at {presented} is older than the last obeyed, {obeyed}")]
pub struct StaleAction {
    pub presented: ActionStamp,
    pub obeyed: ActionStamp,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid high-water mark ({source}); refusing to start without it")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The persisted high-water mark.
#[derive(Debug)]
pub struct ActionGuard {
    dir: PathBuf,
    obeyed: Option<ActionStamp>,
}

impl ActionGuard {
    /// Opens (creating the directory if needed) and reads the mark. A file that does not parse
    /// is an error, not a reset: forgetting the mark is exactly what this guards against.
    pub fn open(dir: &Path) -> Result<ActionGuard, GuardError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GuardError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(HIGH_WATER_FILE);
        let obeyed = match fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|source| GuardError::Corrupt { path, source })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(ActionGuard {
            dir: dir.to_path_buf(),
            obeyed,
        })
    }

    /// The newest action obeyed so far.
    pub fn obeyed(&self) -> Option<ActionStamp> {
        self.obeyed
    }

    /// Refuses `stamp` if it is older than the mark; otherwise makes it the mark, durably,
    /// and returns. The caller carries the action out only after `Ok`.
    pub fn admit(&mut self, stamp: ActionStamp) -> Result<Result<(), StaleAction>, GuardError> {
        match self.obeyed {
            Some(obeyed) if stamp < obeyed => {
                return Ok(Err(StaleAction {
                    presented: stamp,
                    obeyed,
                }))
            }
            // The same action again (a driver's retry): obeyed again, nothing to write.
            Some(obeyed) if stamp == obeyed => return Ok(Ok(())),
            _ => {}
        }
        self.persist(stamp)?;
        self.obeyed = Some(stamp);
        Ok(Ok(()))
    }

    /// Write a temp file, fsync it, rename it over the mark, fsync the directory: the rename
    /// is atomic, and only the directory fsync makes it survive a power loss.
    fn persist(&self, stamp: ActionStamp) -> Result<(), GuardError> {
        let path = self.dir.join(HIGH_WATER_FILE);
        let tmp = self.dir.join(format!("{HIGH_WATER_FILE}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GuardError::Io { path, source }
        };
        // Serialising two integers cannot fail.
        let bytes = serde_json::to_vec(&stamp).expect("an ActionStamp serialises");
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: u64, leader_term: u64) -> ActionStamp {
        ActionStamp { epoch, leader_term }
    }

    #[test]
    fn older_actions_are_refused_and_the_mark_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = ActionGuard::open(dir.path()).unwrap();
        assert_eq!(guard.obeyed(), None);
        assert_eq!(guard.admit(stamp(10, 2)).unwrap(), Ok(()));
        // Same decision, same leader: a retry, obeyed.
        assert_eq!(guard.admit(stamp(10, 2)).unwrap(), Ok(()));
        // Same decision resumed by a newer leader: obeyed.
        assert_eq!(guard.admit(stamp(10, 3)).unwrap(), Ok(()));
        // A deposed leader's replay of the same decision, and an older decision: refused.
        assert!(guard.admit(stamp(10, 2)).unwrap().is_err());
        assert!(guard.admit(stamp(9, 7)).unwrap().is_err());
        drop(guard);

        let mut reopened = ActionGuard::open(dir.path()).unwrap();
        assert_eq!(reopened.obeyed(), Some(stamp(10, 3)));
        assert_eq!(
            reopened.admit(stamp(9, 9)).unwrap(),
            Err(StaleAction {
                presented: stamp(9, 9),
                obeyed: stamp(10, 3)
            })
        );
        assert_eq!(reopened.admit(stamp(11, 1)).unwrap(), Ok(()));
    }

    #[test]
    fn a_corrupt_mark_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(HIGH_WATER_FILE), b"{not json").unwrap();
        assert!(matches!(
            ActionGuard::open(dir.path()),
            Err(GuardError::Corrupt { .. })
        ));
    }
}
