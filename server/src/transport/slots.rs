//! Session slots: `server.max_sessions`, shared by every listener, and the order in which
//! connections still in their handshake give theirs up.
//!
//! Every admitted connection takes a slot at accept. Until its `Hello` is accepted it is in its
//! handshake (a PROXY header, a TLS handshake, a WebSocket upgrade, the `Hello` itself), and its
//! slot waits here, oldest first. When every slot is taken and a new connection arrives, the
//! oldest connection still in its handshake gives its slot to the newcomer and is told to end:
//! connections that never say who they are (an idle flood, a slowloris) can delay a player by a
//! handshake at most, never keep one out while slots are held by anything but players. A player
//! past its `Hello` keeps its slot for the rest of its session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The slots.
#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    /// Connections in their handshake, oldest first, with their slots.
    entries: BTreeMap<u64, (OwnedSemaphorePermit, Arc<Entry>)>,
}

/// One connection's place in the handshake queue, shared by the queue and the connection.
#[derive(Debug)]
struct Entry {
    id: u64,
    slots: Arc<Slots>,
    evicted: AtomicBool,
    notify: Notify,
}

/// A slot for a connection in its handshake: while it waits, the oldest such slot can be given
/// to a newcomer ([`Pending::evicted`] then completes). Dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Pending(Arc<Entry>);

/// A connection's slot, through its life.
#[derive(Debug, Default)]
pub(crate) enum Slot {
    /// In its handshake: the slot may go to a newcomer.
    Pending(Pending),
    /// Past its `Hello`: the slot is the session's until it ends. (Boxed: every held session
    /// carries its slot in its task, and a permit inline would push the task past an allocator
    /// size class.)
    Held(#[allow(dead_code)] Box<OwnedSemaphorePermit>),
    /// None: a connection handed over without admission (tests), or one whose slot went to a
    /// newcomer at the moment its `Hello` was accepted (it then runs over the cap until it ends).
    #[default]
    Free,
}

impl Slots {
    /// `max` slots; 0 for as many as a semaphore holds.
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        let max = match max {
            0 => Semaphore::MAX_PERMITS,
            n => n.min(Semaphore::MAX_PERMITS),
        };
        Arc::new(Slots {
            semaphore: Arc::new(Semaphore::new(max)),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection: a free one, or else the slot of the oldest connection still
    /// in its handshake, which is told to end. `None` when every slot is a player's.
    pub(crate) fn acquire(self: &Arc<Self>) -> Option<Pending> {
        let mut waiting = self.lock();
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let (permit, oldest) = waiting.entries.pop_first()?.1;
                oldest.evicted.store(true, Ordering::Release);
                oldest.notify.notify_one();
                permit
            }
        };
        waiting.next += 1;
        let entry = Arc::new(Entry {
            id: waiting.next,
            slots: self.clone(),
            evicted: AtomicBool::new(false),
            notify: Notify::new(),
        });
        waiting.entries.insert(entry.id, (permit, entry.clone()));
        Some(Pending(entry))
    }

    /// Connections in their handshake now.
    #[cfg(test)]
    fn in_handshake(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Pending {
    /// Completes when the slot went to a newcomer: the connection must end.
    pub(crate) fn evicted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let entry = self.0.clone();
        async move {
            loop {
                let notified = entry.notify.notified();
                if entry.evicted.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        }
    }

    /// The handshake is done: the slot leaves the queue for good and is the session's. `None`
    /// when it went to a newcomer just before.
    pub(crate) fn complete(self) -> Option<OwnedSemaphorePermit> {
        let taken = self.0.slots.lock().entries.remove(&self.0.id);
        taken.map(|(permit, _)| permit)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Gone before its handshake completed: its slot goes back. (After `complete`, or an
        // eviction, nothing is left to remove.)
        let removed = self.0.slots.lock().entries.remove(&self.0.id);
        drop(removed);
    }
}

impl Slot {
    /// The handshake is done: a pending slot becomes the session's.
    pub(crate) fn complete(&mut self) {
        if let Slot::Pending(_) = self
            && let Slot::Pending(pending) = std::mem::take(self)
        {
            *self = match pending.complete() {
                Some(permit) => Slot::Held(Box::new(permit)),
                None => Slot::Free,
            };
        }
    }

    /// True once a pending slot went to a newcomer (what [`Slot::evicted`] waits for).
    pub(crate) fn is_evicted(&self) -> bool {
        match self {
            Slot::Pending(pending) => pending.0.evicted.load(Ordering::Acquire),
            _ => false,
        }
    }

    /// Completes when a pending slot went to a newcomer; never for a session's.
    pub(crate) fn evicted(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        match self {
            Slot::Pending(pending) => Box::pin(pending.evicted()),
            _ => Box::pin(std::future::pending()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn at_the_cap_the_oldest_handshake_gives_its_slot_to_a_newcomer() {
        let slots = Slots::new(2);
        let first = slots.acquire().expect("a free slot");
        let second = slots.acquire().expect("a free slot");
        let mut evicted_first = Box::pin(first.evicted());
        assert!((&mut evicted_first).now_or_never().is_none());
        // Full: the oldest in its handshake makes room.
        let third = slots.acquire().expect("the first one's slot");
        assert!((&mut evicted_first).now_or_never().is_some());
        assert_eq!(slots.in_handshake(), 2);
        // A session past its Hello keeps its slot: the second completes, the third is evicted
        // for the fourth, and then nobody is left to give way.
        let held = second.complete().expect("its slot");
        let evicted_third = third.evicted();
        let _fourth = slots.acquire().expect("the third one's slot");
        assert!(evicted_third.now_or_never().is_some());
        let fourth_done = _fourth.complete().expect("its slot");
        assert!(slots.acquire().is_none(), "two players hold both slots");
        // The evicted one's completion finds nothing: its slot is gone.
        assert!(first.complete().is_none());
        drop((held, fourth_done));
        assert!(slots.acquire().is_some(), "a slot back when a session ends");
    }

    #[tokio::test]
    async fn a_connection_that_ends_in_its_handshake_gives_its_slot_back() {
        let slots = Slots::new(1);
        let only = slots.acquire().expect("a free slot");
        drop(only);
        assert_eq!(slots.in_handshake(), 0);
        let again = slots.acquire().expect("the slot is free again");
        let evicted = again.evicted();
        assert!(
            evicted.now_or_never().is_none(),
            "nobody was evicted for it"
        );
    }
}
