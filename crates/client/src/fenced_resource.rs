//! [`FencedResource`]: the guard a resource (a database proxy, a storage writer) keeps in front of
//! its writes so that a holder who lost its lease cannot write, whatever its clock says.
//!
//! Invariant: the floor only rises — to the highest token a write was accepted with, or to an
//! epoch learned from the arbiter — and every accepted write carries a token at or above it.
//! A write checks and runs under one lock, so a write with a lower token can never run after
//! one with a higher token has been accepted.

use std::sync::Mutex;

use crate::types::FencingToken;

/// A write carried a token below the highest the resource has accepted or been told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token {presented}: this resource has accepted {highest}")]
pub struct StaleToken {
    pub presented: FencingToken,
    pub highest: FencingToken,
}

/// In-memory fencing for one resource.
#[derive(Debug, Default)]
pub struct FencedResource {
    /// The floor. A std Mutex: writes run under it (that is the point), and it is never held
    /// across an await.
    highest: Mutex<FencingToken>,
}

impl FencedResource {
    /// A resource that has accepted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `token`: rejects it if it is below the floor, otherwise raises the floor to it.
    pub fn check(&self, token: FencingToken) -> Result<(), StaleToken> {
        let mut highest = self.lock();
        admit(&mut highest, token)
    }

    /// Runs `write` if `token` is admitted, holding the floor while it runs, so no write with a
    /// lower token can start until it is done.
    pub fn write<T>(
        &self,
        token: FencingToken,
        write: impl FnOnce() -> T,
    ) -> Result<T, StaleToken> {
        let mut highest = self.lock();
        admit(&mut highest, token)?;
        #[cfg(feature = "mutant-check-then-write")]
        drop(highest);
        Ok(write())
    }

    /// Raises the floor to `epoch` (never lowers it). After a revoke or fence, the DR controller
    /// or an operator pushes the resource's new epoch here, and the old holder's token is
    /// rejected from then on.
    pub fn observe_epoch(&self, epoch: FencingToken) {
        let mut highest = self.lock();
        *highest = (*highest).max(epoch);
    }

    /// The floor: the highest token accepted or epoch observed.
    pub fn highest(&self) -> FencingToken {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FencingToken> {
        // The guarded value is a plain token that is only ever replaced whole, so a panic in a
        // caller's write cannot leave it torn; keep serving after one.
        self.highest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn admit(highest: &mut FencingToken, token: FencingToken) -> Result<(), StaleToken> {
    if token < *highest {
        return Err(StaleToken {
            presented: token,
            highest: *highest,
        });
    }
    *highest = token;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_tokens_are_rejected_after_a_higher_one() {
        let r = FencedResource::new();
        assert_eq!(r.write(FencingToken(5), || "a"), Ok("a"));
        assert_eq!(r.write(FencingToken(5), || "again"), Ok("again"));
        assert_eq!(r.check(FencingToken(9)), Ok(()));
        assert_eq!(
            r.write(FencingToken(5), || "late"),
            Err(StaleToken {
                presented: FencingToken(5),
                highest: FencingToken(9)
            })
        );
        assert_eq!(r.highest(), FencingToken(9));
    }

    #[test]
    fn an_observed_epoch_fences_the_old_holder_and_never_lowers_the_floor() {
        let r = FencedResource::new();
        r.check(FencingToken(4096)).unwrap();
        r.observe_epoch(FencingToken(8192));
        assert_eq!(
            r.check(FencingToken(4096)),
            Err(StaleToken {
                presented: FencingToken(4096),
                highest: FencingToken(8192)
            })
        );
        r.observe_epoch(FencingToken(1));
        assert_eq!(r.highest(), FencingToken(8192));
        // The next grant's token is above the revoke's epoch.
        assert!(r.check(FencingToken(12288)).is_ok());
    }

    /// Rule 9: the check and the write are one step. A write with token 9 that arrives while
    /// a write with token 5 runs waits for it, so the store's last write is the higher token's.
    /// Were the floor let go between check and write, token 9 would write during token 5's
    /// write and token 5's would land last: a lower token overwriting a higher one.
    #[test]
    fn a_higher_token_waits_for_a_running_lower_write_and_lands_after_it() {
        use std::sync::mpsc;
        use std::sync::Arc;
        use std::time::Duration;

        let resource = Arc::new(FencedResource::new());
        let store = Arc::new(Mutex::new(Vec::new()));
        let (low_running_tx, low_running) = mpsc::channel();
        let (high_wrote_tx, high_wrote) = mpsc::channel();

        let low = {
            let (resource, store) = (resource.clone(), store.clone());
            std::thread::spawn(move || {
                resource.write(FencingToken(5), || {
                    low_running_tx.send(()).unwrap();
                    // While this write runs, the higher token must not get to write. Wait for
                    // it a while (it is expected not to come), then finish this write.
                    let overtaken = high_wrote.recv_timeout(Duration::from_millis(300)).is_ok();
                    store.lock().unwrap().push(5);
                    overtaken
                })
            })
        };
        low_running.recv().unwrap();
        let high = {
            let (resource, store) = (resource.clone(), store.clone());
            std::thread::spawn(move || {
                resource.write(FencingToken(9), || {
                    store.lock().unwrap().push(9);
                    let _ = high_wrote_tx.send(());
                })
            })
        };
        let overtaken = low.join().unwrap().expect("token 5 admitted first");
        high.join().unwrap().expect("token 9 admitted after");
        assert!(
            !overtaken,
            "token 9 wrote while token 5's write was running"
        );
        assert_eq!(
            *store.lock().unwrap(),
            [5, 9],
            "the lower token's write landed last"
        );
        assert_eq!(resource.highest(), FencingToken(9));
    }

    #[test]
    fn a_rejected_write_does_not_run() {
        let r = FencedResource::new();
        r.observe_epoch(FencingToken(10));
        let mut ran = false;
        assert_eq!(
            r.write(FencingToken(3), || ran = true),
            Err(StaleToken {
                presented: FencingToken(3),
                highest: FencingToken(10)
            })
        );
        assert!(!ran);
        assert_eq!(
            r.highest(),
            FencingToken(10),
            "a refused write raises nothing"
        );
    }
}
