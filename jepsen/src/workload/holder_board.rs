//! Which lease holder holds what, and the lever the nemesis uses to freeze one.
//!
//! Invariant: a frozen holder does nothing at all — no writes, no keep-alives — from the moment
//! it reaches its [`PauseGate`] until the nemesis resumes it. Holders pass the gate between
//! checking that their lease is valid and writing, which is exactly where a stop-the-world pause
//! makes a stale writer: it resumes believing what it checked before the pause.

use std::collections::BTreeMap;
use std::sync::Mutex;

use arbiter_core::HolderId;
use serde::Serialize;
use tokio::sync::watch;

/// A holder the nemesis froze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frozen {
    pub process: u64,
    /// The lease it held when frozen; `None` if it held none (it freezes at its next write).
    pub holder: Option<HolderId>,
}

struct Slot {
    holding: Option<HolderId>,
    paused: watch::Sender<bool>,
}

#[derive(Default)]
pub struct HolderBoard {
    /// Process → its slot. A std mutex: lookups only, never held across an await.
    slots: Mutex<BTreeMap<u64, Slot>>,
}

impl HolderBoard {
    /// Registers holder process `process`; its gate starts open.
    pub fn join(&self, process: u64) -> PauseGate {
        let (paused, rx) = watch::channel(false);
        self.lock().insert(
            process,
            Slot {
                holding: None,
                paused,
            },
        );
        PauseGate { rx }
    }

    /// Records that `process` now holds the lease `holder` (or nothing).
    pub fn set_holding(&self, process: u64, holder: Option<HolderId>) {
        if let Some(slot) = self.lock().get_mut(&process) {
            slot.holding = holder;
        }
    }

    /// Freezes a holder: the first (lowest process) that holds a lease, else the first of all.
    pub fn freeze_one(&self) -> Option<Frozen> {
        let slots = self.lock();
        let (process, slot) = slots
            .iter()
            .find(|(_, s)| s.holding.is_some())
            .or_else(|| slots.iter().next())?;
        slot.paused.send_replace(true);
        Some(Frozen {
            process: *process,
            holder: slot.holding.clone(),
        })
    }

    pub fn resume(&self, process: u64) {
        if let Some(slot) = self.lock().get(&process) {
            slot.paused.send_replace(false);
        }
    }

    pub fn resume_all(&self) {
        for slot in self.lock().values() {
            slot.paused.send_replace(false);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        // Every update replaces one field whole; a panic cannot leave a slot torn.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A holder's side of the lever.
pub struct PauseGate {
    rx: watch::Receiver<bool>,
}

impl PauseGate {
    /// Returns at once unless the holder is frozen; then runs `on_freeze` (stop everything the
    /// holder does in the background) and waits to be resumed. Returns whether it froze.
    pub async fn pass(&mut self, on_freeze: impl FnOnce()) -> bool {
        if !*self.rx.borrow_and_update() {
            return false;
        }
        on_freeze();
        // An error means the board is gone (the run is over): nothing will resume us, go on.
        let _ = self.rx.wait_for(|paused| !paused).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_nemesis_freezes_a_holding_holder_until_resumed() {
        let board = HolderBoard::default();
        let mut idle = board.join(1);
        let mut holding = board.join(2);
        board.set_holding(2, Some(HolderId::new("p2-1")));
        let frozen = board.freeze_one().unwrap();
        assert_eq!(
            frozen,
            Frozen {
                process: 2,
                holder: Some(HolderId::new("p2-1"))
            }
        );
        assert!(!idle.pass(|| {}).await, "others are not frozen");
        let frozen_holder = tokio::spawn(async move {
            let mut stopped_renewing = false;
            let froze = holding.pass(|| stopped_renewing = true).await;
            (froze, stopped_renewing)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!frozen_holder.is_finished(), "frozen until resumed");
        board.resume(2);
        assert_eq!(frozen_holder.await.unwrap(), (true, true));
    }
}
