//! A player's outbound event queue: bounded, never waiting on the sending side, and holding no
//! memory while it is empty.
//!
//! Rooms push from their tasks; the player's session task takes. A channel would allocate its
//! first block of slots when created and keep it for the session's life, about 1.5 KiB per held
//! player whether anything is queued or not. This queue is a `VecDeque` behind a mutex that is
//! only ever held for a push or a pop: it grows with a burst and gives its memory back once the
//! burst is drained.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// Slots kept after a drain (two kilobytes); beyond this the queue's memory is given back when it
/// empties. A player that keeps a room busy reuses them from batch to batch instead of growing
/// the queue again each time; an idle one gives them back at its next quiet moment
/// ([`Outbound::shrink`]).
const KEEP_SLOTS: usize = 64;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds its capacity already.
    Full,
    /// The receiving session has ended.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Bytes>,
    closed: bool,
    waker: Option<Waker>,
}

impl Outbound {
    /// An empty queue of at most `capacity` events (at least one).
    pub(crate) fn new(capacity: usize) -> Outbound {
        Outbound {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a single push, pop or flag change: nothing is half-done if
        // a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event and wakes the receiver.
    pub(crate) fn push(&self, payload: Bytes) -> Result<(), Refused> {
        let waker = {
            let mut inner = self.lock();
            if inner.closed {
                return Err(Refused::Closed);
            }
            if inner.items.len() >= self.capacity {
                return Err(Refused::Full);
            }
            inner.items.push_back(payload);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The next event, if one is queued.
    pub(crate) fn try_pop(&self) -> Option<Bytes> {
        let mut inner = self.lock();
        let item = inner.items.pop_front();
        if inner.items.is_empty() && inner.items.capacity() > KEEP_SLOTS {
            inner.items = VecDeque::new();
        }
        item
    }

    /// Takes up to `into.len()` events at once, in order; returns how many. The rest of `into`
    /// is left as it was.
    pub(crate) fn pop_many(&self, into: &mut [Option<Bytes>]) -> usize {
        let mut inner = self.lock();
        let n = into.len().min(inner.items.len());
        for slot in &mut into[..n] {
            *slot = inner.items.pop_front();
        }
        if inner.items.is_empty() && inner.items.capacity() > KEEP_SLOTS {
            inner.items = VecDeque::new();
        }
        n
    }

    /// The next event; `None` once the queue is closed and empty. Registers the task to be
    /// woken by the next push when there is nothing yet.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut inner = self.lock();
        if let Some(item) = inner.items.pop_front() {
            if inner.items.is_empty() && inner.items.capacity() > KEEP_SLOTS {
                inner.items = VecDeque::new();
            }
            return Poll::Ready(Some(item));
        }
        if inner.closed {
            return Poll::Ready(None);
        }
        match &inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next event (see [`Outbound::poll_pop`]). Cancel-safe: nothing is taken
    /// unless it is returned.
    #[cfg(test)]
    pub(crate) async fn pop(&self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// Refuses every later push; what is queued can still be taken.
    pub(crate) fn close(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Slots the queue holds, used or not.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.lock().items.capacity()
    }

    /// Gives the queue's memory back if it is empty: an idle player holds none.
    pub(crate) fn shrink(&self) {
        let mut inner = self.lock();
        if inner.items.is_empty() && inner.items.capacity() > 0 {
            inner.items = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_drains_then_ends() {
        let queue = Outbound::new(2);
        assert_eq!(queue.push(Bytes::from_static(b"1")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"2")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"3")), Err(Refused::Full));
        queue.close();
        assert_eq!(queue.push(Bytes::from_static(b"4")), Err(Refused::Closed));
        assert_eq!(queue.try_pop().as_deref(), Some(&b"1"[..]));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            queue.poll_pop(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"2")))
        );
        assert_eq!(queue.poll_pop(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn many_are_taken_in_order_and_the_rest_stays() {
        let queue = Outbound::new(100);
        for i in 0..20u8 {
            queue.push(Bytes::from(vec![i])).expect("room");
        }
        let mut batch: [Option<Bytes>; 16] = Default::default();
        assert_eq!(queue.pop_many(&mut batch), 16);
        let first: Vec<u8> = batch
            .iter_mut()
            .map(|b| b.take().expect("filled")[0])
            .collect();
        assert_eq!(first, (0..16).collect::<Vec<_>>());
        assert_eq!(queue.pop_many(&mut batch), 4);
        assert_eq!(batch[3].as_deref(), Some(&[19u8][..]));
        assert!(batch[4].is_none());
        assert_eq!(queue.pop_many(&mut batch), 0);
    }

    #[test]
    fn an_empty_queue_holds_no_memory_after_a_burst() {
        let queue = Outbound::new(1024);
        assert_eq!(
            queue.lock().items.capacity(),
            0,
            "nothing allocated up front"
        );
        for i in 0..500u32 {
            queue
                .push(Bytes::from(i.to_be_bytes().to_vec()))
                .expect("room");
        }
        assert!(queue.lock().items.capacity() >= 500);
        while queue.try_pop().is_some() {}
        assert_eq!(queue.lock().items.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_push() {
        let queue = std::sync::Arc::new(Outbound::new(4));
        let receiver = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await })
        };
        tokio::task::yield_now().await;
        queue.push(Bytes::from_static(b"late")).expect("room");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), receiver)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got.as_deref(), Some(&b"late"[..]));
    }
}
