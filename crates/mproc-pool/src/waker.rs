//! The waker slot beside a pending result: an awaiting task leaves its [`Waker`] there and
//! the pool's result thread, which fills the result and signals blocking waiters, wakes it.
//!
//! No runtime is involved: the waker is whatever the executor polling the future passed
//! in (tokio's, smol's, a hand-written `block_on`'s), and waking it is a function call on
//! the thread that delivered the result.

use std::task::{Context, Waker};

/// The waker of the task awaiting a result, if one is.
///
/// One slot is enough: a future is polled through `&mut`, so one task awaits it at a time
/// (a later poll from another task replaces the waker, as the `Future` contract asks).
#[derive(Default)]
pub(crate) struct WakerSlot(Option<Waker>);

impl WakerSlot {
    /// Keeps `cx`'s waker, unless the slot already holds one that wakes the same task.
    pub(crate) fn register(&mut self, cx: &Context<'_>) {
        match &self.0 {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.0 = Some(cx.waker().clone()),
        }
    }

    /// Takes the waker out, to be woken once the state's lock is released (a waker may
    /// poll at once, on this thread, and lock the state again).
    pub(crate) fn take(&mut self) -> Option<Waker> {
        self.0.take()
    }
}
