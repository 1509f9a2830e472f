//! Who else holds a queue, so that a wait can end when nobody is left to answer it: a table
//! of the processes holding a handle, in the queue's header, and a pipe that hangs up when
//! no handle is in flight inside a message.
//!
//! # The rule
//!
//! A `get` waiting on an empty queue (a `put` waiting for room, a `join` waiting for
//! `task_done`) returns `Disconnected` when the queue has been shared with another process
//! and now
//!
//! 1. no handle to it is in flight inside a message (every message carrying one holds a
//!    write end of the queue's *presence pipe*, opened for that message alone; the read
//!    end, which every handle holds, hangs up when none is left: when every such message
//!    has been received, or destroyed unread), and
//! 2. no *other* live process holds a handle: each process registers in the table when it
//!    creates or receives a handle (a forked child registers in its first walk of its
//!    argument; until then the parent's walk holds a presence write end across the fork),
//!    under its pid and start time, and frees its slot when the handle drops; a
//!    SIGKILLed holder leaves its slot behind, and the waiter finds it dead in `/proc`.
//!
//! The received handle registers *before* it closes its write end, and a waiter looks at
//! the pipe *before* the table, so a handle moving from a message into a process is always
//! seen in one place or the other.
//!
//! Threads of the waiting process do not count: they are its own affair. A queue never
//! shared waits as before. The check costs nothing per message: it runs only when a waiter
//! has slept a whole nap (100 ms) without progress.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mproc_shm::{Block, Result};

/// Offset of the flags word in the queue's header.
pub(crate) const FLAGS: usize = 384;
/// Offset of the epoch: bumped by every registration, unregistration and handle sent, so
/// that a waiter whose look at the pipe and the table straddled one of them looks again.
const EPOCH: usize = 388;
/// A slot being claimed: its namespace is written before its identity.
const CLAIMING: u64 = u64::MAX;
/// Offset of the table: `SLOTS` pairs of u64 (identity, pid namespace).
const TABLE: usize = 512;
const SLOTS: usize = 128;
/// The header's length with the table.
pub(crate) const HEADER_END: usize = TABLE + SLOTS * 16;

/// A process other than its creator has held the queue.
const SHARED: u32 = 1;
/// Holders could not all be tracked (the table was full, or `/proc` could not be used):
/// `Disconnected` is never reported.
const UNTRACKED: u32 = 2;
/// The creator asked for no `Disconnected` ([`Builder::watch_peers`](crate::Builder::watch_peers)).
const UNWATCHED: u32 = 4;

fn flags(header: &Block) -> Result<&AtomicU32> {
    header.get::<AtomicU32>(FLAGS)
}

fn table(header: &Block) -> Result<&[AtomicU64]> {
    header.get_slice::<AtomicU64>(TABLE, SLOTS * 2)
}

fn epoch(header: &Block) -> Option<&AtomicU32> {
    header.get::<AtomicU32>(EPOCH).ok()
}

/// Notes a change a waiter must not miss (see `EPOCH`).
pub(crate) fn bump(header: &Block) {
    if let Some(e) = epoch(header) {
        e.fetch_add(1, Ordering::SeqCst);
    }
}

/// Turns `Disconnected` off for good, for every holder.
pub(crate) fn unwatch(header: &Block) {
    if let Ok(f) = flags(header) {
        f.fetch_or(UNWATCHED, Ordering::SeqCst);
    }
}

/// Notes that a process other than the creator holds the queue (or is about to).
pub(crate) fn mark_shared(header: &Block) {
    if let Ok(f) = flags(header) {
        f.fetch_or(SHARED, Ordering::SeqCst);
    }
}

/// Notes that holders can no longer all be told apart: `Disconnected` is off for good.
pub(crate) fn mark_untracked(header: &Block) {
    if let Ok(f) = flags(header) {
        f.fetch_or(UNTRACKED, Ordering::SeqCst);
    }
}

/// Registers the process `id` (a [`mproc_sys::process_identity`]) as holding one handle;
/// `shared` when it received the handle (rather than created it). A full table turns the
/// checks off rather than miscount.
pub(crate) fn register(header: &Block, id: u64, shared: bool) {
    bump(header);
    if shared {
        mark_shared(header);
    }
    let Ok(table) = table(header) else { return };
    let ns = u64::from(mproc_sys::pid_namespace());
    for pair in table.chunks_exact(2) {
        if pair[0]
            .compare_exchange(0, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            pair[1].store(ns, Ordering::SeqCst);
            pair[0].store(id, Ordering::SeqCst);
            return;
        }
    }
    mark_untracked(header);
}

/// Frees one slot registered under `id`.
pub(crate) fn unregister(header: &Block, id: u64) {
    bump(header);
    let Ok(table) = table(header) else { return };
    for pair in table.chunks_exact(2) {
        if pair[0]
            .compare_exchange(id, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Whether every other holder is gone (see the module's rule). Slots of dead processes
/// are freed on the way.
pub(crate) fn others_gone(header: &Block, presence: BorrowedFd<'_>) -> bool {
    let Ok(f) = flags(header) else { return false };
    let f = f.load(Ordering::SeqCst);
    if f & SHARED == 0 || f & (UNTRACKED | UNWATCHED) != 0 {
        return false;
    }
    let Some(epoch) = epoch(header) else {
        return false;
    };
    let before = epoch.load(Ordering::SeqCst);
    // In flight first: a handle that arrives registers before it lets go of the pipe.
    if !mproc_sys::is_hung_up(presence).unwrap_or(false) {
        return false;
    }
    let Ok(table) = table(header) else {
        return false;
    };
    let me = mproc_sys::current_identity();
    let my_ns = mproc_sys::pid_namespace();
    for pair in table.chunks_exact(2) {
        let id = pair[0].load(Ordering::SeqCst);
        if id == 0 || id == me {
            continue;
        }
        if id == CLAIMING {
            return false; // someone is registering right now
        }
        let ns = pair[1].load(Ordering::SeqCst) as u32;
        if ns != 0 && my_ns != 0 && ns != my_ns {
            // Its pid means nothing here: assume it lives.
            return false;
        }
        if mproc_sys::is_running(id) {
            return false;
        }
        let _ = pair[0].compare_exchange(id, 0, Ordering::SeqCst, Ordering::Relaxed);
    }
    // A handle sent, received or dropped while we looked: look again at the next nap.
    epoch.load(Ordering::SeqCst) == before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Block {
        Block::alloc(HEADER_END).unwrap()
    }

    #[test]
    fn a_queue_never_shared_is_never_given_up() {
        let h = header();
        let (r, w) = mproc_sys::pipe().unwrap();
        drop(w);
        use std::os::fd::AsFd;
        assert!(!others_gone(&h, r.as_fd()));
        mark_shared(&h);
        assert!(others_gone(&h, r.as_fd()));
        // A holder that came and went between two looks is no holder.
        let id = mproc_sys::current_identity() ^ (1 << 40);
        register(&h, id, true);
        unregister(&h, id);
        assert!(others_gone(&h, r.as_fd()));
    }

    #[test]
    fn a_dead_holder_is_gone_and_its_slot_freed_and_a_live_one_is_not() {
        use std::os::fd::AsFd;
        let h = header();
        let (r, w) = mproc_sys::pipe().unwrap();
        mark_shared(&h);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = mproc_sys::process_identity(child.id()).unwrap().unwrap();
        register(&h, id, true);
        assert!(
            !others_gone(&h, r.as_fd()),
            "a write end is open: in flight"
        );
        drop(w);
        assert!(!others_gone(&h, r.as_fd()), "the child lives");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(others_gone(&h, r.as_fd()));
        assert_eq!(table(&h).unwrap()[0].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_full_table_turns_the_check_off() {
        use std::os::fd::AsFd;
        let h = header();
        let (r, _) = mproc_sys::pipe().unwrap();
        mark_shared(&h);
        for _ in 0..=SLOTS {
            register(&h, 1 << 40 | 1, true);
        }
        assert!(!others_gone(&h, r.as_fd()));
    }
}
